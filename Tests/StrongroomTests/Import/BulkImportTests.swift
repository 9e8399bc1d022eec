import Foundation
@testable import Strongroom
import StrongroomStorage
import Synchronization
import Testing

/// The importer writes its batches' new subjects in sets of rows (`Store.insertNew`, multi-row
/// statements sized by the backend). A batch of one row takes the same path one subject at a time:
/// the two must leave stores that nobody can tell apart.
@Suite("Bulk import: batches write what row-by-row writes would")
struct BulkImportTests {
    static let header = "external_id,kind,name,company,email,phone,mobile,work_phone,address,notes,source,owner,last_contacted,shoe_size\n"

    /// 700 rows (a batch of 500 fills multi-row statements on either backend, with a remainder): two or
    /// three numbers each, some shared between subjects, some that cannot be normalised; rows without
    /// an external id; an external id repeated inside a batch; an oversized value; a bad kind.
    static let firstFile: String = {
        var csv = header
        for row in 0..<700 {
            let externalID = row % 97 == 5 ? "" : "b\(row)"
            let mobile = row % 50 == 7 ? "12" : "07700 9\(String(format: "%05d", row % 300))"
            csv += "\(externalID),\(row % 3 == 0 ? "lead" : "contact"),Person \(row),Firm \(row % 17),p\(row)@example.org,"
                + "020 7946 \(String(format: "%04d", row)),\(mobile),\(row % 4 == 0 ? "0161 496 \(String(format: "%04d", row))" : ""),"
                + "\"\(row) Road, Town\",note \(row),web,agent\(row % 5),2026-01-0\(1 + row % 9),\(row)\n"
        }
        csv += "b10,contact,Person 10 again,,,,,,,,,,,\n"
        csv += "b701,alien,Bad Kind,,,,,,,,,,,\n"
        csv += "b702,lead,\(String(repeating: "x", count: 300)),,,,,,,,,,,\n"
        csv += "b703,lead,After The Bad Rows,,,020 7946 9999,,,,,,,,\n"
        return csv
    }()

    /// A re-import: half the subjects updated (numbers changed), new ones created, one id twice.
    static let secondFile: String = {
        var csv = header
        for row in stride(from: 0, to: 800, by: 2) {
            csv += "b\(row),contact,Renamed \(row),,,\(row % 3 == 0 ? "" : "020 7946 \(String(format: "%04d", row + 1))"),,,,,,,,\n"
        }
        csv += "b760,lead,Twice in one batch,,,,,,,,,,,\n"
        return csv
    }()

    @Test("batches of 500 and batches of 1 give the same reports, fields, caller-ID answers and audit entries",
          arguments: TestBackend.all)
    func bulkEqualsRowByRow(backend: TestBackend) throws {
        let bulk = try TestStore(backend, region: "GB") { $0.maxFieldBytes = 256 }
        defer { bulk.cleanUp() }
        let single = try TestStore(backend, region: "GB") { $0.maxFieldBytes = 256 }
        defer { single.cleanUp() }
        var rowByRow = ImportOptions()
        rowByRow.batchSize = 1
        for file in [Self.firstFile, Self.secondFile] {
            let bulkReport = try CSVImporter(store: bulk.store).run(Array(file.utf8), context: TestStore.admin)
            let singleReport = try CSVImporter(store: single.store, options: rowByRow).run(Array(file.utf8), context: TestStore.admin)
            #expect(bulkReport == singleReport)
        }
        let first = try CSVImporter(store: bulk.store).run(Array(Self.firstFile.utf8), context: TestStore.admin)
        _ = try CSVImporter(store: single.store, options: rowByRow).run(Array(Self.firstFile.utf8), context: TestStore.admin)
        // The oversized row is reported with its line and column; the rows after it landed.
        #expect(first.rejected.map(\.line) == [703, 704])
        #expect(first.rejected.last?.column == "name")
        #expect(try bulk.store.count() == single.store.count())

        try expectSame(bulk.store, single.store)
        // Second act: reopened, the bulk store still answers as the row-by-row one does, and both logs verify.
        let reopened = try bulk.reopen()
        defer { reopened.close() }
        try expectSame(reopened, single.store)
        #expect(try reopened.verifyAuditLog().isIntact)
        #expect(try single.store.verifyAuditLog().isIntact)
    }

    @Test("a batch stopped after its rows, before its blind index, leaves none of its subjects; the batches before it stay; importing again completes",
          arguments: TestBackend.all)
    func failedBatch(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB") { $0.maxFieldBytes = 256 }
        defer { test.cleanUp() }
        test.store.close()
        // The file's second batch holds 203 rows: it alone fails, between its subjects' insert and its index rows'.
        var configuration = StoreConfiguration()
        configuration.maxFieldBytes = 256
        configuration.faultInjection = { point, subjects in if point == "write.rows", subjects > 100, subjects < 500 { throw InjectedCrash() } }
        let failing = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
        #expect(throws: StoreError.self) {
            try CSVImporter(store: failing).run(Array(Self.firstFile.utf8), context: TestStore.admin)
        }
        failing.close()
        try expectConsistent(test.location, key: test.key)
        configuration.faultInjection = nil
        let store = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
        defer { store.close() }
        #expect(try store.count() == 500)
        #expect(try store.callerID(number: "020 7946 0499", context: TestStore.caller).map(\.externalID) == ["b499"])
        #expect(try store.callerID(number: "020 7946 0600", context: TestStore.caller).isEmpty)
        #expect(throws: StoreError.self) { try store.resolve("b600") }
        // Second act: the same file again updates the first batch's subjects (494 with an external id,
        // then b10 once more) and creates the rest (the 200 rows after them, b703, and the first
        // batch's 6 rows without an external id once more).
        let report = try CSVImporter(store: store).run(Array(Self.firstFile.utf8), context: TestStore.admin)
        #expect(report.updated == 495 && report.created == 207)
        try expectConsistent(test.location, key: test.key)
    }

    @Test("a batch whose audit entries are refused while its rows go in beside them: none of it stays, the batches before it do; importing again completes",
          arguments: TestBackend.all)
    func auditRefusedBesideRows(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, region: "GB") {
            $0.maxFieldBytes = 256
            $0.additionalAuditHooks = [hook]
        }
        defer { test.cleanUp() }
        // The file's second batch (201 new subjects and an update: appended beside its rows) is refused
        // by the hook, after the audit log took its entries.
        let error = try #require(throws: StoreError.self) {
            try CSVImporter(store: test.store).run(Array(Self.firstFile.utf8), context: TestStore.admin) { _ in hook.failWrites(true) }
        }
        guard case .auditHookFailed = error else {
            Issue.record("not the hook's refusal: \(error)")
            return
        }
        hook.failWrites(false)
        #expect(try test.store.count() == 500)
        #expect(try test.store.callerID(number: "020 7946 0499", context: TestStore.caller).map(\.externalID) == ["b499"])
        #expect(try test.store.callerID(number: "020 7946 0600", context: TestStore.caller).isEmpty)
        #expect(throws: StoreError.self) { try test.store.resolve("b600") }
        try expectConsistent(test.location, key: test.key)
        // Second act: the same file again, by this store and by another opening, completes.
        let report = try CSVImporter(store: test.store).run(Array(Self.firstFile.utf8), context: TestStore.admin)
        #expect(report.updated == 495 && report.created == 207)
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.callerID(number: "020 7946 0600", context: TestStore.caller).map(\.externalID) == ["b600"])
        #expect(try reopened.verifyAuditLog().isIntact)
        try expectConsistent(test.location, key: test.key)
    }

    @Test("a batch failing once sealed, while the next is read ahead: the batches before it stay, nothing of it or after it; a re-import completes and names the oversized row's line",
          arguments: TestBackend.all)
    func failedBatchWhileReadingAhead(backend: TestBackend) throws {
        let test = try closedStore(backend)
        defer { test.cleanUp() }
        // Batches of 4: rows 1-4; rows 5, 6, 8, 9 (row 7, line 8, is oversized and refused by the reading); row 10.
        let file = Self.numberedFile(10)
        // The second batch fails after its keys, seals, rows and index rows, before its audit entries and commit.
        let sealedBatches = Mutex(0)
        let failing = try open(test) { point, _ in
            if point == "write.sealed", sealedBatches.withLock({ $0 += 1; return $0 }) == 2 { throw InjectedCrash() }
        }
        #expect(throws: StoreError.self) { try CSVImporter(store: failing, options: Self.batchesOfFour).run(Array(file.utf8), context: TestStore.admin) }
        failing.close()
        try expectConsistent(test.location, key: test.key)
        let store = try open(test, faultInjection: nil)
        defer { store.close() }
        #expect(try store.count() == 4)
        #expect(try store.callerID(number: "020 7946 1004", context: TestStore.caller).map(\.externalID) == ["r4"])
        #expect(try store.callerID(number: "020 7946 1005", context: TestStore.caller).isEmpty)
        #expect(throws: StoreError.self) { try store.resolve("r10") }
        // Second act: the file again updates the first batch, creates the rest, and names the oversized row.
        let report = try CSVImporter(store: store, options: Self.batchesOfFour).run(Array(file.utf8), context: TestStore.admin)
        #expect(report.updated == 4 && report.created == 5)
        #expect(report.rejected.map(\.line) == [8] && report.rejected.first?.column == "notes")
        try expectEveryNumberedRow(10, in: store)
        #expect(try store.verifyAuditLog().isIntact)
        try expectConsistent(test.location, key: test.key)
    }

    /// Rows 1…`count`, r1…, each with a number and a note; row 7 (line 8) holds an oversized note and is
    /// refused by the reading.
    static func numberedFile(_ count: Int) -> String {
        "external_id,name,phone,notes\n" + (1...count).map { row in
            "r\(row),Person \(row),020 7946 \(1000 + row),\(row == 7 ? String(repeating: "n", count: 300) : "note \(row)")\n"
        }.joined()
    }

    /// In batches of 4: rows 1-4; 5, 6, 8, 9; 10-13; 14. Each batch after the first is sealed while the one before is written.
    static let sealedAheadFile = numberedFile(14)

    /// Every row of `numberedFile(count)` but the oversized one reads back from `store` and is found by caller ID.
    private func expectEveryNumberedRow(_ count: Int, in store: Store) throws {
        for row in (1...count) where row != 7 {
            let id = try store.resolve("r\(row)")
            #expect(try store.read(id, context: TestStore.admin).personal.notes == "note \(row)")
            #expect(try store.callerID(number: "+44 20 7946 \(1000 + row)", context: TestStore.caller).map(\.id) == [id])
        }
    }

    /// Imports in batches of 4 rows.
    static let batchesOfFour = {
        var options = ImportOptions()
        options.batchSize = 4
        return options
    }()

    /// A store of `backend` for fields of at most 256 bytes, closed: the test opens it with `open`.
    private func closedStore(_ backend: TestBackend) throws -> TestStore {
        let test = try TestStore(backend, region: "GB") { $0.maxFieldBytes = 256 }
        test.store.close()
        return test
    }

    /// The store of `test` opened again with fields of at most 256 bytes and `faultInjection`.
    private func open(_ test: TestStore, faultInjection: (@Sendable (String, Int) throws -> Void)?) throws -> Store {
        var configuration = StoreConfiguration()
        configuration.maxFieldBytes = 256
        configuration.faultInjection = faultInjection
        return try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
    }

    @Test("each batch is sealed once, ahead of its transaction, while the one before is written; a batch whose sealing ahead failed is sealed again in its transaction and lands whole",
          arguments: TestBackend.all)
    func sealedAhead(backend: TestBackend) throws {
        let test = try closedStore(backend)
        defer { test.cleanUp() }
        // The third batch's sealing ahead fails (seals 9-12); its transaction seals its rows again.
        let seals = Mutex(0)
        let store = try open(test) { point, _ in
            guard point == "write.seal" else { return }
            if (9...12).contains(seals.withLock { $0 += 1; return $0 }) { throw InjectedCrash() }
        }
        defer { store.close() }
        let report = try CSVImporter(store: store, options: Self.batchesOfFour).run(Array(Self.sealedAheadFile.utf8), context: TestStore.admin)
        #expect(report.created == 13 && report.rejected.map(\.line) == [8])
        // 13 rows sealed once each, and the third batch's four twice: no batch sealed again in its transaction but that one.
        #expect(seals.withLock { $0 } == 17)
        // Second act: every row reads back and is found by caller ID, here and in another opening.
        let reopened = try test.reopen()
        defer { reopened.close() }
        for reader in [store, reopened] { try expectEveryNumberedRow(14, in: reader) }
        #expect(try reopened.verifyAuditLog().isIntact)
        try expectConsistent(test.location, key: test.key)
    }

    @Test("a failure sealing batch k+1 while batch k is written: batches up to k stay, nothing of k+1 or after it; a re-import completes, names the oversized row's line, and every row reads back and is found by caller ID",
          arguments: TestBackend.all)
    func failedSealingAhead(backend: TestBackend) throws {
        let test = try closedStore(backend)
        defer { test.cleanUp() }
        // Every seal from the ninth on fails: the third batch's, sealed while the second is written, and
        // again in its own transaction.
        let seals = Mutex(0)
        let failing = try open(test) { point, _ in
            if point == "write.seal", seals.withLock({ $0 += 1; return $0 }) >= 9 { throw InjectedCrash() }
        }
        let error = try #require(throws: StoreError.self) {
            try CSVImporter(store: failing, options: Self.batchesOfFour).run(Array(Self.sealedAheadFile.utf8), context: TestStore.admin)
        }
        guard case .injectedFault(let point, _) = error else { throw error }
        #expect(point == "write.seal")
        failing.close()
        try expectConsistent(test.location, key: test.key)
        let store = try open(test, faultInjection: nil)
        defer { store.close() }
        #expect(try store.count() == 8)
        #expect(try store.callerID(number: "020 7946 1009", context: TestStore.caller).map(\.externalID) == ["r9"])
        #expect(try store.callerID(number: "020 7946 1010", context: TestStore.caller).isEmpty)
        #expect(throws: StoreError.self) { try store.resolve("r10") }
        // Second act: the file again updates the first two batches, creates the rest, and names the oversized row.
        let report = try CSVImporter(store: store, options: Self.batchesOfFour).run(Array(Self.sealedAheadFile.utf8), context: TestStore.admin)
        #expect(report.updated == 8 && report.created == 5)
        #expect(report.rejected.map(\.line) == [8] && report.rejected.first?.column == "notes")
        try expectEveryNumberedRow(14, in: store)
        #expect(try store.verifyAuditLog().isIntact)
        try expectConsistent(test.location, key: test.key)
    }

    @Test("external ids holding quotes, backslashes, commas, braces, tabs, line breaks and NULL as text survive the batch's insert and lookup: a re-import updates them",
          arguments: TestBackend.all)
    func awkwardExternalIDs(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let ids = [#"q"1"#, #"back\slash"#, "comma,{brace}", "NULL", " ", "ünï €", "tab\there", "line\nbreak\r", #"\N"#]
        let file = { (name: String) in
            Self.header + ids.map { "\"\($0.replacingOccurrences(of: "\"", with: "\"\""))\",lead,\(name),,,,,,,,,,,\n" }.joined()
        }
        let first = try CSVImporter(store: test.store).run(Array(file("First").utf8), context: TestStore.admin)
        #expect(first.created == ids.count && first.rejected.isEmpty)
        let second = try CSVImporter(store: test.store).run(Array(file("Second").utf8), context: TestStore.admin)
        #expect(second.created == 1 && second.updated == ids.count - 1)
        // Second act: each is found by its own id, renamed; the blank one (no external id) was created twice.
        for id in ids where id != " " {
            #expect(try test.store.read(try test.store.resolve(id), context: TestStore.admin).personal.name == "Second", "\(id)")
        }
        #expect(try test.store.count() == ids.count + 1)
    }

    /// Every subject's clear and decrypted fields, every caller-ID answer and the audit entries agree.
    @Test("an import leaves its new subjects' keys out of the key cache: each is read back from the key database, then cached; a create still caches its key",
          arguments: TestBackend.all)
    func importedKeysNotCached(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB") { $0.maxFieldBytes = 256 }
        defer { test.cleanUp() }
        let cached = { test.store.keyring.subjectKeys.withLock { $0.count } }
        let report = try CSVImporter(store: test.store).run(Array(Self.firstFile.utf8), context: TestStore.admin)
        #expect(report.created > 600)
        // The one key cached is b10's: its second row (in the next batch) updates it under its key.
        #expect(cached() == 1)
        // Second act: every subject reads and is found by caller ID from its key in the key database,
        // in this process and in another opening; the keys read are cached from then on.
        #expect(try test.store.read(try test.store.resolve("b499"), context: TestStore.admin).personal.name == "Person 499")
        #expect(try test.store.callerID(number: "020 7946 0600", context: TestStore.caller).map(\.externalID) == ["b600"])
        #expect(cached() == 3)
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.read(try reopened.resolve("b600"), context: TestStore.admin).personal.name == "Person 600")
        _ = try test.store.create(sampleSubject("created"), context: TestStore.admin)
        #expect(cached() == 4)
        try expectConsistent(test.location, key: test.key)
    }

    @Test("on SQLite the data connection's checkpoints are spaced 16,384 pages apart, and an import enlarges its page cache while it runs and restores it when it ends, also when it fails")
    func importCheckpointSpacing() throws {
        let test = try TestStore(.sqlite, region: "GB") { $0.maxFieldBytes = 256 }
        defer { test.cleanUp() }
        let spacing = {
            try test.store.withData { (connection) throws(DatabaseError) in
                [try connection.scalarInteger("PRAGMA wal_autocheckpoint"), try connection.scalarInteger("PRAGMA cache_size")]
            }
        }
        let during = Mutex<[[Int64?]]>([])
        _ = try CSVImporter(store: test.store).run(Array(Self.firstFile.utf8), context: TestStore.admin) { _ in
            during.withLock { $0.append((try? spacing()) ?? []) }
        }
        let bulk = [Int64(SQLiteBackend.dataCheckpointPages), -Int64(SQLiteBackend.bulkWriteCacheKiB)]
        #expect(during.withLock { $0 } == [bulk, bulk])
        #expect(try spacing() == [Int64(SQLiteBackend.dataCheckpointPages), -2000])
        // Second act: a failing import restores the spacing too, and the store takes the next one.
        var strict = ImportOptions()
        strict.strict = true
        #expect(throws: ImportError.self) { try CSVImporter(store: test.store, options: strict).run(Array(Self.firstFile.utf8), context: TestStore.admin) }
        #expect(try spacing() == [Int64(SQLiteBackend.dataCheckpointPages), -2000])
        let report = try CSVImporter(store: test.store).run(Array(Self.secondFile.utf8), context: TestStore.admin)
        #expect(report.updated + report.created == 401)
        #expect(try test.store.read(try test.store.resolve("b760"), context: TestStore.admin).personal.name == "Twice in one batch")
    }

    @Test("a batch sealed in chunks on other threads is handed over in order; a chunk's failure, or the writer's, stops it with that error and nothing after it")
    func pipelinedChunks() throws {
        let consumed = Mutex<[[Int]]>([])
        let all = try Store.pipelinedMap(300, chunk: 64) { $0 * 2 } consume: { chunk in consumed.withLock { $0.append(chunk) } }
        #expect(all == (0..<300).map { $0 * 2 })
        #expect(consumed.withLock { $0.map(\.count) } == [64, 64, 64, 64, 44])
        // A position of the fourth chunk fails: the three before it are handed over, nothing after.
        consumed.withLock { $0 = [] }
        let sealing = try #require(throws: StoreError.self) {
            try Store.pipelinedMap(300, chunk: 64) { (position) throws(StoreError) in
                guard position != 200 else { throw .keyUnavailable(SubjectID(rawValue: Int64(position)), version: 1) }
                return position
            } consume: { chunk in consumed.withLock { $0.append(chunk) } }
        }
        #expect(failedPosition(sealing) == 200)
        #expect(consumed.withLock { $0.map(\.first) } == [0, 64, 128])
        // The writer fails on the second chunk of forty: its error, once the sealing thread has stopped.
        let writing = try #require(throws: StoreError.self) {
            try Store.pipelinedMap(64 * 40, chunk: 64) { $0 } consume: { (chunk) throws(StoreError) in
                if chunk[0] == 64 { throw .keyUnavailable(SubjectID(rawValue: 64), version: 1) }
            }
        }
        #expect(failedPosition(writing) == 64)
        // Second act: the next batch goes through whole.
        #expect(try Store.pipelinedMap(130, chunk: 64) { $0 } consume: { _ in } == Array(0..<130))
    }

    @Test("the keys committed alongside the blind-index rows: both run to their end, and a failure of either is thrown, the writer's first")
    func keysAlongsideIndexRows() throws {
        let ran = Mutex<[String]>([])
        try Store.alongside { ran.withLock { $0.append("keys") } } _: { ran.withLock { $0.append("rows") } }
        #expect(ran.withLock { $0.sorted() } == ["keys", "rows"])
        let keysFailing = try #require(throws: StoreError.self) {
            try Store.alongside { () throws(StoreError) in throw .keyUnavailable(SubjectID(rawValue: 1), version: 1) } _: {
                ran.withLock { $0.append("rows") }
            }
        }
        #expect(failedPosition(keysFailing) == 1 && ran.withLock { $0.count } == 3)
        let bothFailing = try #require(throws: StoreError.self) {
            try Store.alongside { () throws(StoreError) in
                Thread.sleep(forTimeInterval: 0.05)
                ran.withLock { $0.append("keys") }
                throw .keyUnavailable(SubjectID(rawValue: 1), version: 1)
            } _: { () throws(StoreError) in throw .keyUnavailable(SubjectID(rawValue: 2), version: 1) }
        }
        // The writer's error, thrown once the other thread was done.
        #expect(failedPosition(bothFailing) == 2 && ran.withLock { $0.count } == 4)
    }

    /// The subject named by a `keyUnavailable` error (what `pipelinedChunks` throws), else nil.
    private func failedPosition(_ error: StoreError) -> Int64? {
        guard case .keyUnavailable(let subject, _) = error else { return nil }
        return subject.rawValue
    }

    /// The two stores hold the same subjects (matched by external id, or name without one: the ids
    /// differ, as the batches take theirs ahead in sizes of their own), the same caller-ID answers and
    /// the same audit entries.
    private func expectSame(_ bulk: Store, _ single: Store) throws {
        let bulkSubjects = try subjects(of: bulk), singleSubjects = try subjects(of: single)
        #expect(bulkSubjects.count == singleSubjects.count)
        for (left, right) in zip(bulkSubjects.sorted(by: identityOrder), singleSubjects.sorted(by: identityOrder)) {
            #expect(left.metadata == right.metadata && left.personal == right.personal, "subject \(left.id) differs from \(right.id)")
        }
        let bulkIdentities = identities(bulkSubjects), singleIdentities = identities(singleSubjects)
        for number in ["020 7946 0003", "07700 900003", "0161 496 0004", "020 7946 0011", "020 7946 9999", "07700 900000"] {
            #expect(try bulk.callerID(number: number, context: TestStore.caller).map { bulkIdentities[$0.id.rawValue.description] }.sorted(by: optionalOrder)
                    == single.callerID(number: number, context: TestStore.caller).map { singleIdentities[$0.id.rawValue.description] }.sorted(by: optionalOrder),
                    "\(number)")
        }
        for store in [bulk, single] {
            #expect(try store.callerID(number: "020 7946 9999", context: TestStore.caller).map(\.externalID) == ["b703"])
        }
        #expect(try auditSummary(of: bulk, identities: bulkIdentities) == auditSummary(of: single, identities: singleIdentities))
    }

    /// A subject's identity across the two stores: its external id, or its name without one.
    private func identity(_ subject: Subject) -> String {
        subject.metadata.externalID.map { "id " + $0 } ?? "name " + (subject.personal.name ?? "")
    }

    private func identityOrder(_ left: Subject, _ right: Subject) -> Bool { identity(left) < identity(right) }

    private func optionalOrder(_ left: String?, _ right: String?) -> Bool { (left ?? "") < (right ?? "") }

    /// Each subject's identity by its id as the audit log writes it.
    private func identities(_ subjects: [Subject]) -> [String: String] {
        Dictionary(subjects.map { ($0.id.rawValue.description, identity($0)) }) { first, _ in first }
    }

    private func subjects(of store: Store) throws -> [Subject] {
        var all: [Subject] = []
        var after: SubjectID?
        while true {
            let page = try store.list(after: after, limit: 500)
            guard let last = page.last else { return all }
            all += try page.map { try store.read($0.id, context: TestStore.admin) }
            after = last.id
        }
    }

    /// Each entry's action, subject (by its identity), fields and outcome, sorted (a batch may record
    /// its updates before its creations).
    private func auditSummary(of store: Store, identities: [String: String]) throws -> [String] {
        var lines: [String] = []
        try store.auditEntries { entry, _ in
            lines.append("\(entry.action) \(entry.subject.map { identities[$0] ?? $0 } ?? "-") \(entry.fields.joined(separator: ",")) \(entry.outcome)")
        }
        return lines.sorted()
    }
}
