import Foundation
import Strongroom
import StrongroomStorage
import StrongroomCrypto
import Testing

@Suite("Audit: every decrypt recorded, fail closed, tamper-evident")
struct AuditTests {
    /// The store's only audit segment, as lines.
    func segmentLines(_ test: TestStore) throws -> (path: String, lines: [String]) {
        let path = test.directory + "/audit/00000001.jsonl"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return (path, text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
    }

    func write(_ lines: [String], to path: String) throws {
        try lines.joined(separator: "\n").write(toFile: path, atomically: false, encoding: .utf8)
    }

    /// A store with a few audited operations, closed so that its head is saved.
    func populated() throws -> TestStore {
        let test = try TestStore()
        for index in 0..<4 {
            let id = try test.store.create(sampleSubject("au\(index)"), context: TestStore.admin)
            _ = try test.store.read(id, context: TestStore.admin)
        }
        test.store.close()
        return test
    }

    func verify(_ test: TestStore) throws -> AuditVerification {
        try test.reopen().verifyAuditLog()
    }

    @Test("each decrypt is an entry with actor, purpose, subject, fields and outcome, never a value", arguments: TestBackend.all)
    func entries(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("en"), context: TestStore.admin)
        _ = try test.store.read(id, fields: [.name, .phones],
                                context: AccessContext(actor: "alice", purpose: .admin, clientAddress: "10.0.0.7"))
        var last: AuditEntry?
        try test.store.auditEntries(AuditFilter(subject: id)) { entry, _ in last = entry }
        #expect(last?.action == "decrypt")
        #expect(last?.actor == "alice")
        #expect(last?.purpose == "admin")
        #expect(last?.subject == String(id.rawValue))
        #expect(last?.fields == ["name", "phones"])
        #expect(last?.outcome == "ok")
        #expect(last?.client == "10.0.0.7")
        #expect(try test.store.verifyAuditLog().isIntact)
    }

    @Test("a hook that fails makes the read fail: no plaintext without an audit record", arguments: TestBackend.all)
    func failClosed(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("fc"), context: TestStore.admin)
        hook.fail(true)
        #expect {
            try test.store.read(id, context: TestStore.admin)
        } throws: { error in
            if case StoreError.auditFailed = error { return true }
            return false
        }
        // A write whose audit fails is rolled back.
        #expect(throws: StoreError.self) { try test.store.create(sampleSubject("fc2"), context: TestStore.admin) }
        hook.fail(false)
        #expect(try test.store.count() == 1)
    }

    @Test("a log that cannot be written makes reads fail closed", arguments: TestBackend.all)
    func unwritableLog(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("uw"), context: TestStore.admin)
        // Replace the audit folder by a plain file: no segment can be opened any more.
        try FileManager.default.removeItem(atPath: test.directory + "/audit")
        try Data("not a folder".utf8).write(to: URL(fileURLWithPath: test.directory + "/audit"))
        #expect(throws: StoreError.self) { try test.store.read(id, context: TestStore.admin) }
    }

    @Test("an intact log verifies, across reopenings")
    func intact() throws {
        let test = try populated()
        defer { test.cleanUp() }
        let result = try verify(test)
        #expect(result.isIntact)
        #expect(result.verifiedEntries == 9)
        #expect(result.headSequence == 9)
    }

    @Test("an edited entry is found and named")
    func edited() throws {
        let test = try populated()
        defer { test.cleanUp() }
        var (path, lines) = try segmentLines(test)
        lines[4] = lines[4].replacingOccurrences(of: "test-admin", with: "mallory")
        try write(lines, to: path)
        let result = try verify(test)
        guard case .badEntry(let sequence, _, let line, _) = result.problem else {
            Issue.record("expected a bad entry, got \(String(describing: result.problem))")
            return
        }
        #expect(sequence == 5 && line == 5)
    }

    @Test("a deleted, duplicated or reordered entry is found", arguments: ["delete", "duplicate", "swap"])
    func removedOrMoved(change: String) throws {
        let test = try populated()
        defer { test.cleanUp() }
        var (path, lines) = try segmentLines(test)
        switch change {
        case "delete": lines.remove(at: 3)
        case "duplicate": lines.insert(lines[3], at: 3)
        default: lines.swapAt(3, 4)
        }
        try write(lines, to: path)
        let result = try verify(test)
        guard case .outOfOrder(let expected, _, _, _) = result.problem else {
            Issue.record("expected out of order, got \(String(describing: result.problem))")
            return
        }
        // Deleting or swapping entry 4 is caught at entry 4; a copy of entry 4 is caught where 5 was due.
        #expect(expected == (change == "duplicate" ? 5 : 4))
    }

    @Test("entries cut off from the end are reported with the sequence number expected")
    func truncatedTail() throws {
        let test = try populated()
        defer { test.cleanUp() }
        var (path, lines) = try segmentLines(test)
        lines.removeLast(3) // the empty string after the last newline, and two entries
        try write(lines + [""], to: path)
        let result = try verify(test)
        #expect(result.problem == .missingFromEnd(expected: 8, headSequence: 9))
    }

    @Test("a torn last line is reported as torn")
    func torn() throws {
        let test = try populated()
        defer { test.cleanUp() }
        let (path, _) = try segmentLines(test)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"seq\":10,\"time\":\"2026".utf8))
        try handle.close()
        let result = try test.store.verifyAuditLog()
        guard case .tornLastLine = result.problem else {
            Issue.record("expected a torn line, got \(String(describing: result.problem))")
            return
        }
    }

    @Test("a writer continues the chain after a crash left a torn line")
    func resumesAfterTornLine() throws {
        let test = try populated()
        defer { test.cleanUp() }
        let (path, _) = try segmentLines(test)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"seq\":10,\"ti".utf8))
        try handle.close()
        let store = try test.reopen()
        _ = try store.read(SubjectID(rawValue: 1), context: TestStore.admin)
        #expect(try store.verifyAuditLog().isIntact)
    }

    @Test("a log rolled back to an earlier state is caught by the signed head")
    func rolledBack() throws {
        let test = try populated()
        defer { test.cleanUp() }
        let (path, lines) = try segmentLines(test)
        let store = try test.reopen()
        _ = try store.read(SubjectID(rawValue: 1), context: TestStore.admin)
        store.close()
        try write(lines, to: path) // the log as it was before the last read
        #expect(try verify(test).problem == .missingFromEnd(expected: 10, headSequence: 10))
    }

    @Test("a store created durable keeps auditing durably across reopenings, and its log verifies", arguments: TestBackend.all)
    func durableStore(backend: TestBackend) async throws {
        let test = try TestStore(backend, durability: .synced)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("du"), context: TestStore.admin)
        let reopened = try test.reopen()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { for _ in 0..<25 { _ = try reopened.read(id, fields: [.name], context: TestStore.admin) } }
            }
            try await group.waitForAll()
        }
        #expect(try test.database(.keys).scalarText("SELECT audit_durability FROM store WHERE id = 1") == "synced")
        let verification = try reopened.verifyAuditLog()
        #expect(verification.isIntact && verification.verifiedEntries == 102)
    }

    @Test("segments roll over by size and the chain spans them")
    func segments() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-seg-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = try SecretKey.random()
        var configuration = StoreConfiguration()
        configuration.auditSegmentByteLimit = 2_000
        let store = try Store.create(at: directory, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
        let id = try store.create(sampleSubject("sg"), context: TestStore.admin)
        for _ in 0..<40 { _ = try store.read(id, fields: [.name], context: TestStore.admin) }
        let segments = try FileManager.default.contentsOfDirectory(atPath: directory + "/audit").filter { $0.hasSuffix(".jsonl") }
        #expect(segments.count > 3)
        // 42 entries, and one segment-end entry closing each segment but the last.
        #expect(try store.verifyAuditLog().verifiedEntries == 42 + segments.count - 1)
    }
}
