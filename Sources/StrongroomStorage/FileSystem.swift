#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file operation of the storage layer failed: the path, the operation and the OS error.
public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file.
    public let path: String
    /// What was being done ("open", "write", "fsync", …).
    public let operation: String
    /// The `errno` value.
    public let code: Int32

    /// Creates an error from its parts.
    public init(path: String, operation: String, code: Int32) {
        self.path = path
        self.operation = operation
        self.code = code
    }

    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(code)))"
    }
}

/// Creates the directory `path` with `mode` (0700 for store folders) if it does not exist yet.
/// The corresponding C function is `mkdir`.
public func createDirectory(_ path: String, mode: UInt32 = 0o700) throws(FileError) {
    guard mkdir(path, mode_t(mode)) == 0 || errno == EEXIST else {
        throw FileError(path: path, operation: "mkdir", code: errno)
    }
}
