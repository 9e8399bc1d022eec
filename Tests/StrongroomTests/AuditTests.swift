import Foundation
@testable import Strongroom
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
            // The hook's own error, kept as its value.
            if case StoreError.auditHookFailed(hook: "RecordingHook", let cause) = error { return cause is RecordingHook.Refused }
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
                try raw.transaction { () throws(DatabaseError) in
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
            try raw.transaction { () throws(DatabaseError) in
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

    @Test("a batch larger than the kept line buffer, then single appends: every line whole, numbered in decimal across 9→10, 99→100 and 999→1000, the chain verifies after a reopen", arguments: TestBackend.all)
    func batchThenSingles(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("bt"), context: TestStore.admin)
        let before = try test.store.verifyAuditLog().verifiedEntries
        // One append of 1,000 entries (about 250 KB of lines: a buffer that is not kept), then single ones.
        try test.store.audit((0..<1_000).map { _ in AuditEvent(.decrypt, TestStore.admin, subject: id, fields: [.name], detail: "batch") })
        for _ in 0..<5 { _ = try test.store.read(id, fields: [.name], context: TestStore.admin) }
        let reopened = try test.reopen()
        for _ in 0..<5 { _ = try reopened.read(id, fields: [.name], context: TestStore.admin) }
        let verification = try reopened.verifyAuditLog()
        #expect(verification.isIntact && verification.verifiedEntries == before + 1_010)
        var entries: [AuditEntry] = []
        try reopened.auditEntries { entry, _ in entries.append(entry) }
        #expect(entries.map(\.seq) == Array(1...UInt64(entries.count)), "each line's number, read back as JSON, is its place")
        #expect(entries.last?.detail == nil && entries[before].detail == "batch")
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
            // A closed segment was cut to its entries when the next one started: no preallocated zeros.
            for name in segments.sorted().dropLast() {
                let bytes = try AppendOnlyFile.readAll(path: test.directory + "/audit/" + name)
                #expect(bytes.last == UInt8(ascii: "\n") && !bytes.contains(0), "\(name)")
            }
        case .postgres:
            // 42 entries, one row each, in one chain: no segment-end entries.
            let stored = try rows(test)
            #expect(stored.map(\.sequence) == Array(1...42))
            #expect(stored.allSatisfy { $0.line.last == UInt8(ascii: "\n") && $0.line.dropLast().firstIndex(of: UInt8(ascii: "\n")) == nil })
            let verification = try store.verifyAuditLog()
            #expect(verification.isIntact && verification.verifiedEntries == 42)
        }
    }

    // MARK: The mapped log under crashes and concurrent processes (folder stores only: a PostgreSQL
    // store's log is a table, whose rows the server writes whole).

    @Test("a process killed with SIGKILL while appending loses no entry it returned plaintext for; the chain verifies and goes on",
          arguments: [5, 20, 45, 80, 130, 190], [true, false])
    func killedWhileAppending(killAfterMilliseconds: Int, parentKeepsLogOpen: Bool) async throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        // With the parent's log open, the shared state stays trusted and the victim's death is found by
        // its in-progress marker; without, the last process out leaves the files, and the next one in
        // rebuilds from them.
        let parent = parentKeepsLogOpen ? try folder.open() : nil
        if let parent { _ = try parent.read(folder.subject, fields: [.name], context: TestStore.admin) }
        let victim = AuditChild(folder, actor: "victim", reads: .max, parties: 2, killAfterMilliseconds: killAfterMilliseconds)
        let survivor = AuditChild(folder, actor: "survivor", reads: 300, parties: 2)
        // The parent reads too, while the children run: the tasks return how many reads returned.
        let parentReads = await withTaskGroup(of: Int.self) { group in
            group.addTask { await victim.spawn(); return 0 }
            group.addTask { await survivor.spawn(); return 0 }
            if let parent { group.addTask { AuditTests.reads(200, of: folder.subject, in: parent) } }
            return await group.reduce(0, +)
        }
        let returned = try victim.returnedReads()
        do {
            let store = try folder.open()
            // Read before any process appends again: intact, or (killed inside a copy, with no other
            // process appending since) a torn last line, as a `write` cut short used to leave.
            let before = try store.verifyAuditLog()
            if case .tornLastLine = before.problem {} else {
                #expect(before.isIntact, "\(String(describing: before.problem))")
            }
            // The next append takes over from the dead process: the chain goes on.
            _ = try store.read(folder.subject, fields: [.name], context: TestStore.admin)
            let verification = try store.verifyAuditLog()
            #expect(verification.isIntact, "\(String(describing: verification.problem))")
            let counts = try entryCounts(store)
            // Every read whose plaintext came back has its entry; at most the one the kill cut short more.
            #expect((returned...(returned + 1)).contains(counts["victim", default: 0]), "victim: \(returned) returned, \(counts)")
            #expect(counts["survivor"] == 300)
            #expect(counts["test-admin", default: 0] == 2 + (parentKeepsLogOpen ? 1 + parentReads : 0))
            #expect(verification.verifiedEntries == counts.values.reduce(0, +))
        }
        withExtendedLifetime(parent) {}
    }

    @Test("processes appending at once make one chain, across segment roll-overs and in durable mode",
          arguments: [(Int64(64 << 20), AuditDurability.written), (4_000, .written), (4_000, .synced)])
    func concurrentProcesses(segmentByteLimit: Int64, durability: AuditDurability) async throws {
        let folder = try FolderStore(durability: durability)
        defer { folder.cleanUp() }
        let parent = try folder.open(segmentByteLimit: segmentByteLimit)
        let children = (0..<3).map { AuditChild(folder, actor: "writer-\($0)", reads: 120, parties: 3, segmentByteLimit: segmentByteLimit) }
        let parentReads = await withTaskGroup(of: Int.self) { group in
            for child in children { group.addTask { await child.spawn(); return 0 } }
            group.addTask { AuditTests.reads(120, of: folder.subject, in: parent) }
            return await group.reduce(0, +)
        }
        #expect(parentReads == 120)
        let verification = try parent.verifyAuditLog()
        #expect(verification.isIntact, "\(String(describing: verification.problem))")
        let counts = try entryCounts(parent)
        for child in children { #expect(counts[child.actor] == 120, "\(child.actor): \(counts)") }
        #expect(counts["test-admin"] == 1 + 120)
        #expect(verification.verifiedEntries == counts.values.reduce(0, +))
        let segments = try folder.segments()
        if segmentByteLimit < 1 << 20 {
            #expect(segments.count > 10)
            #expect(counts[AuditEvent.Action.segmentEnd.rawValue] == segments.count - 1, "one segment-end entry closing each segment but the last")
            for path in segments.dropLast() {
                let bytes = try AppendOnlyFile.readAll(path: path)
                #expect(bytes.last == UInt8(ascii: "\n") && !bytes.contains(0), "\(path)")
            }
        } else {
            #expect(segments.count == 1)
        }
    }

    @Test("a folder store's log at rest after a clean close has no trailing zeros; while open it has, and they are not entries")
    func atRest() throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        let dataOnly = { (bytes: [UInt8]) in bytes.last == UInt8(ascii: "\n") && !bytes.contains(0) }
        #expect(dataOnly(try folder.segment()))
        do {
            let second = try folder.open()
            do {
                let first = try folder.open()
                _ = try first.read(folder.subject, fields: [.name], context: TestStore.admin)
                _ = try second.read(folder.subject, fields: [.name], context: TestStore.admin)
                let open = try folder.segment()
                #expect(open.count == 1 << 20 && open.last == 0, "preallocated while appending")
                #expect(try first.verifyAuditLog().verifiedEntries == 4)
            }
            // The first one out leaves the preallocated space to the one still appending; the last one out cuts it.
            #expect(try folder.segment().count == 1 << 20)
            _ = try second.read(folder.subject, fields: [.name], context: TestStore.admin)
            #expect(try second.verifyAuditLog().verifiedEntries == 5)
        }
        try closeAndCheck(folder, entries: 5)
    }

    @Test("close() lets go of the log like dropping the store does, and the same store appends again after it")
    func closeAndAppendAgain() throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        let store = try folder.open()
        _ = try store.read(folder.subject, fields: [.name], context: TestStore.admin)
        #expect(try folder.segment().count == 1 << 20, "preallocated while appending")
        store.close()
        let closed = try folder.segment()
        #expect(closed.last == UInt8(ascii: "\n") && !closed.contains(0), "cut to its entries by close()")
        // Still usable: the next append takes the log up again and the chain goes on.
        _ = try store.read(folder.subject, fields: [.name], context: TestStore.admin)
        #expect(try store.verifyAuditLog().verifiedEntries == 4)
        store.close()
        try closeAndCheck(folder, entries: 4)
    }

    /// Opens the folder store with nothing else holding its log, checks the file is data only and the
    /// chain verifies with `entries` entries.
    func closeAndCheck(_ folder: FolderStore, entries: Int) throws {
        let bytes = try folder.segment()
        #expect(bytes.last == UInt8(ascii: "\n") && !bytes.contains(0), "\(bytes.count) bytes")
        #expect(try folder.open().verifyAuditLog().verifiedEntries == entries)
    }

    @Test("trailing zeros and a line torn by a crash are not entries: verify reports the torn line, the next append cuts both")
    func crashLeftovers() async throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        // A process killed while it had the log open, alone: its preallocated zeros stay in the file.
        let child = AuditChild(folder, actor: "crashed", reads: 5, parties: 1, killAtEnd: true)
        await child.spawn()
        var bytes = try folder.segment()
        try #require(bytes.count == 1 << 20 && bytes.last == 0, "\(bytes.count) bytes")
        do {
            let verification = try folder.open().verifyAuditLog()
            #expect(verification.isIntact && verification.verifiedEntries == 7, "\(String(describing: verification.problem))")
        }
        // What a kill in the middle of a copy leaves: part of a line (no newline yet) before the zeros.
        let end = try #require(bytes.lastIndex(of: UInt8(ascii: "\n"))) + 1
        bytes.replaceSubrange(end..<(end + 12), with: Array("{\"seq\":8,\"ti".utf8))
        try Data(bytes).write(to: URL(fileURLWithPath: folder.segmentPath))
        do {
            let verification = try folder.open().verifyAuditLog()
            guard case .tornLastLine = verification.problem else {
                Issue.record("expected a torn last line, got \(String(describing: verification.problem))")
                return
            }
            #expect(verification.verifiedEntries == 7)
        }
        do {
            let store = try folder.open()
            _ = try store.read(folder.subject, fields: [.name], context: TestStore.admin)
            let verification = try store.verifyAuditLog()
            #expect(verification.isIntact && verification.verifiedEntries == 8, "\(String(describing: verification.problem))")
            #expect(try folder.segment().count == 1 << 20, "preallocated again")
        }
        try closeAndCheck(folder, entries: 8)
    }

    @Test("a NUL byte with data after it is reported, wherever it is", arguments: ["in a line", "between lines", "before a last line"])
    func nulInData(position: String) throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        do {
            let store = try folder.open()
            for _ in 0..<3 { _ = try store.read(folder.subject, fields: [.name], context: TestStore.admin) }
        }
        var lines = try folder.segment().split(separator: UInt8(ascii: "\n")).map(Array.init)
        #expect(lines.count == 5)
        switch position {
        case "in a line": lines[2][30] = 0
        case "between lines": lines[2].insert(contentsOf: [0, 0, 0], at: 0)
        default: lines[4].insert(contentsOf: [UInt8](repeating: 0, count: 4096), at: 0)
        }
        try Data(Array(lines.joined(separator: [UInt8(ascii: "\n")])) + [UInt8(ascii: "\n")]).write(to: URL(fileURLWithPath: folder.segmentPath))
        let verification = try folder.open().verifyAuditLog()
        guard case .badEntry(let sequence, _, let line, _) = verification.problem else {
            Issue.record("expected a bad entry, got \(String(describing: verification.problem))")
            return
        }
        let expected = position == "before a last line" ? 5 : 3
        #expect(sequence == UInt64(expected) && line == expected)
    }

    @Test("an append a process died in (its in-progress marker left set) is rolled back, even with half-updated shared state")
    func inProgressMarker() throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        let store = try folder.open()
        _ = try store.read(folder.subject, fields: [.name], context: TestStore.admin)
        let tail = folder.directory + "/audit/TAIL"
        // audit/TAIL: magic, segment, committed length, allocated length, sequence, in-progress, MAC (UInt64s, native order).
        let state = try Data(contentsOf: URL(fileURLWithPath: tail))
        let committed = state.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self) }
        let dataEnd = try #require(try folder.segment().lastIndex(of: UInt8(ascii: "\n"))) + 1
        #expect(committed == UInt64(dataEnd))
        // A writer that died after copying part of a line and storing a new length and sequence number, but no MAC.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: folder.segmentPath))
        try handle.seek(toOffset: committed)
        try handle.write(contentsOf: Data("{\"seq\":4,\"time\":\"2026-".utf8))
        try handle.close()
        let control = try FileHandle(forWritingTo: URL(fileURLWithPath: tail))
        for (offset, value) in [(16, committed + 23), (32, UInt64(4)), (40, UInt64(1))] {
            try control.seek(toOffset: UInt64(offset))
            try control.write(contentsOf: withUnsafeBytes(of: value) { Data($0) })
        }
        try control.close()
        _ = try store.read(folder.subject, fields: [.name], context: TestStore.admin)
        let verification = try store.verifyAuditLog()
        #expect(verification.isIntact && verification.verifiedEntries == 4, "\(String(describing: verification.problem))")
        let after = try Data(contentsOf: URL(fileURLWithPath: tail))
        #expect(after.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 40, as: UInt64.self) } == 0, "marker cleared")
        #expect(after.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 32, as: UInt64.self) } == 4)
    }

    @Test("a process killed holding the append lock does not block the next appender, which rebuilds what it left half done",
          arguments: [true, false])
    func killedHoldingAppendLock(parentKeepsLogOpen: Bool) async throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        // With the parent's log open, its next append is told the lock's holder died; without, the
        // parent joins alone after the death and resets the lock.
        let parent = try folder.open()
        if parentKeepsLogOpen { _ = try parent.read(folder.subject, fields: [.name], context: TestStore.admin) }
        await #expect(processExitsWith: .signal(SIGKILL)) {
            [directory = folder.directory as String, key = folder.keyText as String, subject = folder.subject.rawValue as Int64] in
            try AuditTests.dieHoldingAppendLock(directory: directory, key: key, subject: subject)
        }
        guard AuditTests.returnsInTime({ _ = try? parent.read(folder.subject, fields: [.name], context: TestStore.admin) }) else {
            Issue.record("the append after the holder's death did not return")
            return
        }
        // The lock works on across processes.
        let after = AuditChild(folder, actor: "after", reads: 50, parties: 1)
        await after.spawn()
        let verification = try parent.verifyAuditLog()
        #expect(verification.isIntact, "\(String(describing: verification.problem))")
        let counts = try entryCounts(parent)
        // The subject's creation and the parent's reads; the holder's read, none of its torn line; the child's reads.
        #expect(counts["test-admin"] == 1 + (parentKeepsLogOpen ? 1 : 0) + 1, "\(counts)")
        #expect(counts["holder"] == 1 && counts["after"] == 50, "\(counts)")
        #expect(verification.verifiedEntries == counts.values.reduce(0, +))
    }

    @Test("an append lock left held by a thread that is gone, as a reboot leaves it, is reset by the first process to join")
    func staleAppendLock() throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        let tail = folder.directory + "/audit/TAIL"
        // A thread takes the lock, puts the bytes it had while held back once it has let go, and ends:
        // the file says the lock is held, by a thread that is no more, with nothing left to release it.
        let stale = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            if let block = try? MappedBlock(path: tail, byteCount: 4096), let lock = try? SharedMutex(in: block, at: 256),
               (try? lock.lock(until: LockDeadline(secondsFromNow: 30))) == false {
                let held = block.load(count: MemoryLayout<pthread_mutex_t>.size, at: 256)
                lock.unlock()
                block.store(held, at: 256)
            }
            stale.signal()
        }
        stale.wait()
        let store = try folder.open()
        guard AuditTests.returnsInTime({ _ = try? store.read(folder.subject, fields: [.name], context: TestStore.admin) }) else {
            Issue.record("the first append waits for the stale lock")
            return
        }
        let verification = try store.verifyAuditLog()
        #expect(verification.isIntact && verification.verifiedEntries == 3, "\(String(describing: verification.problem))")
    }

    /// Runs `body` on a thread of its own; false when it has not returned within a minute, so that an
    /// append blocked for good fails the test instead of hanging it.
    static func returnsInTime(_ body: @escaping @Sendable () -> Void) -> Bool {
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            body()
            done.signal()
        }
        return done.wait(timeout: .now() + 60) == .success
    }

    /// In a child process: joins the log with one read (actor "holder"), then takes the append lock
    /// itself and, holding it, does half an append without setting the in-progress marker (part of a
    /// line copied, and the committed length moved past it), and is killed. Only the lock's report
    /// that its holder died tells the next appender not to trust the state.
    static func dieHoldingAppendLock(directory: String, key: String, subject: Int64) throws {
        let store = try Store.open(at: directory, keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: key)!))
        _ = try store.read(SubjectID(rawValue: subject), fields: [.name], context: AccessContext(actor: "holder", purpose: .admin))
        // Kept open to the end: dropping it would leave the log, which waits for the append lock.
        try withExtendedLifetime(store) {
            // audit/TAIL: the append lock at byte 256; the committed length at 16 (a UInt64, native order).
            let tail = try MappedBlock(path: directory + "/audit/TAIL", byteCount: 4096)
            let lock = try SharedMutex(in: tail, at: 256)
            _ = try lock.lock(until: LockDeadline(secondsFromNow: 30))
            let committed = tail.loadUInt64(at: 16)
            let torn = Data("{\"seq\":99,\"ti".utf8)
            let segment = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/audit/00000001.jsonl"))
            try segment.seek(toOffset: committed)
            try segment.write(contentsOf: torn)
            tail.storeUInt64(committed + UInt64(torn.count), at: 16)
            kill(getpid(), SIGKILL)
        }
    }

    /// Reads `subject` up to `count` times, stopping at the first failure; how many reads returned.
    static func reads(_ count: Int, of subject: SubjectID, in store: Store) -> Int {
        for done in 0..<count where (try? store.read(subject, fields: [.name], context: TestStore.admin)) == nil { return done }
        return count
    }

    /// How many entries each actor has in `store`'s log (segment-end entries: under their action's name).
    func entryCounts(_ store: Store) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        try store.auditEntries { entry, _ in
            counts[entry.action == AuditEvent.Action.segmentEnd.rawValue ? entry.action : entry.actor, default: 0] += 1
        }
        return counts
    }
}

/// A folder store that no object of this process keeps open: made with one subject (two audit
/// entries) and dropped, so each test decides who holds its log.
struct FolderStore: Sendable {
    let directory: String
    let keyText: String
    let subject: SubjectID

    init(durability: AuditDurability = .written) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-audit-\(UUID().uuidString)").path
        let key = try SecretKey.random()
        keyText = String(decoding: key.base64EncodedBytes(), as: UTF8.self)
        var configuration = StoreConfiguration()
        configuration.auditDurability = durability
        subject = try Store.create(at: directory, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
            .create(sampleSubject("fs"), context: TestStore.admin)
    }

    /// Opens the store (its log is joined at the first append).
    func open(segmentByteLimit: Int64 = 64 << 20) throws -> Store {
        var configuration = StoreConfiguration()
        configuration.auditSegmentByteLimit = segmentByteLimit
        return try Store.open(at: directory, keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: keyText)!),
                              configuration: configuration)
    }

    /// The first segment file.
    var segmentPath: String { directory + "/audit/00000001.jsonl" }

    /// The first segment's bytes.
    func segment() throws -> [UInt8] { try AppendOnlyFile.readAll(path: segmentPath) }

    /// The segment files' paths, oldest first.
    func segments() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory + "/audit").filter { $0.hasSuffix(".jsonl") }.sorted()
            .map { directory + "/audit/" + $0 }
    }

    func cleanUp() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A child process (an exit test of this binary) reading one subject of a folder store again and
/// again, so that each read appends an audit entry. Children meet at a barrier before they start, so
/// they really append at once; each notes in a file how many of its reads returned.
struct AuditChild: Codable, Sendable {
    let directory: String
    let key: String
    let subject: Int64
    /// The actor of its entries.
    let actor: String
    let reads: Int
    /// How many children meet at the barrier.
    let parties: Int
    /// Kills itself (SIGKILL) this long after its first read returned, in the middle of whatever it is doing.
    var killAfterMilliseconds: Int?
    /// Kills itself (SIGKILL) after its reads, its log still open.
    var killAtEnd = false
    var segmentByteLimit: Int64 = 64 << 20

    init(_ folder: FolderStore, actor: String, reads: Int, parties: Int, killAfterMilliseconds: Int? = nil,
         killAtEnd: Bool = false, segmentByteLimit: Int64 = 64 << 20) {
        directory = folder.directory
        key = folder.keyText
        subject = folder.subject.rawValue
        self.actor = actor
        self.reads = reads
        self.parties = parties
        self.killAfterMilliseconds = killAfterMilliseconds
        self.killAtEnd = killAtEnd
        self.segmentByteLimit = segmentByteLimit
    }

    /// Where it counts its returned reads (8 bytes, native order) and leaves its error, if any.
    var progressFile: String { directory + "/returned-\(actor)" }
    var errorFile: String { directory + "/error-\(actor)" }

    /// Runs the child and waits for it to end as it should: killed, or exited with success.
    func spawn() async {
        let killed = killAfterMilliseconds != nil || killAtEnd
        await #expect(processExitsWith: killed ? .signal(SIGKILL) : .success, "\(actor)") { [child = self as AuditChild] in
            child.run()
        }
        if let reason = try? String(contentsOfFile: errorFile, encoding: .utf8) { Issue.record("\(actor) failed: \(reason)") }
    }

    /// How many of its reads returned plaintext.
    func returnedReads() throws -> Int {
        let data = try Data(contentsOf: URL(fileURLWithPath: progressFile))
        return Int(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }

    func run() -> Never {
        runChild(errorFile: errorFile, perform)
    }

    private func perform() throws {
        var configuration = StoreConfiguration()
        configuration.auditSegmentByteLimit = segmentByteLimit
        let store = try Store.open(at: directory, keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: key)!),
                                   configuration: configuration)
        guard FileManager.default.createFile(atPath: progressFile, contents: Data(count: 8)),
              let progress = FileHandle(forWritingAtPath: progressFile) else { throw ChildFailure(description: "cannot write \(progressFile)") }
        try meet(in: directory, prefix: "ready-", name: actor, parties: parties, within: 60)
        let context = AccessContext(actor: actor, purpose: .admin)
        var returned: UInt64 = 0
        while returned < UInt64(reads) {
            _ = try store.read(SubjectID(rawValue: subject), fields: [.name], context: context)
            returned += 1
            try progress.seek(toOffset: 0)
            try progress.write(contentsOf: withUnsafeBytes(of: returned) { Data($0) })
            // The clock starts once reads are under way (the first one also unwraps keys).
            if returned == 1, let killAfterMilliseconds {
                Thread.detachNewThread {
                    usleep(useconds_t(killAfterMilliseconds * 1000))
                    kill(getpid(), SIGKILL)
                }
            }
        }
        // Killed with the store still open: its log is not closed.
        if killAtEnd { kill(getpid(), SIGKILL) }
        withExtendedLifetime(store) {}
    }
}
