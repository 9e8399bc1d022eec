import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// The default audit hook: an append-only, hash-chained log of JSON lines in the store's `audit/`
/// folder, in segment files rotated by size (`00000001.jsonl`, …).
///
/// An append is a copy into a shared mapping of the newest segment (`MappedFile`), not a `write(2)`:
/// the entries are in the operating system's page cache before `record` returns, so no plaintext leaves
/// the store before its entry is kept, and a killed process loses none. The segment grows in
/// preallocated steps; space not yet written reads as zeros, and readers take a run of zeros at the
/// end of a segment as its end. The last process to close the log cuts the segment to its entries.
///
/// Several processes may share a store. They agree on one writer state (segment, length, sequence
/// number, last MAC), kept in `audit/TAIL` and mapped by each, read and changed only under the
/// append lock: a process-shared robust mutex stored in `audit/TAIL` itself (`SharedMutex`), which
/// an append takes and releases without a system call when no other process holds it. That state is
/// trusted only while some process has the log open: each holds a shared lock on `audit/PRESENT` from
/// its first append on (it has joined); one that joins and finds no other holder (after a crash, a
/// reboot or a clean close) has the state rebuilt from the segment files, which are the truth (the
/// idea of SQLite's "DMS" lock on its shared-memory file). Joining and leaving take the exclusive
/// `flock` on `audit/LOCK` (the join lock); appends do not.
///
/// Why that holds, case by case:
/// - Only a process between its join and its leave uses the append lock, and it holds `PRESENT`
///   shared all that time. So a process that finds itself alone under the join lock knows nobody is
///   waiting on or holding the append lock, and resets it (`initialize()`) before anyone can use it;
///   it also marks the state in progress, so that the first append under the lock rebuilds it.
/// - Two processes joining at once: the join lock orders them. The first is alone, resets the lock
///   and marks the state, and holds `PRESENT` before it lets go of the join lock; the second finds it
///   there and trusts the state, whose mark sends whichever appends first to rebuild it.
/// - A process killed while holding the append lock: the kernel releases the robust mutex, and the
///   next process to take it is told (`EOWNERDEAD`) and rebuilds the state from the files. (The
///   in-progress mark, set around every change, would send it there too.)
/// - A process killed while joining or leaving: the kernel drops its `flock`s with its descriptors,
///   the join lock and its `PRESENT` lock alike; if it was the only one there, the next to join is alone.
/// - A reboot: the mutex's bytes in `audit/TAIL` are stale (possibly held by a thread that no longer
///   exists), but `flock`s do not survive it, so the first process to join is alone and resets them.
/// - Leaving: a process takes the join lock, then the append lock, so no process joins, and no append
///   of another process is under way, while it finds out whether it is the last and cuts the segment.
///   It releases the append lock, then `PRESENT`, before the join lock: whoever joins next, and may
///   reset the append lock, finds it free. The locks are always taken in that order (join lock, then
///   append lock; an append takes only the append lock), so they cannot deadlock.
/// - Mixed versions: a process of an earlier version (`SRTAIL01` state) appends under the `flock` on
///   `audit/LOCK` and knows nothing of the mutex, so it would append alongside one of this version.
///   All processes sharing a store must run the same version: stop them all before upgrading. (The
///   first process of the new version is then alone and rebuilds the state in the new layout.)
/// - Processes sharing a store must run on one machine (the state is a shared mapping) and in one PID
///   namespace (the mutex tells its holders apart by thread ID).
///
/// Thread safety: safe to call from any thread; calls are serialised.
final class AuditLog: AuditTrail {
    /// The log's folder.
    let directory: String
    private let mac: HMACSHA256
    private let genesis: [UInt8]
    private let durability: AuditDurability
    private let segmentByteLimit: Int64
    /// How long an append (or a join or leave) waits for the log's locks before it fails closed.
    private let lockTimeout: Double
    private let headKeeper: AuditHeadKeeper
    /// Checks a rebuilt end against the signed head before the chain is continued from it.
    private let endCheck: AuditEndCheck
    private let state: Mutex<WriterState>
    /// Bytes appended by this process so far (written under the state lock, read by syncers).
    private let appended = Atomic<UInt64>(0)
    /// How many of them are known to be on stable storage, in `.synced` mode.
    private let synced = Mutex<UInt64>(0)
    /// Runs the `PagePopulator` of the active segment, off the appending threads.
    private let populationQueue = DispatchQueue(label: "strongroom.audit.populate", qos: .utility)

    /// How much the active segment grows by at a time: one `posix_fallocate` per megabyte of entries.
    static let allocationStep: Int64 = 1 << 20
    /// How much of the active segment a process maps at a time: what the log adds to its resident set.
    static let windowLength = 4 << 20
    /// How far past the end of the entries the segment's pages are made ready for writing, on
    /// `populationQueue`: no append waits for a fresh page.
    static let populationDistance: Int64 = 256 << 10
    /// The least that is asked for at a time: one request every 64 KiB of entries.
    static let populationStep: Int64 = 64 << 10

    /// This process's hold on the log; the writer state itself, and the append lock, are in `TailFile`.
    private struct WriterState: ~Copyable {
        /// The join lock (`audit/LOCK`), held exclusively while a process joins or leaves the log.
        let joinLock: FileLock
        /// Held shared from this process's first append until the log is dropped (`audit/PRESENT`):
        /// non-nil once this process has joined.
        var presence: FileLock?
        /// The shared writer state, mapped at the first append.
        var tail: TailFile?
        /// The number of the segment `segment` maps.
        var segmentNumber = 0
        /// The active segment, as this process last mapped it.
        var segment: MappedFile?
        /// Flushes the current segment from outside the lock (`.synced` mode).
        var synchronizer: FileSynchronizer?
        /// Readies the current segment's pages ahead of the appends (`.written` mode; nil where that
        /// cannot be done).
        var populator: PagePopulator?
        /// How far into the current segment this process has asked for pages to be readied.
        var populatedThrough: Int64 = 0
    }

    /// Opens the log in `directory` (created if absent, mode 0700; an existing one must be a real
    /// folder of this user's, and loses any permission of the group's and others'). Files are first
    /// touched at the first append, so that reading and verifying see the log as it is. Appends wait
    /// `lockTimeout` seconds at most for the log's locks.
    init(directory: String, mac: HMACSHA256, storeID: [UInt8], durability: AuditDurability,
         segmentByteLimit: Int64, lockTimeout: Double, headStore: any AuditHeadStore) throws(AuditLogError) {
        do { try createDirectory(directory, existing: .tighten) } catch { throw .unavailable(error) }
        let genesis: [UInt8]
        do { genesis = try AuditLineFormat.genesis(mac: mac, storeID: storeID) } catch { throw .crypto(error) }
        let joinLock: FileLock
        do { joinLock = try FileLock(path: directory + "/LOCK") } catch { throw .unavailable(error) }
        self.directory = directory
        self.mac = mac
        self.genesis = genesis
        self.durability = durability
        self.segmentByteLimit = segmentByteLimit
        self.lockTimeout = lockTimeout
        self.headKeeper = AuditHeadKeeper(store: headStore)
        self.endCheck = AuditEndCheck(mac: mac, headStore: headStore)
        self.state = Mutex(WriterState(joinLock: joinLock))
    }

    deinit {
        state.withLock { leave(&$0) }
    }

    func close() {
        flushHead()
        state.withLock { leave(&$0) }
    }

    /// Leaves the log: the last process to leave cuts the active segment to its entries, so that files
    /// at rest end with their last line, not with preallocated zeros. The next append joins again.
    private func leave(_ state: inout WriterState) {
        guard let presence = state.presence, let tail = state.tail else { return }
        defer {
            state.presence = nil
            state.tail = nil
            state.segment = nil
            state.synchronizer = nil
            state.populator = nil
        }
        // The join lock, then the append lock: nobody joins, and no other process's append is under
        // way, while this one finds out whether it is the last and cuts the segment. (When a lock stays
        // held past the timeout, the segment is left uncut: readers take its zeros as its end.)
        let deadline = LockDeadline(secondsFromNow: lockTimeout)
        _ = try? state.joinLock.withExclusiveLock(until: deadline) {
            // Released under the join lock, after the append lock: a process that joins next finds no
            // holder, and resets a free append lock.
            defer { presence.unlock() }
            try tail.withAppendLock(until: deadline) {
                guard (try? presence.tryLockExclusive()) == true, tail.isValid, !tail.isInProgress else { return }
                let shared = tail.read()
                guard shared.segment > 0, shared.committed >= 0, shared.committed <= shared.allocated else { return }
                if state.segment == nil || state.segmentNumber != shared.segment {
                    do { try map(shared.segment, into: &state) } catch { return }
                }
                guard let segment = state.segment, (try? segment.sizeIfStillLinked()) == shared.allocated,
                      (try? segment.truncate(to: shared.committed)) != nil else { return }
                tail.allocated = shared.committed
            }
        }
    }

    /// The segment files of `directory`, oldest first (none when it cannot be listed).
    static func segmentPaths(in directory: String) -> [String] {
        (try? listSegments(in: directory)) ?? []
    }

    /// The segment files of `directory`, oldest first: the files named as `segmentName` names them.
    /// Throws when the folder cannot be listed (a writer must not take that for an empty log).
    static func listSegments(in directory: String) throws(AuditLogError) -> [String] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            let code = ((error as? CocoaError)?.underlying as? POSIXError)?.code.rawValue ?? EIO
            throw .unavailable(FileError(path: directory, operation: "list", code: code))
        }
        var numbers: [Int] = []
        for name in names where name.hasSuffix(".jsonl") {
            if let number = Int(name.dropLast(6)), number > 0, name == segmentName(number) { numbers.append(number) }
        }
        return numbers.sorted().map { directory + "/" + segmentName($0) }
    }

    /// The file name of segment `number`: eight digits or more, then `.jsonl`.
    static func segmentName(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".jsonl"
    }

    func append(_ events: [AuditEvent]) throws -> UInt64? {
        guard !events.isEmpty else { return nil }
        // Set before this process's own lock: the whole wait, behind this process's other appending
        // threads and then behind other processes, is bounded by one timeout.
        let deadline = LockDeadline(secondsFromNow: lockTimeout)
        var previous: UInt64 = 0
        let (dueHead, written, synchronizer, last) = try state.withLock {
            (state: inout WriterState) throws -> (AuditHead?, UInt64, FileSynchronizer?, UInt64) in
            if state.presence == nil { try join(&state, until: deadline) }
            guard let shared = state.tail else { preconditionFailure("append before join") }
            // Taken and released by this thread: the closure runs on it, under the state lock.
            let tail = try shared.withAppendLock(until: deadline) {
                // A head found deleted: the files decide again, and the end is checked against the head.
                if headKeeper.takeHeadFoundMissing() { shared.isInProgress = true }
                var tail = try attach(&state)
                previous = tail.sequence
                if tail.committed >= segmentByteLimit {
                    // Close the full segment with a chained entry before starting the next.
                    let closing = AuditEvent(action: .segmentEnd, actor: "strongroom", purpose: "audit", subject: nil,
                                             detail: "continues in \(AuditLog.segmentName(tail.segment + 1))")
                    tail = try append([closing], after: tail, to: &state)
                    // In durable mode the closed segment is flushed before the next one starts, so a
                    // pending sync only ever needs the current segment.
                    if durability == .synced {
                        do throws(FileError) { try state.synchronizer?.synchronize() } catch { throw AuditLogError.unavailable(error) }
                    }
                    tail = try rollOver(after: tail, into: &state)
                }
                return try append(events, after: tail, to: &state)
            }
            // Noted in chain order, under the state lock; saved (when due) outside it, after any sync.
            return (headKeeper.noteAppended(sequence: tail.sequence, entryMAC: tail.mac, after: previous), appended.load(ordering: .acquiring),
                    state.synchronizer, tail.sequence)
        }
        if durability == .synced, let synchronizer { try synchronize(through: written, with: synchronizer) }
        if let dueHead { headKeeper.save(dueHead) }
        return last
    }

    func acknowledgeGap(_ acknowledgement: (AuditGap, [UInt8]?) -> AuditEvent) throws -> AuditGap {
        let deadline = LockDeadline(secondsFromNow: lockTimeout)
        let (gap, last) = try state.withLock { (state: inout WriterState) throws -> (AuditGap, SharedTail) in
            if state.presence == nil { try join(&state, until: deadline) }
            guard let shared = state.tail else { preconditionFailure("append before join") }
            return try shared.withAppendLock(until: deadline) {
                // The files decide where the log really ends; the gap is named against the head.
                let segments = try AuditLog.listSegments(in: directory)
                let tail = try rebuild(&state, checkingHead: false)
                guard let (gap, headMAC) = try endCheck.findGap(readEnd: { (tail.sequence, tail.mac) },
                                                                linesFrom: { first, _ in try AuditLog.lines(from: first, in: segments) }).gap else {
                    throw AuditLogError.noGap
                }
                return (gap, try append([acknowledgement(gap, headMAC)], after: tail, to: &state))
            }
        }
        guard headKeeper.replace(sequence: last.sequence, entryMAC: last.mac) else {
            // The acknowledgement is in the log, but the head still names the lost entries: writers
            // go on refusing, and running the acknowledgement again records it again.
            throw AuditLogError.headNotSaved
        }
        return gap
    }

    /// Chains `events` after `tail` and copies their lines into the segment's mapping.
    private func append(_ events: [AuditEvent], after tail: SharedTail, to state: inout WriterState) throws -> SharedTail {
        var output: [UInt8] = []
        output.reserveCapacity(events.count * 320)
        let (sequence, previous) = try AuditLineFormat.chain(events, after: tail.sequence, previous: tail.mac,
                                                             mac: mac, into: &output)
        guard let segment = state.segment, let shared = state.tail else { preconditionFailure("append before attach") }
        var next = tail
        next.committed += Int64(output.count)
        if next.committed > tail.allocated {
            // Reserved before any byte is stored: a full disk fails here, not as a SIGBUS on the store.
            // If it fails part of the way, the file's size no longer matches the state and the next
            // append rebuilds.
            do { try segment.allocate(to: AuditLog.allocation(for: next.committed)) } catch { throw AuditLogError.unavailable(error) }
            next.allocated = segment.size
            shared.allocated = next.allocated
        }
        // A process killed between here and the end leaves the marker set: the next one rebuilds (so
        // does the next append after a failed store).
        shared.isInProgress = true
        do { try segment.storeRecords(output, at: tail.committed, terminator: UInt8(ascii: "\n")) } catch {
            throw AuditLogError.unavailable(error)
        }
        next.sequence = sequence
        next.mac = previous
        shared.commit(next)
        shared.isInProgress = false
        appended.add(UInt64(output.count), ordering: .releasing)
        populateAhead(of: next, in: &state)
        return next
    }

    /// Has the pages up to `populationDistance` past the entries' end (within the allocated space)
    /// readied for writing on `populationQueue`, a step at a time. Else each fresh page costs the
    /// append that first writes it a page fault, in which the kernel allocates and zeroes the page and
    /// has the file system reserve it: 0.73 µs an entry when the machine's memory is cold, 0.08 with
    /// the pages readied (265-byte entries, measured in C on this project's machines). Only speed
    /// rides on it: an append never waits for it.
    private func populateAhead(of tail: SharedTail, in state: inout WriterState) {
        guard let populator = state.populator, populator.isSupported else { return }
        let from = max(state.populatedThrough, tail.committed)
        let through = min(tail.committed + AuditLog.populationDistance, tail.allocated)
        guard through - from >= AuditLog.populationStep else { return }
        state.populatedThrough = through
        populationQueue.async { populator.populate(from..<through) }
    }

    /// Starts the next segment after the full one (closed by its segment-end entry): cuts the full one
    /// to its entries, and points the shared state at a fresh one. Other processes see the segment
    /// number change and map the new file.
    private func rollOver(after tail: SharedTail, into state: inout WriterState) throws -> SharedTail {
        guard let closed = state.segment, let shared = state.tail else { preconditionFailure("roll-over before attach") }
        shared.isInProgress = true
        do { try closed.truncate(to: tail.committed) } catch { throw AuditLogError.unavailable(error) }
        try map(tail.segment + 1, into: &state)
        guard let segment = state.segment, segment.size == 0 else {
            // A file already there under the next number: the files decide where the chain goes on.
            return try rebuild(&state)
        }
        do { try segment.allocate(to: AuditLog.allocationStep) } catch { throw AuditLogError.unavailable(error) }
        let next = SharedTail(segment: tail.segment + 1, committed: 0, allocated: segment.size, sequence: tail.sequence, mac: tail.mac)
        shared.write(next)
        shared.isInProgress = false
        return next
    }

    /// Under the append lock: the shared writer state, once it is known to hold (else rebuilt), with
    /// its segment mapped by this process.
    private func attach(_ state: inout WriterState) throws -> SharedTail {
        guard let shared = state.tail else { preconditionFailure("attach before join") }
        if shared.isValid, !shared.isInProgress {
            let tail = shared.read()
            guard tail.segment > 0, tail.committed >= 0, tail.committed <= tail.allocated else { return try rebuild(&state) }
            if state.segment == nil || state.segmentNumber != tail.segment { try map(tail.segment, into: &state) }
            // One fstat. A segment deleted or replaced under the log has no link left: stores into its
            // mapping would be lost. A size other than the allocated one means the file was cut or
            // extended behind the log's back (or an allocation failed part of the way).
            let size: Int64?
            do { size = try state.segment?.sizeIfStillLinked() } catch { throw AuditLogError.unavailable(error) }
            if size == tail.allocated { return tail }
        }
        return try rebuild(&state)
    }

    /// This process's first append, before it takes the append lock: under the join lock, maps the
    /// shared state and takes the presence lock. The state is trusted only if another process holds
    /// the presence lock (it has kept the state current since the files were last read). Alone, this
    /// process resets the append lock, which nobody else can be using (see the type's comment), and
    /// marks the state in progress, so that the first append rebuilds it from the files. The locks are
    /// waited for until `deadline` at most.
    private func join(_ state: inout WriterState, until deadline: LockDeadline) throws {
        do {
            let (presence, tail) = try state.joinLock.withExclusiveLock(until: deadline) {
                let presence = try FileLock(path: directory + "/PRESENT")
                let tail = try TailFile(path: directory + "/TAIL")
                if try presence.tryLockExclusive() {
                    try tail.appendLock.initialize()
                    tail.isInProgress = true
                }
                // Shared from here on (an exclusive lock turns shared): the next process to join trusts the state.
                try presence.lockShared(until: deadline)
                return (presence, tail)
            }
            state.presence = presence
            state.tail = tail
        } catch let error as FileError {
            // Not joined: the presence lock goes with its handle, and the next append tries again.
            throw AuditLogError.unavailable(error)
        }
    }

    /// Rebuilds the shared writer state from the segment files: the newest segment's last complete,
    /// well-formed line (or an older segment's, when the newest is empty). A torn last line (a copy cut
    /// short: its plaintext was never returned) and the unwritten zeros after the data are cut off,
    /// and the segment is preallocated again from there.
    ///
    /// Unless `checkingHead` is false (an acknowledgement), the end found must agree with the signed
    /// head (`AuditEndCheck`); if not, `AuditLogError.gap` is thrown and the state stays marked in
    /// progress, so every later append, of any process, checks again and refuses too.
    private func rebuild(_ state: inout WriterState, checkingHead: Bool = true) throws -> SharedTail {
        guard let shared = state.tail else { preconditionFailure("rebuild before join") }
        // Left set if this fails or the process dies: the next process to append rebuilds again.
        shared.isInProgress = true
        let segments = try AuditLog.listSegments(in: directory)
        let number = segments.last.map(AuditLog.segmentNumber(of:)) ?? 1
        try map(number, into: &state)
        guard let segment = state.segment else { preconditionFailure("no segment mapped") }
        var committed: Int64 = 0
        var last: (sequence: UInt64, mac: [UInt8])?
        for (index, path) in segments.reversed().enumerated() {
            let (length, entry) = try cutTail(of: path, file: index == 0 ? segment : nil)
            if index == 0 { committed = length }
            // The newest segment may be empty (just started): the chain then continues from an older one.
            if let entry {
                last = entry
                break
            }
        }
        if checkingHead {
            // Under the append lock no entry is added meanwhile, and the head covers only entries
            // already written: reading it after the files is safe here.
            _ = try endCheck.check(readEnd: { last ?? (0, genesis) }, linesFrom: { first, _ in try AuditLog.lines(from: first, in: segments) })
        }
        do {
            try segment.truncate(to: committed)
            try segment.allocate(to: AuditLog.allocation(for: committed))
        } catch {
            throw AuditLogError.unavailable(error)
        }
        let tail = SharedTail(segment: number, committed: committed, allocated: segment.size,
                              sequence: last?.sequence ?? 0, mac: last?.mac ?? genesis)
        shared.write(tail)
        shared.isInProgress = false
        return tail
    }

    /// The length of the segment at `path` up to its last complete line, which is cut there (through
    /// `file` when it is mapped), and that line's sequence number and MAC; nil for an empty segment.
    private func cutTail(of path: String, file: MappedFile?) throws -> (length: Int64, last: (sequence: UInt64, mac: [UInt8])?) {
        let bytes: [UInt8]
        do { bytes = try AppendOnlyFile.readAll(path: path) } catch { throw AuditLogError.unavailable(error) }
        // Lines are copied in whole, newline last (`MappedFile.storeRecords`): what follows the last
        // newline is a torn line or unwritten space.
        let end = (bytes.lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
        if end < bytes.count {
            do {
                if let file { try file.truncate(to: Int64(end)) } else { try AppendOnlyFile(path: path).truncate(to: Int64(end)) }
            } catch {
                throw AuditLogError.unavailable(error)
            }
        }
        guard end > 0 else { return (0, nil) }
        let start = (bytes[..<(end - 1)].lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
        guard let entry = AuditLineFormat.split(bytes[start..<(end - 1)]) else {
            throw AuditLogError.unreadableTail(segment: path)
        }
        return (Int64(end), (entry.sequence, entry.mac))
    }

    /// The complete lines (without newlines) of the entries from `sequence` on, oldest first, read
    /// from the newest of `segments` back to the one that holds that entry (the head lags the log by
    /// about a second of entries, so that is usually the newest alone).
    private static func lines(from sequence: UInt64, in segments: [String]) throws -> [ArraySlice<UInt8>] {
        var newestFirst: [[ArraySlice<UInt8>]] = []
        for path in segments.reversed() {
            let bytes: [UInt8]
            do { bytes = try AppendOnlyFile.readAll(path: path) } catch { throw AuditLogError.unavailable(error) }
            let end = (bytes.lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
            let lines = bytes[..<end].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast()
            guard let first = lines.first else { continue }
            newestFirst.append(Array(lines))
            if let entry = AuditLineFormat.split(first), entry.sequence <= sequence { break }
        }
        let all = newestFirst.reversed().joined()
        // A line that does not split keeps its place (the caller's chain check then fails on it).
        return Array(all.drop { AuditLineFormat.split($0).map { $0.sequence < sequence } ?? false })
    }

    /// Maps segment `number` (created if absent) as this process's current segment.
    private func map(_ number: Int, into state: inout WriterState) throws {
        let path = directory + "/" + AuditLog.segmentName(number)
        do {
            let file = try MappedFile(path: path, window: AuditLog.windowLength)
            state.synchronizer = durability == .synced ? try file.synchronizer() : nil
            // Not in `.synced` mode: each append there waits for an `fdatasync` (a quarter of a
            // millisecond), beside which a page fault is noise, and the pages readied ahead (dirty
            // zeros) would only make those flushes longer. Failing to make one only loses speed.
            state.populator = durability == .written ? try? file.populator() : nil
            state.populatedThrough = 0
            state.segment = file
            state.segmentNumber = number
        } catch {
            state.segment = nil
            state.populator = nil
            throw AuditLogError.unavailable(error)
        }
    }

    /// The allocated length for `length` bytes of entries: the next whole step above it.
    private static func allocation(for length: Int64) -> Int64 {
        (length / allocationStep + 1) * allocationStep
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
            // Preallocated space not yet written is zeros: a run of them ends the segment's data. A zero
            // with data after it stays in its line, which then does not verify.
            var end = bytes.count
            while end > 0, bytes[end - 1] == 0 { end -= 1 }
            var lineStart = 0
            var lineNumber = 0
            while lineStart < end {
                lineNumber += 1
                guard let newline = bytes[lineStart..<end].firstIndex(of: UInt8(ascii: "\n")) else {
                    try body(name, lineNumber, .torn(atEnd: segmentIndex == segments.count - 1))
                    break
                }
                try body(name, lineNumber, .complete(bytes[lineStart..<newline]))
                lineStart = newline + 1
            }
        }
    }

    /// The number in a segment file's name.
    static func segmentNumber(of path: String) -> Int {
        Int(URL(fileURLWithPath: path).lastPathComponent.dropLast(6)) ?? 0
    }
}
