import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import StrongroomTestSupport
import Synchronization
import Testing

/// A fault injected into a rotation, standing in for a crash between two batches.
struct InjectedCrash: Error {}

@Suite("Key rotation: online, resumable, nothing lost")
struct RotationTests {
    /// A store on `backend` with `count` subjects whose numbers are +44 7700 9xxxxx.
    func populated(_ backend: TestBackend, _ count: Int = 60) throws -> (TestStore, [SubjectID]) {
        let test = try TestStore(backend, region: "GB")
        let ids = try test.store.write((0..<count).map { sampleSubject("r\($0)", phones: [number($0)]) }, context: TestStore.admin).map(\.id)
        return (test, ids)
    }

    func number(_ index: Int) -> String { "+4477009" + String(format: "%05d", index) }

    /// The e-mail address of the subject `populated` made `index`th.
    func email(_ index: Int) -> String { "zebedee.r\(index)@example.org" }

    /// The rows of each blind index (`phone_index`, `email_index`) under each key version, and how
    /// many rows their staging tables hold: after an index rotation to version `v`, one row per
    /// number and per address under `v` alone, and none staged.
    func indexRows(_ test: TestStore) throws -> [String: Int64] {
        let data = try test.database(.data)
        var rows: [String: Int64] = [:]
        for table in ["phone_index", "email_index"] {
            try data.forEachRow("SELECT key_version, count(*) FROM \(table) GROUP BY key_version") { rows["\(table) v\($0.int64(0))"] = $0.int64(1) }
            rows["\(table)_building"] = try data.scalarInteger("SELECT count(*) FROM \(table)_building")
        }
        return rows
    }

    @Test("a read (and a bulk export's batch) whose key a data-key rotation destroyed between its row read and its key read reads the new row; later reads, caller ID and the audit log stay sound",
          arguments: TestBackend.all)
    func readRacingDataRotation(backend: TestBackend) throws {
        let (test, ids) = try populated(backend, 3)
        defer { test.cleanUp() }
        let rotated = Mutex(0)
        let rotator = test.store
        var configuration = StoreConfiguration()
        // Another opening of the store rotates the subject's data key, destroying the key the row just
        // read names, exactly between the reader's row read and its key read.
        configuration.faultInjection = { point, _ in
            let subject = point == "read.rows" ? ids[1] : point == "export.rows" ? ids[2] : nil
            guard let subject, rotated.withLock({ $0 < (point == "read.rows" ? 1 : 2) }) else { return }
            _ = try rotator.rotateDataKey(of: subject, context: TestStore.admin)
            rotated.withLock { $0 += 1 }
        }
        let reader = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
        defer { reader.close() }
        #expect(try reader.read(ids[1], context: TestStore.admin).personal.name == "Zebedee Quixotic-r1")
        #expect(rotated.withLock { $0 } == 1)
        // Second act: the store serves as before, in both openings, and the log verifies.
        #expect(try reader.read(ids[1], context: TestStore.admin).personal.name == "Zebedee Quixotic-r1")
        #expect(try reader.callerID(number: number(1), context: TestStore.caller).map(\.id) == [ids[1]])
        #expect(try rotator.read(ids[1], context: TestStore.admin).personal.notes == "Prefers ultramarine r1")
        // The bulk export's batch: the same race, on another subject, read again as a whole.
        var names: [String] = []
        _ = try reader.exportAll(context: TestStore.admin) { names.append($0.personal.name ?? "") }
        #expect(rotated.withLock { $0 } == 2)
        #expect(names == (0..<3).map { "Zebedee Quixotic-r\($0)" })
        #expect(try reader.read(ids[2], context: TestStore.admin).personal.name == "Zebedee Quixotic-r2")
        #expect(try reader.verifyAuditLog().isIntact)
    }

    /// Opens the test's store with a fault that fires at `point` after `batches` batches.
    func crashing(_ test: TestStore, at point: String, after batches: Int, key: SecretKey? = nil) throws -> Store {
        var configuration = StoreConfiguration()
        configuration.faultInjection = { name, count in
            if name == point && count >= batches { throw InjectedCrash() }
        }
        return try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: key ?? test.key), configuration: configuration)
    }

    /// Every subject reads back whole and is found by caller ID and by its e-mail address; the audit log verifies.
    func expectIntact(_ store: Store, _ ids: [SubjectID]) throws {
        for (index, id) in ids.enumerated() {
            let subject = try store.read(id, context: TestStore.admin)
            #expect(subject.personal.name == "Zebedee Quixotic-r\(index)")
            #expect(try store.callerID(number: number(index), context: TestStore.caller).map(\.id) == [id])
            #expect(try store.find(.email(email(index)), context: EmailIndexTests.request).map(\.id) == [id])
        }
        let verification = try store.verifyAuditLog()
        #expect(verification.isIntact, "\(String(describing: verification.problem))")
    }

    @Test("rotation kinds keep the names the JSON output, `keys status` and the key database's rotations table use")
    func kindNamesStayStable() throws {
        #expect(RotationKind.allCases.map(\.rawValue) == ["master", "kek", "data", "index", "seal-erasures"])
        let json = #"{"kind":"seal-erasures","fromVersion":1,"toVersion":2,"items":3,"resumed":false}"#
        let report = try JSONDecoder().decode(RotationReport.self, from: Data(json.utf8))
        #expect(report.kind == .sealErasures)
        #expect(String(decoding: try JSONEncoder().encode(report), as: UTF8.self).contains(#""kind":"seal-erasures""#))
    }

    @Test("master key rotation re-wraps one key, and the old master key is refused afterwards", arguments: TestBackend.all)
    func master(backend: TestBackend) throws {
        let (test, ids) = try populated(backend)
        defer { test.cleanUp() }
        let newKey = try SecretKey.random()
        let report = try test.store.rotateMasterKey(to: newKey, context: TestStore.admin)
        #expect(report.items == 1 && report.toVersion == 2)
        #expect {
            try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key))
        } throws: { error in
            if case StoreError.wrongMasterKey = error { return true }
            return false
        }
        let reopened = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: newKey))
        try expectIntact(reopened, ids)
        #expect(try reopened.keyStatus().masterGeneration == 2)
    }

    @Test("KEK rotation interrupted between batches resumes, and destroys the old KEK only at the end", arguments: TestBackend.all)
    func kekResumes(backend: TestBackend) throws {
        let (test, ids) = try populated(backend)
        defer { test.cleanUp() }
        let crashing = try crashing(test, at: "rotate-kek.batch", after: 2)
        #expect(throws: StoreError.self) { try crashing.rotateKeyEncryptionKey(batchSize: 10, context: TestStore.admin) }
        let inProgress = try crashing.rotationsInProgress()
        #expect(inProgress.map(\.kind) == [.kek] && inProgress[0].done == 20)
        // Mid-rotation, with two KEKs, everything still reads.
        try expectIntact(try test.reopen(), ids)
        let report = try test.reopen().rotateKeyEncryptionKey(batchSize: 10, context: TestStore.admin)
        #expect(report.resumed && report.items == 60 && report.toVersion == 2)
        let store = try test.reopen()
        try expectIntact(store, ids)
        let status = try store.keyStatus()
        #expect(status.kekVersion == 2 && status.rotationsInProgress.isEmpty)
        #expect(try test.database(.keys).scalarInteger("SELECT count(*) FROM kek") == 1)
    }

    @Test("data key rotation of all subjects resumes after an interruption; every subject gets a fresh key", arguments: TestBackend.all)
    func dataResumes(backend: TestBackend) throws {
        let (test, ids) = try populated(backend)
        defer { test.cleanUp() }
        let before = try test.database(.keys).rows("SELECT wrapped FROM subject_keys ORDER BY subject_id") { $0.blob(0)! }
        let crashing = try crashing(test, at: "rotate-data.batch", after: 1)
        #expect(throws: StoreError.self) { try crashing.rotateAllDataKeys(batchSize: 25, context: TestStore.admin) }
        try expectIntact(try test.reopen(), ids)
        let report = try test.reopen().rotateAllDataKeys(batchSize: 25, context: TestStore.admin)
        #expect(report.resumed && report.items == 60)
        try expectRotated(test, ids, to: 2, ledgerOf: [])
        let after = try test.database(.keys).rows("SELECT wrapped FROM subject_keys ORDER BY subject_id") { $0.blob(0)! }
        #expect(Set(before).isDisjoint(with: Set(after)))
    }

    @Test("PostgreSQL: a data rotation stopped inside a batch resumes; every subject and consent entry decrypts and is found by caller ID, after a reopen and another rotation too")
    func dataStoppedInsideABatchOnPostgres() throws {
        guard TestBackend.all.contains(.postgres) else { return }
        let (test, ids) = try populated(.postgres)
        defer { test.cleanUp() }
        let marketing: Purpose = "marketing-email"
        try test.store.declarePurpose(PurposeDeclaration(name: marketing, description: "Offers", lawfulBasis: .consent), context: TestStore.admin)
        // Ledger entries in the batch that commits and in the one that is stopped, sealed under the subjects' keys.
        for index in [3, 30, 31] {
            _ = try test.store.grantConsent(ids[index], purpose: marketing, evidence: "web form \(index)", initiator: .subject,
                                            clientAddress: "198.51.100.\(index)", context: TestStore.admin)
        }
        let crashing = try crashing(test, at: "rotate-data.in-batch", after: 2)
        #expect(throws: (any Error).self) { try crashing.rotateAllDataKeys(batchSize: 25, context: TestStore.admin) }
        // The second batch rolled back after its keys were made: its subjects still read under their old keys.
        let inProgress = try crashing.rotationsInProgress()
        #expect(inProgress.map(\.kind) == [.data] && inProgress.first?.done == 25)
        try expectIntact(try test.reopen(), ids)
        let report = try test.reopen().rotateAllDataKeys(batchSize: 25, context: TestStore.admin)
        #expect(report.resumed && report.items == 60)
        try expectRotated(test, ids, to: 2, ledgerOf: [3, 30, 31])
        // Second act: another lookup from the handle that resumed, then a reopen and another rotation from the start.
        let store = try test.reopen()
        #expect(try store.callerID(number: number(30), context: TestStore.caller).map(\.id) == [ids[30]])
        let again = try store.rotateAllDataKeys(batchSize: 25, context: TestStore.admin)
        #expect(!again.resumed && again.items == 60)
        try expectRotated(test, ids, to: 3, ledgerOf: [3, 30, 31])
        #expect(try test.reopen().rotationsInProgress().isEmpty)
    }

    /// Every subject of `ids` reads back and is found from a new opening, under key version `version`
    /// alone (one key each, the older destroyed), and the ledger entries of the subjects at `ledgerOf`
    /// open under it.
    func expectRotated(_ test: TestStore, _ ids: [SubjectID], to version: Int, ledgerOf indexes: [Int]) throws {
        let store = try test.reopen()
        try expectIntact(store, ids)
        let keys = try test.database(.keys)
        #expect(try keys.scalarInteger("SELECT count(*) FROM subject_keys") == Int64(ids.count))
        #expect(try keys.scalarInteger("SELECT count(*) FROM subject_keys WHERE version = ?", [.int(version)]) == Int64(ids.count))
        let data = try test.database(.data)
        #expect(try data.scalarInteger("SELECT count(*) FROM subjects WHERE key_version <> ?", [.int(version)]) == 0)
        #expect(try data.scalarInteger("SELECT count(*) FROM consent_ledger WHERE key_version <> ?", [.int(version)]) == 0)
        for index in indexes {
            let ledger = try store.consentLedger(of: ids[index], context: TestStore.admin)
            #expect(ledger.map(\.evidence) == ["web form \(index)"] && ledger.map(\.clientAddress) == ["198.51.100.\(index)"])
        }
    }

    @Test("one subject's data key rotates on its own", arguments: TestBackend.all)
    func dataOne(backend: TestBackend) throws {
        let (test, ids) = try populated(backend, 5)
        defer { test.cleanUp() }
        try test.store.rotateDataKey(of: ids[2], context: TestStore.admin)
        try test.store.rotateDataKey(of: ids[2], context: TestStore.admin)
        try expectIntact(test.store, ids)
        #expect(try test.database(.data).scalarInteger("SELECT key_version FROM subjects WHERE id = ?", [.integer(ids[2].rawValue)]) == 3)
    }

    @Test("index rotation: both versions answer while it is interrupted, then the old index is dropped", arguments: TestBackend.all)
    func indexResumes(backend: TestBackend) throws {
        let (test, ids) = try populated(backend)
        defer { test.cleanUp() }
        let crashing = try crashing(test, at: "rotate-index.batch", after: 1)
        #expect(throws: StoreError.self) { try crashing.rotateIndexKey(bits: 10, batchSize: 20, context: TestStore.admin) }
        // Half built: lookups find everyone, through the old or the new version.
        try expectIntact(try test.reopen(), ids)
        let writer = try test.reopen()
        let late = try writer.create(sampleSubject("late", phones: ["+447700977777"]), context: TestStore.admin)
        let report = try test.reopen().rotateIndexKey(bits: 10, batchSize: 20, context: TestStore.admin)
        #expect(report.resumed && report.toVersion == 2)
        let store = try test.reopen()
        try expectIntact(store, ids)
        #expect(try store.callerID(number: "+447700977777", context: TestStore.caller).map(\.id) == [late])
        #expect(try store.find(.email("zebedee.late@example.org"), context: EmailIndexTests.request).map(\.id) == [late])
        #expect(try store.keyStatus().phoneIndex.bits == 10)
        #expect(try indexRows(test) == ["phone_index v2": 61, "phone_index_building": 0, "email_index v2": 61, "email_index_building": 0])
        #expect(try test.database(.keys).scalarInteger("SELECT count(*) FROM index_keys") == 1)
    }

    @Test("index rotation stopped right after its switch: lookups answer, and the old index key and rows do not outlive it",
          arguments: TestBackend.all)
    func indexStoppedAfterSwitch(backend: TestBackend) throws {
        let (test, ids) = try populated(backend, 30)
        defer { test.cleanUp() }
        let crashing = try crashing(test, at: "rotate-index.switch", after: 0)
        #expect(throws: StoreError.self) { try crashing.rotateIndexKey(batchSize: 10, context: TestStore.admin) }
        // Finish as an administrator would: resume whatever is shown as in progress.
        let store = try test.reopen()
        for rotation in try store.rotationsInProgress() where rotation.kind == .index {
            #expect(try store.rotateIndexKey(context: TestStore.admin).resumed)
        }
        try expectIntact(try test.reopen(), ids)
        #expect(try store.keyStatus().phoneIndex.version == 2)
        let oldKeys = try test.database(.keys).scalarInteger("SELECT count(*) FROM index_keys WHERE state <> 'active'")
        let oldRows = try test.database(.data).scalarInteger("SELECT count(*) FROM phone_index WHERE key_version <> 2")
        #expect(oldKeys == 0, "index keys left that are not active")
        #expect(oldRows == 0, "index rows left under the old key")
    }

    @Test("a subject indexed under the old index key only (a writer that had not seen the new key) is re-indexed before the old rows go",
          arguments: TestBackend.all)
    func indexStrandedSubject(backend: TestBackend) throws {
        let (test, ids) = try populated(backend, 30)
        defer { test.cleanUp() }
        let crashing = try crashing(test, at: "rotate-index.switch", after: 0)
        #expect(throws: StoreError.self) { try crashing.rotateIndexKey(batchSize: 10, context: TestStore.admin) }
        // What a writer whose transaction began before the new key existed leaves: rows under version 1 only.
        let data = try test.database(.data)
        try data.run("DELETE FROM phone_index WHERE subject_id = ? AND key_version = 2", [.integer(ids[5].rawValue)])
        #expect(try data.scalarInteger("SELECT count(*) FROM phone_index WHERE subject_id = ? AND key_version = 1",
                                       [.integer(ids[5].rawValue)]) == 1)
        let report = try test.reopen().rotateIndexKey(context: TestStore.admin)
        #expect(report.resumed && report.toVersion == 2)
        try expectIntact(try test.reopen(), ids)
        #expect(try data.scalarInteger("SELECT count(*) FROM phone_index WHERE key_version <> 2") == 0)
        #expect(try data.scalarInteger("SELECT count(*) FROM phone_index WHERE subject_id = ? AND key_version = 2",
                                       [.integer(ids[5].rawValue)]) == 1)
    }

    @Test("subjects changed or erased after the index walk staged their rows are indexed by their numbers now, once each",
          arguments: TestBackend.all)
    func indexStagedThenChanged(backend: TestBackend) throws {
        let (test, ids) = try populated(backend, 30)
        defer { test.cleanUp() }
        let crashing = try crashing(test, at: "rotate-index.batch", after: 2)
        #expect(throws: StoreError.self) { try crashing.rotateIndexKey(batchSize: 10, context: TestStore.admin) }
        let data = try test.database(.data)
        let staged = "SELECT count(*) FROM phone_index_building WHERE subject_id = ?"
        #expect(try data.scalarInteger(staged, [.integer(ids[3].rawValue)]) == 1)
        let stagedAddresses = "SELECT count(*) FROM email_index_building WHERE subject_id = ?"
        #expect(try data.scalarInteger(stagedAddresses, [.integer(ids[3].rawValue)]) == 1)
        // Behind the walk's cursor: a new number, a new name only (its rows stay those of the old
        // version alone), an erasure (its staged rows go with it), a new address (indexed under both
        // versions by its writer).
        let writer = try test.reopen()
        try writer.update(ids[1], personal: PersonalData(phones: [LabeledPhone(label: "m", number: "+447700955555")]), context: TestStore.admin)
        try writer.update(ids[2], personal: PersonalData(name: "Renamed"), context: TestStore.admin)
        try writer.erase(ids[3], reason: "request", context: TestStore.admin)
        try writer.rectify(ids[5], [FieldChange(field: "email", value: "r5@new.example")], context: TestStore.admin)
        #expect(try data.scalarInteger(staged, [.integer(ids[3].rawValue)]) == 0)
        #expect(try data.scalarInteger(stagedAddresses, [.integer(ids[3].rawValue)]) == 0)

        let report = try test.reopen().rotateIndexKey(batchSize: 10, context: TestStore.admin)
        #expect(report.resumed && report.toVersion == 2)
        let store = try test.reopen()
        #expect(try store.callerID(number: number(1), context: TestStore.caller).isEmpty)
        #expect(try store.callerID(number: "+447700955555", context: TestStore.caller).map(\.id) == [ids[1]])
        #expect(try store.callerID(number: number(2), context: TestStore.caller).map(\.id) == [ids[2]])
        #expect(try store.callerID(number: number(3), context: TestStore.caller).isEmpty)
        for index in 4..<30 {
            #expect(try store.callerID(number: number(index), context: TestStore.caller).map(\.id) == [ids[index]])
        }
        for index in [1, 2] + Array(4..<30) where index != 5 {
            #expect(try store.find(.email(email(index)), context: EmailIndexTests.request).map(\.id) == [ids[index]])
        }
        #expect(try store.find(.email(email(3)), context: EmailIndexTests.request).isEmpty)
        #expect(try store.find(.email(email(5)), context: EmailIndexTests.request).isEmpty)
        #expect(try store.find(.email("r5@new.example"), context: EmailIndexTests.request).map(\.id) == [ids[5]])
        // One row per number and per address, all of the new version; nothing left staged.
        #expect(try indexRows(test) == ["phone_index v2": 29, "phone_index_building": 0, "email_index v2": 29, "email_index_building": 0])
        // Second act: the next rotation, from another opening, finds everyone still.
        _ = try test.reopen().rotateIndexKey(batchSize: 7, context: TestStore.admin)
        let again = try test.reopen()
        #expect(try again.callerID(number: "+447700955555", context: TestStore.caller).map(\.id) == [ids[1]])
        #expect(try again.callerID(number: number(2), context: TestStore.caller).map(\.id) == [ids[2]])
        #expect(try again.find(.email("r5@new.example"), context: EmailIndexTests.request).map(\.id) == [ids[5]])
        #expect(try indexRows(test) == ["phone_index v3": 29, "phone_index_building": 0, "email_index v3": 29, "email_index_building": 0])
        #expect(try again.verifyAuditLog().isIntact)
    }

    @Test("index rotation stopped between a batch's decrypt and its staging, inside a batch, or in the copy of the staged rows resumes: every subject found by number and address, once each, under the new version",
          arguments: TestBackend.all, ["rotate-index.decrypted", "rotate-index.in-batch", "rotate-index.copy"])
    func indexStoppedMidWalkOrCopy(backend: TestBackend, point: String) throws {
        let (test, ids) = try populated(backend, 30)
        defer { test.cleanUp() }
        let crashing = try crashing(test, at: point, after: point == "rotate-index.copy" ? 0 : 2)
        #expect(throws: StoreError.self) { try crashing.rotateIndexKey(batchSize: 10, context: TestStore.admin) }
        crashing.close()
        // Stopped before the switch: the old version answers for everyone, the new one has no row in
        // either index yet (a copy stopped midway rolls back whole), and the staged rows wait (the first batch's,
        // or all of them when the copy stopped).
        try expectIntact(try test.reopen(), ids)
        let staged: Int64 = point == "rotate-index.copy" ? 30 : 10
        #expect(try indexRows(test) == ["phone_index v1": 30, "phone_index_building": staged, "email_index v1": 30, "email_index_building": staged])

        let report = try test.reopen().rotateIndexKey(batchSize: 10, context: TestStore.admin)
        #expect(report.resumed && report.toVersion == 2)
        try expectIntact(try test.reopen(), ids)
        #expect(try indexRows(test) == ["phone_index v2": 30, "phone_index_building": 0, "email_index v2": 30, "email_index_building": 0])
        // Second act: a subject written since, then another rotation from another opening; everyone found once.
        let late = try test.reopen().create(sampleSubject("late", phones: ["+447700977777"]), context: TestStore.admin)
        _ = try test.reopen().rotateIndexKey(batchSize: 7, context: TestStore.admin)
        let again = try test.reopen()
        try expectIntact(again, ids)
        #expect(try again.find(.email("zebedee.late@example.org"), context: EmailIndexTests.request).map(\.id) == [late])
        #expect(try indexRows(test) == ["phone_index v3": 31, "phone_index_building": 0, "email_index v3": 31, "email_index_building": 0])
    }

    @Test("index rotation decrypts each subject's numbers and addresses once, in one audited entry, and stages both from it",
          arguments: TestBackend.all)
    func indexDecryptsOnce(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<20).map { sampleSubject("r\($0)", phones: [number($0)]) }, context: TestStore.admin).map(\.id)
        _ = try test.store.rotateIndexKey(batchSize: 7, context: TestStore.admin)
        let decrypts = hook.events.filter { $0.action == .decrypt && $0.purpose == Purpose.keyRotation.rawValue }
        #expect(decrypts.count == 20 && Set(decrypts.compactMap(\.subject)) == Set(ids))
        #expect(decrypts.allSatisfy { $0.fields == [.emails, .phones] && $0.detail == nil && $0.outcome == .ok })
        // Second act: from another opening, everyone is found by number and by address.
        try expectIntact(try test.reopen(hooks: [hook]), ids)
    }

    @Test("a store the previous version (data schema 9) left in an index rotation's walk opens, gains the e-mail staging table, and the resumed rotation indexes every number and address once",
          arguments: TestBackend.all)
    func schemaNineMidRotationOpens(backend: TestBackend) throws {
        let (test, ids) = try populated(backend, 30)
        defer { test.cleanUp() }
        let crashing = try crashing(test, at: "rotate-index.batch", after: 1)
        #expect(throws: StoreError.self) { try crashing.rotateIndexKey(batchSize: 10, context: TestStore.admin) }
        crashing.close()
        test.store.close()
        // What version 9 left after its first batch: the e-mail rows written straight into `email_index`
        // under the new version, no staging table for them.
        let raw = try test.database(.data)
        try raw.run("INSERT INTO email_index (key_version, tag, subject_id, check_mac) SELECT 2, tag, subject_id, check_mac FROM email_index_building")
        try PreviousSchema.rewindData(raw, to: 9, backend)
        #expect(throws: DatabaseError.self) { try raw.scalarInteger("SELECT count(*) FROM email_index_building") }

        let report = try test.reopen().rotateIndexKey(batchSize: 10, context: TestStore.admin)
        #expect(report.resumed && report.toVersion == 2)
        #expect(try raw.schemaVersion() == PreviousSchema.latestData(backend))
        try expectIntact(try test.reopen(), ids)
        #expect(try indexRows(test) == ["phone_index v2": 30, "phone_index_building": 0, "email_index v2": 30, "email_index_building": 0])
        // Second act: the next rotation, from another opening, finds everyone once again.
        _ = try test.reopen().rotateIndexKey(batchSize: 8, context: TestStore.admin)
        try expectIntact(try test.reopen(), ids)
        #expect(try indexRows(test) == ["phone_index v3": 30, "phone_index_building": 0, "email_index v3": 30, "email_index_building": 0])
    }

    @Test("reads and writes from other tasks keep succeeding during KEK, data and index rotations", arguments: TestBackend.all)
    func online(backend: TestBackend) async throws {
        let (test, ids) = try populated(backend, 200)
        defer { test.cleanUp() }
        let rotator = try test.reopen()
        let service = try test.reopen()
        let created = try await withThrowingTaskGroup(of: [SubjectID].self) { group in
            group.addTask {
                _ = try rotator.rotateKeyEncryptionKey(batchSize: 20, context: TestStore.admin)
                _ = try rotator.rotateAllDataKeys(batchSize: 20, context: TestStore.admin)
                _ = try rotator.rotateIndexKey(batchSize: 20, context: TestStore.admin)
                return []
            }
            group.addTask {
                var made: [SubjectID] = []
                for round in 0..<60 {
                    let index = round % 200
                    guard try service.callerID(number: self.number(index), context: TestStore.caller).map(\.id) == [ids[index]] else {
                        throw ChildFailure(description: "lookup \(round) failed during rotation")
                    }
                    made.append(try service.create(sampleSubject("new\(round)", phones: ["+4477019" + String(format: "%05d", round)]),
                                                   context: TestStore.admin))
                }
                return made
            }
            var all: [SubjectID] = []
            for try await batch in group { all += batch }
            return all
        }
        let store = try test.reopen()
        for (round, id) in created.enumerated() {
            #expect(try store.read(id, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-new\(round)")
            #expect(try store.callerID(number: "+4477019" + String(format: "%05d", round), context: TestStore.caller).map(\.id) == [id])
        }
        try expectIntact(store, ids)
    }

    @Test("after an index rotation finished in another process, a logged call still finds its caller (no duplicate lead)",
          arguments: TestBackend.all)
    func recordCallAfterRotationElsewhere(backend: TestBackend) throws {
        let (test, ids) = try populated(backend, 20)
        defer { test.cleanUp() }
        let service = try test.reopen()
        // The service has loaded its keys, and checked them on a miss; another process rotates the
        // index to completion.
        #expect(try service.callerID(number: number(3), context: TestStore.caller).map(\.id) == [ids[3]])
        #expect(try service.callerID(number: number(99), context: TestStore.caller).isEmpty)
        _ = try test.reopen().rotateIndexKey(context: TestStore.admin)
        #expect(try service.callerID(number: number(99), context: TestStore.caller).isEmpty)
        #expect(try service.callerID(number: number(5), context: TestStore.caller).map(\.id) == [ids[5]])
        let record = try service.recordCall(number: number(7), at: Date(timeIntervalSince1970: 1_800_000_000),
                                            context: TestStore.caller)
        #expect(record.caller.id == ids[7])
        #expect(!record.createdLead)
        #expect(try service.count() == 20)
    }

    /// Each rotation kind with each of its kill points, on every backend.
    struct KillCase: Sendable, CustomTestStringConvertible {
        let backend: TestBackend
        let kind: String
        let point: String
        var testDescription: String { "\(backend) \(kind) \(point)" }
        static let all: [KillCase] = TestBackend.all.flatMap { backend in
            ["kek", "data", "index"].flatMap { kind in ["batch", "in-batch"].map { KillCase(backend: backend, kind: kind, point: $0) } }
        }
    }

    @Test("a rotation killed with SIGKILL between batches or inside one resumes to completion", arguments: KillCase.all)
    func killed(_ killCase: KillCase) async throws {
        let kind = killCase.kind
        let (test, ids) = try populated(killCase.backend, 80)
        defer { test.cleanUp() }
        let locationText = test.locationText
        let keyText = String(decoding: test.key.base64EncodedBytes(), as: UTF8.self)
        await #expect(processExitsWith: .signal(SIGKILL)) { [locationText = locationText as String, keyText = keyText as String,
                                                             kind = kind as String, point = killCase.point as String] in
            var configuration = StoreConfiguration()
            configuration.faultInjection = { name, count in
                if name.hasSuffix("." + point) && count >= 2 { kill(getpid(), SIGKILL) }
            }
            let store = try Store.open(at: StoreLocation(locationText),
                                       keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: keyText)!),
                                       configuration: configuration)
            let admin = AccessContext(actor: "test-admin", purpose: .admin)
            switch kind {
            case "kek": _ = try store.rotateKeyEncryptionKey(batchSize: 15, context: admin)
            case "data": _ = try store.rotateAllDataKeys(batchSize: 15, context: admin)
            default: _ = try store.rotateIndexKey(batchSize: 15, context: admin)
            }
        }
        let resumed = try test.reopen()
        #expect(try resumed.rotationsInProgress().map(\.kind.rawValue) == [kind])
        switch kind {
        case "kek": #expect(try resumed.rotateKeyEncryptionKey(context: TestStore.admin).resumed)
        case "data": #expect(try resumed.rotateAllDataKeys(context: TestStore.admin).resumed)
        default: #expect(try resumed.rotateIndexKey(context: TestStore.admin).resumed)
        }
        try expectIntact(try test.reopen(), ids)
        #expect(try test.reopen().rotationsInProgress().isEmpty)
    }
}

@Suite("Nonce budgets of shared keys")
struct NonceBudgetTests {
    @Test("a KEK at its budget refuses to wrap more keys with a typed error, durably; a new KEK counts afresh", arguments: TestBackend.all)
    func tinyBudget(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB") { $0.nonceBudget = 40 }
        defer { test.cleanUp() }
        let store = test.store
        // KEK 1 wraps the audit key, the index key and 19 subject keys: 21 of 40.
        for index in 0..<19 { _ = try store.create(sampleSubject("a\(index)", phones: []), context: TestStore.admin) }
        #expect(try store.keyStatus().keyUsage.first { $0.key == "kek:1" }?.used == 21)
        // KEK 2 re-wraps those 21 keys, then wraps 19 more subject keys: 40 of 40.
        _ = try store.rotateKeyEncryptionKey(context: TestStore.admin)
        for index in 0..<19 { _ = try store.create(sampleSubject("b\(index)", phones: []), context: TestStore.admin) }
        let usage = try store.keyStatus().keyUsage.first { $0.key == "kek:2" }
        #expect(usage?.used == 40 && usage?.nearBudget == true)
        func refusal(_ store: Store) -> StoreError? {
            do {
                _ = try store.create(sampleSubject("over", phones: []), context: TestStore.admin)
                return nil
            } catch {
                return error
            }
        }
        guard case .keyBudgetExhausted("kek:2", _, 40)? = refusal(store) else {
            Issue.record("expected kek:2 to refuse at its budget")
            return
        }
        // The count is durable: a new process does not start again from zero.
        var configuration = StoreConfiguration()
        configuration.nonceBudget = 40
        let reopened = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
        defer { reopened.close() }
        guard case .keyBudgetExhausted("kek:2", _, 40)? = refusal(reopened) else {
            Issue.record("expected kek:2 to refuse after reopening")
            return
        }
        #expect(try reopened.count() == 38)
    }

    @Test("a subject key counts its encryptions in the subject's row; past the budget writes are refused until its key is rotated",
          arguments: TestBackend.all)
    func subjectBudget(backend: TestBackend) throws {
        let test = try TestStore(backend) { $0.nonceBudget = 20 }
        defer { test.cleanUp() }
        let store = test.store
        // Eight fields sealed at creation, two per update of name and notes.
        let id = try store.create(sampleSubject("sb"), context: TestStore.admin)
        for round in 0..<6 { try store.update(id, personal: PersonalData(name: "N\(round)", notes: "n"), context: TestStore.admin) }
        #expect {
            try store.update(id, personal: PersonalData(name: "over", notes: "n"), context: TestStore.admin)
        } throws: { error in
            if case StoreError.keyBudgetExhausted(let key, 20, 20) = error { return key.hasPrefix("subject:") }
            return false
        }
        #expect(try store.read(id, fields: [.name], context: TestStore.admin).personal.name == "N5")
        try store.rotateDataKey(of: id, context: TestStore.admin)
        try store.update(id, personal: PersonalData(name: "after", notes: "n"), context: TestStore.admin)
        #expect(try store.read(id, fields: [.name], context: TestStore.admin).personal.name == "after")
    }
}

/// Backups of a test store's databases, and stores restored from them (a backup's data database
/// beside another key database, as an attacker or an administrator could restore them); `cleanUp`
/// removes them all.
///
/// SQLite: a backup is a copy of `data.sqlite` or `keys.sqlite` with its WAL file. PostgreSQL: a copy
/// of every table of the database's schema into a schema of its own; a restore makes the full table
/// structure (functions, triggers) by creating a scratch store at a new location, then replaces every
/// table's rows with the backup's.
final class BackupShelf {
    /// One database, as backed up.
    enum Backup {
        case files(folder: String, role: TestStore.DatabaseRole)
        case schema(String)
    }

    let location: StoreLocation
    private var folders: [String] = []
    private var schemas: [String] = []

    init(_ test: TestStore) {
        location = test.location
    }

    /// Backs up one database of the store as it is now.
    func backUp(_ role: TestStore.DatabaseRole) throws -> Backup {
        switch location {
        case .directory(let directory):
            let folder = directory + "-backup-" + UUID().uuidString
            folders.append(folder)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let file = role == .data ? "data.sqlite" : "keys.sqlite"
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name == file || name == file + "-wal" {
                try FileManager.default.copyItem(atPath: directory + "/" + name, toPath: folder + "/" + name)
            }
            return .files(folder: folder, role: role)
        case .postgres:
            let connection = try TestStore.database(role, at: location)
            let source = try schemaName(role, of: location)
            let copy = PostgresTestServer.uniqueSchema()
            schemas.append(copy)
            try connection.execute("CREATE SCHEMA \"\(copy)\"")
            for table in try tables(in: source, connection) {
                try connection.execute("CREATE TABLE \"\(copy)\".\"\(table)\" AS TABLE \"\(source)\".\"\(table)\"")
            }
            return .schema(copy)
        }
    }

    /// A store location holding `data` and `keys`: each a backup, or nil for that database as it is now
    /// in the test's store (close the store first).
    func restore(data: Backup?, keys: Backup?) throws -> StoreLocation {
        switch location {
        case .directory(let directory):
            let folder = directory + "-restored-" + UUID().uuidString
            folders.append(folder)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (backup, file) in [(data, "data.sqlite"), (keys, "keys.sqlite")] {
                var source = directory
                if case .files(let backupFolder, _)? = backup { source = backupFolder }
                for name in try FileManager.default.contentsOfDirectory(atPath: source) where name == file || name == file + "-wal" {
                    try FileManager.default.copyItem(atPath: source + "/" + name, toPath: folder + "/" + name)
                }
            }
            return .directory(folder)
        case .postgres(let url, _):
            let schema = PostgresTestServer.uniqueSchema()
            schemas += [schema, schema + "_keys"]
            let restored = StoreLocation.postgres(url: PostgresConnection.url(url, schema: schema), keysURL: nil)
            try Store.create(at: restored, keyProvider: StaticKeyProvider(key: try SecretKey.random())).close()
            for (backup, role) in [(data, TestStore.DatabaseRole.data), (keys, .keys)] {
                var source = try schemaName(role, of: location)
                if case .schema(let backupSchema)? = backup { source = backupSchema }
                let target = try schemaName(role, of: restored)
                let connection = try TestStore.database(role, at: restored)
                let names = try tables(in: target, connection)
                try connection.transaction { () throws(DatabaseError) in
                    try connection.execute("TRUNCATE " + names.map { "\"\(target)\".\"\($0)\"" }.joined(separator: ", "))
                    // Parents before the tables whose foreign keys name them.
                    for table in names.sorted(by: { ["store", "purposes", "subjects"].contains($0) && !["store", "purposes", "subjects"].contains($1) }) {
                        try connection.execute("INSERT INTO \"\(target)\".\"\(table)\" SELECT * FROM \"\(source)\".\"\(table)\"")
                    }
                }
            }
            return restored
        }
    }

    func cleanUp() {
        for folder in folders { try? FileManager.default.removeItem(atPath: folder) }
        guard case .postgres(let url, _) = location, !schemas.isEmpty,
              let connection = try? PostgresConnection(url: url, create: false, writeLock: "test") else { return }
        for schema in schemas { try? connection.execute("DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE") }
    }

    /// The PostgreSQL schema that holds one database of the store at `location`.
    private func schemaName(_ role: TestStore.DatabaseRole, of location: StoreLocation) throws -> String {
        guard case .postgres(let url, _) = location else { return "" }
        let schema = try PostgresConnection.split(url).schema
        return role == .data ? schema : schema + "_keys"
    }

    /// The tables of a PostgreSQL schema, by name.
    private func tables(in schema: String, _ connection: any Database) throws -> [String] {
        try connection.rows("SELECT tablename FROM pg_tables WHERE schemaname = ? ORDER BY tablename", [.text(schema)]) { $0.text(0) ?? "" }
    }
}

@Suite("Sealing erasures against backups of the key database")
struct SealErasuresTests {
    @Test("after a seal, an older key-database backup yields no key with today's master key; data backups read for everyone else", arguments: TestBackend.all)
    func backups(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let shelf = BackupShelf(test)
        defer { shelf.cleanUp() }
        let kept = try test.store.create(sampleSubject("kept"), context: TestStore.admin)
        let erased = try test.store.create(sampleSubject("gone", phones: ["+447700900999"]), context: TestStore.admin)
        let oldData = try shelf.backUp(.data)
        let oldKeys = try shelf.backUp(.keys)
        try test.store.erase(erased, reason: "Art. 17 request", context: TestStore.admin)
        let newMaster = try SecretKey.random()
        let report = try test.store.sealErasures(newMaster: newMaster, context: TestStore.admin)
        #expect(report.items == 1)

        // The old key database with today's master key: nothing opens, the erased key included.
        let restoredBoth = try shelf.restore(data: oldData, keys: oldKeys)
        #expect {
            try Store.open(at: restoredBoth, keyProvider: StaticKeyProvider(key: newMaster))
        } throws: { error in
            if case StoreError.wrongMasterKey = error { return true }
            return false
        }

        // The old data database beside today's key database: the erased subject is unreadable and
        // reported as erased; everyone else reads.
        test.store.close()
        let restoredData = try shelf.restore(data: oldData, keys: nil)
        let restored = try Store.open(at: restoredData, keyProvider: StaticKeyProvider(key: newMaster))
        defer { restored.close() }
        // Its audit log ends before today's signed head (the data backup's): recorded, so it works again.
        try restored.acknowledgeAuditGap(reason: "data restored from a backup", context: TestStore.admin)
        #expect(try restored.read(kept, context: TestStore.admin).personal.name == "Zebedee Quixotic-kept")
        #expect {
            try restored.read(erased, context: TestStore.admin)
        } throws: { error in
            if case StoreError.subjectErased(erased) = error { return true }
            return false
        }
    }
}

@Suite("Data-key rotation racing a rectification")
struct RotationRaceTests {
    /// Calls `action` once, the first time an event passes the filter.
    final class Trigger: AuditHook, @unchecked Sendable {
        private let lock = NSLock()
        private var action: ((AuditEvent) -> Bool)?
        func arm(_ action: @escaping (AuditEvent) -> Bool) { lock.withLock { self.action = action } }
        func record(_ events: [AuditEvent]) throws {
            let action = lock.withLock { self.action }
            for event in events where action?(event) == true { lock.withLock { self.action = nil } }
        }
    }

    @Test("an update committed between the rotation's read and its write is kept, not overwritten with the old values", arguments: TestBackend.all)
    func updateDuringRotation(backend: TestBackend) throws {
        let trigger = Trigger()
        let test = try TestStore(backend, hooks: [trigger])
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("race"), context: TestStore.admin)
        let other = try test.reopen()
        defer { other.close() }
        trigger.arm { event in
            guard event.action == .decrypt, event.purpose == Purpose.keyRotation.rawValue else { return false }
            try? other.update(id, personal: PersonalData(name: "Rectified Name"), context: TestStore.admin)
            return true
        }
        #expect { try test.store.rotateDataKey(of: id, context: TestStore.admin) } throws: { error in
            if case StoreError.concurrentChange(id) = error { return true }
            return false
        }
        #expect(try test.store.read(id, fields: [.name], context: TestStore.admin).personal.name == "Rectified Name")
        try test.store.rotateDataKey(of: id, context: TestStore.admin)
        #expect(try test.store.read(id, fields: [.name], context: TestStore.admin).personal.name == "Rectified Name")
    }

    @Test("a batch of the whole-store data rotation that meets an update is retried on the same subjects: the update is kept, every subject rotated once",
          arguments: TestBackend.all)
    func updateDuringWholeRotation(backend: TestBackend) throws {
        let trigger = Trigger()
        let test = try TestStore(backend, hooks: [trigger])
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<5).map { sampleSubject("race\($0)") }, context: TestStore.admin).map(\.id)
        let other = try test.reopen()
        defer { other.close() }
        trigger.arm { event in
            guard event.action == .decrypt, event.purpose == Purpose.keyRotation.rawValue else { return false }
            try? other.update(ids[2], personal: PersonalData(name: "Rectified Name"), context: TestStore.admin)
            return true
        }
        let report = try test.store.rotateAllDataKeys(batchSize: 10, context: TestStore.admin)
        #expect(report.items == 5)
        // Second act: from another opening, the update is there and every subject is under its second key alone.
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.read(ids[2], fields: [.name], context: TestStore.admin).personal.name == "Rectified Name")
        #expect(try reopened.read(ids[4], fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-race4")
        #expect(try test.database(.data).scalarInteger("SELECT count(*) FROM subjects WHERE key_version <> 2") == 0)
        #expect(try test.database(.keys).scalarInteger("SELECT count(*) FROM subject_keys") == 5)
    }
}
