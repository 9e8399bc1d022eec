import Foundation
import StrongroomStorage
import Synchronization

/// Something other than a regular file, put where one belongs.
public enum HostileKind: String, CaseIterable, Sendable {
    case fifo
    case symbolicLink
    case directory

    /// The kind `lstat` reports for it.
    public var fileKind: FileKind {
        switch self {
        case .fifo: return .fifo
        case .symbolicLink: return .symbolicLink
        case .directory: return .directory
        }
    }

    /// Makes one at `path`; a symbolic link points at `target`, a regular file that would be readable.
    public func make(at path: String, linkTarget target: String) throws {
        switch self {
        case .fifo: guard mkfifo(path, 0o600) == 0 else { throw FileError(path: path, operation: "mkfifo", code: errno) }
        case .symbolicLink: try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
        case .directory: try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        }
    }
}

/// Runs `body` on a thread of its own and returns its result with how long it took; nil when it has
/// not returned within `limit` seconds (a hang fails the test instead of hanging it; the thread is
/// left behind).
public func timed<T: Sendable>(limit: Double = 30, _ body: @escaping @Sendable () -> T) -> (result: T, seconds: Double)? {
    let box = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    let start = Date()
    Thread.detachNewThread {
        let result = body()
        box.withLock { $0 = result }
        done.signal()
    }
    guard done.wait(timeout: .now() + limit) == .success, let result = box.withLock({ $0 }) else { return nil }
    return (result, Date().timeIntervalSince(start))
}

/// In a test's child, once it holds the lock the test is about: writes this process's ID to `pidFile`
/// and stops itself, for good: continued (something may send SIGCONT to a stopped process; on these
/// machines something does), it stops again. The test ends it with SIGKILL.
public func stopForGood(writingPIDTo pidFile: String) throws -> Never {
    try String(getpid()).write(toFile: pidFile, atomically: true, encoding: .utf8)
    while true { kill(getpid(), SIGSTOP) }
}

/// Watches for a test's child that stops itself holding a lock (`stopForGood`): on a thread of its
/// own, waits until the child has written its pid to `pidFile` and stopped, runs `body` with that pid,
/// then kills the child (SIGKILL), so that the exit test awaiting the child ends. Returns a function
/// that waits for all that to be done and gives the pid and `body`'s result (nil when no child
/// stopped within a minute).
///
/// A thread of its own, not a task: the exit test waiting for a stopped child keeps one of Swift
/// concurrency's threads blocked (reading from the child), and a machine with two cores has two.
public func watchStoppedChild<T: Sendable>(pidFile: String, _ body: @escaping @Sendable (pid_t) -> T)
    -> @Sendable () -> (pid: pid_t, result: T)? {
    let outcome = Mutex<(pid: pid_t, result: T)?>(nil)
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        defer { done.signal() }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = pid_t(text),
               let status = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
               let close = status.lastIndex(of: ")"), status[status.index(close, offsetBy: 2)] == "T" {
                let result = body(pid)
                kill(pid, SIGKILL)
                outcome.withLock { $0 = (pid, result) }
                return
            }
            usleep(10_000)
        }
    }
    return {
        done.wait()
        return outcome.withLock { $0 }
    }
}

/// The permission bits of every folder and file under `directory` (the folder itself included), not
/// following symbolic links, by path.
public func modes(under directory: String) -> [String: UInt32] {
    var found: [String: UInt32] = [:]
    func visit(_ path: String) {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        found[path] = UInt32(status.st_mode) & 0o7777
        if status.st_mode & S_IFMT == S_IFDIR {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] { visit(path + "/" + name) }
        }
    }
    visit(directory)
    return found
}

/// What is not private among `modes`: folders other than 0700, files other than 0600.
public func notPrivate(_ modes: [String: UInt32]) -> [String] {
    modes.compactMap { path, mode in
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        return mode == (isDirectory.boolValue ? 0o700 : 0o600) ? nil : "\(path): \(String(mode, radix: 8))"
    }.sorted()
}
