import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Synchronization
import StrongroomTestSupport
import Testing

/// After any interruption: the databases are sound (SQLite: `PRAGMA integrity_check` and
/// `foreign_key_check` on both; PostgreSQL, whose server a killed client cannot damage: every index valid
/// and every constraint validated, no row orphaned from its subject, the audit table one run of
/// sequence numbers 1…n with whole lines), one KEK is current and every wrapped subject key names a
/// KEK that exists, the audit log verifies, and every subject decrypts under its one key version; once
/// interrupted work is finished (`finished`), each subject also holds exactly one key (a rotation
/// stopped midway leaves the new key of a subject whose data it had not yet re-encrypted, destroyed
/// when it resumes).
func expectConsistent(_ location: StoreLocation, key: SecretKey, finished: Bool = true) throws {
    let data = try TestStore.database(.data, at: location)
    let keys = try TestStore.database(.keys, at: location)
    switch location {
    case .directory:
        for (name, database) in [("data.sqlite", data), ("keys.sqlite", keys)] {
            #expect(try database.scalarText("PRAGMA integrity_check") == "ok", "\(name)")
            #expect(try database.rows("PRAGMA foreign_key_check") { $0.text(0) ?? "" }.isEmpty, "\(name)")
        }
    case .postgres(let url, _):
        let schema = try PostgresConnection.split(url).schema
        for name in [schema, schema + "_keys"] {
            #expect(try data.scalarInteger("""
                SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ? AND NOT (i.indisvalid AND i.indisready AND i.indislive)
                """, [.text(name)]) == 0, "invalid index in \(name)")
            #expect(try data.scalarInteger("""
                SELECT count(*) FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
                WHERE n.nspname = ? AND NOT co.convalidated
                """, [.text(name)]) == 0, "unvalidated constraint in \(name)")
        }
        for table in ["phone_index", "calls", "consent_ledger"] {
            #expect(try data.scalarInteger("""
                SELECT count(*) FROM \(table) t WHERE NOT EXISTS (SELECT 1 FROM subjects s WHERE s.id = t.subject_id)
                """) == 0, "\(table) rows without their subject")
        }
        let audit = try data.firstRow("SELECT count(*), coalesce(min(sequence), 1), coalesce(max(sequence), 0) FROM audit_log") {
            [$0.int64(0), $0.int64(1), $0.int64(2)]
        }
        #expect(audit.map { $0[1] == 1 && $0[2] == $0[0] } == true, "audit_log (count, min, max) = \(String(describing: audit))")
        #expect(try data.scalarInteger("SELECT count(*) FROM audit_log WHERE get_byte(line, length(line) - 1) <> 10") == 0,
                "torn audit_log lines")
    }
    #expect(try keys.scalarInteger("SELECT count(*) FROM store") == 1 && data.scalarInteger("SELECT count(*) FROM store") == 1)
    #expect(try keys.scalarInteger("SELECT count(*) FROM kek WHERE current <> 0") == 1, "one current KEK")
    #expect(try keys.scalarInteger("""
        SELECT count(*) FROM subject_keys k WHERE NOT EXISTS (SELECT 1 FROM kek WHERE kek.version = k.kek_version)
        """) == 0, "subject keys wrapped under a KEK that is gone")
    let store = try Store.open(at: location, keyProvider: StaticKeyProvider(key: key))
    defer { store.close() }
    let verification = try store.verifyAuditLog()
    #expect(verification.isIntact, "\(String(describing: verification.problem))")
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
    static let writePoints = ["write.seal", "write.rows", "write.keys", "write.sealed", "write.audited"]
    static let erasePoints = ["erase.audited", "erase.key-destroyed"]

    func store(_ test: TestStore, failingAt point: String) throws -> Store {
        var configuration = StoreConfiguration()
        configuration.faultInjection = { name, _ in if name == point { throw InjectedCrash() } }
        return try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
    }

    @Test("a write stopped at any step leaves nothing half-written; writing again succeeds", arguments: TestBackend.all, writePoints)
    func write(backend: TestBackend, point: String) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        _ = try test.store.create(sampleSubject("before"), context: TestStore.admin)
        let failing = try store(test, failingAt: point)
        #expect(throws: (any Error).self) {
            try failing.write([sampleSubject("x1", phones: ["+447700900001"]), sampleSubject("x2", phones: ["+447700900002"])],
                              context: TestStore.admin)
        }
        try expectConsistent(test.location, key: test.key, finished: false)
        let store = try test.reopen()
        #expect(try store.count() == 1)
        #expect(try store.callerID(number: "+447700900001", context: TestStore.caller).isEmpty)
        _ = try store.write([sampleSubject("x1", phones: ["+447700900001"])], context: TestStore.admin)
        #expect(try store.callerID(number: "+447700900001", context: TestStore.caller).count == 1)
        try expectConsistent(test.location, key: test.key)
    }

    @Test("a fault injected where the engine runs the hook itself is StoreError.injectedFault, naming the point and keeping the hook's error",
          arguments: TestBackend.all)
    func injectedFaultIsTyped(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let failing = try store(test, failingAt: "write.audited")
        defer { failing.close() }
        let error = try #require(throws: StoreError.self) { try failing.create(sampleSubject("x1"), context: TestStore.admin) }
        guard case .injectedFault(let point, let cause) = error else {
            Issue.record("not injectedFault: \(error)")
            return
        }
        #expect(point == "write.audited" && cause is InjectedCrash)
        // Second act: nothing was written, and the store writes once the hook is gone.
        let store = try test.reopen()
        #expect(try store.count() == 0)
        _ = try store.create(sampleSubject("x1"), context: TestStore.admin)
        #expect(try store.count() == 1)
    }

    @Test("an erasure stopped at any step leaves the subject either whole or unreadable; erasing again completes it",
          arguments: TestBackend.all, erasePoints)
    func erase(backend: TestBackend, point: String) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("er"), context: TestStore.admin)
        let failing = try store(test, failingAt: point)
        #expect(throws: (any Error).self) { try failing.erase(id, reason: "test", context: TestStore.admin) }
        try expectConsistent(test.location, key: test.key, finished: false)
        let store = try test.reopen()
        try store.erase(id, reason: "test, again", context: TestStore.admin)
        #expect(try store.count() == 0)
        #expect(throws: StoreError.self) { try store.read(id, context: TestStore.admin) }
        try expectConsistent(test.location, key: test.key)
    }

    /// The fault points a child process passes through, killed at the `index`-th one: writes, an
    /// erasure, then KEK, data and index rotations in small batches. Every one of the first 48, then
    /// 200 more drawn (with a fixed seed) from the whole run.
    static let killPoints: [Int] = {
        var random = SplitMix64(seed: 2026)
        return Array(1...48) + (0..<200).map { _ in 1 + Int(random.next() % 90) }
    }()

    /// One kill: the backend, the case's number in `killPoints` and the step it kills at.
    struct KillCase: Sendable, CustomTestStringConvertible {
        let backend: TestBackend
        let number: Int
        let index: Int
        var testDescription: String { "\(backend) case \(number): step \(index)" }

        /// All 248 kill points on SQLite; on PostgreSQL, whose server a killed client cannot damage and
        /// where each case costs a few server round trips more, 88 of them: the first 48 (every step of
        /// the writes, the erasure and the start of the KEK rotation) and the first 40 drawn ones.
        static let all: [KillCase] = TestBackend.all.flatMap { backend in
            killPoints.enumerated().prefix(backend == .sqlite ? killPoints.count : 48 + 40).map {
                KillCase(backend: backend, number: $0.offset, index: $0.element)
            }
        }
    }

    @Test("killed with SIGKILL at the n-th step of a mixed workload, the store is consistent and the work can be finished",
          arguments: KillCase.all)
    func killed(_ killCase: KillCase) async throws {
        let index = killCase.index
        let test = try TestStore(killCase.backend)
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<30).map { sampleSubject("k\($0)", phones: ["+4477009" + String(format: "%05d", $0)]) },
                                       context: TestStore.admin).map(\.id)
        let locationText = test.locationText
        let keyText = String(decoding: test.key.base64EncodedBytes(), as: UTF8.self)
        let victim = ids[3]
        await #expect(processExitsWith: .signal(SIGKILL)) { [locationText = locationText as String, keyText = keyText as String,
                                                             index = index as Int, victim = victim.rawValue as Int64] in
            let steps = Mutex(0)
            var configuration = StoreConfiguration()
            configuration.faultInjection = { _, _ in
                if steps.withLock({ $0 += 1; return $0 }) == index { kill(getpid(), SIGKILL) }
            }
            let store = try Store.open(at: StoreLocation(locationText),
                                       keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: keyText)!),
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
        try expectConsistent(test.location, key: test.key, finished: false)
        // Finish whatever was interrupted, as an administrator would: run the commands again.
        let store = try test.reopen()
        for rotation in try store.rotationsInProgress() {
            switch rotation.kind {
            case .kek: _ = try store.rotateKeyEncryptionKey(context: TestStore.admin)
            case .data: _ = try store.rotateAllDataKeys(context: TestStore.admin)
            default: _ = try store.rotateIndexKey(context: TestStore.admin)
            }
        }
        if (try? store.read(victim, context: TestStore.admin)) != nil || (try? store.resolve(String(victim.rawValue))) != nil {
            _ = try? store.erase(victim, reason: "finish", context: TestStore.admin)
        }
        store.close()
        try expectConsistent(test.location, key: test.key)
        let final = try test.reopen()
        for (position, id) in ids.enumerated() where id != victim {
            #expect(try final.callerID(number: "+4477009" + String(format: "%05d", position), context: TestStore.caller).map(\.id) == [id])
        }
        #expect(try final.rotationsInProgress().isEmpty)
    }
}
