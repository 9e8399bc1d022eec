#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An advisory lock on a file (`flock(2)`), shared by every process that opens the same lock file.
///
/// Thread safety: not thread-safe; the owner serialises calls.
public final class FileLock {
    private let descriptor: Int32
    /// The lock file.
    public let path: String

    /// Opens (creating, mode 0600) the regular file `path` as a lock file; anything else there (a
    /// symbolic link, a FIFO, a device, a folder) is refused (`FileProblem.wrongKind`).
    public init(path: String) throws(FileError) {
        self.descriptor = try openRegularFile(path, flags: O_RDWR, create: true).descriptor
        self.path = path
    }

    deinit { close(descriptor) }

    /// Takes the exclusive lock if no other handle holds the lock, without waiting; true when taken.
    /// A shared lock this handle holds is replaced, not atomically: a failed attempt leaves none.
    public func tryLockExclusive() throws(FileError) -> Bool {
        try tryLock(LOCK_EX)
    }

    /// Takes the shared lock, waiting while another handle holds it exclusively (an exclusive lock
    /// this handle holds becomes shared), until `deadline` at most (`FileProblem.lockHeld` then).
    public func lockShared(until deadline: LockDeadline) throws(FileError) {
        try lock(LOCK_SH, until: deadline)
    }

    /// Releases the lock this handle holds (closing the handle does too).
    public func unlock() {
        flock(descriptor, LOCK_UN)
    }

    /// Takes the exclusive lock, waiting while another handle holds the lock, until `deadline` at most
    /// (`FileProblem.lockHeld` then).
    public func lockExclusive(until deadline: LockDeadline) throws(FileError) {
        try lock(LOCK_EX, until: deadline)
    }

    /// Runs `body` holding the exclusive lock; other processes wait. The lock is waited for until
    /// `deadline` at most (`FileProblem.lockHeld` then, and `body` does not run).
    public func withExclusiveLock<T>(until deadline: LockDeadline, _ body: () throws -> T) throws -> T {
        try lockExclusive(until: deadline)
        defer { unlock() }
        return try body()
    }

    /// `flock(operation | LOCK_NB)`: true when taken, false when another handle holds it.
    private func tryLock(_ operation: Int32) throws(FileError) -> Bool {
        guard retryingOnInterrupt({ flock(descriptor, operation | LOCK_NB) }) != 0 else { return true }
        guard errno == EWOULDBLOCK else { throw FileError(path: path, operation: "flock", code: errno) }
        return false
    }

    /// Tries `flock(operation)` without blocking until it is taken or `deadline` passes, sleeping a
    /// little between tries (`flock` has no timed wait; the sleep grows from 1 to 10 ms, so a lock
    /// let go is taken soon after, and a long wait costs little).
    private func lock(_ operation: Int32, until deadline: LockDeadline) throws(FileError) {
        var pause: UInt32 = 1_000
        while try !tryLock(operation) {
            let remaining = deadline.remainingMicroseconds
            guard remaining > 0 else {
                throw FileError(path: path, operation: "flock", code: EWOULDBLOCK,
                                problem: .lockHeld(holder: nil, waitedSeconds: deadline.seconds))
            }
            usleep(UInt32(min(Int64(pause), remaining)))
            pause = min(pause * 2, 10_000)
        }
    }
}

@available(*, unavailable, message: "A FileLock is used by one owner at a time")
extension FileLock: Sendable {}
