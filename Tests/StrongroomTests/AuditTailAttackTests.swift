import Foundation
@testable import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Testing

/// Attacks on a folder store's audit log by someone who can write the store's folder, made while
/// store instances have the log open (joined, with the shared writer state in `audit/TAIL` trusted):
/// each cuts or rewrites the end of the log below its signed head. The store is then used as usual,
/// and the log must never verify intact again: the instances refuse to append (no plaintext) within
/// the head's window of a second, as a new instance and another process do, and `audit verify`
/// reports the damage; once the gap is acknowledged, everything works again and verify lists it.
@Suite("Folder audit log: a tail cut under open instances is refused and reported, never papered over", .serialized)
struct AuditTailAttackTests {
    /// How someone who can write the store's folder cuts or rewrites the end of the log.
    enum Attack: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// The newest segment cut short: its size no longer matches the shared state.
        case truncate
        /// Cut short, then extended back to its size: zeros where the last entries were, the size the
        /// shared state expects.
        case zeroTheTail = "zero the tail"
        /// The newest segment deleted (the log then ends with the segment before it).
        case deleteNewestSegment = "delete the newest segment"
        /// An older copy of the newest segment renamed over it.
        case replaceWithOlderCopy = "replace with an older copy"
        /// The same, after a hard link elsewhere kept the live file linked: the writers' mappings still
        /// reach a file, one the log's readers never read.
        case replaceKeepingALink = "replace, keeping a hard link"
        /// The last entries zeroed in place and `audit/TAIL` set back to the last entry kept: writers
        /// continue the chain from there, refilling the cut sequence numbers with entries of their own.
        case rewindTailState = "rewind audit/TAIL"
        /// The newest segment cut, and `audit/TAIL` pointed at a next segment, empty, chained from the last
        /// entry kept: writers map that one alone, whose size matches, and refill the cut numbers there.
        case redirectTailState = "point audit/TAIL at a new segment"
        /// The head in keys.sqlite put back to an older genuine one, and the log cut below it.
        case rollHeadBackAndCut = "roll the head back, cut below it"

        var testDescription: String { rawValue }
    }

    let subject = SubjectID(rawValue: 1)
    let gaps = AuditGapTests()

    /// The store of `test`, opened again with segments of `segmentByteLimit` bytes.
    func open(_ test: TestStore, segmentByteLimit: Int64 = 64 << 20) throws -> Store {
        var configuration = StoreConfiguration()
        configuration.auditSegmentByteLimit = segmentByteLimit
        return try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
    }

    func read(_ store: Store) throws {
        _ = try store.read(subject, fields: [.name], context: TestStore.admin)
    }

    /// The newest segment's path and its bytes up to its preallocated zeros.
    func newestSegment(_ test: TestStore) throws -> (path: String, bytes: [UInt8]) {
        let path = try #require(AuditLog.segmentPaths(in: test.directory + "/audit").last)
        var bytes = try AppendOnlyFile.readAll(path: path)
        while bytes.last == 0 { bytes.removeLast() }
        return (path, bytes)
    }

    /// Where the line of entry `sequence` ends (past its newline) in `bytes`, and its MAC.
    func endOfEntry(_ sequence: UInt64, in bytes: [UInt8]) throws -> (offset: Int, mac: [UInt8]) {
        var start = 0
        while let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
            if let entry = AuditLineFormat.split(bytes[start..<newline]), entry.sequence == sequence { return (newline + 1, entry.mac) }
            start = newline + 1
        }
        throw ChildFailure(description: "entry \(sequence) is not in the newest segment")
    }

    /// The signed head's sequence number.
    func headSequence(_ test: TestStore) throws -> UInt64 {
        guard case .integer(let sequence) = try #require(try gaps.headRow(test)).first else { throw ChildFailure(description: "no head") }
        return UInt64(sequence)
    }

    /// Writes `bytes` at `offset` of the file at `path`, in place.
    func overwrite(_ path: String, at offset: Int, with bytes: [UInt8]) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: Data(bytes))
    }

    /// Puts `bytes` in place of the file at `path` as a new file (a rename, as `cp` and `mv` do).
    func replace(_ path: String, with bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path + ".new"))
        #expect(rename(path + ".new", path) == 0)
    }

    /// Makes `attack` on the log of `test`, whose signed head is its last entry; `olderCopy` is the
    /// newest segment as it was when the log held `olderHead`'s entry, the head then saved. Returns
    /// the head sequence number the writers must find lost.
    func perform(_ attack: Attack, on test: TestStore, olderCopy: [UInt8], olderHead: [SQLValue]) throws -> UInt64 {
        let (path, bytes) = try newestSegment(test)
        let signed = try headSequence(test)
        #expect(try endOfEntry(signed, in: bytes).offset == bytes.count, "the head names the last entry")
        guard case .integer(let older) = olderHead.first else { throw ChildFailure(description: "no older head") }
        /// Where the entry of the older head ends in the newest segment, and its MAC.
        func kept() throws -> (offset: Int, mac: [UInt8]) { try endOfEntry(UInt64(older), in: bytes) }
        switch attack {
        case .truncate:
            try FileHandle(forWritingTo: URL(fileURLWithPath: path)).truncate(atOffset: UInt64(try kept().offset))
        case .zeroTheTail:
            let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: UInt64(try kept().offset))
            try handle.truncate(atOffset: size)
            try handle.close()
        case .deleteNewestSegment:
            #expect(try AuditLog.listSegments(in: test.directory + "/audit").count > 1)
            try FileManager.default.removeItem(atPath: path)
        case .replaceWithOlderCopy:
            try replace(path, with: olderCopy)
        case .replaceKeepingALink:
            try FileManager.default.linkItem(atPath: path, toPath: test.directory + "/kept.jsonl")
            try replace(path, with: olderCopy)
        case .rewindTailState:
            // audit/TAIL: magic, segment, committed length, allocated length, sequence, in-progress, MAC.
            let end = try kept()
            try overwrite(path, at: end.offset, with: [UInt8](repeating: 0, count: bytes.count - end.offset))
            let tail = test.directory + "/audit/TAIL"
            try overwrite(tail, at: 16, with: withUnsafeBytes(of: UInt64(end.offset)) { Array($0) })
            try overwrite(tail, at: 32, with: withUnsafeBytes(of: UInt64(older)) { Array($0) })
            try overwrite(tail, at: 48, with: end.mac)
        case .redirectTailState:
            let end = try kept()
            try FileHandle(forWritingTo: URL(fileURLWithPath: path)).truncate(atOffset: UInt64(end.offset))
            let tail = test.directory + "/audit/TAIL"
            let fields: [(Int, UInt64)] = [(8, UInt64(AuditLog.segmentNumber(of: path) + 1)), (16, 0), (24, 0), (32, UInt64(older))]
            for (offset, value) in fields { try overwrite(tail, at: offset, with: withUnsafeBytes(of: value) { Array($0) }) }
            try overwrite(tail, at: 48, with: end.mac)
        case .rollHeadBackAndCut:
            let below = try endOfEntry(UInt64(older) - 1, in: bytes)
            try FileHandle(forWritingTo: URL(fileURLWithPath: path)).truncate(atOffset: UInt64(below.offset))
            try gaps.restoreHead(olderHead, in: test)
            return UInt64(older)
        }
        return signed
    }

    @Test("a tail cut or rewritten under two open instances: they refuse within the head's second, as a new instance and another process do, verify reports it; acknowledged, all works and verify lists the gap",
          arguments: Attack.allCases)
    func attackUnderOpenInstances(_ attack: Attack) async throws {
        let test = try AuditTests().populated(.sqlite)
        defer { test.cleanUp() }
        // Small segments for the deletion: the log spans several, and the newest holds the head's entry.
        let limit: Int64 = attack == .deleteNewestSegment ? 1_000 : 64 << 20
        let first = try open(test, segmentByteLimit: limit)
        let second = try open(test, segmentByteLimit: limit)
        defer { first.close(); second.close() }
        // Both join the log; each keeper's first save is at once: the head names entry 11.
        for store in [first, second] { try read(store) }
        let olderHead = try #require(try gaps.headRow(test))
        let olderCopy = try newestSegment(test).bytes
        for round in 0..<6 { try read(round.isMultiple(of: 2) ? first : second) }
        for store in [first, second] { store.auditTrail.flushHead() }
        let lost = try perform(attack, on: test, olderCopy: olderCopy, olderHead: olderHead)

        // Used as usual, a lookup every 50 ms from either instance: for a second and a half, until one
        // is refused (at the next head save, about a second after the cut; 15 s at most, for a loaded
        // machine whose keeper runs late) and for half a second after. Once one is refused, none
        // returns again.
        var refusals = 0
        var returnedAfterRefusal = 0
        var firstRefusal: Date?
        let start = Date()
        var round = 0
        while Date() < firstRefusal.map({ max(start.addingTimeInterval(1.5), $0.addingTimeInterval(0.5)) }) ?? start.addingTimeInterval(15) {
            do {
                try read(round.isMultiple(of: 2) ? first : second)
                if refusals > 0 { returnedAfterRefusal += 1 }
            } catch StoreError.auditGap(let gap) {
                #expect(gap.expected == lost, "\(gap)")
                refusals += 1
                firstRefusal = firstRefusal ?? Date()
            }
            round += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(refusals > 0, "the instances went on appending after the cut")
        #expect(returnedAfterRefusal == 0)
        // After an idle second: both instances, a new one, and another process refuse.
        try await Task.sleep(for: .milliseconds(1_100))
        let fresh = try test.reopen()
        defer { fresh.close() }
        for store in [first, second, fresh, first] {
            #expect { try read(store) } throws: { error in
                guard case StoreError.auditGap(let gap) = error else { return false }
                return gap.expected == lost
            }
        }
        await gaps.readInChild(test, expectGap: true)
        let verification = try test.reopen().verifyAuditLog()
        #expect(verification.problem != nil && !verification.isIntactExceptAcknowledgedGaps, "\(String(describing: verification.problem))")

        // Second act: the gap acknowledged, lookups go on everywhere, and the log verifies but for
        // the acknowledged gap (and, where the cut left zeros inside the log, the line they are in).
        let gap = try fresh.acknowledgeAuditGap(reason: "incident: \(attack)", context: TestStore.admin)
        #expect(gap.expected == lost)
        for store in [first, second, fresh, first] { try read(store) }
        await gaps.readInChild(test, expectGap: false)
        try await Task.sleep(for: .milliseconds(1_100))
        for store in [second, first] { try read(store) }
        for store in [first, second, fresh] { store.auditTrail.flushHead() }
        let reopened = try test.reopen()
        defer { reopened.close() }
        try read(reopened)
        let after = try reopened.verifyAuditLog()
        if attack == .zeroTheTail {
            // Verification stops at the line the zeros are in, before the acknowledgement.
            guard case .badEntry = after.problem else {
                Issue.record("expected the zeros to be reported: \(String(describing: after.problem))")
                return
            }
        } else {
            #expect(after.problem == nil && after.isIntactExceptAcknowledgedGaps, "\(String(describing: after.problem))")
            #expect(after.acknowledgedGaps.map(\.gap) == [gap])
        }
    }

    /// Opens the store, reads subject 1 five times (the log joined, entries 10 to 14), says so with a
    /// file `ready` in `location`, and waits for a file `go` there (the parent rewinds audit/TAIL
    /// meanwhile). Then reads every 50 ms for 3 s: a read must be refused with an audit gap within
    /// the head's second, and none return after.
    static func appendAcrossRewind(location: String, key: String) throws {
        let store = try Store.open(at: .directory(location), keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: key)!))
        let context = AccessContext(actor: "child", purpose: .admin)
        for _ in 0..<5 { _ = try store.read(SubjectID(rawValue: 1), fields: [.name], context: context) }
        guard FileManager.default.createFile(atPath: location + "/ready", contents: nil) else {
            throw ChildFailure(description: "cannot write in \(location)")
        }
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: location + "/go") {
            guard Date() < deadline else { throw ChildFailure(description: "no go within 30 s") }
            usleep(10_000)
        }
        var refused = false
        let start = Date()
        while Date().timeIntervalSince(start) < 3 {
            do {
                _ = try store.read(SubjectID(rawValue: 1), fields: [.name], context: context)
                if refused { throw ChildFailure(description: "a read returned after a refusal") }
            } catch StoreError.auditGap {
                refused = true
            }
            usleep(50_000)
        }
        if !refused { throw ChildFailure(description: "the reads went on after audit/TAIL was rewound") }
    }

    @Test("audit/TAIL rewound under another process appending: its appends refill the cut numbers for at most a second, then it refuses; verify reports the cut; acknowledged, all works")
    func tailRewoundUnderAnotherProcess() async throws {
        let test = try AuditTests().populated(.sqlite)
        defer { test.cleanUp() }
        let olderHead = try #require(try gaps.headRow(test))
        async let child = #expect(processExitsWith: .success) {
            [location = test.directory as String, key = String(decoding: test.key.base64EncodedBytes(), as: UTF8.self) as String] in
            try AuditTailAttackTests.appendAcrossRewind(location: location, key: key)
        }
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: test.directory + "/ready"), Date() < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        // The child's timer signs its last entry within the second (15 s at most on a loaded machine).
        let signed = Date().addingTimeInterval(15)
        while try headSequence(test) != 14, Date() < signed { try await Task.sleep(for: .milliseconds(50)) }
        #expect(try headSequence(test) == 14)
        let lost = try perform(.rewindTailState, on: test, olderCopy: [], olderHead: olderHead)
        #expect(FileManager.default.createFile(atPath: test.directory + "/go", contents: nil))
        _ = await child
        let store = try test.reopen()
        defer { store.close() }
        #expect { try read(store) } throws: { error in
            guard case StoreError.auditGap(let gap) = error else { return false }
            return gap.expected == lost
        }
        #expect(try store.verifyAuditLog().problem != nil)
        // Second act: acknowledged, this process and another read again, and the log verifies but for the gap.
        let gap = try store.acknowledgeAuditGap(reason: "incident: audit/TAIL rewound", context: TestStore.admin)
        #expect(gap.expected == lost)
        try read(store)
        await gaps.readInChild(test, expectGap: false)
        try read(store)
        let after = try test.reopen().verifyAuditLog()
        #expect(after.problem == nil && after.acknowledgedGaps.map(\.gap) == [gap], "\(String(describing: after.problem))")
    }

    @Test("zeros over the last entries, found by the head save of the first append after an idle second (the line it wrote follows the zeros): refused with a gap, acknowledged, then the zeros are reported for ever")
    func zeroedTailFoundAtOnce() async throws {
        let test = try AuditTests().populated(.sqlite)
        defer { test.cleanUp() }
        let first = try open(test)
        defer { first.close() }
        for _ in 0..<3 { try read(first) }
        first.auditTrail.flushHead()
        let olderHead = try #require(try gaps.headRow(test))
        for _ in 0..<3 { try read(first) }
        first.auditTrail.flushHead()
        try await Task.sleep(for: .milliseconds(1_100))
        let lost = try perform(.zeroTheTail, on: test, olderCopy: [], olderHead: olderHead)
        // Appended after the zeros; its head save finds entry 15 gone.
        try read(first)
        let second = try open(test)
        defer { second.close() }
        for store in [first, second, first] {
            #expect { try read(store) } throws: { error in
                guard case StoreError.auditGap(let gap) = error else { return false }
                return gap == AuditGap(kind: .rewritten, expected: lost, found: lost + 1)
            }
        }
        await gaps.readInChild(test, expectGap: true)
        #expect(try second.acknowledgeAuditGap(reason: "incident: zeros", context: TestStore.admin).expected == lost)
        for store in [first, second] { try read(store) }
        await gaps.readInChild(test, expectGap: false)
        guard case .badEntry(sequence: 13, _, _, _) = try test.reopen().verifyAuditLog().problem else {
            Issue.record("expected the zeros to be reported at entry 13")
            return
        }
    }

    @Test("a malformed line inside the log is reported by verify, but does not make a writer that rebuilds its state take the end for rewritten")
    func malformedLineInsideWhileRebuilding() throws {
        let test = try AuditTests().populated(.sqlite)
        defer { test.cleanUp() }
        var lines = try gaps.entryLines(test)
        lines[4] = Array(#"{"seq":5,"subject":"1", not an entry"#.utf8)
        try Data(lines.flatMap { $0 + [UInt8(ascii: "\n")] }).write(to: URL(fileURLWithPath: test.directory + "/audit/00000001.jsonl"))
        let store = try open(test)
        defer { store.close() }
        // Entry 10's head is saved at once, entry 11's left to the timer: the head lags the end.
        for _ in 0..<2 { try read(store) }
        #expect(try headSequence(test) == 10)
        // A writer's death mid-append (its in-progress marker left set): the next append rebuilds and
        // checks that entry 11 chains from the head's entry 10.
        try overwrite(test.directory + "/audit/TAIL", at: 40, with: withUnsafeBytes(of: UInt64(1)) { Array($0) })
        for _ in 0..<3 { try read(store) }
        guard case .badEntry(sequence: 5, _, _, _) = try test.reopen().verifyAuditLog().problem else {
            Issue.record("expected the malformed line to be reported")
            return
        }
    }

    @Test("the head check finds every entry of a log spanning segments, open (zeros after its end) or closed, and nothing once this process's last entry is not where it wrote it")
    func headCheckFindsEntries() throws {
        let test = try AuditTests().populated(.sqlite)
        defer { test.cleanUp() }
        let store = try open(test, segmentByteLimit: 2_000)
        defer { store.close() }
        for _ in 0..<40 { try read(store) }
        let directory = test.directory + "/audit"
        for closed in [false, true] {
            if closed { store.close() }
            // Every entry's MAC as the files hold it, and the last one's place.
            var macs: [UInt64: [UInt8]] = [:]
            var last: AuditLog.AppendedEntry?
            for path in try AuditLog.listSegments(in: directory) {
                var bytes = try AppendOnlyFile.readAll(path: path)
                while bytes.last == 0 { bytes.removeLast() }
                var start = 0
                while let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    let entry = try #require(AuditLineFormat.split(bytes[start..<newline]))
                    macs[entry.sequence] = entry.mac
                    last = AuditLog.AppendedEntry(segment: AuditLog.segmentNumber(of: path), end: Int64(newline + 1),
                                                  sequence: entry.sequence, mac: entry.mac)
                    start = newline + 1
                }
            }
            let own = try #require(last)
            #expect(try AuditLog.listSegments(in: directory).count > 5 && own.sequence > 49, "segment-end entries too")
            for sequence in 1...own.sequence {
                #expect(try AuditLog.entryMAC(at: sequence, in: directory, own: own) == macs[sequence], "entry \(sequence)")
                #expect(try AuditLog.entryMAC(at: sequence, in: directory, own: nil) == macs[sequence], "entry \(sequence)")
            }
            #expect(try AuditLog.entryMAC(at: own.sequence + 1, in: directory, own: nil) == nil)
            let elsewhere = AuditLog.AppendedEntry(segment: own.segment, end: own.end + 1, sequence: own.sequence, mac: own.mac)
            let other = AuditLog.AppendedEntry(segment: own.segment, end: own.end, sequence: own.sequence, mac: macs[1] ?? [])
            let gone = AuditLog.AppendedEntry(segment: own.segment + 1, end: own.end, sequence: own.sequence, mac: own.mac)
            for entry in [elsewhere, other, gone] { #expect(try AuditLog.entryMAC(at: 20, in: directory, own: entry) == nil) }
        }
    }
}
