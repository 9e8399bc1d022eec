import Foundation
@testable import Strongroom
import Testing

@Suite("CSV import")
struct ImportTests {
    let header = "external_id,kind,name,company,email,phone,mobile,work_phone,address,notes,source,owner,last_contacted,shoe_size\n"

    @Test("cells lose the blanks Foundation's whitespace set holds (tab, space separators, zero-width space) at their ends, nothing else")
    func trimmingMatchesFoundation() {
        for text in ["", " ", "\t", "plain", "\t a b \t", "\u{00A0}x\u{3000}", "\u{2003}y\u{202F}", "\n z \n", "\r\nq", "\u{200B}w\u{200B}",
                     "\u{FEFF}v", "é ", " ü", "\u{1680}\u{2000}\u{205F}"] {
            #expect(text.trimmingBlanks() == text.trimmingCharacters(in: .whitespaces), "\(text.unicodeScalars.map(\.value))")
        }
    }

    @Test("bad rows are reported with their line and skipped; good rows land; unknown columns become custom fields", arguments: TestBackend.all)
    func badRows(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let csv = "\u{FEFF}" + header + """
            e1,contact,Ann Example,,ann@example.org,020 7946 0958,,,"1 Road, Town",,Referral,a1,2026-01-02T03:04:05Z,42
            e2,martian,Bob,,,,,,,,,,,
            e3,lead,Cy,,,,,,,,,,yesterday,
            e4,lead,,,,,,,,,,,,
            e5,lead,Dee "Quoted",,,,,,,,,,,
            e6,lead,Eve,,,12,,,,,,,,
            e7,lead,Fay,,,,,,,,,,,

            e8,lead,Gus,,,,,,,,,,,
            """
        let report = try CSVImporter(store: test.store).run(Array(csv.utf8), context: TestStore.admin)
        #expect(report.created == 4)
        #expect(report.rejected.map(\.line) == [3, 4, 5, 6])
        #expect(report.unindexed.map(\.line) == [7])
        let ann = try test.store.read(try test.store.resolve("e1"), context: TestStore.admin)
        #expect(ann.personal.customFields == ["shoe_size": "42"])
        #expect(ann.personal.address == "1 Road, Town")
        #expect(ann.metadata.lastContactedAt == Timestamp.parse("2026-01-02T03:04:05Z"))
        // The number that could not be normalised is stored, not dropped.
        #expect(try test.store.read(try test.store.resolve("e6"), context: TestStore.admin).personal.phones?.first?.number == "12")
    }

    @Test("each known column's place is its name's place in knownColumns: every name maps to its own column, and back")
    func knownColumnsByPlace() {
        #expect(CSVImporter.KnownColumn.allCases.count == CSVImporter.knownColumns.count)
        for column in CSVImporter.KnownColumn.allCases {
            #expect(CSVImporter.KnownColumn(name: CSVImporter.knownColumns[column.rawValue]) == column)
        }
        #expect(CSVImporter.KnownColumn(name: "shoe_size") == nil && CSVImporter.KnownColumn(name: "") == nil)
        #expect(CSVImporter.phoneKnownColumns.map(\.0) == [.phone, .mobile, .workPhone])
    }

    @Test("every column lands in its own field whatever the header's order; a re-import in another order updates the same subject",
          arguments: TestBackend.all)
    func headerOrder(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let reversed = "shoe_size,last_contacted,owner,source,notes,address,work_phone,mobile,phone,email,company,name,kind,external_id\n"
            + "42,2026-01-02,a1,Referral,first,1 Road,020 7946 0000,07700 900123,020 7946 0958,ann@example.org,Acme,Ann,contact,e1\n"
        #expect(try CSVImporter(store: test.store).run(Array(reversed.utf8), context: TestStore.admin).created == 1)
        let id = try test.store.resolve("e1")
        let expected = PersonalData(name: "Ann", company: "Acme", emails: ["ann@example.org"],
                                    phones: [LabeledPhone(label: "phone", number: "020 7946 0958"), LabeledPhone(label: "mobile", number: "07700 900123"),
                                             LabeledPhone(label: "work", number: "020 7946 0000")],
                                    address: "1 Road", notes: "first", customFields: ["shoe_size": "42"])
        let ann = try test.store.read(id, context: TestStore.admin)
        #expect(ann.personal == expected)
        #expect(ann.metadata == SubjectMetadata(kind: .contact, externalID: "e1", owner: "a1", source: "Referral",
                                                lastContactedAt: Timestamp.parse("2026-01-02")))
        // Second act: another order, in another opening; the same subject changes, and caller ID finds it by each number.
        let reopened = try test.reopen()
        let shuffled = "notes,external_id,name\nsecond,e1,Ann Renamed\n"
        #expect(try CSVImporter(store: reopened).run(Array(shuffled.utf8), context: TestStore.admin).updated == 1)
        let renamed = try reopened.read(id, context: TestStore.admin)
        #expect(renamed.personal.name == "Ann Renamed" && renamed.personal.notes == "second" && renamed.personal.company == "Acme")
        for number in ["+44 20 7946 0958", "+44 7700 900123", "+44 20 7946 0000"] {
            #expect(try reopened.callerID(number: number, context: TestStore.caller).map(\.id) == [id])
        }
        #expect(try reopened.count() == 1)
    }

    @Test("re-importing the same external ids updates, never duplicates", arguments: TestBackend.all)
    func reimport(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let first = header + "x1,lead,Old Name,,,,,,,,,,,\nx2,lead,Two,,,,,,,,,,,\n"
        let second = header + "x1,contact,New Name,,,,,,,,,,,\n"
        _ = try CSVImporter(store: test.store).run(Array(first.utf8), context: TestStore.admin)
        let report = try CSVImporter(store: test.store).run(Array(second.utf8), context: TestStore.admin)
        #expect(report.created == 0 && report.updated == 1)
        #expect(try test.store.count() == 2)
        let updated = try test.store.read(try test.store.resolve("x1"), context: TestStore.admin)
        #expect(updated.personal.name == "New Name" && updated.metadata.kind == .contact)
    }

    @Test("a re-import skips a restricted subject's row alone (reported, audited as refused, nothing of it changed); the rest lands",
          arguments: TestBackend.all)
    func restrictedRowInReimport(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, region: "GB", hooks: [hook])
        defer { test.cleanUp() }
        let first = header + "r1,lead,Kept Name,,,,,,,,,,,\nr2,lead,Two,,,,,,,,,,,\n"
        _ = try CSVImporter(store: test.store).run(Array(first.utf8), context: TestStore.admin)
        let restricted = try test.store.resolve("r1")
        try test.store.setRestricted(true, restricted, context: TestStore.admin)
        let second = header + "r1,lead,Changed Name,,,,,,,,,,,\nr2,lead,Two Changed,,,,,,,,,,,\nr3,lead,Three,,,,,,,,,,,\n"
        let report = try CSVImporter(store: test.store).run(Array(second.utf8), context: TestStore.admin)
        #expect(report.created == 1 && report.updated == 1)
        #expect(report.rejected.map(\.line) == [2])
        #expect(report.rejected.first?.reason.contains("restricted") == true)
        #expect(hook.writes(of: restricted, from: 0).map(\.outcome).last == .refused)
        try test.store.setRestricted(false, restricted, context: TestStore.admin)
        #expect(try test.store.read(restricted, context: TestStore.admin).personal.name == "Kept Name")
        #expect(try test.store.read(try test.store.resolve("r2"), context: TestStore.admin).personal.name == "Two Changed")
        // Second act: once the restriction is lifted, the same file updates the subject.
        let again = try CSVImporter(store: test.store).run(Array(second.utf8), context: TestStore.admin)
        #expect(again.rejected.isEmpty && again.updated == 3)
        #expect(try test.store.read(restricted, context: TestStore.admin).personal.name == "Changed Name")
    }

    @Test("with strict, one bad row refuses the whole file", arguments: TestBackend.all)
    func strict(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        var options = ImportOptions()
        options.strict = true
        let csv = header + "s1,lead,Good,,,,,,,,,,,\ns2,alien,Bad,,,,,,,,,,,\n"
        #expect(throws: ImportError.rejectedRows([.init(line: 3, column: "kind", reason: "kind must be lead or contact")])) {
            try CSVImporter(store: test.store, options: options).run(Array(csv.utf8), context: TestStore.admin)
        }
        #expect(try test.store.count() == 0)
    }

    @Test("a file without a usable header is refused", arguments: TestBackend.all)
    func missingHeader(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        #expect(throws: ImportError.self) { try CSVImporter(store: test.store).run([], context: TestStore.admin) }
        #expect(throws: ImportError.self) { try CSVImporter(store: test.store).run(Array("a,b\n1,2\n".utf8), context: TestStore.admin) }
    }

    @Test("a NUL character refuses its row alone (line and column named), again on a re-import, duplicating nothing; the store refuses one in a clear text",
          arguments: TestBackend.all)
    func nulCharacters(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        // Row 3's external id and row 4's name hold a NUL; once stored whole by the bulk insert and looked up
        // cut short, such an id made the next import fail on SQLite (UNIQUE) and every import on PostgreSQL.
        let csv = header + "n1,lead,Ann,,,,,,,,,,,\nn\u{0}2,lead,Bob,,,,,,,,,,,\nn3,lead,C\u{0}y,,,,,,,,,,,\nn4,lead,Dee,,,,,,,,,,,\n"
        for pass in 1...2 {
            let store = pass == 1 ? test.store : try test.reopen()
            let report = try CSVImporter(store: store).run(Array(csv.utf8), context: TestStore.admin)
            #expect(report.rejected.map(\.line) == [3, 4])
            #expect(report.rejected.map(\.column) == ["external_id", "name"])
            #expect(report.created == (pass == 1 ? 2 : 0) && report.updated == (pass == 1 ? 0 : 2))
            #expect(try store.count() == 2)
        }
        // Through the library: refused before anything is written, naming the field, never the value.
        let nul = NewSubject(metadata: SubjectMetadata(kind: .lead, externalID: "n1\u{0}secret"), personal: PersonalData(name: "Eve"))
        for attempt in [{ _ = try test.store.create(nul, context: TestStore.admin) },
                        { try test.store.update(try test.store.resolve("n1"), metadata: nul.metadata, personal: PersonalData(), context: TestStore.admin) }]
            as [() throws -> Void] {
            do {
                try attempt()
                Issue.record("a NUL in an external id was written")
            } catch let error as StoreError {
                guard case .textHoldsNUL(field: "external_id") = error else { throw error }
                #expect(!error.description.contains("secret"))
            }
        }
        // Second act: the store goes on; an id that only starts like a stored one is not found as it.
        #expect(try test.store.count() == 2)
        #expect(try test.store.read(try test.store.resolve("n1"), context: TestStore.admin).metadata.externalID == "n1")
        #expect(throws: StoreError.self) { try test.store.resolve("n1\u{0}x") }
        #expect(try test.store.create(NewSubject(metadata: SubjectMetadata(kind: .lead, externalID: "n5"), personal: PersonalData(name: "Fay")),
                                      context: TestStore.admin).rawValue > 0)
        #expect(try test.store.count() == 3)
    }
}
