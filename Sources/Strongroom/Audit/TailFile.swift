import StrongroomStorage

/// The writer state all processes appending to one log share, as read from `TailFile`.
struct SharedTail {
    /// The number of the active segment.
    var segment: Int
    /// How many bytes of it hold entries.
    var committed: Int64
    /// How long the file is (preallocated; zeros after `committed`).
    var allocated: Int64
    /// The last entry's sequence number (0 before the first).
    var sequence: UInt64
    /// The last entry's MAC (the genesis value before the first).
    var mac: [UInt8]
}

/// The shared writer state in `audit/TAIL`, a page mapped by every process appending to the log and
/// used only under the append lock, which is stored there too: fixed fields in native byte order.
///
/// A field is stored before the in-progress marker is cleared, so a process killed while changing
/// them leaves the marker set, and the next one rebuilds the state from the files.
struct TailFile {
    /// `audit/TAIL`, mapped.
    let file: MappedBlock
    /// The append lock, at `Offset.appendLock` in the file.
    let appendLock: SharedMutex

    /// The size of the file.
    static let byteCount = 4096
    /// "SRTAIL02": the layout below; a file of zeros (just created) is not valid, nor is one of the
    /// previous layout ("SRTAIL01", the same fields without the mutex, used under a `flock`).
    private static let magic: UInt64 = 0x3230_4C49_4154_5253
    /// Where each field starts (the tests that forge a dead writer's state use these offsets too).
    /// The mutex is past the other fields, aligned, with room for any platform's `pthread_mutex_t`.
    private enum Offset {
        static let magic = 0, segment = 8, committed = 16, allocated = 24, sequence = 32, inProgress = 40, mac = 48
        static let appendLock = 256
    }

    /// Maps `path` (created, zero-filled, if absent).
    init(path: String) throws(FileError) {
        file = try MappedBlock(path: path, byteCount: TailFile.byteCount)
        appendLock = try SharedMutex(in: file, at: Offset.appendLock)
    }

    /// Runs `body` holding the append lock, waited for until `deadline` at most: past it, the lock's
    /// holder (a process stopped or stuck holding it; a dead one's is released by the kernel) is named
    /// in the error (`FileProblem.lockHeld`, read from the mutex, see `SharedMutex`) and `body` does not
    /// run, so the decrypt that needed the entry fails closed. When its previous holder died holding
    /// it, the state is marked in progress first: whatever that process was changing may be half
    /// done, and the files decide (`attach` rebuilds).
    func withAppendLock<T>(until deadline: LockDeadline, _ body: () throws -> T) throws -> T {
        let previousHolderDied: Bool
        do { previousHolderDied = try appendLock.lock(until: deadline) } catch { throw AuditLogError.unavailable(error) }
        defer { appendLock.unlock() }
        if previousHolderDied { isInProgress = true }
        return try body()
    }

    /// Whether the file holds a state written by this layout.
    var isValid: Bool { file.loadUInt64(at: Offset.magic) == TailFile.magic }

    /// Set while an append, roll-over or rebuild changes the segment or the state.
    var isInProgress: Bool {
        get { file.loadUInt64(at: Offset.inProgress) != 0 }
        nonmutating set { file.storeUInt64(newValue ? 1 : 0, at: Offset.inProgress) }
    }

    /// The allocated length of the active segment.
    var allocated: Int64 {
        get { Int64(bitPattern: file.loadUInt64(at: Offset.allocated)) }
        nonmutating set { file.storeUInt64(UInt64(bitPattern: newValue), at: Offset.allocated) }
    }

    /// The fields, as last stored; the MAC is `knownMAC` itself when the file holds those bytes (the
    /// entry this process appended last: no array is made on an append that follows its own).
    func read(knownMAC: [UInt8]? = nil) -> SharedTail {
        SharedTail(segment: Int(truncatingIfNeeded: file.loadUInt64(at: Offset.segment)),
                   committed: Int64(bitPattern: file.loadUInt64(at: Offset.committed)),
                   allocated: allocated,
                   sequence: file.loadUInt64(at: Offset.sequence),
                   mac: file.load(count: 32, at: Offset.mac, reusing: knownMAC))
    }

    /// Stores the length, sequence number and MAC after an append.
    func commit(_ tail: SharedTail) {
        file.storeUInt64(UInt64(bitPattern: tail.committed), at: Offset.committed)
        file.storeUInt64(tail.sequence, at: Offset.sequence)
        file.store(tail.mac, at: Offset.mac)
    }

    /// Stores every field and marks the file valid.
    func write(_ tail: SharedTail) {
        file.storeUInt64(UInt64(tail.segment), at: Offset.segment)
        allocated = tail.allocated
        commit(tail)
        file.storeUInt64(TailFile.magic, at: Offset.magic)
    }
}
