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
    let genesis: [UInt8]
    let durability: AuditDurability
    private let segmentByteLimit: Int64
    /// How long an append (or a join or leave) waits for the log's locks before it fails closed.
    private let lockTimeout: Double
    private let headKeeper: AuditHeadKeeper
    /// Checks a rebuilt end against the signed head before the chain is continued from it.
    let endCheck: AuditEndCheck
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
    /// The largest line buffer kept between appends (`WriterState.lines`).
    static let keptLineBufferCapacity = 16 << 10

    /// This process's hold on the log; the writer state itself, and the append lock, are in `TailFile`.
    struct WriterState: ~Copyable {
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
        /// The lines of the append under way, built here: its capacity stays from one append to the
        /// next, so an append allocates no buffer. Holds only entry lines, which carry no personal data.
        var lines: [UInt8] = []
        /// The last entry this process appended, and where its line ends: the head check requires the
        /// segment files still to hold it there (`AuditLog.entryMAC(at:in:own:)`).
        var lastAppended: AppendedEntry?
    }

    /// An entry this process appended: its segment, where its line ends there, its sequence number and MAC.
    struct AppendedEntry {
        let segment: Int
        let end: Int64
        let sequence: UInt64
        let mac: [UInt8]
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
        // The shared writer state (`audit/TAIL`) and the segment this process maps can be rewritten or
        // replaced under it by anyone who can write the folder: a head is saved only while the log's end
        // still holds the saved head's entry and this process's own last one (see `checkSavedHead`).
        headKeeper.checkSavedHead { [weak self] sequence in try self?.entryMAC(at: sequence) }
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
                if headKeeper.takeEndCheckDue() { shared.isInProgress = true }
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
        var output = state.lines
        state.lines = []
        defer {
            // A large batch's buffer (an import's entries) is not kept.
            output.removeAll(keepingCapacity: output.capacity <= AuditLog.keptLineBufferCapacity)
            state.lines = output
        }
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
        state.lastAppended = AppendedEntry(segment: state.segmentNumber, end: next.committed, sequence: sequence, mac: previous)
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

    /// The MAC of entry `sequence` as the segment files hold it, while they hold this process's last
    /// entry where it wrote it (`AuditLog.entryMAC(at:in:own:)`).
    private func entryMAC(at sequence: UInt64) throws -> [UInt8]? {
        try AuditLog.entryMAC(at: sequence, in: directory, own: state.withLock { $0.lastAppended })
    }
}
