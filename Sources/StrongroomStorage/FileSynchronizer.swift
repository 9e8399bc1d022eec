#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
