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
        let file = try PositionalReader(path: path)
        // The size is a first guess (files of /proc say 0): read until a read finds the end, for which
        // each read asks for a byte more.
        var bytes = try file.read(from: 0, count: Int(file.size) + 1)
        while bytes.count > file.size {
            let wanted = max(bytes.count, 4096)
            let more = try file.read(from: Int64(bytes.count), count: wanted)
            bytes.append(contentsOf: more)
            if more.count < wanted { break }
        }
        return bytes
    }
}

@available(*, unavailable, message: "An AppendOnlyFile is used by one owner at a time")
extension AppendOnlyFile: Sendable {}

/// A regular file opened for reading parts of it (`pread`): the audit log reads a few lines of a
/// segment, up to 64 MiB long, at chosen places, without reading the rest.
///
/// Thread safety: not thread-safe; the owner serialises calls.
public final class PositionalReader {
    /// The file descriptor, closed in `deinit`.
    private let descriptor: Int32
    /// The path it was opened on.
    public let path: String
    /// The file's size when it was opened.
    public let size: Int64

    /// Opens the regular file at `path` for reading; anything else there (a symbolic link, a FIFO, a
    /// device, a folder) is refused at once (`FileProblem.wrongKind`), and a missing file is an error.
    public init(path: String) throws(FileError) {
        (descriptor, size) = try openRegularFile(path, flags: O_RDONLY, create: false)
        self.path = path
    }

    deinit { close(descriptor) }

    /// The file's bytes from `offset`, `count` of them, or fewer where the file ends first.
    public func read(from offset: Int64, count: Int) throws(FileError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let read = retryingOnInterrupt {
                unsafe bytes.withUnsafeMutableBytes { raw in
                    unsafe pread(descriptor, raw.baseAddress! + filled, raw.count - filled, off_t(offset) + off_t(filled))
                }
            }
            guard read >= 0 else { throw FileError(path: path, operation: "read", code: errno) }
            if read == 0 { break }
            filled += read
        }
        bytes.removeSubrange(filled...)
        return bytes
    }
}

@available(*, unavailable, message: "A PositionalReader is used by one owner at a time")
extension PositionalReader: Sendable {}
