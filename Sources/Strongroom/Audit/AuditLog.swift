import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// Why the audit log could not be written or read. Operations that needed it fail closed.
public enum AuditLogError: Error, Equatable, Sendable {
    /// The log's folder or a segment file could not be written or read.
    case unavailable(FileError)
    /// The MAC of an entry could not be computed.
    case crypto(CryptoError)
    /// The last entry of the newest segment (or table) is not a well-formed, MAC'd line, so the chain
    /// cannot be continued from it; run `strongroom audit verify`.
    case unreadableTail(segment: String)
    /// Other processes kept appending first, this many times in a row (PostgreSQL stores): the
    /// operation was refused rather than left unaudited.
    case contended(attempts: Int)
}

/// When an audit entry counts as kept, before the plaintext it records is returned.
public enum AuditDurability: String, Sendable, Codable {
    /// Written to the log file with one `write` (it reaches the operating system: a killed process
    /// loses nothing; a power cut may lose the last entries).
    case written
    /// Also flushed to stable storage (`fdatasync`) before the plaintext is returned.
    case synced
}

/// The signed position of the newest audit entry, kept in the key database so that a log whose
/// last entries were cut off is caught by `audit verify`.
struct AuditHead: Equatable, Sendable {
    /// Sequence number of the newest entry covered.
    let sequence: UInt64
    /// That entry's MAC.
    let entryMAC: [UInt8]
    /// When the head was written, in microseconds since 1970 (an integer, so the MAC input is exact).
    let microseconds: Int64

    init(sequence: UInt64, entryMAC: [UInt8], time: Date) {
        self.init(sequence: sequence, entryMAC: entryMAC, microseconds: Int64(time.timeIntervalSince1970 * 1_000_000))
    }

    init(sequence: UInt64, entryMAC: [UInt8], microseconds: Int64) {
        self.sequence = sequence
        self.entryMAC = entryMAC
        self.microseconds = microseconds
    }

    /// The head's own MAC: HMAC(audit key, label || sequence || entry MAC || time in microseconds).
    func authenticationCode(_ mac: HMACSHA256) throws(CryptoError) -> [UInt8] {
        var fields: [UInt8] = []
        appendUInt64(sequence, to: &fields)
        fields.append(contentsOf: entryMAC)
        appendUInt64(UInt64(bitPattern: microseconds), to: &fields)
        return try mac.authenticationCode(for: [Array("strongroom.audit.head.v1".utf8), fields])
    }
}

/// The default audit hook: an append-only, hash-chained log of JSON lines in the store's `audit/`
/// folder, in segment files rotated by size (`00000001.jsonl`, …).
///
/// Each `record` call writes all its entries with one `write(2)` before returning, so no plaintext
/// leaves the store before its entry has reached the operating system. Several processes may share
/// a store: appends take an advisory lock on `audit/LOCK` and continue the chain from the file's
/// real tail when another process wrote since.
///
/// Thread safety: safe to call from any thread; calls are serialised.
final class AuditLog: AuditTrail {
    /// The log's folder.
    let directory: String
    private let mac: HMACSHA256
    private let genesis: [UInt8]
    private let durability: AuditDurability
    private let segmentByteLimit: Int64
    private let headKeeper: AuditHeadKeeper
    private let state: Mutex<WriterState>
    /// Bytes appended by this process so far (written under the state lock, read by syncers).
    private let appended = Atomic<UInt64>(0)
    /// How many of them are known to be on stable storage, in `.synced` mode.
    private let synced = Mutex<UInt64>(0)

    /// Where the writer stands; valid only while the file is as this process left it.
    private struct WriterState: ~Copyable {
        let lock: FileLock
        var segmentNumber: Int
        var file: AppendOnlyFile?
        var expectedSize: Int64
        var sequence: UInt64
        var previousMAC: [UInt8]
        /// Flushes the current segment from outside the lock (`.synced` mode).
        var synchronizer: FileSynchronizer?
    }

    /// Opens the log in `directory` (created if absent), continuing the chain from its tail.
    init(directory: String, mac: HMACSHA256, storeID: [UInt8], durability: AuditDurability,
         segmentByteLimit: Int64, saveHead: @escaping @Sendable (AuditHead) -> Bool) throws(AuditLogError) {
        do { try createDirectory(directory) } catch { throw .unavailable(error) }
        let genesis: [UInt8]
        do { genesis = try AuditLineFormat.genesis(mac: mac, storeID: storeID) } catch { throw .crypto(error) }
        let lock: FileLock
        do { lock = try FileLock(path: directory + "/LOCK") } catch { throw .unavailable(error) }
        self.directory = directory
        self.mac = mac
        self.genesis = genesis
        self.durability = durability
        self.segmentByteLimit = segmentByteLimit
        self.headKeeper = AuditHeadKeeper(save: saveHead)
        self.state = Mutex(WriterState(lock: lock, segmentNumber: 0, file: nil, expectedSize: -1, sequence: 0,
                                       previousMAC: genesis, synchronizer: nil))
    }

    /// The segment files of `directory`, oldest first.
    static func segmentPaths(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".jsonl") && Int($0.dropLast(6)) != nil }
            .sorted { Int($0.dropLast(6))! < Int($1.dropLast(6))! }
            .map { directory + "/" + $0 }
    }

    static func segmentName(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".jsonl"
    }

    func record(_ events: [AuditEvent]) throws {
        guard !events.isEmpty else { return }
        let (sequence, entryMAC, written, synchronizer) = try state.withLock {
            (state: inout WriterState) throws -> (UInt64, [UInt8], UInt64, FileSynchronizer?) in
            try state.lock.withExclusiveLock {
                try resynchronize(&state)
                if state.expectedSize >= segmentByteLimit {
                    // Close the full segment with a chained entry before starting the next: another
                    // process appending to the old segment then sees its size change and resynchronises.
                    let closing = AuditEvent(action: .segmentEnd, actor: "strongroom", purpose: "audit", subject: nil,
                                             detail: "continues in \(AuditLog.segmentName(state.segmentNumber + 1))")
                    try append([closing], to: &state)
                    // In durable mode the closed segment is flushed before the next one starts, so a
                    // pending sync only ever needs the current segment.
                    if durability == .synced {
                        do throws(FileError) { try state.synchronizer?.synchronize() } catch { throw AuditLogError.unavailable(error) }
                    }
                    try openSegment(state.segmentNumber + 1, into: &state)
                }
                try append(events, to: &state)
            }
            return (state.sequence, state.previousMAC, appended.load(ordering: .acquiring), state.synchronizer)
        }
        if durability == .synced, let synchronizer { try synchronize(through: written, with: synchronizer) }
        headKeeper.appended(sequence: sequence, entryMAC: entryMAC)
    }

    /// Chains `events` onto the log and writes them with one `write`.
    private func append(_ events: [AuditEvent], to state: inout WriterState) throws {
        var output: [UInt8] = []
        output.reserveCapacity(events.count * 256)
        let (sequence, previous) = try AuditLineFormat.chain(events, after: state.sequence, previous: state.previousMAC,
                                                             mac: mac, into: &output)
        do throws(FileError) {
            try state.file!.append(output)
        } catch {
            // The write may have left part of a line; the next append resynchronises from the real tail.
            state.expectedSize = -1
            throw AuditLogError.unavailable(error)
        }
        state.expectedSize += Int64(output.count)
        appended.add(UInt64(output.count), ordering: .releasing)
        state.sequence = sequence
        state.previousMAC = previous
    }

    /// Group commit (`.synced` mode): returns once the first `target` bytes this process appended are
    /// on stable storage. Callers queue on one lock; each `fdatasync` covers every line appended before
    /// it started, so concurrent readers share flushes instead of paying one each.
    private func synchronize(through target: UInt64, with synchronizer: FileSynchronizer) throws {
        try synced.withLock { (flushed: inout UInt64) throws in
            guard flushed < target else { return }
            let covered = appended.load(ordering: .acquiring)
            do throws(FileError) { try synchronizer.synchronize() } catch { throw AuditLogError.unavailable(error) }
            flushed = covered
        }
    }

    func flushHead() {
        headKeeper.flush()
    }

    func forEachLine(_ body: (_ place: String, _ line: Int, AuditStoredLine) throws -> Void) throws {
        let segments = AuditLog.segmentPaths(in: directory)
        for (segmentIndex, path) in segments.enumerated() {
            let name = URL(fileURLWithPath: path).lastPathComponent
            let bytes = try AppendOnlyFile.readAll(path: path)
            var lineStart = 0
            var lineNumber = 0
            while lineStart < bytes.count {
                lineNumber += 1
                guard let newline = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) else {
                    try body(name, lineNumber, .torn(atEnd: segmentIndex == segments.count - 1))
                    break
                }
                try body(name, lineNumber, .complete(bytes[lineStart..<newline]))
                lineStart = newline + 1
            }
        }
    }

    /// Makes the writer state match the files: on first use, after an error, when another process
    /// wrote since this one last did, or when the segment was deleted or replaced under it (then the
    /// append fails unless the folder can take a new segment).
    private func resynchronize(_ state: inout WriterState) throws {
        if let file = state.file, state.expectedSize >= 0 {
            // Another process that appended changed the size; one that started a new segment first
            // closed this one with an entry (so its size changed too); a segment deleted or replaced
            // under this process has no link left.
            let size: Int64?
            do { size = try file.sizeIfStillLinked() } catch { throw AuditLogError.unavailable(error) }
            if size == state.expectedSize { return }
        }
        let segments = AuditLog.segmentPaths(in: directory)
        guard let newest = segments.last else {
            try openSegment(1, into: &state)
            state.sequence = 0
            state.previousMAC = genesis
            return
        }
        // The newest segment may be empty (just started): the chain then continues from an older one.
        var tail: (sequence: UInt64, mac: [UInt8])?
        for path in segments.reversed() {
            tail = try lastEntry(of: path)
            if tail != nil { break }
        }
        state.sequence = tail?.sequence ?? 0
        state.previousMAC = tail?.mac ?? genesis
        try openSegment(AuditLog.segmentNumber(of: newest), into: &state)
    }

    /// The number in a segment file's name.
    static func segmentNumber(of path: String) -> Int {
        Int(URL(fileURLWithPath: path).lastPathComponent.dropLast(6)) ?? 0
    }

    /// The sequence number and MAC of the last complete entry of `path`, after cutting off a torn
    /// last line (a write cut short by a crash: its plaintext was never returned). Nil for an empty file.
    private func lastEntry(of path: String) throws -> (sequence: UInt64, mac: [UInt8])? {
        let bytes: [UInt8]
        do { bytes = try AppendOnlyFile.readAll(path: path) } catch { throw AuditLogError.unavailable(error) }
        guard !bytes.isEmpty else { return nil }
        var end = bytes.count
        if bytes[end - 1] != UInt8(ascii: "\n") {
            end = (bytes.lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
            do { try AppendOnlyFile(path: path).truncate(to: Int64(end)) } catch { throw AuditLogError.unavailable(error) }
            if end == 0 { return nil }
        }
        let start = (bytes[..<(end - 1)].lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
        guard let entry = AuditLineFormat.split(bytes[start..<(end - 1)]) else {
            throw AuditLogError.unreadableTail(segment: path)
        }
        return (entry.sequence, entry.mac)
    }

    private func openSegment(_ number: Int, into state: inout WriterState) throws {
        let path = directory + "/" + AuditLog.segmentName(number)
        do {
            let file = try AppendOnlyFile(path: path)
            state.expectedSize = try file.size()
            state.synchronizer = durability == .synced ? try file.synchronizer() : nil
            state.file = file
            state.segmentNumber = number
        } catch {
            state.expectedSize = -1
            throw AuditLogError.unavailable(error)
        }
    }
}
