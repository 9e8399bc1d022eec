#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file operation of the storage layer failed: the path, the operation and the OS error, and
/// what was wrong with the file when the OS call itself did not fail (`problem`).
public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file.
    public let path: String
    /// What was being done ("open", "write", "fsync", …).
    public let operation: String
    /// The `errno` value (for a `problem`, the closest one: `ELOOP`, `EACCES`, `ETIMEDOUT`, …).
    public let code: Int32
    /// What was found wrong with the file (its kind, who may use it, a lock that stayed held); nil
    /// when the OS call failed on its own.
    public let problem: FileProblem?

    /// Creates an error from its parts.
    public init(path: String, operation: String, code: Int32, problem: FileProblem? = nil) {
        self.path = path
        self.operation = operation
        self.code = code
        self.problem = problem
    }

    public var description: String {
        "\(operation) \(path): " + (problem?.description ?? String(cString: strerror(code)))
    }
}

/// What kind of file is at a path (`lstat`'s file type: a symbolic link is not followed).
public enum FileKind: String, Equatable, Sendable {
    case regularFile = "regular file"
    case directory
    case symbolicLink = "symbolic link"
    case fifo = "FIFO (named pipe)"
    case characterDevice = "character device"
    case blockDevice = "block device"
    case socket
    case unknown = "file of unknown type"

    /// The kind `mode` (`st_mode`) says.
    init(mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regularFile
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symbolicLink
        case S_IFIFO: self = .fifo
        case S_IFCHR: self = .characterDevice
        case S_IFBLK: self = .blockDevice
        case S_IFSOCK: self = .socket
        default: self = .unknown
        }
    }
}

/// What was wrong with a file or folder whose OS calls succeeded, with what the operator can do.
public enum FileProblem: Equatable, Sendable, CustomStringConvertible {
    /// Something else where a regular file (or a folder) belongs: a FIFO that would block a reader for
    /// ever, a device, a folder, or a symbolic link that is not followed.
    case wrongKind(found: FileKind, expected: FileKind)
    /// A store folder or file that the group or others may use (its permission bits, `st_mode & 0777`).
    case openToOthers(mode: UInt32)
    /// A store folder or file owned by another user (its uid) than the one running.
    case ownedByAnotherUser(uid: UInt32)
    /// A lock still held by someone else when the wait for it ended: the holder's process ID where it
    /// is known (a stopped or deadlocked process), and how long was waited.
    case lockHeld(holder: Int32?, waitedSeconds: Double)

    public var description: String {
        switch self {
        case .wrongKind(let found, let expected) where expected == .directory:
            return "a \(found.rawValue) is there, where a folder of its own belongs: use a real folder (a link is not followed)"
        case .wrongKind(let found, let expected):
            return "a \(found.rawValue) is there, where a \(expected.rawValue) belongs: remove it (nothing is read or written through it)"
        case .openToOthers(let mode):
            return "open to group or others (mode \(String(mode, radix: 8))): use a new folder, or `chmod 700` the folder "
                + "(and `chmod 600` its files) if nobody else could have used it"
        case .ownedByAnotherUser(let uid):
            return "owned by another user (uid \(uid)): use a folder of your own"
        case .lockHeld(let holder, let waited):
            let who = holder.map { "process \($0)" } ?? "another process"
            return "still held by \(who) after \(waited.formatted) s (stopped or stuck?): the operation was refused; "
                + "resume or end that process"
        }
    }
}

extension Double {
    /// The number without a fraction when it has none ("10", "0.5").
    fileprivate var formatted: String {
        self == rounded() && abs(self) < 1e15 ? String(Int64(self)) : String(self)
    }
}

/// Calls `operation` (a system call returning -1 and setting `errno` on failure) again as long as it
/// fails with `EINTR`, a signal that arrived during the call; its result otherwise.
@inline(__always)
func retryingOnInterrupt<Result: BinaryInteger>(_ operation: () -> Result) -> Result {
    var result: Result
    repeat { result = operation() } while result == -1 && errno == EINTR
    return result
}

/// Calls `operation` (a function returning an error number itself, such as `posix_fallocate` or the
/// `pthread` functions, not setting `errno`) again as long as it returns `EINTR`; its result otherwise.
@inline(__always)
func retryingOnInterruptResult(_ operation: () -> Int32) -> Int32 {
    var result: Int32
    repeat { result = operation() } while result == EINTR
    return result
}

/// What to do with an existing store folder or file that the group or others may use.
public enum ExistingAccess: Sendable {
    /// Refuse it (`FileProblem.openToOthers`): a folder a new store is to be made in.
    case refuse
    /// Take the group's and others' permission bits away and go on: a store opened again (a copy or a
    /// restore may have widened them).
    case tighten
}

/// Creates the private folder `path` (mode 0700, whatever the umask), or checks the one there: a real
/// folder (a symbolic link is refused, not followed), owned by the user running, and not open to the
/// group or others (refused or tightened, as `existing` says). True when it was created.
/// The corresponding C functions are `mkdir`, `lstat` and `chmod`.
@discardableResult
public func createDirectory(_ path: String, existing: ExistingAccess) throws(FileError) -> Bool {
    if mkdir(path, 0o700) == 0 {
        // The umask can only take bits away from 0700; chmod makes it exact under any umask.
        guard chmod(path, 0o700) == 0 else { throw FileError(path: path, operation: "chmod", code: errno) }
        return true
    }
    guard errno == EEXIST else { throw FileError(path: path, operation: "mkdir", code: errno) }
    try makePrivate(path, expected: .directory, existing: existing)
    return false
}

/// Checks the existing folder or file at `path` as `createDirectory` does a folder (of the `expected`
/// kind, not a symbolic link, owned by the user running, not open to the group or others, or
/// tightened); nothing happens when nothing is there. True when its permissions were tightened.
@discardableResult
public func makePrivate(_ path: String, expected: FileKind, existing: ExistingAccess) throws(FileError) -> Bool {
    // `lstat("link/")` would follow the link: the trailing slashes go first.
    var path = path
    while path.count > 1, path.hasSuffix("/") { path.removeLast() }
    var status = stat()
    guard unsafe lstat(path, &status) == 0 else {
        if errno == ENOENT { return false }
        throw FileError(path: path, operation: "lstat", code: errno)
    }
    let kind = FileKind(mode: status.st_mode)
    guard kind == expected else {
        throw FileError(path: path, operation: "refused", code: kind == .symbolicLink ? ELOOP : EINVAL,
                        problem: .wrongKind(found: kind, expected: expected))
    }
    guard status.st_uid == geteuid() else {
        throw FileError(path: path, operation: "refused", code: EPERM, problem: .ownedByAnotherUser(uid: UInt32(status.st_uid)))
    }
    let mode = UInt32(status.st_mode) & 0o777
    guard mode & 0o077 != 0 else { return false }
    guard existing == .tighten else {
        throw FileError(path: path, operation: "refused", code: EACCES, problem: .openToOthers(mode: mode))
    }
    guard chmod(path, mode_t(mode & 0o700)) == 0 else { throw FileError(path: path, operation: "chmod", code: errno) }
    return true
}

/// Creates the file `path`, empty and private (mode 0600 whatever the umask), unless something is there
/// already; true when it was created. Databases are made this way before SQLite opens them, because
/// SQLite gives its journal, WAL and shared-memory files the database file's mode.
/// The corresponding C functions are `open` (`O_CREAT | O_EXCL | O_NOFOLLOW`) and `fchmod`.
@discardableResult
public func createPrivateFile(_ path: String) throws(FileError) -> Bool {
    let descriptor = retryingOnInterrupt { open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
    guard descriptor >= 0 else {
        if errno == EEXIST { return false }
        throw FileError(path: path, operation: "open", code: errno)
    }
    defer { close(descriptor) }
    // The umask can only take bits away from 0600; fchmod makes it exact under any umask.
    guard fchmod(descriptor, 0o600) == 0 else { throw FileError(path: path, operation: "fchmod", code: errno) }
    return true
}

/// Opens the regular file at `path` with `flags` (plus `O_CREAT` with mode 0600 when `create`), never
/// following a symbolic link and never blocking in the open itself (`O_NOFOLLOW | O_NONBLOCK`: a FIFO
/// opened without a writer would block for ever): anything but a regular file there is refused with
/// `FileProblem.wrongKind`. Returns the descriptor (blocking again, close-on-exec) and the file's size.
func openRegularFile(_ path: String, flags: Int32, create: Bool) throws(FileError) -> (descriptor: Int32, size: Int64) {
    let descriptor = retryingOnInterrupt {
        open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (create ? O_CREAT : 0), 0o600)
    }
    guard descriptor >= 0 else {
        let code = errno
        // ELOOP (a symbolic link), EISDIR, ENXIO (a FIFO opened for writing with no reader, a device):
        // named by what is there, for the operator.
        var status = stat()
        if unsafe lstat(path, &status) == 0, case let kind = FileKind(mode: status.st_mode), kind != .regularFile {
            throw FileError(path: path, operation: "open", code: code, problem: .wrongKind(found: kind, expected: .regularFile))
        }
        throw FileError(path: path, operation: "open", code: code)
    }
    var status = stat()
    guard unsafe fstat(descriptor, &status) == 0 else {
        let code = errno
        close(descriptor)
        throw FileError(path: path, operation: "fstat", code: code)
    }
    let kind = FileKind(mode: status.st_mode)
    guard kind == .regularFile else {
        close(descriptor)
        throw FileError(path: path, operation: "open", code: EINVAL, problem: .wrongKind(found: kind, expected: .regularFile))
    }
    // Reads and writes of a regular file never block anyway; cleared so the descriptor is an ordinary one.
    let current = fcntl(descriptor, F_GETFL)
    if current >= 0 { _ = fcntl(descriptor, F_SETFL, current & ~O_NONBLOCK) }
    return (descriptor, Int64(status.st_size))
}
