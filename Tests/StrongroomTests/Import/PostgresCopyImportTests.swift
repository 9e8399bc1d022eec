import Foundation
@testable import Strongroom
import StrongroomStorage
import Testing

/// On PostgreSQL an import batch's new subjects go to the server in one binary `COPY` streamed while
/// the batch is sealed (`StoreBackend.inserting`): a COPY that fails part-way must take the whole
/// batch with it, and leave the store and the connection fit for the next import.
@Suite("PostgreSQL import: a binary COPY failing mid-batch", .enabled(if: TestBackend.all.contains(.postgres), "STRONGROOM_TEST_POSTGRES=off"))
struct PostgresCopyImportTests {
    /// 700 rows: a batch of 500, then one of 200; each row a name and a number of its own.
    static let file: String = "external_id,name,mobile,notes\n" + (0..<700).map { row in
        "m\(row),Person \(row) Ünïcode,07700 9\(String(format: "%05d", row)),note \(row)\n"
    }.joined()

    @Test("a subject id taken behind the store's back fails the second batch's COPY on its 100th row: that batch rolls back whole, the first stays; a re-import then completes, every subject decryptable")
    func copyFailingMidBatch() throws {
        let test = try TestStore(.postgres, region: "GB")
        defer { test.cleanUp() }
        let data = try test.database(.data)
        // The id the second batch's 100th new subject will take, written first by someone else.
        let taken = try #require(try data.scalarInteger("""
            SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('subjects', 'id')::regclass), 0) + 600
            """))
        try data.run("INSERT INTO subjects (id, kind, created_at, updated_at, key_version) VALUES (?, 'lead', 0, 0, 1)", [.integer(taken)])

        var failure: (any Error)?
        do { _ = try CSVImporter(store: test.store).run(Array(Self.file.utf8), context: TestStore.admin) } catch { failure = error }
        let error = try #require(failure as? StoreError, "\(String(describing: failure))")
        guard case .database(let databaseError) = error else { Issue.record("not a database error: \(error)"); return }
        #expect(databaseError.isUniqueViolation)
        #expect(!"\(error)".contains("Person") && !"\(error)".contains("07700"), "no personal data in the error: \(error)")
        #expect(try test.store.count() == 501, "the first batch and the row in the way; nothing of the second batch")
        // The row in the way (it has no key) goes; the first batch is whole and nothing else is left.
        try data.run("DELETE FROM subjects WHERE id = ?", [.integer(taken)])
        try expectConsistent(test.location, key: test.key)
        #expect(try test.store.callerID(number: "07700 900499", context: TestStore.caller).map(\.externalID) == ["m499"])
        #expect(try test.store.callerID(number: "07700 900500", context: TestStore.caller).isEmpty)
        #expect(throws: StoreError.self) { try test.store.resolve("m500") }

        // Second act: the same file again updates the first batch and creates the second, on the same
        // store and connection; then every subject opens, here and after a reopen.
        let report = try CSVImporter(store: test.store).run(Array(Self.file.utf8), context: TestStore.admin)
        #expect(report.updated == 500 && report.created == 200)
        try expectConsistent(test.location, key: test.key)
        let reopened = try test.reopen()
        defer { reopened.close() }
        for store in [test.store, reopened] {
            #expect(try store.count() == 700)
            for row in [0, 499, 500, 599, 600, 699] {
                let subject = try store.read(try store.resolve("m\(row)"), context: TestStore.admin)
                #expect(subject.personal.name == "Person \(row) Ünïcode")
                #expect(try store.callerID(number: "07700 9\(String(format: "%05d", row))", context: TestStore.caller).map(\.externalID) == ["m\(row)"])
            }
        }
        #expect(try reopened.verifyAuditLog().isIntact)
    }
}

@Suite("PostgreSQL subject keys: COPY first, the upsert when a key is in the way", .enabled(if: TestBackend.all.contains(.postgres), "STRONGROOM_TEST_POSTGRES=off"))
struct PostgresSubjectKeyCopyTests {
    @Test("an orphan key at the ids new subjects take (a data schema restored behind its keys) is replaced: the keys' COPY meets it, the upsert runs instead, and the subjects open")
    func orphanKeyReplaced() throws {
        let test = try TestStore(.postgres, region: "GB")
        defer { test.cleanUp() }
        let data = try test.database(.data), keys = try test.database(.keys)
        let next = try #require(try data.scalarInteger("""
            SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('subjects', 'id')::regclass), 0) + 1
            """))
        // A key that never protected anything, at the second of the next import's ids.
        try keys.run("INSERT INTO subject_keys (subject_id, version, key_id, kek_version, wrapped, created_at) VALUES (?, 1, 7, 1, ?, 0)",
                     [.integer(next + 1), .blob(Array(repeating: 0xAB, count: 60))])
        let file = "external_id,name,mobile\n" + (0..<100).map { "o\($0),Orphan Test \($0),07700 9\(String(format: "%05d", $0))\n" }.joined()
        let report = try CSVImporter(store: test.store).run(Array(file.utf8), context: TestStore.admin)
        #expect(report.created == 100)
        #expect(try keys.scalarInteger("SELECT count(*) FROM subject_keys WHERE subject_id = ? AND wrapped = ?",
                                       [.integer(next + 1), .blob(Array(repeating: 0xAB, count: 60))]) == 0, "the orphan was replaced")
        #expect(try keys.scalarInteger("SELECT count(*) FROM subject_keys") == 100)
        try expectConsistent(test.location, key: test.key)
        // Second act: every subject opens, here and in a reopened store, and the next import copies its keys again.
        let reopened = try test.reopen()
        defer { reopened.close() }
        for store in [test.store, reopened] {
            for row in [0, 1, 2, 99] {
                #expect(try store.read(try store.resolve("o\(row)"), context: TestStore.admin).personal.name == "Orphan Test \(row)")
            }
        }
        let more = "external_id,name\n" + (100..<150).map { "o\($0),Orphan Test \($0)\n" }.joined()
        #expect(try CSVImporter(store: reopened).run(Array(more.utf8), context: TestStore.admin).created == 50)
        #expect(try reopened.read(try reopened.resolve("o149"), context: TestStore.admin).personal.name == "Orphan Test 149")
    }
}
