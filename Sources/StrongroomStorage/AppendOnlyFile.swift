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

    /// Opens `path` for appending, creating it with mode 0600 if absent.
    public init(path: String) throws(FileError) {
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close(descriptor) }

    /// Appends `bytes` with one `write` (retried for the rest only if the kernel writes part of it).
    public func append(_ bytes: [UInt8]) throws(FileError) {
        var written = 0
        while written < bytes.count {
            let count = unsafe bytes.withUnsafeBytes { raw in
                unsafe write(descriptor, raw.baseAddress! + written, raw.count - written)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "write", code: errno)
            }
            written += count
        }
    }

    /// Cuts the file to `length` bytes (used to drop a torn last line a crashed writer left).
    public func truncate(to length: Int64) throws(FileError) {
        guard ftruncate(descriptor, off_t(length)) == 0 else {
            throw FileError(path: path, operation: "ftruncate", code: errno)
        }
    }

    /// Reads the whole file at `path`.
    public static func readAll(path: String) throws(FileError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(descriptor) }
        var status = stat()
        guard unsafe fstat(descriptor, &status) == 0 else { throw FileError(path: path, operation: "fstat", code: errno) }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var filled = 0
        while filled < bytes.count {
            let count = unsafe bytes.withUnsafeMutableBytes { raw in
                unsafe read(descriptor, raw.baseAddress! + filled, raw.count - filled)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "read", code: errno)
            }
            if count == 0 { break }
            filled += count
        }
        return filled == bytes.count ? bytes : Array(bytes[..<filled])
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
        guard fdatasync(descriptor) == 0 else { throw FileError(path: path, operation: "fdatasync", code: errno) }
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

    /// Opens (creating, mode 0600) the lock file at `path`.
    public init(path: String) throws(FileError) {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close(descriptor) }

    /// Takes the exclusive lock if no other handle holds the lock, without waiting; true when taken.
    /// A shared lock this handle holds is replaced, not atomically: a failed attempt leaves none.
    public func tryLockExclusive() throws(FileError) -> Bool {
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK { return false }
            guard errno == EINTR else { throw FileError(path: path, operation: "flock", code: errno) }
        }
        return true
    }

    /// Takes the shared lock, waiting while another handle holds it exclusively (an exclusive lock
    /// this handle holds becomes shared).
    public func lockShared() throws(FileError) {
        while flock(descriptor, LOCK_SH) != 0 {
            guard errno == EINTR else { throw FileError(path: path, operation: "flock", code: errno) }
        }
    }

    /// Releases the lock this handle holds (closing the handle does too).
    public func unlock() {
        flock(descriptor, LOCK_UN)
    }

    /// Takes the exclusive lock, waiting while another handle holds the lock.
    public func lockExclusive() throws(FileError) {
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else { throw FileError(path: path, operation: "flock", code: errno) }
        }
    }

    /// Runs `body` holding the exclusive lock; other processes wait.
    public func withExclusiveLock<T>(_ body: () throws -> T) throws -> T {
        try lockExclusive()
        defer { unlock() }
        return try body()
    }
}

@available(*, unavailable, message: "A FileLock is used by one owner at a time")
extension FileLock: Sendable {}
