import Foundation
@testable import Strongroom
import Testing

/// Control characters that a terminal acts on, as an attacker would put them in stored text: ESC with
/// a clear-screen sequence, CR, DEL, a C1 CSI (U+009B), a right-to-left override (CVE-2021-42574), an
/// isolate and a line separator.
let hostileText = "pbx\u{1B}[2J\r\u{7F}\u{9B}31m\u{202E}fdp.exe\u{2066}\u{2028}end"
/// The control characters of `hostileText`.
let hostileScalars: Set<Unicode.Scalar> = ["\u{1B}", "\r", "\u{7F}", "\u{9B}", "\u{202E}", "\u{2066}", "\u{2028}"]

@Suite("Size limit of personal values, and control characters in the audit log")
struct FieldSizeLimitTests {
    /// A store whose personal values may be at most 16 bytes.
    private func smallLimitStore(_ backend: TestBackend) throws -> TestStore {
        try TestStore(backend, region: "GB") { $0.maxFieldBytes = 16 }
    }

    @Test("create and update refuse a value over the limit with a typed error naming the field, and store nothing",
          arguments: TestBackend.all)
    func writeAPI(backend: TestBackend) throws {
        let test = try smallLimitStore(backend)
        defer { test.cleanUp() }
        let secret = "Quetzalcoatl-Overlong"
        #expect(test.store.maxFieldBytes == 16)
        var subject = NewSubject(metadata: SubjectMetadata(kind: .lead, externalID: "n1"), personal: PersonalData(name: secret))
        do {
            _ = try test.store.create(subject, context: TestStore.admin)
            Issue.record("an oversized name was stored")
        } catch {
            guard case .fieldTooLarge("name", 21, 16) = error else { throw error }
            #expect(!error.description.contains("Quetzal"))
        }
        #expect(try test.store.count() == 0)
        for personal in [PersonalData(emails: ["ok@example.org", "a-very-long@example.org"]),
                         PersonalData(phones: [LabeledPhone(label: "phone", number: "+44 121 496 0000 000 000")]),
                         PersonalData(customFields: ["shoe": String(repeating: "9", count: 17)])] {
            subject.personal = personal
            #expect(throws: StoreError.self) { try test.store.create(subject, context: TestStore.admin) }
        }
        #expect(try test.store.count() == 0)

        // Exactly at the limit is fine; an update over it changes nothing, not even the metadata.
        subject.personal = PersonalData(name: String(repeating: "é", count: 8), notes: "first notes")
        let id = try test.store.create(subject, context: TestStore.admin)
        #expect(throws: StoreError.self) {
            try test.store.update(id, metadata: SubjectMetadata(kind: .contact, externalID: "n1"),
                                  personal: PersonalData(notes: String(repeating: "n", count: 17)), context: TestStore.admin)
        }
        // Second act: the subject is as it was, in another process's view too, and normal writes go on.
        let reopened = try test.reopen()
        defer { reopened.close() }
        let read = try reopened.read(id, context: TestStore.admin)
        #expect(read.personal.notes == "first notes" && read.metadata.kind == .lead)
        try test.store.update(id, personal: PersonalData(notes: "second notes"), context: TestStore.admin)
        #expect(try reopened.read(id, context: TestStore.admin).personal.notes == "second notes")
        // The limit is the opening process's: the default (64 KiB) takes what 16 bytes refused.
        #expect(reopened.maxFieldBytes == 64 << 10)
        try reopened.update(id, personal: PersonalData(notes: String(repeating: "n", count: 17)), context: TestStore.admin)
    }

    @Test("the importer makes an oversized value a row error with line and column, imports the rest; strict refuses the file",
          arguments: TestBackend.all)
    func importer(backend: TestBackend) throws {
        let test = try smallLimitStore(backend)
        defer { test.cleanUp() }
        let csv = """
            external_id,name,notes
            i1,Ann,short
            i2,Bob,Xylophone-Tangerine-Notes
            i3,Cy,short
            "\(String(repeating: "e", count: 17))",Dee,short

            """
        var options = ImportOptions()
        options.strict = true
        #expect(throws: ImportError.self) {
            try CSVImporter(store: test.store, options: options).run(Array(csv.utf8), context: TestStore.admin)
        }
        #expect(try test.store.count() == 0)

        let report = try CSVImporter(store: test.store).run(Array(csv.utf8), context: TestStore.admin)
        #expect(report.created == 2)
        #expect(report.rejected.map(\.line) == [3, 5])
        #expect(report.rejected.map(\.column) == ["notes", "external_id"])
        #expect(report.rejected.first?.reason == "notes is 25 bytes, over the limit of 16 bytes per field")
        #expect(!report.rejected.contains { $0.reason.contains("Xylophone") })
        #expect(throws: StoreError.self) { try test.store.resolve("i2") }

        // Second act: the same file with the long value shortened imports, and the subjects read back.
        let fixed = csv.replacingOccurrences(of: "Xylophone-Tangerine-Notes", with: "Xylophone")
            .replacingOccurrences(of: String(repeating: "e", count: 17), with: "i4")
        let again = try CSVImporter(store: test.store).run(Array(fixed.utf8), context: TestStore.admin)
        #expect(again.rejected.isEmpty && again.created == 2 && again.updated == 2)
        #expect(try test.store.read(try test.store.resolve("i2"), context: TestStore.admin).personal.notes == "Xylophone")

        // A header with a column name over the limit is refused before any row.
        #expect(throws: ImportError.self) {
            try CSVImporter(store: test.store).run(Array("name,\(String(repeating: "c", count: 17))\nAnn,1\n".utf8),
                                                   context: TestStore.admin)
        }
    }

    @Test("actor, client and detail holding control characters are written to the audit log escaped, read back exactly",
          arguments: TestBackend.all)
    func auditLines(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("a"), context: TestStore.admin)
        let hostile = AccessContext(actor: hostileText, purpose: .admin, clientAddress: hostileText)
        _ = try test.store.read(id, context: hostile)
        try test.store.erase(id, reason: hostileText, context: TestStore.admin)
        // Second act: another process appends and reads the same log.
        let reopened = try test.reopen()
        defer { reopened.close() }
        _ = try reopened.create(sampleSubject("b"), context: hostile)
        var hostileEntries = 0
        try reopened.auditEntries { entry, line in
            let text = String(decoding: line, as: UTF8.self)
            #expect(!text.unicodeScalars.contains { hostileScalars.contains($0) })
            #expect(!line.contains(0x1B))
            if entry.actor == hostileText || entry.detail == hostileText { hostileEntries += 1 }
            if entry.actor == hostileText { #expect(entry.client == hostileText) }
        }
        #expect(hostileEntries == 3)
        #expect(try reopened.verifyAuditLog().isIntact)
    }
}
