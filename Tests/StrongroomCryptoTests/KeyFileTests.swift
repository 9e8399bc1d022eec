import Foundation
import Synchronization
import StrongroomCrypto
import StrongroomTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh directory under the system's temporary directory, removed after `body`.
func withTemporaryDirectory<T>(_ body: (URL) throws -> T) throws -> T {
    let directory = TemporaryDirectory("strongroom-keyfile-tests")
    return try withExtendedLifetime(directory) { try body(URL(fileURLWithPath: directory.path, isDirectory: true)) }
}

/// The permission bits of the file at `path` (not following a final symbolic link).
func permissions(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return try #require((attributes[.posixPermissions] as? NSNumber)?.intValue)
}

/// Writes `text` to a new file at `path` with `mode`.
func writeFile(_ path: String, _ text: String, mode: Int = 0o600) throws {
    try #require(FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: mode]))
    try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
}

@Suite("Key files")
struct KeyFileTests {
    @Test("create writes a 0600 file of 44 base64 characters and a newline, and load returns the key")
    func createAndLoad() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            let key = try KeyFile.create(at: path)
            #expect(key.byteCount == 32)
            #expect(try permissions(path) == 0o600)
            let content = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(content.count == 45)
            #expect(Array(content) == key.base64EncodedBytes() + [UInt8(ascii: "\n")])
            #expect(try KeyFile.load(from: path) == key)
            // Two files hold two different keys.
            let other = try KeyFile.create(at: directory.appendingPathComponent("other.key").path)
            #expect(other != key)
        }
    }

    @Test("create refuses an existing file and leaves it alone")
    func createTwice() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            let key = try KeyFile.create(at: path)
            #expect(throws: KeyFileError.alreadyExists(path: path)) { try KeyFile.create(at: path) }
            #expect(try KeyFile.load(from: path) == key)
            // Not even an empty or foreign file is overwritten.
            let foreign = directory.appendingPathComponent("notes.txt").path
            try writeFile(foreign, "keep me\n", mode: 0o644)
            #expect(throws: KeyFileError.alreadyExists(path: foreign)) { try KeyFile.create(at: foreign) }
            #expect(try String(contentsOfFile: foreign, encoding: .utf8) == "keep me\n")
        }
    }

    @Test("create refuses to write through a symbolic link")
    func createThroughSymlink() throws {
        try withTemporaryDirectory { directory in
            let target = directory.appendingPathComponent("target").path
            let link = directory.appendingPathComponent("master.key").path
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
            #expect(throws: KeyFileError.alreadyExists(path: link)) { try KeyFile.create(at: link) }
            #expect(!FileManager.default.fileExists(atPath: target))
        }
    }

    @Test("load refuses a file readable by group or others", arguments: [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o601, 0o620, 0o602])
    func tooOpen(mode: Int) throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            _ = try KeyFile.create(at: path)
            #expect(chmod(path, mode_t(mode)) == 0)
            #expect(throws: KeyFileError.permissionsTooOpen(path: path, mode: UInt32(mode))) { try KeyFile.load(from: path) }
        }
    }

    @Test("load accepts owner-only modes", arguments: [0o600, 0o400, 0o700])
    func ownerOnly(mode: Int) throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            let key = try KeyFile.create(at: path)
            #expect(chmod(path, mode_t(mode)) == 0)
            #expect(try KeyFile.load(from: path) == key)
        }
    }

    @Test("load refuses a symbolic link to a valid key file, and a dangling one")
    func symlink() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            let key = try KeyFile.create(at: path)
            let link = directory.appendingPathComponent("link.key").path
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
            #expect(throws: KeyFileError.notARegularFile(path: link)) { try KeyFile.load(from: link) }
            let relative = directory.appendingPathComponent("relative.key").path
            try FileManager.default.createSymbolicLink(atPath: relative, withDestinationPath: "master.key")
            #expect(throws: KeyFileError.notARegularFile(path: relative)) { try KeyFile.load(from: relative) }
            let dangling = directory.appendingPathComponent("dangling.key").path
            try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: directory.appendingPathComponent("nothing").path)
            #expect(throws: KeyFileError.notARegularFile(path: dangling)) { try KeyFile.load(from: dangling) }
            #expect(try KeyFile.load(from: path) == key)
        }
    }

    @Test("load refuses a directory, even one with mode 0700")
    func directory() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false,
                                                    attributes: [.posixPermissions: 0o700])
            #expect(throws: KeyFileError.notARegularFile(path: path)) { try KeyFile.load(from: path) }
        }
    }

    @Test("load refuses a device")
    func device() throws {
        #expect(throws: KeyFileError.notARegularFile(path: "/dev/null")) { try KeyFile.load(from: "/dev/null") }
    }

    @Test("load refuses a named pipe, without waiting for a writer")
    func namedPipe() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            try #require(mkfifo(path, 0o600) == 0)
            let outcome = LoadOutcome()
            Thread.detachNewThread {
                let result = Result { () throws(KeyFileError) in try KeyFile.load(from: path) }
                outcome.finish(result.map(\.byteCount))
            }
            let returned = outcome.finished.wait(timeout: .now() + 2) == .success
            if !returned {
                // load is blocked in open(2), waiting for a writer: be that writer, so the thread ends.
                for _ in 0..<100 {
                    let writer = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                    if writer >= 0 { close(writer); break }
                    usleep(10_000)
                }
                #expect(outcome.finished.wait(timeout: .now() + 10) == .success, "load stayed blocked on the pipe")
            }
            #expect(returned, "KeyFile.load blocked on a named pipe for 2 s")
            #expect(outcome.result == .failure(.notARegularFile(path: path)))
        }
    }

    @Test("load of a missing file says notFound")
    func missing() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("absent.key").path
            #expect(throws: KeyFileError.notFound(path: path)) { try KeyFile.load(from: path) }
        }
    }

    static let malformedContents: [(String, String)] = [
        ("empty", ""),
        ("a newline", "\n"),
        ("hello", "hello"),
        ("hello and a newline", "hello\n"),
        ("a 31-byte key", Data([UInt8](repeating: 0x42, count: 31)).base64EncodedString() + "\n"),
        ("a 33-byte key", Data([UInt8](repeating: 0x42, count: 33)).base64EncodedString() + "\n"),
        ("a 16-byte key", Data([UInt8](repeating: 0x42, count: 16)).base64EncodedString() + "\n"),
        ("a 64-byte key", Data([UInt8](repeating: 0x42, count: 64)).base64EncodedString() + "\n"),
        ("two keys", String(repeating: Data([UInt8](repeating: 7, count: 32)).base64EncodedString() + "\n", count: 2)),
        ("a key and a comment", Data([UInt8](repeating: 7, count: 32)).base64EncodedString() + "\n# comment\n"),
        ("URL-safe base64", String(repeating: "-_", count: 21) + "8=\n"),
        ("hex", String(repeating: "ab", count: 32) + "\n"),
        ("256 bytes of base64", String(repeating: "AAAA", count: 64)),
        ("a large file", String(repeating: "A", count: 100_000)),
        ("a NUL byte", "\u{0}"),
    ]

    @Test("load refuses malformed content", arguments: malformedContents)
    func malformed(name: String, content: String) throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            try writeFile(path, content)
            #expect(throws: KeyFileError.malformed(path: path), "\(name)") { try KeyFile.load(from: path) }
        }
    }

    @Test("load accepts the key without its newline, and with surrounding white space")
    func whiteSpace() throws {
        try withTemporaryDirectory { directory in
            let bytes = [UInt8](repeating: 0x5c, count: 32)
            let text = Data(bytes).base64EncodedString()
            for (index, content) in [text, text + "\r\n", "  " + text + "\n\n"].enumerated() {
                let path = directory.appendingPathComponent("key-\(index)").path
                try writeFile(path, content)
                #expect(try KeyFile.load(from: path) == SecretKey(copying: bytes), "content \(index)")
            }
        }
    }

    @Test("replace swaps the key atomically: old content gone, new key loads, mode 0600, no .new left")
    func replace() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            let old = try KeyFile.create(at: path)
            let oldText = String(decoding: old.base64EncodedBytes(), as: UTF8.self)
            let new = try SecretKey.random()
            try KeyFile.replace(new, at: path)
            #expect(try KeyFile.load(from: path) == new)
            #expect(try KeyFile.load(from: path) != old)
            let content = try String(contentsOfFile: path, encoding: .utf8)
            #expect(!content.contains(oldText))
            #expect(content == String(decoding: new.base64EncodedBytes(), as: UTF8.self) + "\n")
            #expect(try permissions(path) == 0o600)
            #expect(!FileManager.default.fileExists(atPath: path + ".new"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["master.key"])
        }
    }

    @Test("replace creates a missing file, and replaces a file that was too open with a 0600 one")
    func replaceMissingAndOpen() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            let first = try SecretKey.random()
            try KeyFile.replace(first, at: path)
            #expect(try KeyFile.load(from: path) == first)
            #expect(chmod(path, 0o644) == 0)
            let second = try SecretKey.random()
            try KeyFile.replace(second, at: path)
            #expect(try permissions(path) == 0o600)
            #expect(try KeyFile.load(from: path) == second)
        }
    }

    @Test("replace removes a stale .new file, and does not write through a .new symbolic link")
    func replaceStaleTemporary() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            _ = try KeyFile.create(at: path)
            try writeFile(path + ".new", "half-written", mode: 0o644)
            let key = try SecretKey.random()
            try KeyFile.replace(key, at: path)
            #expect(try KeyFile.load(from: path) == key)
            #expect(!FileManager.default.fileExists(atPath: path + ".new"))

            let victim = directory.appendingPathComponent("victim.txt").path
            try writeFile(victim, "victim\n", mode: 0o644)
            try FileManager.default.createSymbolicLink(atPath: path + ".new", withDestinationPath: victim)
            let next = try SecretKey.random()
            try KeyFile.replace(next, at: path)
            #expect(try KeyFile.load(from: path) == next)
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "victim\n")
            #expect(try permissions(victim) == 0o644)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == ["master.key", "victim.txt"])
        }
    }

    @Test("errors name the path and never carry key material")
    func errorDescriptions() throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            let key = try KeyFile.create(at: path)
            #expect(chmod(path, 0o640) == 0)
            do {
                _ = try KeyFile.load(from: path)
                Issue.record("a 0640 key file was loaded")
            } catch {
                let text = String(describing: error)
                #expect(text.contains(path))
                #expect(text.contains("640"))
                #expect(!text.contains(String(decoding: key.base64EncodedBytes(), as: UTF8.self)))
            }
        }
    }
}

/// The umask is process-wide: these tests change it, so they run one at a time and restore it at once.
@Suite("Key files under odd umasks", .serialized)
struct KeyFileUmaskTests {
    /// Runs `body` with the process umask set to `mask`, restoring the previous one right after.
    static func withUmask<T>(_ mask: mode_t, _ body: () throws(KeyFileError) -> T) throws(KeyFileError) -> T {
        let previous = umask(mask)
        defer { umask(previous) }
        return try body()
    }

    @Test("create makes a 0600 file whatever the umask", arguments: [0, 0o002, 0o022, 0o077] as [mode_t])
    func create(mask: mode_t) throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            let before = umask(0o022); umask(before)
            let key = try Self.withUmask(mask) { () throws(KeyFileError) in try KeyFile.create(at: path) }
            let after = umask(0o022); umask(after)
            #expect(after == before, "the umask was not restored")
            #expect(try permissions(path) == 0o600, "umask \(String(mask, radix: 8))")
            #expect(try KeyFile.load(from: path) == key)
        }
    }

    @Test("replace makes a 0600 file whatever the umask", arguments: [0, 0o077] as [mode_t])
    func replace(mask: mode_t) throws {
        try withTemporaryDirectory { directory in
            let path = directory.appendingPathComponent("master.key").path
            _ = try KeyFile.create(at: path)
            let key = try SecretKey.random()
            try Self.withUmask(mask) { () throws(KeyFileError) in try KeyFile.replace(key, at: path) }
            #expect(try permissions(path) == 0o600, "umask \(String(mask, radix: 8))")
            #expect(try KeyFile.load(from: path) == key)
        }
    }
}

/// Where a `KeyFile.load` on another thread reports its result.
final class LoadOutcome: Sendable {
    let finished = DispatchSemaphore(value: 0)
    private let stored = Mutex<Result<Int, KeyFileError>?>(nil)

    func finish(_ result: Result<Int, KeyFileError>) {
        stored.withLock { $0 = result }
        finished.signal()
    }

    var result: Result<Int, KeyFileError>? { stored.withLock { $0 } }
}
