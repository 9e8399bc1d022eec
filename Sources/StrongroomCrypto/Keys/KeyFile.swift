#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a master-key file could not be created, replaced or read. Carries the path, never key bytes.
public enum KeyFileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No file at the path.
    case notFound(path: String)
    /// Creation refused: a file already exists there (a key is never overwritten by `create`).
    case alreadyExists(path: String)
    /// The path is a symbolic link, directory or device, not a regular file.
    case notARegularFile(path: String)
    /// The file can be read by its group or by others (mode shown in octal): it must be 0600 or stricter.
    case permissionsTooOpen(path: String, mode: UInt32)
    /// The content is not a base64-encoded 32-byte key.
    case malformed(path: String)
    /// The operating system refused an operation.
    case io(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .notFound(let path): return "key file \(path) does not exist"
        case .alreadyExists(let path): return "key file \(path) already exists; refusing to overwrite a key"
        case .notARegularFile(let path): return "key file \(path) is not a regular file (symbolic links are refused)"
        case .permissionsTooOpen(let path, let mode):
            return "key file \(path) has mode \(String(mode, radix: 8)); it must not be readable by group or others (chmod 600)"
        case .malformed(let path): return "key file \(path) does not hold a base64-encoded 32-byte key"
        case .io(let path, let operation, let code):
            return "key file \(path): \(operation) failed: \(String(cString: strerror(code)))"
        }
    }
}

/// A master key kept in a file: 32 random bytes as base64 (44 characters) and a newline.
///
/// Files are created with `open(O_CREAT|O_EXCL|O_NOFOLLOW)` and mode 0600 from their first instant,
/// whatever the umask, and replaced only by writing a new file, syncing it and renaming it into place,
/// so that a crash at any point leaves one complete key under the path.
public enum KeyFile {
    /// The size of a master key: 256 bits.
    public static let keyByteCount = 32

    /// Creates a new file holding a fresh random key and returns the key. Refuses an existing file.
    public static func create(at path: String) throws(KeyFileError) -> SecretKey {
        let key: SecretKey
        do { key = try SecretKey.random(byteCount: keyByteCount) } catch {
            throw .io(path: path, operation: "random key generation", errno: 0)
        }
        try writeNewFile(key, at: path)
        try syncDirectory(containing: path)
        return key
    }

    /// Writes `key` to `path`, replacing any file there atomically: a new 0600 file beside it, synced,
    /// then renamed over the old one and the directory synced.
    public static func replace(_ key: SecretKey, at path: String) throws(KeyFileError) {
        let temporary = path + ".new"
        if unlink(temporary) != 0 && errno != ENOENT {
            throw .io(path: temporary, operation: "unlink", errno: errno)
        }
        try writeNewFile(key, at: temporary)
        try install(temporary, at: path)
    }

    /// Renames the (complete, synced) key file `source` over `path` and syncs the directory: the old key
    /// is gone only once the new one is durably in its place.
    public static func install(_ source: String, at path: String) throws(KeyFileError) {
        guard rename(source, path) == 0 else { throw .io(path: path, operation: "rename", errno: errno) }
        try syncDirectory(containing: path)
    }

    /// Destroys the key file at `path`: its bytes are overwritten in place with as many random bytes
    /// and synced, then the file is unlinked and the directory synced. Refuses what is not a regular
    /// file (a symbolic link is not followed). What the storage keeps beneath the file system (SSD
    /// wear levelling, snapshots, copies elsewhere) is beyond it (SECURITY.md).
    public static func destroy(at path: String) throws(KeyFileError) {
        let (descriptor, status) = try openRegularFile(path, O_WRONLY)
        defer { close(descriptor) }
        let noise: [UInt8]
        do { noise = try SecureRandom.bytes(count: Int(status.st_size)) } catch {
            throw .io(path: path, operation: "random overwrite", errno: 0)
        }
        try writeAll(noise, to: descriptor, path: path)
        guard fsync(descriptor) == 0 else { throw .io(path: path, operation: "fsync", errno: errno) }
        guard unlink(path) == 0 else { throw .io(path: path, operation: "unlink", errno: errno) }
        try syncDirectory(containing: path)
    }

    /// Opens `path` with `access` (no symbolic link followed, a named pipe not waited for) and checks
    /// that it is a regular file; returns the descriptor and its status.
    private static func openRegularFile(_ path: String, _ access: Int32) throws(KeyFileError) -> (Int32, stat) {
        // O_NONBLOCK: opening a named pipe must not wait for a writer; fstat below then refuses it.
        let descriptor = open(path, access | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            switch errno {
            case ENOENT: throw .notFound(path: path)
            case ELOOP: throw .notARegularFile(path: path)
            default: throw .io(path: path, operation: "open", errno: errno)
            }
        }
        var status = stat()
        guard unsafe fstat(descriptor, &status) == 0 else {
            let code = errno
            close(descriptor)
            throw .io(path: path, operation: "fstat", errno: code)
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            throw .notARegularFile(path: path)
        }
        return (descriptor, status)
    }

    /// Reads the key in `path`, refusing a file that is not regular or that group or others can read.
    public static func load(from path: String) throws(KeyFileError) -> SecretKey {
        let (descriptor, status) = try openRegularFile(path, O_RDONLY)
        defer { close(descriptor) }
        guard status.st_mode & 0o077 == 0 else {
            throw .permissionsTooOpen(path: path, mode: UInt32(status.st_mode & 0o7777))
        }
        // A key file is 45 bytes; anything much larger is not one, and is not read into memory.
        var buffer = [UInt8].zeroed(count: 256)
        defer { cleanse(&buffer) }
        var filled = 0
        while filled < buffer.count {
            let count = unsafe buffer.withUnsafeMutableBytes { raw in
                unsafe read(descriptor, raw.baseAddress! + filled, raw.count - filled)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", errno: errno)
            }
            if count == 0 { break }
            filled += count
        }
        guard filled < buffer.count, var decoded = Base64.decode(buffer[..<filled]) else { throw .malformed(path: path) }
        defer { cleanse(&decoded) }
        guard decoded.count == keyByteCount else { throw .malformed(path: path) }
        return SecretKey(wiping: &decoded)
    }

    /// Creates `path` exclusively with mode 0600 and writes the key, synced to disk.
    private static func writeNewFile(_ key: SecretKey, at path: String) throws(KeyFileError) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            if errno == EEXIST { throw .alreadyExists(path: path) }
            throw .io(path: path, operation: "create", errno: errno)
        }
        var succeeded = false
        defer {
            close(descriptor)
            if !succeeded { unlink(path) }
        }
        // The umask can only remove bits from 0600; fchmod makes the mode exact even under an odd umask.
        guard fchmod(descriptor, 0o600) == 0 else { throw .io(path: path, operation: "fchmod", errno: errno) }
        var text = key.base64EncodedBytes()
        text.append(UInt8(ascii: "\n"))
        defer { cleanse(&text) }
        try writeAll(text, to: descriptor, path: path)
        guard fsync(descriptor) == 0 else { throw .io(path: path, operation: "fsync", errno: errno) }
        succeeded = true
    }

    /// Writes all of `bytes` at the descriptor's position, retrying interrupted and short writes.
    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws(KeyFileError) {
        var written = 0
        while written < bytes.count {
            let count = unsafe bytes.withUnsafeBytes { raw in
                unsafe write(descriptor, raw.baseAddress! + written, raw.count - written)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "write", errno: errno)
            }
            written += count
        }
    }

    private static func syncDirectory(containing path: String) throws(KeyFileError) {
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let descriptor = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .io(path: directory, operation: "open directory", errno: errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw .io(path: directory, operation: "fsync directory", errno: errno) }
    }

}
