import Foundation
@testable import Strongroom
import StrongroomStorage
import Synchronization
import Testing

/// The blind-index rows (`phone_index`, `email_index`) and their rotation's staged copies go with their
/// subject, and none names a missing subject: on SQLite by foreign keys, on PostgreSQL from data schema
/// 11 by a trigger and the write lock (`PostgresSchema.blindIndexRowsGoWithTheirSubjects`).
@Suite("Blind-index rows go with their subject")
struct BlindIndexErasureTests {
    static let reason = "Art. 17 request 2026-121"
    /// The store, numbers, addresses and crash points of the rotation tests.
    let rotation = RotationTests()

    /// The four tables whose rows name a subject by `subject_id` without a foreign key on PostgreSQL.
    static let tables = PostgresSchema.blindIndexTables

    /// How many rows of each of the four tables name `id`.
    static func rows(of id: SubjectID, _ test: TestStore) throws -> [String: Int64] {
        let data = try test.database(.data)
        var rows: [String: Int64] = [:]
        for table in tables {
            rows[table] = try data.scalarInteger("SELECT count(*) FROM \(table) WHERE subject_id = ?", [.integer(id.rawValue)])
        }
        return rows
    }

    /// The rows of the four tables that name a subject not in `subjects`: none, ever.
    static func orphans(_ test: TestStore) throws -> Int64 {
        let data = try test.database(.data)
        return try tables.reduce(0) { total, table in
            total + (try data.scalarInteger("SELECT count(*) FROM \(table) WHERE subject_id NOT IN (SELECT id FROM subjects)") ?? 0)
        }
    }

    /// Erases subject `index` of `ids` through `store`; then checks that none of its rows is left in any
    /// of the four tables, that none names a missing subject, that its number and address find nobody
    /// (through `store` and another opening made afterwards), and that its external id stays refused by
    /// an import, twice.
    func eraseAndCheck(_ index: Int, of ids: [SubjectID], through store: Store, _ test: TestStore) throws {
        _ = try store.erase(ids[index], reason: Self.reason, context: TestStore.admin)
        #expect(try Self.rows(of: ids[index], test) == Dictionary(uniqueKeysWithValues: Self.tables.map { ($0, 0) }))
        #expect(try Self.orphans(test) == 0)
        let csv = Array("external_id,kind,name,phone\next-r\(index),contact,Somebody Else,\(rotation.number(index))\n".utf8)
        for reader in [store, try test.reopen()] {
            #expect(try reader.callerID(number: rotation.number(index), context: TestStore.caller).isEmpty)
            #expect(try reader.find(.email(rotation.email(index)), context: EmailIndexTests.request).isEmpty)
            let report = try TombstoneTests.importRows(reader, csv)
            #expect(report.created == 0 && report.rejected.count == 1)
            #expect(try reader.callerID(number: rotation.number(index), context: TestStore.caller).isEmpty)
        }
    }

    @Test("erasing a subject removes its phone, e-mail and staged index rows, mid-rotation too; its number finds nobody, its external id stays refused, the rotation finishes",
          arguments: TestBackend.all)
    func erasureRemovesEveryIndexRow(backend: TestBackend) throws {
        let (test, ids) = try rotation.populated(backend, 30)
        defer { test.cleanUp() }
        try eraseAndCheck(29, of: ids, through: test.store, test)
        // An index rotation stopped after its first batch: subject 3's new rows are staged.
        let crashing = try rotation.crashing(test, at: "rotate-index.batch", after: 1)
        #expect(throws: StoreError.self) { try crashing.rotateIndexKey(batchSize: 10, context: TestStore.admin) }
        crashing.close()
        #expect(try Self.rows(of: ids[3], test) == ["phone_index": 1, "email_index": 1, "phone_index_building": 1, "email_index_building": 1])
        try eraseAndCheck(3, of: ids, through: test.store, test)
        // Second act: the rotation finishes from another opening; everyone else is found, the erased nowhere.
        _ = try test.reopen().rotateIndexKey(batchSize: 10, context: TestStore.admin)
        let survivors = Array(ids.indices).filter { ![3, 29].contains($0) }
        let reopened = try test.reopen()
        for index in survivors {
            #expect(try reopened.callerID(number: rotation.number(index), context: TestStore.caller).map(\.id) == [ids[index]])
        }
        #expect(try reopened.callerID(number: rotation.number(3), context: TestStore.caller).isEmpty)
        #expect(try Self.orphans(test) == 0)
        #expect(try rotation.indexRows(test) == ["phone_index v2": 28, "phone_index_building": 0, "email_index v2": 28, "email_index_building": 0])
    }

    @Test("a subject erased by another opening between an index rotation's read of its batch and the batch's staging leaves no staged row; the rotation goes on",
          arguments: TestBackend.all)
    func erasureRacingStaging(backend: TestBackend) throws {
        let (test, ids) = try rotation.populated(backend, 30)
        defer { test.cleanUp() }
        let erased = Mutex(false)
        var configuration = StoreConfiguration()
        configuration.faultInjection = { [eraser = test.store, victim = ids[4]] point, count in
            guard point == "rotate-index.decrypted" else { return }
            // The first batch (number 1) read subject 4; it is erased before the batch stages its rows.
            if count == 1, !erased.withLock({ $0 }) {
                _ = try eraser.erase(victim, reason: Self.reason, context: TestStore.admin)
                erased.withLock { $0 = true }
            }
            // Stopped before the second batch stages: the first batch's staged rows stay to be looked at.
            if count >= 2 { throw InjectedCrash() }
        }
        let rotator = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
        #expect { try rotator.rotateIndexKey(batchSize: 10, context: TestStore.admin) } throws: {
            ($0 as? StoreError).map { if case .injectedFault(point: "rotate-index.decrypted", _) = $0 { true } else { false } } ?? false
        }
        rotator.close()
        #expect(erased.withLock { $0 })
        #expect(try Self.rows(of: ids[4], test) == Dictionary(uniqueKeysWithValues: Self.tables.map { ($0, 0) }))
        #expect(try Self.orphans(test) == 0)
        // The batch staged its other subjects' rows.
        #expect(try Self.rows(of: ids[5], test)["phone_index_building"] == 1)
        // Second act: the rotation finishes; the erased subject is nowhere, everyone else is found.
        _ = try test.reopen().rotateIndexKey(batchSize: 10, context: TestStore.admin)
        #expect(try Self.orphans(test) == 0)
        #expect(try rotation.indexRows(test) == ["phone_index v2": 29, "phone_index_building": 0, "email_index v2": 29, "email_index_building": 0])
        let reopened = try test.reopen()
        #expect(try reopened.callerID(number: rotation.number(4), context: TestStore.caller).isEmpty)
        #expect(try reopened.callerID(number: rotation.number(5), context: TestStore.caller).map(\.id) == [ids[5]])
    }

    @Test("subjects erased by another opening just before an index rotation's copy and just after it leave no index row; the rotation finishes",
          arguments: TestBackend.all)
    func erasuresAroundTheCopy(backend: TestBackend) throws {
        let (test, ids) = try rotation.populated(backend, 30)
        defer { test.cleanUp() }
        let erased = Mutex<[Int]>([])
        var configuration = StoreConfiguration()
        configuration.faultInjection = { [eraser = test.store, ids] point, count in
            // After the walk's third and last batch (its rows staged, none copied yet), subject 25; after
            // the copy and the switch (both versions' rows in place, the old ones not yet dropped), subject 15.
            let victim = point == "rotate-index.batch" && count == 3 ? 25 : point == "rotate-index.switch" ? 15 : nil
            guard let victim, !erased.withLock({ $0.contains(victim) }) else { return }
            _ = try eraser.erase(ids[victim], reason: Self.reason, context: TestStore.admin)
            erased.withLock { $0.append(victim) }
        }
        let rotator = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
        _ = try rotator.rotateIndexKey(batchSize: 10, context: TestStore.admin)
        rotator.close()
        #expect(erased.withLock { $0 } == [25, 15])
        for victim in [25, 15] {
            #expect(try Self.rows(of: ids[victim], test) == Dictionary(uniqueKeysWithValues: Self.tables.map { ($0, 0) }))
        }
        #expect(try Self.orphans(test) == 0)
        #expect(try rotation.indexRows(test) == ["phone_index v2": 28, "phone_index_building": 0, "email_index v2": 28, "email_index_building": 0])
        // Second act: from an opening made afterwards, the erased are found by nobody, the others by all.
        let reopened = try test.reopen()
        for index in ids.indices {
            let found = try reopened.callerID(number: rotation.number(index), context: TestStore.caller).map(\.id)
            #expect(found == ([25, 15].contains(index) ? [] : [ids[index]]))
        }
        #expect(try reopened.find(.email(rotation.email(15)), context: EmailIndexTests.request).isEmpty)
    }

    @Test("a store of data schema 10 stopped mid index rotation opens, migrates (no index on last contact left), erases every index row of a subject, and finishes the rotation",
          arguments: TestBackend.all)
    func schemaTenMidRotationOpens(backend: TestBackend) throws {
        let (test, ids) = try rotation.populated(backend, 30)
        defer { test.cleanUp() }
        let crashing = try rotation.crashing(test, at: "rotate-index.batch", after: 1)
        #expect(throws: StoreError.self) { try crashing.rotateIndexKey(batchSize: 10, context: TestStore.admin) }
        crashing.close()
        test.store.close()
        let raw = try test.database(.data)
        try PreviousSchema.rewindData(raw, to: 10, backend)
        let foreignKeys = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = current_schema()::regnamespace AND conrelid::regclass::text LIKE '%index%'"
        if backend == .postgres { #expect(try raw.scalarInteger(foreignKeys) == 4) }
        let unreadIndex = backend == .sqlite ? "SELECT count(*) FROM sqlite_master WHERE name = 'subjects_by_last_contacted'"
            : "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'subjects_by_last_contacted'"
        #expect(try raw.scalarInteger(unreadIndex) == 1)

        let store = try test.reopen()
        #expect(try raw.schemaVersion() == PreviousSchema.latestData(backend))
        if backend == .postgres { #expect(try raw.scalarInteger(foreignKeys) == 0) }
        #expect(try raw.scalarInteger(unreadIndex) == 0)
        #expect(try Self.rows(of: ids[2], test) == ["phone_index": 1, "email_index": 1, "phone_index_building": 1, "email_index_building": 1])
        try eraseAndCheck(2, of: ids, through: store, test)
        // Second act: the rotation resumes and finishes; the next one too, from another opening.
        #expect(try store.rotateIndexKey(batchSize: 10, context: TestStore.admin).resumed)
        #expect(try rotation.indexRows(test) == ["phone_index v2": 29, "phone_index_building": 0, "email_index v2": 29, "email_index_building": 0])
        _ = try test.reopen().rotateIndexKey(batchSize: 7, context: TestStore.admin)
        #expect(try Self.orphans(test) == 0)
        let reopened = try test.reopen()
        #expect(try reopened.callerID(number: rotation.number(2), context: TestStore.caller).isEmpty)
        #expect(try reopened.callerID(number: rotation.number(7), context: TestStore.caller).map(\.id) == [ids[7]])
        #expect(try reopened.find(.email(rotation.email(7)), context: EmailIndexTests.request).map(\.id) == [ids[7]])
        // A call record sets the last contact without the index that held it.
        let called = Date(timeIntervalSince1970: 1_800_000_000)
        _ = try reopened.recordCall(number: rotation.number(7), at: called, context: TestStore.caller)
        #expect(try reopened.callerID(number: rotation.number(7), context: TestStore.caller).first?.lastContactedAt == called)
    }
}
