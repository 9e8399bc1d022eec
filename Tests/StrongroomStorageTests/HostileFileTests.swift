import Foundation
import StrongroomStorage
import StrongroomTestSupport
import Testing

/// The `FileProblem` of `error` when it is a `FileError` carrying one.
func problem(_ error: (any Error)?) -> FileProblem? {
    (error as? FileError)?.problem
}

@Suite("Hostile files: FIFOs, symbolic links and folders where regular files belong are refused at once")
struct HostileFileTests {
    /// The test's files, removed after it.
    let scratch = TemporaryDirectory("strongroom-storage")

    /// A folder in the scratch folder with a regular file `real` in it and a hostile file beside it.
    func folder(with kind: HostileKind) throws -> (hostile: String, real: String) {
        let folder = scratch.path("hostile")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        let real = folder + "/real"
        try Data("line\n".utf8).write(to: URL(fileURLWithPath: real))
        let hostile = folder + "/hostile"
        try kind.make(at: hostile, linkTarget: real)
        return (hostile, real)
    }

    @Test("reading, appending, mapping and locking a FIFO, a symbolic link or a folder fails at once with its kind named",
          arguments: HostileKind.allCases)
    func refused(kind: HostileKind) throws {
        let (hostile, real) = try self.folder(with: kind)
        let attempts: [(String, @Sendable () -> (any Error)?)] = [
            ("readAll", { do { _ = try AppendOnlyFile.readAll(path: hostile); return nil } catch { return error } }),
            ("AppendOnlyFile", { do { _ = try AppendOnlyFile(path: hostile); return nil } catch { return error } }),
            ("MappedFile", { do { _ = try MappedFile(path: hostile, window: 4096); return nil } catch { return error } }),
            ("MappedBlock", { do { _ = try MappedBlock(path: hostile, byteCount: 4096); return nil } catch { return error } }),
            ("FileLock", { do { _ = try FileLock(path: hostile); return nil } catch { return error } }),
        ]
        for (name, attempt) in attempts {
            guard let (error, seconds) = timed(attempt) else {
                Issue.record("\(name) on a \(kind) hangs")
                continue
            }
            #expect(seconds < 1, "\(name) took \(seconds) s")
            #expect(problem(error) == .wrongKind(found: kind.fileKind, expected: .regularFile), "\(name): \(String(describing: error))")
            #expect("\(error.map { "\($0)" } ?? "")".contains(kind.fileKind.rawValue), "\(name): the message names what is there")
        }
        // Nothing was read or written through it: a linked file is as it was.
        #expect(try AppendOnlyFile.readAll(path: real) == Array("line\n".utf8))
        // Replaced by a regular file, the same path works for every one of them.
        try FileManager.default.removeItem(atPath: hostile)
        try AppendOnlyFile(path: hostile).append(Array("entry\n".utf8))
        #expect(try AppendOnlyFile.readAll(path: hostile) == Array("entry\n".utf8))
        _ = try MappedFile(path: hostile, window: 4096)
        #expect(try FileLock(path: hostile).tryLockExclusive())
    }

    @Test("a character device (/dev/null) is not taken for a regular file")
    func device() {
        #expect(problem(AppendOnlyFileAttempt.readAll("/dev/null")) == .wrongKind(found: .characterDevice, expected: .regularFile))
    }

    @Test("files the storage layer creates are 0600 and folders 0700 under umask 000; an existing folder open to others is refused or tightened")
    func privateModes() async throws {
        let folder = scratch.path("modes")
        // The umask is the process's: changed in a child of its own, not under the other tests.
        await #expect(processExitsWith: .success) { [folder = folder as String] in
            umask(0)
            try createDirectory(folder, existing: .refuse)
            try createPrivateFile(folder + "/database")
            _ = try AppendOnlyFile(path: folder + "/appended")
            _ = try MappedFile(path: folder + "/mapped", window: 4096)
            _ = try MappedBlock(path: folder + "/block", byteCount: 4096)
            _ = try FileLock(path: folder + "/lock")
        }
        #expect(mode(folder) == 0o700)
        for name in ["database", "appended", "mapped", "block", "lock"] { #expect(mode(folder + "/" + name) == 0o600, "\(name)") }
        #expect(try createPrivateFile(folder + "/database") == false, "an existing file is left alone")
        // An existing folder: refused while others may use it, tightened when asked, fine once private.
        chmod(folder, 0o777)
        #expect(throws: FileError(path: folder, operation: "refused", code: EACCES, problem: .openToOthers(mode: 0o777))) {
            try createDirectory(folder, existing: .refuse)
        }
        #expect(mode(folder) == 0o777, "a refused folder is left as it is")
        #expect(try makePrivate(folder, expected: .directory, existing: .tighten))
        #expect(mode(folder) == 0o700)
        #expect(try createDirectory(folder, existing: .refuse) == false)
        // A symbolic link to a private folder is refused, never followed.
        let link = folder + "-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: folder)
        for existing in [ExistingAccess.refuse, .tighten] {
            #expect(problem(DirectoryAttempt.create(link, existing)) == .wrongKind(found: .symbolicLink, expected: .directory))
            #expect(problem(DirectoryAttempt.create(link + "/", existing)) == .wrongKind(found: .symbolicLink, expected: .directory),
                    "a trailing slash does not follow it either")
        }
    }

    /// The permission bits of `path` (not following a symbolic link).
    func mode(_ path: String) -> UInt32 {
        var status = stat()
        guard lstat(path, &status) == 0 else { return 0 }
        return UInt32(status.st_mode) & 0o7777
    }
}

/// Attempts whose error, if any, is returned for a look at it.
enum AppendOnlyFileAttempt {
    static func readAll(_ path: String) -> (any Error)? {
        do { _ = try AppendOnlyFile.readAll(path: path); return nil } catch { return error }
    }
}

enum DirectoryAttempt {
    static func create(_ path: String, _ existing: ExistingAccess) -> (any Error)? {
        do { try createDirectory(path, existing: existing); return nil } catch { return error }
    }
}

@Suite("Locks that cannot hang: a holder that is stopped, not dead, makes the wait end in a typed error naming it")
struct BoundedLockTests {
    /// The test's files, removed after it.
    let scratch = TemporaryDirectory("strongroom-storage")

    @Test("a process stopped holding the shared mutex: the wait ends at the deadline naming its pid; once it is gone, the mutex works on")
    func stoppedMutexHolder() async throws {
        let path = scratch.path("stopped")
        let block = try MappedBlock(path: path, byteCount: 4096)
        let mutex = try SharedMutex(in: block, at: 256)
        try mutex.initialize()
        let watch = watchStoppedChild(pidFile: path + ".pid") { [path = path as String] _ in
            timed { () -> FileProblem? in
                // A handle of this thread's own (a handle is used by one owner at a time).
                do {
                    let block = try MappedBlock(path: path, byteCount: 4096)
                    _ = try withExtendedLifetime(block) { try SharedMutex(in: block, at: 256).lock(until: LockDeadline(secondsFromNow: 0.5)) }
                    return nil
                } catch {
                    return problem(error)
                }
            }
        }
        await #expect(processExitsWith: .signal(SIGKILL)) { [path = path as String] in
            // Kept mapped: the kernel releases a dead holder's robust mutex through its mapping.
            let mutex = try SharedMutex(in: MappedBlock(path: path, byteCount: 4096), at: 256)
            _ = try mutex.lock(until: LockDeadline(secondsFromNow: 30))
            try withExtendedLifetime(mutex) { try stopForGood(writingPIDTo: path + ".pid") }
        }
        let (child, outcome) = try #require(watch(), "the child did not stop holding the mutex")
        let (seen, seconds) = try #require(outcome, "the wait did not end")
        #expect(seen == .lockHeld(holder: child, waitedSeconds: 0.5))
        #expect(seconds >= 0.45 && seconds < 3, "waited \(seconds) s")
        // The second act: the holder killed, the mutex is taken (its death reported), and sound after.
        #expect(try mutex.lock(until: LockDeadline(secondsFromNow: 5)) == true)
        mutex.unlock()
        #expect(try mutex.lock(until: LockDeadline(secondsFromNow: 0)) == false, "a free mutex is taken with no time left")
        mutex.unlock()
    }

    @Test("an flock held by another handle: the wait ends at the deadline; released, the lock is taken")
    func heldFileLock() throws {
        let path = scratch.path("LOCK")
        let holder = try FileLock(path: path)
        let waiter = try FileLock(path: path)
        try holder.lockExclusive(until: LockDeadline(secondsFromNow: 5))
        for attempt in [{ try waiter.lockExclusive(until: LockDeadline(secondsFromNow: 0.3)) },
                        { try waiter.lockShared(until: LockDeadline(secondsFromNow: 0.3)) }] {
            let start = Date()
            #expect(throws: FileError(path: path, operation: "flock", code: EWOULDBLOCK, problem: .lockHeld(holder: nil, waitedSeconds: 0.3))) {
                try attempt()
            }
            let seconds = Date().timeIntervalSince(start)
            #expect(seconds >= 0.25 && seconds < 3, "waited \(seconds) s")
        }
        holder.unlock()
        #expect(try waiter.withExclusiveLock(until: LockDeadline(secondsFromNow: 5)) { "taken" } == "taken")
        #expect(try holder.tryLockExclusive())
    }
}
