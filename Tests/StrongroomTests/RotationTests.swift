import Foundation
import Strongroom
import StrongroomCrypto
import Testing

/// A fault injected into a rotation, standing in for a crash between two batches.
struct InjectedCrash: Error {}

@Suite("Key rotation: online, resumable, nothing lost")
struct RotationTests {
    /// A store with `count` subjects whose numbers are +44 7700 9xxxxx.
    func populated(_ count: Int = 60) throws -> (TestStore, [SubjectID]) {
        let test = try TestStore(region: "GB")
        let ids = try test.store.write((0..<count).map { sampleSubject("r\($0)", phones: [number($0)]) }, context: TestStore.admin).map(\.id)
        return (test, ids)
    }

    func number(_ index: Int) -> String { "+4477009" + String(format: "%05d", index) }

    /// Opens the test's folder with a fault that fires at `point` after `batches` batches.
    func crashing(_ test: TestStore, at point: String, after batches: Int, key: SecretKey? = nil) throws -> Store {
        var configuration = StoreConfiguration()
        configuration.faultInjection = { name, count in
            if name == point && count >= batches { throw InjectedCrash() }
        }
        return try Store.open(at: test.directory, keyProvider: StaticKeyProvider(key: key ?? test.key), configuration: configuration)
    }

    /// Every subject reads back whole and is found by caller ID; the audit log verifies.
    func expectIntact(_ store: Store, _ ids: [SubjectID]) throws {
        for (index, id) in ids.enumerated() {
            let subject = try store.read(id, context: TestStore.admin)
            #expect(subject.personal.name == "Zebedee Quixotic-r\(index)")
            #expect(try store.callerID(number: number(index), context: TestStore.caller).map(\.id) == [id])
        }
        let verification = try store.verifyAuditLog()
        #expect(verification.isIntact, "\(String(describing: verification.problem))")
    }

    @Test("master key rotation re-wraps one key, and the old master key is refused afterwards")
    func master() throws {
        let (test, ids) = try populated()
        defer { test.cleanUp() }
        let newKey = try SecretKey.random()
        let report = try test.store.rotateMasterKey(to: newKey, context: TestStore.admin)
        #expect(report.items == 1 && report.toVersion == 2)
        #expect {
            try Store.open(at: test.directory, keyProvider: StaticKeyProvider(key: test.key))
        } throws: { error in
            if case StoreError.wrongMasterKey = error { return true }
            return false
        }
        let reopened = try Store.open(at: test.directory, keyProvider: StaticKeyProvider(key: newKey))
        try expectIntact(reopened, ids)
        #expect(try reopened.keyStatus().masterGeneration == 2)
    }

    @Test("KEK rotation interrupted between batches resumes, and destroys the old KEK only at the end")
    func kekResumes() throws {
        let (test, ids) = try populated()
        defer { test.cleanUp() }
        let crashing = try crashing(test, at: "rotate-kek.batch", after: 2)
        #expect(throws: StoreError.self) { try crashing.rotateKeyEncryptionKey(batchSize: 10, context: TestStore.admin) }
        let inProgress = try crashing.rotationsInProgress()
        #expect(inProgress.map(\.kind) == ["kek"] && inProgress[0].done == 20)
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

    @Test("data key rotation of all subjects resumes after an interruption; every subject gets a fresh key")
    func dataResumes() throws {
        let (test, ids) = try populated()
        defer { test.cleanUp() }
        let before = try test.database(.keys).rows("SELECT wrapped FROM subject_keys ORDER BY subject_id") { $0.blob(0)! }
        let crashing = try crashing(test, at: "rotate-data.batch", after: 1)
        #expect(throws: StoreError.self) { try crashing.rotateAllDataKeys(batchSize: 25, context: TestStore.admin) }
        try expectIntact(try test.reopen(), ids)
        let report = try test.reopen().rotateAllDataKeys(batchSize: 25, context: TestStore.admin)
        #expect(report.resumed && report.items == 60)
        let store = try test.reopen()
        try expectIntact(store, ids)
        let keys = try test.database(.keys)
        #expect(try keys.scalarInteger("SELECT count(*) FROM subject_keys") == 60)
        #expect(try keys.scalarInteger("SELECT count(*) FROM subject_keys WHERE version = 2") == 60)
        let after = try keys.rows("SELECT wrapped FROM subject_keys ORDER BY subject_id") { $0.blob(0)! }
        #expect(Set(before).isDisjoint(with: Set(after)))
        #expect(try test.database(.data).scalarInteger("SELECT count(*) FROM subjects WHERE key_version <> 2") == 0)
    }

    @Test("one subject's data key rotates on its own")
    func dataOne() throws {
        let (test, ids) = try populated(5)
        defer { test.cleanUp() }
        try test.store.rotateDataKey(of: ids[2], context: TestStore.admin)
        try test.store.rotateDataKey(of: ids[2], context: TestStore.admin)
        try expectIntact(test.store, ids)
        #expect(try test.database(.data).scalarInteger("SELECT key_version FROM subjects WHERE id = ?", [.integer(ids[2].rawValue)]) == 3)
    }

    @Test("index rotation: both versions answer while it is interrupted, then the old index is dropped")
    func indexResumes() throws {
        let (test, ids) = try populated()
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
        #expect(try store.keyStatus().phoneIndex.bits == 10)
        #expect(try test.database(.data).scalarInteger("SELECT count(*) FROM phone_index WHERE key_version <> 2") == 0)
        #expect(try test.database(.keys).scalarInteger("SELECT count(*) FROM index_keys") == 1)
    }

    @Test("reads and writes from other tasks keep succeeding during KEK, data and index rotations")
    func online() async throws {
        let (test, ids) = try populated(200)
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
                        throw StoreError.invalidInput("lookup \(round) failed during rotation")
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

    @Test("a rotation killed with SIGKILL between batches or inside one resumes to completion",
          arguments: ["kek", "data", "index"], ["batch", "in-batch"])
    func killed(kind: String, point: String) async throws {
        let (test, ids) = try populated(80)
        defer { test.cleanUp() }
        let directory = test.directory
        let keyText = String(decoding: test.key.base64EncodedBytes(), as: UTF8.self)
        await #expect(processExitsWith: .signal(SIGKILL)) { [directory = directory as String, keyText = keyText as String,
                                                             kind = kind as String, point = point as String] in
            var configuration = StoreConfiguration()
            configuration.faultInjection = { name, count in
                if name.hasSuffix("." + point) && count >= 2 { kill(getpid(), SIGKILL) }
            }
            let store = try Store.open(at: directory, keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: keyText)!),
                                       configuration: configuration)
            let admin = AccessContext(actor: "test-admin", purpose: .admin)
            switch kind {
            case "kek": _ = try store.rotateKeyEncryptionKey(batchSize: 15, context: admin)
            case "data": _ = try store.rotateAllDataKeys(batchSize: 15, context: admin)
            default: _ = try store.rotateIndexKey(batchSize: 15, context: admin)
            }
        }
        let resumed = try test.reopen()
        #expect(try resumed.rotationsInProgress().map(\.kind) == [kind])
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
    @Test("a KEK at its budget refuses to wrap more keys with a typed error, durably; a new KEK counts afresh")
    func tinyBudget() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-budget-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = try SecretKey.random()
        var configuration = StoreConfiguration()
        configuration.defaultRegion = "GB"
        configuration.nonceBudget = 40
        let store = try Store.create(at: directory, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
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
        let reopened = try Store.open(at: directory, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
        guard case .keyBudgetExhausted("kek:2", _, 40)? = refusal(reopened) else {
            Issue.record("expected kek:2 to refuse after reopening")
            return
        }
        #expect(try reopened.count() == 38)
    }

    @Test("a subject key counts its encryptions in the subject's row; past the budget writes are refused until its key is rotated")
    func subjectBudget() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-sbudget-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = StoreConfiguration()
        configuration.nonceBudget = 20
        let store = try Store.create(at: directory, keyProvider: StaticKeyProvider(key: try SecretKey.random()), configuration: configuration)
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

@Suite("Sealing erasures against backups of the key database")
struct SealErasuresTests {
    /// Copies the store's databases (with their WAL files) to `folder`.
    func backUp(_ test: TestStore, to folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: test.directory) where name.hasSuffix(".sqlite") || name.hasSuffix("-wal") {
            try FileManager.default.copyItem(atPath: test.directory + "/" + name, toPath: folder + "/" + name)
        }
    }

    @Test("after a seal, an older key-database backup yields no key with today's master key; data backups read for everyone else", arguments: TestBackend.all)
    func backups(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let kept = try test.store.create(sampleSubject("kept"), context: TestStore.admin)
        let erased = try test.store.create(sampleSubject("gone", phones: ["+447700900999"]), context: TestStore.admin)
        let backup = test.directory + "-backup"
        defer { try? FileManager.default.removeItem(atPath: backup) }
        try backUp(test, to: backup)
        try test.store.erase(erased, reason: "Art. 17 request", context: TestStore.admin)
        let newMaster = try SecretKey.random()
        let report = try test.store.sealErasures(newMaster: newMaster, context: TestStore.admin)
        #expect(report.items == 1)

        // The old key database with today's master key: nothing opens, the erased key included.
        let oldKeys = backup + "/restored-keys"
        try FileManager.default.createDirectory(atPath: oldKeys, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: backup) where name.hasPrefix("keys") || name.hasPrefix("data") {
            try FileManager.default.copyItem(atPath: backup + "/" + name, toPath: oldKeys + "/" + name)
        }
        #expect {
            try Store.open(at: oldKeys, keyProvider: StaticKeyProvider(key: newMaster))
        } throws: { error in
            if case StoreError.wrongMasterKey = error { return true }
            return false
        }

        // The old data file beside today's key database: the erased subject is unreadable and reported
        // as erased; everyone else reads.
        let oldData = backup + "/restored-data"
        try FileManager.default.createDirectory(atPath: oldData, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: backup) where name.hasPrefix("data") {
            try FileManager.default.copyItem(atPath: backup + "/" + name, toPath: oldData + "/" + name)
        }
        test.store.close()
        for name in try FileManager.default.contentsOfDirectory(atPath: test.directory) where name.hasPrefix("keys") {
            try FileManager.default.copyItem(atPath: test.directory + "/" + name, toPath: oldData + "/" + name)
        }
        let restored = try Store.open(at: oldData, keyProvider: StaticKeyProvider(key: newMaster))
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
}
