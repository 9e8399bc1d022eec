import Foundation
import Strongroom
import Testing

@Suite("No plaintext on disk")
struct NoPlaintextOnDiskTests {
    /// Whether `needle` occurs in `haystack`.
    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool { PlaintextScan.contains(haystack, needle) }

    func encodings(_ text: String) -> [(String, [UInt8])] { PlaintextScan.encodings(text) }

    @Test("no file of the store (SQLite), no row of either schema (PostgreSQL) holds a name, e-mail, number or other field, in UTF-8 or UTF-16, after writes, updates and deletes",
          arguments: TestBackend.all)
    func scan(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        var secrets: [String] = []
        var ids: [SubjectID] = []
        for tag in ["aa", "bb", "cc"] {
            let subject = sampleSubject(tag, phones: ["+44 20 7946 0958", "(415) 555-2671"])
            ids.append(try test.store.create(subject, context: TestStore.admin))
            let personal = subject.personal
            secrets += [personal.name!, personal.company!, personal.emails![0], personal.address!, personal.notes!,
                        "PHOTO-\(tag)", "Kumquat-\(tag)"]
        }
        // Every number in the forms it was typed, its E.164 digits, and the parts a person would search for.
        secrets += ["+44 20 7946 0958", "442079460958", "+442079460958", "2079460958", "7946 0958",
                    "(415) 555-2671", "4155552671", "+14155552671", "555-2671"]
        try test.store.update(ids[0], personal: PersonalData(name: "Updated Zanzibar Name"), context: TestStore.admin)
        secrets.append("Updated Zanzibar Name")
        // A consent with its evidence and the subject's address.
        try test.store.declarePurpose(PurposeDeclaration(name: "newsletter", description: "News", lawfulBasis: .consent), context: TestStore.admin)
        _ = try test.store.grantConsent(ids[1], purpose: "newsletter", evidence: "Signup form Xenolith-9 ticked", initiator: .subject,
                                        clientAddress: "198.51.100.77", context: TestStore.admin)
        secrets += ["Signup form Xenolith-9 ticked", "Xenolith-9", "198.51.100.77"]
        _ = try test.store.read(ids[1], context: TestStore.admin)
        _ = try test.store.callerID(number: "+442079460958", context: TestStore.caller)
        _ = try test.store.recordCall(number: "+1 415 555 2671", at: Date(timeIntervalSince1970: 1_790_000_000), context: TestStore.caller)
        try test.store.delete(ids[2], context: TestStore.admin)
        test.store.close()
        let content = try test.storedContent()
        switch backend {
        case .sqlite:
            #expect(content.contains { $0.place.hasSuffix("data.sqlite") } && content.contains { $0.place.hasSuffix(".jsonl") })
        case .postgres:
            // The dump reads what it must: every table of both schemas, clear operational columns as text
            // and bytea (ciphertext, audit lines) as hex, so the scan below looks at real rows.
            let places = Set(content.map(\.place))
            let data = try #require(test.dataSchema), keys = try #require(test.keysSchema)
            for table in ["\(data).subjects", "\(data).phone_index", "\(data).calls", "\(data).consent_ledger", "\(data).audit_log",
                          "\(keys).subject_keys", "\(keys).kek"] {
                #expect(places.contains(table), "the dump has no table \(table)")
            }
            let subjects = try #require(content.first { $0.place == "\(data).subjects" })
            #expect(PlaintextScan.contains(subjects.bytes, Array("ext-aa".utf8)), "the dump does not show the rows' clear columns")
            let audit = try #require(content.first { $0.place == "\(data).audit_log" })
            #expect(PlaintextScan.contains(audit.bytes, PlaintextScan.hex(Array("\"actor\":\"test-admin\"".utf8))),
                    "the dump does not show bytea columns as hex")
        }
        PlaintextScan.expectAbsent(secrets, from: content, backend: backend)
        print("[\(backend)] scanned \(content.count) \(backend == .sqlite ? "files" : "tables") for \(secrets.count) values in 3 encodings")
    }
}

@Suite("Erasure reaches every copy in the store")
struct ErasureScanTests {
    @Test("after erasure, no file (SQLite: key database, its WAL, data, audit) or table row (PostgreSQL: both schemas) holds the erased subject's wrapped key or fields",
          arguments: TestBackend.all)
    func wrappedKeyGone(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let erased = try test.store.create(sampleSubject("shred"), context: TestStore.admin)
        _ = try test.store.create(sampleSubject("stays"), context: TestStore.admin)
        let wrapped = try #require(try test.database(.keys).firstRow(
            "SELECT wrapped FROM subject_keys WHERE subject_id = ?", [.integer(erased.rawValue)]) { $0.blob(0) } ?? nil)
        // The wrapped key's ciphertext-and-tag part is random: any 24-byte piece of it found is a copy.
        let needles = PlaintextScan.needles("wrapped key", Array(wrapped.suffix(24)), backend: backend)
        let secrets = ["Zebedee Quixotic-shred", "zebedee.shred@example.org", "17 Xylophone Lane shred"]
        // Before: the scan finds the key (it looks in the right places and forms).
        #expect(try test.storedContent().contains { place in needles.contains { PlaintextScan.contains(place.bytes, $0.1) } })
        try test.store.erase(erased, reason: "Art. 17 request", context: TestStore.admin)
        test.store.close()
        // After. PostgreSQL keeps the deleted row's old version in its files until VACUUM (SECURITY.md):
        // the scan covers what any connection can read.
        let content = try test.storedContent()
        for (place, bytes) in content {
            for (form, needle) in needles {
                #expect(!PlaintextScan.contains(bytes, needle), "\(place) still holds the erased subject's \(form)")
            }
        }
        PlaintextScan.expectAbsent(secrets, from: content, backend: backend)
        #expect(content.contains { $0.place.hasSuffix(backend == .sqlite ? "keys.sqlite" : "_keys.subject_keys") })
    }
}
