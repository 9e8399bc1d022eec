#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written at its end: each `append` is one `write(2)` at the end (`O_APPEND`), so a line
/// written by one call never interleaves with another process's line. The audit log appends through
/// `MappedFile`; this type reads whole files and cuts torn tails.
///
/// Thread safety: not thread-safe; the owner serialises calls. Across processes, hold a `FileLock`.
public final class AppendOnlyFile {
    /// The file descriptor, closed in `deinit`.
    private let descriptor: Int32
    /// The path it was opened on.
    public let path: String

    /// Opens the regular file `path` for appending, creating it with mode 0600 if absent; anything
    /// else there (a symbolic link, a FIFO, a device, a folder) is refused (`FileProblem.wrongKind`).
    public init(path: String) throws(FileError) {
        self.descriptor = try openRegularFile(path, flags: O_WRONLY | O_APPEND, create: true).descriptor
        self.path = path
    }

    deinit { close(descriptor) }

    /// Appends `bytes` with one `write` (retried for the rest only if the kernel writes part of it).
    public func append(_ bytes: [UInt8]) throws(FileError) {
        var written = 0
        while written < bytes.count {
            let count = retryingOnInterrupt {
                unsafe bytes.withUnsafeBytes { raw in unsafe write(descriptor, raw.baseAddress! + written, raw.count - written) }
            }
            guard count >= 0 else { throw FileError(path: path, operation: "write", code: errno) }
            written += count
        }
    }

    /// Cuts the file to `length` bytes (used to drop a torn last line a crashed writer left).
    public func truncate(to length: Int64) throws(FileError) {
        guard retryingOnInterrupt({ ftruncate(descriptor, off_t(length)) }) == 0 else {
            throw FileError(path: path, operation: "ftruncate", code: errno)
        }
    }

    /// Reads the whole regular file at `path`, to its end; anything else there (a symbolic link, a FIFO,
    /// a device, a folder) is refused at once (`FileProblem.wrongKind`), never read through or waited on.
    public static func readAll(path: String) throws(FileError) -> [UInt8] {
        let (descriptor, size) = try openRegularFile(path, flags: O_RDONLY, create: false)
        defer { close(descriptor) }
        // The size is a first guess (files of /proc say 0): read until a read finds the end, for which
        // the buffer keeps a byte more.
        var bytes = [UInt8](repeating: 0, count: Int(size) + 1)
        var filled = 0
        while true {
            if filled == bytes.count { bytes.append(contentsOf: repeatElement(0, count: max(bytes.count, 4096))) }
            let count = retryingOnInterrupt {
                unsafe bytes.withUnsafeMutableBytes { raw in unsafe read(descriptor, raw.baseAddress! + filled, raw.count - filled) }
            }
            guard count >= 0 else { throw FileError(path: path, operation: "read", code: errno) }
            if count == 0 { break }
            filled += count
        }
        bytes.removeSubrange(filled...)
        return bytes
    }
}

/// Flushes one file's data to stable storage from any thread (`fdatasync` on a duplicated descriptor;
/// see `MappedFile.synchronizer`).
///
/// `Sendable` because its only state is an immutable descriptor, and `fdatasync` may be called on one
/// descriptor from several threads at once.
public final class FileSynchronizer: Sendable {
    private let descriptor: Int32
    /// The file's path, for errors.
    public let path: String

    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close(descriptor) }

    /// Flushes everything written to the file so far (`fdatasync`).
    public func synchronize() throws(FileError) {
        guard retryingOnInterrupt({ fdatasync(descriptor) }) == 0 else { throw FileError(path: path, operation: "fdatasync", code: errno) }
    }
}

@available(*, unavailable, message: "An AppendOnlyFile is used by one owner at a time")
extension AppendOnlyFile: Sendable {}

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
