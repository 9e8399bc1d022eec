import StrongroomStorage

/// The audit log's shared writer state (see `AuditLog`): joining the log, attaching to the state under
/// the append lock, rebuilding it from the segment files, and mapping a segment as the current one.
extension AuditLog {
    /// Under the append lock: the shared writer state, once it is known to hold (else rebuilt), with
    /// its segment mapped by this process.
    func attach(_ state: inout WriterState) throws -> SharedTail {
        guard let shared = state.tail else { preconditionFailure("attach before join") }
        if shared.isValid, !shared.isInProgress {
            let tail = shared.read(knownMAC: state.lastAppended?.mac)
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
    func join(_ state: inout WriterState, until deadline: LockDeadline) throws {
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
    func rebuild(_ state: inout WriterState, checkingHead: Bool = true) throws -> SharedTail {
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

    /// Maps segment `number` (created if absent) as this process's current segment.
    func map(_ number: Int, into state: inout WriterState) throws {
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
}
