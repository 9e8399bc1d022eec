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

    /// The rows of a PostgreSQL store's `audit_log` table, in sequence order: (sequence, line with its newline).
    func rows(_ test: TestStore) throws -> [(sequence: Int64, line: [UInt8])] {
        try test.database(.data).rows("SELECT sequence, line FROM audit_log ORDER BY sequence") { ($0.int64(0), $0.blob(1) ?? []) }
    }

    /// Where a bad entry is reported: the segment file's name, or the table's.
    func place(_ test: TestStore) -> String {
        test.backend == .sqlite ? "00000001.jsonl" : "audit_log"
    }

    /// A store with a few audited operations, closed so that its head is saved: 9 entries.
    func populated(_ backend: TestBackend) throws -> TestStore {
        let test = try TestStore(backend)
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
        switch backend {
        case .sqlite:
            // Replace the audit folder by a plain file: no segment can be opened any more.
            try FileManager.default.removeItem(atPath: test.directory + "/audit")
            try Data("not a folder".utf8).write(to: URL(fileURLWithPath: test.directory + "/audit"))
        case .postgres:
            // Move the log's table away through another connection: no entry can be inserted any more.
            try test.database(.data).execute("ALTER TABLE audit_log RENAME TO audit_log_moved")
        }
        #expect { try test.store.read(id, context: TestStore.admin) } throws: { error in
            if case StoreError.auditFailed = error { return true }
            return false
        }
        // A write whose audit cannot be recorded is refused and rolled back.
        #expect(throws: StoreError.self) { try test.store.create(sampleSubject("uw2"), context: TestStore.admin) }
        #expect(try test.store.count() == 1)
        if backend == .postgres {
            // The table back in place: the same store audits and reads again, and the chain still verifies.
            try test.database(.data).execute("ALTER TABLE audit_log_moved RENAME TO audit_log")
            #expect(try test.store.read(id, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-uw")
            #expect(try test.store.verifyAuditLog().isIntact)
            // A table that refuses inserts (a trigger raising, as a revoked privilege would) fails reads closed too.
            try test.database(.data).execute("""
                CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
                CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit()
                """)
            #expect { try test.store.read(id, context: TestStore.admin) } throws: { error in
                if case StoreError.auditFailed = error { return true }
                return false
            }
        }
    }

    @Test("an intact log verifies, across reopenings", arguments: TestBackend.all)
    func intact(backend: TestBackend) throws {
        let test = try populated(backend)
        defer { test.cleanUp() }
        let result = try verify(test)
        #expect(result.isIntact)
        #expect(result.verifiedEntries == 9)
        #expect(result.headSequence == 9)
    }

    @Test("an edited entry is found and named", arguments: TestBackend.all)
    func edited(backend: TestBackend) throws {
        let test = try populated(backend)
        defer { test.cleanUp() }
        switch backend {
        case .sqlite:
            var (path, lines) = try segmentLines(test)
            lines[4] = lines[4].replacingOccurrences(of: "test-admin", with: "mallory")
            try write(lines, to: path)
        case .postgres:
            // UPDATE the bytes of entry 5's row.
            let raw = try test.database(.data)
            let line = try #require(try raw.firstRow("SELECT line FROM audit_log WHERE sequence = 5") { $0.blob(0) } ?? nil)
            let edited = String(decoding: line, as: UTF8.self).replacingOccurrences(of: "test-admin", with: "mallory")
            #expect(Array(edited.utf8) != line)
            try raw.run("UPDATE audit_log SET line = ? WHERE sequence = 5", [.blob(Array(edited.utf8))])
            #expect(raw.changes == 1)
        }
        let result = try verify(test)
        guard case .badEntry(let sequence, let segment, let line, _) = result.problem else {
            Issue.record("expected a bad entry, got \(String(describing: result.problem))")
            return
        }
        #expect(sequence == 5 && line == 5 && segment == place(test))
    }

    @Test("a deleted, duplicated or reordered entry is found", arguments: TestBackend.all, ["delete", "duplicate", "swap"])
    func removedOrMoved(backend: TestBackend, change: String) throws {
        let test = try populated(backend)
        defer { test.cleanUp() }
        switch backend {
        case .sqlite:
            var (path, lines) = try segmentLines(test)
            switch change {
            case "delete": lines.remove(at: 3)
            case "duplicate": lines.insert(lines[3], at: 3)
            default: lines.swapAt(3, 4)
            }
            try write(lines, to: path)
        case .postgres:
            let raw = try test.database(.data)
            switch change {
            case "delete":
                // DELETE entry 4's row.
                try raw.run("DELETE FROM audit_log WHERE sequence = 4")
                #expect(raw.changes == 1)
            case "duplicate":
                // A copy of entry 4 inserted after it: the rows from 5 on move up one place (in two steps,
                // as the primary key is checked row by row), and the copy takes place 5.
                try raw.transaction {
                    try raw.run("UPDATE audit_log SET sequence = -sequence - 1 WHERE sequence >= 5")
                    try raw.run("UPDATE audit_log SET sequence = -sequence WHERE sequence < 0")
                    try raw.run("INSERT INTO audit_log (sequence, line) SELECT 5, line FROM audit_log WHERE sequence = 4")
                }
            default:
                // Swap the lines of rows 4 and 5.
                try raw.run("""
                    UPDATE audit_log AS a SET line = b.line FROM audit_log AS b
                    WHERE (a.sequence = 4 AND b.sequence = 5) OR (a.sequence = 5 AND b.sequence = 4)
                    """)
                #expect(raw.changes == 2)
            }
            #expect(try rows(test).count == (change == "delete" ? 8 : change == "duplicate" ? 10 : 9))
        }
        let result = try verify(test)
        guard case .outOfOrder(let expected, _, let segment, _) = result.problem else {
            Issue.record("expected out of order, got \(String(describing: result.problem))")
            return
        }
        // Deleting or swapping entry 4 is caught at entry 4; a copy of entry 4 is caught where 5 was due.
        #expect(expected == (change == "duplicate" ? 5 : 4))
        #expect(segment == place(test))
    }

    @Test("entries cut off from the end are reported with the sequence number expected", arguments: TestBackend.all)
    func truncatedTail(backend: TestBackend) throws {
        let test = try populated(backend)
        defer { test.cleanUp() }
        switch backend {
        case .sqlite:
            var (path, lines) = try segmentLines(test)
            lines.removeLast(3) // the empty string after the last newline, and two entries
            try write(lines + [""], to: path)
        case .postgres:
            // DELETE the last two rows.
            let raw = try test.database(.data)
            try raw.run("DELETE FROM audit_log WHERE sequence > 7")
            #expect(raw.changes == 2)
        }
        let result = try verify(test)
        #expect(result.problem == .missingFromEnd(expected: 8, headSequence: 9))
    }

    @Test("the whole log removed is caught by the signed head", arguments: TestBackend.all)
    func emptied(backend: TestBackend) throws {
        let test = try populated(backend)
        defer { test.cleanUp() }
        switch backend {
        case .sqlite: try write([""], to: try segmentLines(test).path)
        case .postgres: try test.database(.data).run("DELETE FROM audit_log")
        }
        #expect(try verify(test).problem == .missingFromEnd(expected: 1, headSequence: 9))
    }

    // SQLite only: a torn line is a `write` cut short by a crash; a PostgreSQL row is inserted whole or not at all.
    @Test("a torn last line is reported as torn")
    func torn() throws {
        let test = try populated(.sqlite)
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

    // SQLite only, as above: no crash leaves part of a row in a PostgreSQL table.
    @Test("a writer continues the chain after a crash left a torn line")
    func resumesAfterTornLine() throws {
        let test = try populated(.sqlite)
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

    @Test("a log rolled back to an earlier state is caught by the signed head", arguments: TestBackend.all)
    func rolledBack(backend: TestBackend) throws {
        let test = try populated(backend)
        defer { test.cleanUp() }
        // The log as it is before one more read: the segment file, or the table's rows.
        let savedSegment = backend == .sqlite ? try segmentLines(test) : nil
        let savedRows = backend == .postgres ? try rows(test) : []
        let store = try test.reopen()
        _ = try store.read(SubjectID(rawValue: 1), context: TestStore.admin)
        store.close()
        switch backend {
        case .sqlite:
            let (path, lines) = try #require(savedSegment)
            try write(lines, to: path)
        case .postgres:
            // Restore the table's earlier state: every row deleted, the saved rows inserted back.
            let raw = try test.database(.data)
            try raw.transaction {
                try raw.run("DELETE FROM audit_log")
                for (sequence, line) in savedRows {
                    try raw.run("INSERT INTO audit_log (sequence, line) VALUES (?, ?)", [.integer(sequence), .blob(line)])
                }
            }
            #expect(try rows(test).count == 9)
        }
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

    @Test("segments roll over by size and the chain spans them (PostgreSQL: one table, the limit has no effect)", arguments: TestBackend.all)
    func segments(backend: TestBackend) throws {
        let test = try TestStore(backend) { $0.auditSegmentByteLimit = 2_000 }
        defer { test.cleanUp() }
        let store = test.store
        let id = try store.create(sampleSubject("sg"), context: TestStore.admin)
        for _ in 0..<40 { _ = try store.read(id, fields: [.name], context: TestStore.admin) }
        switch backend {
        case .sqlite:
            let segments = try FileManager.default.contentsOfDirectory(atPath: test.directory + "/audit").filter { $0.hasSuffix(".jsonl") }
            #expect(segments.count > 3)
            // 42 entries, and one segment-end entry closing each segment but the last.
            #expect(try store.verifyAuditLog().verifiedEntries == 42 + segments.count - 1)
        case .postgres:
            // 42 entries, one row each, in one chain: no segment-end entries.
            let stored = try rows(test)
            #expect(stored.map(\.sequence) == Array(1...42))
            #expect(stored.allSatisfy { $0.line.last == UInt8(ascii: "\n") && $0.line.dropLast().firstIndex(of: UInt8(ascii: "\n")) == nil })
            let verification = try store.verifyAuditLog()
            #expect(verification.isIntact && verification.verifiedEntries == 42)
        }
    }
}
