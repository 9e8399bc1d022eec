import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Synchronization
import StrongroomTestSupport
import Testing

/// After any interruption: SQLite's integrity check passes on both databases, the audit log verifies,
/// and every subject decrypts under its one key version; once interrupted work is finished
/// (`finished`), each subject also holds exactly one key (a rotation stopped midway leaves the new
/// key of a subject whose data it had not yet re-encrypted, destroyed when it resumes).
func expectConsistent(_ directory: String, key: SecretKey, finished: Bool = true) throws {
    for name in ["data.sqlite", "keys.sqlite"] {
        #expect(try SQLiteConnection(path: directory + "/" + name).scalarText("PRAGMA integrity_check") == "ok", "\(name)")
    }
    let store = try Store.open(at: directory, keyProvider: StaticKeyProvider(key: key))
    defer { store.close() }
    let verification = try store.verifyAuditLog()
    #expect(verification.isIntact, "\(String(describing: verification.problem))")
    let keys = try SQLiteConnection(path: directory + "/keys.sqlite")
    var after: SubjectID?
    while true {
        let page = try store.list(after: after, limit: 100)
        guard let last = page.last else { break }
        for summary in page {
            do {
                _ = try store.read(summary.id, context: TestStore.admin)
                let count = try keys.scalarInteger("SELECT count(*) FROM subject_keys WHERE subject_id = ?", [.integer(summary.id.rawValue)]) ?? 0
                #expect(finished ? count == 1 : count >= 1, "subject \(summary.id) has \(count) keys")
            } catch StoreError.subjectErased {
                // An erasure interrupted after its key was destroyed: finished by erasing again.
            }
        }
        after = last.id
    }
}

@Suite("Fault injection: stopped at every step of a write, an erasure and a rotation batch")
struct FaultInjectionTests {
    static let writePoints = ["write.rows", "write.keys", "write.sealed", "write.audited"]
    static let erasePoints = ["erase.audited", "erase.key-destroyed"]

    func store(_ test: TestStore, failingAt point: String) throws -> Store {
        var configuration = StoreConfiguration()
        configuration.faultInjection = { name, _ in if name == point { throw InjectedCrash() } }
        return try Store.open(at: test.directory, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
    }

    @Test("a write stopped at any step leaves nothing half-written; writing again succeeds", arguments: writePoints)
    func write(point: String) throws {
        let test = try TestStore()
        defer { test.cleanUp() }
        _ = try test.store.create(sampleSubject("before"), context: TestStore.admin)
        let failing = try store(test, failingAt: point)
        #expect(throws: (any Error).self) {
            try failing.write([sampleSubject("x1", phones: ["+447700900001"]), sampleSubject("x2", phones: ["+447700900002"])],
                              context: TestStore.admin)
        }
        try expectConsistent(test.directory, key: test.key, finished: false)
        let store = try test.reopen()
        #expect(try store.count() == 1)
        #expect(try store.callerID(number: "+447700900001", context: TestStore.caller).isEmpty)
        _ = try store.write([sampleSubject("x1", phones: ["+447700900001"])], context: TestStore.admin)
        #expect(try store.callerID(number: "+447700900001", context: TestStore.caller).count == 1)
        try expectConsistent(test.directory, key: test.key)
    }

    @Test("an erasure stopped at any step leaves the subject either whole or unreadable; erasing again completes it",
          arguments: erasePoints)
    func erase(point: String) throws {
        let test = try TestStore()
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("er"), context: TestStore.admin)
        let failing = try store(test, failingAt: point)
        #expect(throws: (any Error).self) { try failing.erase(id, reason: "test", context: TestStore.admin) }
        try expectConsistent(test.directory, key: test.key, finished: false)
        let store = try test.reopen()
        try store.erase(id, reason: "test, again", context: TestStore.admin)
        #expect(try store.count() == 0)
        #expect(throws: StoreError.self) { try store.read(id, context: TestStore.admin) }
        try expectConsistent(test.directory, key: test.key)
    }

    /// The fault points a child process passes through, killed at the `index`-th one: writes, an
    /// erasure, then KEK, data and index rotations in small batches. Every one of the first 48, then
    /// 200 more drawn (with a fixed seed) from the whole run.
    static let killPoints: [Int] = {
        var random = SplitMix64(seed: 2026)
        return Array(1...48) + (0..<200).map { _ in 1 + Int(random.next() % 90) }
    }()

    @Test("killed with SIGKILL at the n-th step of a mixed workload, the store is consistent and the work can be finished",
          arguments: Array(killPoints.enumerated()))
    func killed(case number: Int, at index: Int) async throws {
        let test = try TestStore()
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<30).map { sampleSubject("k\($0)", phones: ["+4477009" + String(format: "%05d", $0)]) },
                                       context: TestStore.admin).map(\.id)
        let directory = test.directory
        let keyText = String(decoding: test.key.base64EncodedBytes(), as: UTF8.self)
        let victim = ids[3]
        await #expect(processExitsWith: .signal(SIGKILL)) { [directory = directory as String, keyText = keyText as String,
                                                             index = index as Int, victim = victim.rawValue as Int64] in
            let steps = Mutex(0)
            var configuration = StoreConfiguration()
            configuration.faultInjection = { _, _ in
                if steps.withLock({ $0 += 1; return $0 }) == index { kill(getpid(), SIGKILL) }
            }
            let store = try Store.open(at: directory, keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: keyText)!),
                                       configuration: configuration)
            let admin = AccessContext(actor: "test-admin", purpose: .admin)
            for batch in 0..<3 {
                _ = try store.write((0..<3).map { sampleSubject("n\(batch)-\($0)") }, context: admin)
            }
            try store.erase(SubjectID(rawValue: victim), reason: "test", context: admin)
            _ = try store.rotateKeyEncryptionKey(batchSize: 10, context: admin)
            _ = try store.rotateAllDataKeys(batchSize: 10, context: admin)
            _ = try store.rotateIndexKey(batchSize: 10, context: admin)
            kill(getpid(), SIGKILL) // every step passed: end the same way
        }
        try expectConsistent(directory, key: test.key, finished: false)
        // Finish whatever was interrupted, as an administrator would: run the commands again.
        let store = try test.reopen()
        for rotation in try store.rotationsInProgress() {
            switch rotation.kind {
            case "kek": _ = try store.rotateKeyEncryptionKey(context: TestStore.admin)
            case "data": _ = try store.rotateAllDataKeys(context: TestStore.admin)
            default: _ = try store.rotateIndexKey(context: TestStore.admin)
            }
        }
        if (try? store.read(victim, context: TestStore.admin)) != nil || (try? store.resolve(String(victim.rawValue))) != nil {
            try? store.erase(victim, reason: "finish", context: TestStore.admin)
        }
        store.close()
        try expectConsistent(directory, key: test.key)
        let final = try test.reopen()
        for (position, id) in ids.enumerated() where id != victim {
            #expect(try final.callerID(number: "+4477009" + String(format: "%05d", position), context: TestStore.caller).map(\.id) == [id])
        }
        #expect(try final.rotationsInProgress().isEmpty)
    }
}
