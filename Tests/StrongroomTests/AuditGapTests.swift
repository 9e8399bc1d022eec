import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Testing

@Suite("Audit gaps: a log whose end does not match its signed head is refused until acknowledged; readers show only what verifies")
struct AuditGapTests {
    /// The first subject of `AuditTests.populated` (9 entries, head at 9, store closed).
    let subject = SubjectID(rawValue: 1)

    /// The log's entries as lines (without newlines, preallocated zeros left out): the folder store's
    /// only segment, or the table's rows.
    func entryLines(_ test: TestStore) throws -> [[UInt8]] {
        switch test.backend {
        case .sqlite:
            var bytes = try AppendOnlyFile.readAll(path: test.directory + "/audit/00000001.jsonl")
            while bytes.last == 0 { bytes.removeLast() }
            return bytes.split(separator: UInt8(ascii: "\n")).map(Array.init)
        case .postgres:
            return try test.database(.data).rows("SELECT line FROM audit_log ORDER BY sequence") { Array(($0.blob(0) ?? []).dropLast()) }
        }
    }

    /// Cuts the log to its first `keeping` entries, as anyone who can write the segment or the table can.
    func cut(_ test: TestStore, keeping: Int) throws {
        switch test.backend {
        case .sqlite:
            let kept = try entryLines(test).prefix(keeping)
            try Data(kept.flatMap { $0 + [UInt8(ascii: "\n")] }).write(to: URL(fileURLWithPath: test.directory + "/audit/00000001.jsonl"))
        case .postgres:
            let raw = try test.database(.data)
            try raw.run("DELETE FROM audit_log WHERE sequence > ?", [.integer(Int64(keeping))])
            #expect(raw.changes > 0)
        }
        #expect(try entryLines(test).count == keeping)
    }

    /// The saved head row (sequence, entry MAC, time, head MAC), or nil.
    func headRow(_ test: TestStore) throws -> [SQLValue]? {
        try test.database(.keys).firstRow("SELECT sequence, entry_mac, time, head_mac FROM audit_head WHERE id = 1") { row in
            [.integer(row.int64(0)), .blob(row.blob(1) ?? []), .integer(row.int64(2)), .blob(row.blob(3) ?? [])]
        }
    }

    /// Puts a saved head row back in place of whatever is saved.
    func restoreHead(_ row: [SQLValue], in test: TestStore) throws {
        let keys = try test.database(.keys)
        try keys.run("DELETE FROM audit_head")
        try keys.run("INSERT INTO audit_head (id, sequence, entry_mac, time, head_mac) VALUES (1, ?, ?, ?, ?)", row)
    }

    /// Expects `body` to fail closed with exactly `gap`.
    func expectGap(_ gap: AuditGap, _ comment: Comment? = nil, _ body: () throws -> Void) {
        #expect(comment) { try body() } throws: { error in
            guard case StoreError.auditGap(let found) = error else { return false }
            return found == gap
        }
    }

    /// Expects a reader to refuse the log, naming the first bad entry.
    func expectRefused(_ body: () throws -> Void, comment: Comment? = nil,
                       matching problem: (AuditVerification.Problem) -> Bool) {
        #expect(comment) { try body() } throws: { error in
            guard case StoreError.auditLogUnverified(let found) = error else { return false }
            return problem(found)
        }
    }

    /// Reads subject 1 four times in a child process: each read must fail with an audit gap
    /// (`expectGap`), or return.
    static func readInChild(backend: String, location: String, key: String, expectGap: Bool) throws {
        let place: StoreLocation = backend == TestBackend.sqlite.rawValue ? .directory(location) : .postgres(url: location, keysURL: nil)
        let store = try Store.open(at: place, keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: key)!))
        for _ in 0..<4 {
            do {
                _ = try store.read(SubjectID(rawValue: 1), fields: [.name], context: AccessContext(actor: "child", purpose: .admin))
                if expectGap { throw ChildFailure(description: "a read returned plaintext on a log with a gap") }
            } catch StoreError.auditGap where expectGap {}
        }
    }

    /// Runs `readInChild` in a child process.
    func readInChild(_ test: TestStore, expectGap: Bool) async {
        await #expect(processExitsWith: .success) {
            [backend = test.backend.rawValue as String, location = test.locationText as String,
             key = String(decoding: test.key.base64EncodedBytes(), as: UTF8.self) as String, expectGap = expectGap as Bool] in
            try AuditGapTests.readInChild(backend: backend, location: location, key: key, expectGap: expectGap)
        }
    }

    @Test("a cut tail stays refused, in every store and process, until acknowledged; then reads work and verify still reports the gap",
          arguments: TestBackend.all)
    func cutThenUse(backend: TestBackend) async throws {
        let test = try AuditTests().populated(backend)
        defer { test.cleanUp() }
        try cut(test, keeping: 6)
        let gap = AuditGap(kind: .cut, expected: 9, found: 6)
        // The store that wrote the entries, another instance, and another process: no plaintext, no write.
        let second = try test.reopen()
        for store in [test.store, second] {
            for _ in 0..<4 { expectGap(gap) { _ = try store.read(subject, fields: [.name], context: TestStore.admin) } }
            expectGap(gap) { _ = try store.create(sampleSubject("gap"), context: TestStore.admin) }
        }
        await readInChild(test, expectGap: true)
        #expect(try test.reopen().count() == 4)
        #expect(try entryLines(test).count == 6, "nothing chained onto the cut log")
        for store in [test.store, try test.reopen()] {
            #expect(try store.verifyAuditLog().problem == .missingFromEnd(expected: 7, headSequence: 9))
        }

        // The operator's way on: recorded, and everything works again.
        #expect(try second.acknowledgeAuditGap(reason: "incident 42: segment cut", context: TestStore.admin) == gap)
        for store in [test.store, second] {
            for _ in 0..<4 { _ = try store.read(subject, fields: [.name], context: TestStore.admin) }
        }
        await readInChild(test, expectGap: false)
        #expect(throws: StoreError.self) { try second.acknowledgeAuditGap(reason: "again", context: TestStore.admin) }

        // Reported for ever: after more reads, closes and reopenings, in every store.
        test.store.close()
        second.close()
        let reopened = try test.reopen()
        _ = try reopened.read(subject, fields: [.name], context: TestStore.admin)
        for store in [reopened, try test.reopen()] {
            let verification = try store.verifyAuditLog()
            #expect(verification.problem == nil)
            #expect(!verification.isIntact && verification.isIntactExceptAcknowledgedGaps)
            #expect(verification.verifiedEntries == 6 + 1 + 8 + 4 + 1)
            let acknowledged = try #require(verification.acknowledgedGaps.first)
            #expect(verification.acknowledgedGaps.count == 1)
            #expect(acknowledged.gap == gap && acknowledged.sequence == 7)
            #expect(acknowledged.actor == "test-admin" && acknowledged.reason == "incident 42: segment cut")
        }
        // The acknowledgement is an entry like any other, shown by the readers.
        var actions: [String] = []
        try reopened.auditEntries { entry, _ in actions.append(entry.action) }
        #expect(actions.filter { $0 == "acknowledge-gap" }.count == 1)
    }

    @Test("a deleted head, with or without a cut tail, is refused by writers and by verify, and never re-created by a writer",
          arguments: TestBackend.all, [false, true])
    func headDeleted(backend: TestBackend, alsoCut: Bool) async throws {
        let test = try AuditTests().populated(backend)
        defer { test.cleanUp() }
        if alsoCut { try cut(test, keeping: 6) }
        try test.database(.keys).run("DELETE FROM audit_head")
        let last: UInt64 = alsoCut ? 6 : 9
        let gap = AuditGap(kind: .headMissing, expected: 0, found: last)
        let store = try test.reopen()
        #expect(try store.verifyAuditLog().problem == .missingHead(lastSequence: last))
        for _ in 0..<4 { expectGap(gap) { _ = try store.read(subject, fields: [.name], context: TestStore.admin) } }
        await readInChild(test, expectGap: true)
        expectRefused({ try store.auditEntries { _, _ in } }, matching: { $0 == .missingHead(lastSequence: last) })
        #expect(try headRow(test) == nil, "no writer re-created it")

        #expect(try store.acknowledgeAuditGap(reason: "head deleted", context: TestStore.admin) == gap)
        _ = try store.read(subject, fields: [.name], context: TestStore.admin)
        store.close()
        let verification = try test.reopen().verifyAuditLog()
        #expect(verification.problem == nil && verification.acknowledgedGaps.map(\.gap) == [gap])
        #expect(verification.headSequence == last + 2)
    }

    @Test("a head deleted under a writer that has the log open is not re-created: its next appends check the end and refuse",
          arguments: TestBackend.all)
    func headDeletedUnderLiveWriter(backend: TestBackend) throws {
        let test = try AuditTests().populated(backend)
        defer { test.cleanUp() }
        let live = try test.reopen()
        _ = try live.read(subject, fields: [.name], context: TestStore.admin)
        try test.database(.keys).run("DELETE FROM audit_head")
        // The next head save (due a second after the last) finds it gone; the append after refuses.
        Thread.sleep(forTimeInterval: 1.2)
        var refused: AuditGap?
        for _ in 0..<3 {
            do { _ = try live.read(subject, fields: [.name], context: TestStore.admin) } catch {
                guard case .auditGap(let gap) = error else { throw error }
                refused = gap
                break
            }
        }
        #expect(refused?.kind == .headMissing)
        #expect(try headRow(test) == nil)
        #expect(try test.reopen().verifyAuditLog().problem == .missingHead(lastSequence: refused?.found ?? 0))
    }

    @Test("a head rolled back to an older one hides no cut below it, and no end rewritten after an acknowledged gap",
          arguments: TestBackend.all)
    func headRolledBack(backend: TestBackend) throws {
        let test = try AuditTests().populated(backend)
        defer { test.cleanUp() }
        let oldHead = try #require(try headRow(test))
        do {
            let store = try test.reopen()
            for _ in 0..<4 { _ = try store.read(subject, fields: [.name], context: TestStore.admin) }
            store.close()
        }
        // Cut below the old head and put the old head back: still a gap.
        try cut(test, keeping: 7)
        try restoreHead(oldHead, in: test)
        let store = try test.reopen()
        expectGap(AuditGap(kind: .cut, expected: 9, found: 7)) { _ = try store.read(subject, fields: [.name], context: TestStore.admin) }
        #expect(try store.verifyAuditLog().problem == .missingFromEnd(expected: 8, headSequence: 9))

        // Acknowledged, the log goes on past entry 9 again, with other entries: the old head names
        // an entry 9 that is no longer there, so putting it back is a rewritten end.
        try store.acknowledgeAuditGap(reason: "rolled back", context: TestStore.admin)
        for _ in 0..<3 { _ = try store.read(subject, fields: [.name], context: TestStore.admin) }
        store.close()
        try restoreHead(oldHead, in: test)
        let reopened = try test.reopen()
        expectGap(AuditGap(kind: .rewritten, expected: 9, found: 11)) {
            _ = try reopened.read(subject, fields: [.name], context: TestStore.admin)
        }
        guard case .badHead = try reopened.verifyAuditLog().problem else {
            Issue.record("expected a bad head")
            return
        }
    }

    @Test("a forged or malformed line is never shown: show, export and a subject's access_log refuse, naming the first bad entry",
          arguments: TestBackend.all, ["forged", "malformed"])
    func forgedLines(backend: TestBackend, kind: String) throws {
        let test = try AuditTests().populated(backend)
        defer { test.cleanUp() }
        let original = try entryLines(test)
        // A made-up entry about subject 1, by an actor who never read it, with a MAC made up too.
        let forged = kind == "forged"
            ? #"{"seq":5,"time":"2026-11-23T07:30:00.000000Z","action":"decrypt","actor":"mallory","purpose":"admin","subject":"1","fields":["name"],"outcome":"ok","mac":""#
                + String(repeating: "ab", count: 32) + #""}"#
            : #"{"seq":5,"subject":"1", not an entry"#
        switch backend {
        case .sqlite:
            var lines = original
            lines[4] = Array(forged.utf8)
            try Data(lines.flatMap { $0 + [UInt8(ascii: "\n")] }).write(to: URL(fileURLWithPath: test.directory + "/audit/00000001.jsonl"))
        case .postgres:
            try test.database(.data).run("UPDATE audit_log SET line = ? WHERE sequence = 5", [.blob(Array((forged + "\n").utf8))])
        }
        let place = backend == .sqlite ? "00000001.jsonl" : "audit_log"
        let isFifthEntry = { (problem: AuditVerification.Problem) -> Bool in
            guard case .badEntry(5, place, 5, _) = problem else { return false }
            return true
        }
        let store = try test.reopen()
        var shown = 0
        expectRefused({ try store.auditEntries(AuditFilter(subject: subject)) { _, _ in shown += 1 } }, matching: isFifthEntry)
        expectRefused({ try store.auditEntries { _, _ in shown += 1 } }, matching: isFifthEntry)
        expectRefused({ _ = try store.export(subject, context: TestStore.admin) }, matching: isFifthEntry)
        #expect(shown == 0, "nothing shown from a log that does not verify")

        // Put right (the refused export's own decrypts were audited meanwhile), the same store
        // shows the entries again, the genuine ones only.
        switch backend {
        case .sqlite:
            var lines = try entryLines(test)
            #expect(lines.count > original.count, "the export's decrypts were audited")
            lines[4] = original[4]
            try Data(lines.flatMap { $0 + [UInt8(ascii: "\n")] }).write(to: URL(fileURLWithPath: test.directory + "/audit/00000001.jsonl"))
        case .postgres:
            try test.database(.data).run("UPDATE audit_log SET line = ? WHERE sequence = 5", [.blob(original[4] + [UInt8(ascii: "\n")])])
        }
        let export = try store.export(subject, context: TestStore.admin)
        #expect(!export.accessLog.isEmpty && !export.accessLog.contains { $0.actor == "mallory" })
        try store.auditEntries(AuditFilter(subject: subject)) { entry, _ in #expect(entry.actor == "test-admin") }
    }

    @Test("a new store's head is saved with its first entry")
    func headOfNewStore() throws {
        for backend in TestBackend.all {
            let test = try TestStore(backend)
            defer { test.cleanUp() }
            #expect(try headRow(test)?.first == .integer(1), "\(backend)")
            #expect(try test.store.verifyAuditLog().isIntact)
        }
    }

    /// Appends five entries, waits two seconds without appending, and is killed (SIGKILL), its store never closed.
    static func readThenIdleAndDie(backend: String, location: String, key: String) throws {
        let place: StoreLocation = backend == TestBackend.sqlite.rawValue ? .directory(location) : .postgres(url: location, keysURL: nil)
        let store = try Store.open(at: place, keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: key)!))
        for _ in 0..<5 {
            _ = try store.read(SubjectID(rawValue: 1), fields: [.name], context: AccessContext(actor: "idle", purpose: .admin))
        }
        Thread.sleep(forTimeInterval: 2)
        _ = withExtendedLifetime(store) { kill(getpid(), SIGKILL) }
    }

    @Test("an idle writer's last entries are signed within a second: killed after 2 s of idling, its cut tail is caught",
          arguments: TestBackend.all)
    func idleHead(backend: TestBackend) async throws {
        let test = try AuditTests().populated(backend)
        defer { test.cleanUp() }
        await #expect(processExitsWith: .signal(SIGKILL)) {
            [backend = backend.rawValue as String, location = test.locationText as String,
             key = String(decoding: test.key.base64EncodedBytes(), as: UTF8.self) as String] in
            try AuditGapTests.readThenIdleAndDie(backend: backend, location: location, key: key)
        }
        #expect(try headRow(test)?.first == .integer(14), "the head covers the burst's last entry")
        try cut(test, keeping: 12)
        let store = try test.reopen()
        expectGap(AuditGap(kind: .cut, expected: 14, found: 12)) { _ = try store.read(subject, fields: [.name], context: TestStore.admin) }
        #expect(try store.verifyAuditLog().problem == .missingFromEnd(expected: 13, headSequence: 14))
    }

    @Test("the head's timer keeps no dropped store alive")
    func timerHoldsNoStore() throws {
        let test = try AuditTests().populated(.sqlite)
        defer { test.cleanUp() }
        weak var dropped: Store?
        do {
            let store = try test.reopen()
            // Two reads: the second's head is left to the timer.
            for _ in 0..<2 { _ = try store.read(subject, fields: [.name], context: TestStore.admin) }
            dropped = store
        }
        #expect(dropped == nil)
        // Dropping saved the head; the timer, firing later, finds nothing to do.
        Thread.sleep(forTimeInterval: 1.3)
        #expect(try headRow(test)?.first == .integer(11))
        #expect(try test.reopen().verifyAuditLog().isIntact)
    }
}
