import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import StrongroomTestSupport
import Testing

/// The `FileError` problem `error` carries, as a `StoreError.file` or as it is.
func fileProblem(_ error: (any Error)?) -> FileProblem? {
    if let fileError = error as? FileError { return fileError.problem }
    guard case .file(let fileError)? = error as? StoreError else { return nil }
    return fileError.problem
}

@Suite("Store files: private from creation, refused when others could reach them")
struct StoreFilesTests {
    /// The test's files, removed after it.
    let scratch = TemporaryDirectory("strongroom-files")
    static let reader = AccessContext(actor: "files-test", purpose: .admin)

    @Test("under umask 000 a store's folders are 0700 and every file 0600: databases with their WAL and shared memory, audit files, key file")
    func umaskZero() async throws {
        let store = scratch.path("store")
        let keyFile = scratch.path("master.key")
        let errorFile = scratch.path("error")
        // The umask is the process's: changed in a child of its own, not under the other tests. The
        // child walks the folder while its store is open (the WAL and shared-memory files exist then).
        await #expect(processExitsWith: .success) { [store = store as String, keyFile = keyFile as String, errorFile = errorFile as String] in
            runChild(errorFile: errorFile) {
                umask(0)
                let key = try KeyFile.create(at: keyFile)
                let opened = try Store.create(at: store, keyProvider: StaticKeyProvider(key: key))
                for index in 0..<3 {
                    let id = try opened.create(sampleSubject("um\(index)"), context: StoreFilesTests.reader)
                    _ = try opened.read(id, context: StoreFilesTests.reader)
                }
                let seen = modes(under: store)
                let expected = ["data.sqlite", "data.sqlite-wal", "data.sqlite-shm", "keys.sqlite", "keys.sqlite-wal", "keys.sqlite-shm",
                                "audit", "audit/00000001.jsonl", "audit/TAIL", "audit/LOCK", "audit/PRESENT"]
                let missing = expected.filter { seen[store + "/" + $0] == nil }
                let wrong = notPrivate(seen) + notPrivate(modes(under: keyFile))
                guard missing.isEmpty, wrong.isEmpty else {
                    throw ChildFailure(description: "missing: \(missing); not private: \(wrong)")
                }
            }
        }
        if let reason = try? String(contentsOfFile: errorFile, encoding: .utf8) { Issue.record("child: \(reason)") }
        // The second act, under this process's umask: the store opens, reads, writes and rolls its log
        // over, and what it makes is private too.
        var configuration = StoreConfiguration()
        configuration.auditSegmentByteLimit = 2048
        let reopened = try Store.open(at: store, keyProvider: KeyFileProvider(path: keyFile), configuration: configuration)
        for index in 0..<5 {
            let id = try reopened.create(sampleSubject("again\(index)"), context: StoreFilesTests.reader)
            _ = try reopened.read(id, context: StoreFilesTests.reader)
        }
        let seen = modes(under: store)
        #expect(seen[store + "/audit/00000002.jsonl"] != nil, "the log rolled over")
        #expect(notPrivate(seen) == [])
        #expect(try reopened.verifyAuditLog().isIntact)
        reopened.close()
    }

    /// How a folder that is not fit for a new store is made, and how it is put right.
    enum UnfitFolder: String, CaseIterable, Sendable {
        case openToAll = "folder 0777"
        case groupReadable = "folder 0750"
        case symbolicLink = "store path a symbolic link to a private folder"
        case auditLink = "audit folder a symbolic link"

        /// Makes the unfit folder at `path` (`scratch` holds what it points at); what is expected.
        func make(at path: String, scratch: String) throws -> FileProblem {
            let manager = FileManager.default
            switch self {
            case .openToAll, .groupReadable:
                try manager.createDirectory(atPath: path, withIntermediateDirectories: false)
                let mode: UInt32 = self == .openToAll ? 0o777 : 0o750
                chmod(path, mode_t(mode))
                return .openToOthers(mode: mode)
            case .symbolicLink:
                try manager.createDirectory(atPath: scratch, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                try manager.createSymbolicLink(atPath: path, withDestinationPath: scratch)
                return .wrongKind(found: .symbolicLink, expected: .directory)
            case .auditLink:
                try manager.createDirectory(atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                try manager.createDirectory(atPath: scratch, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                try manager.createSymbolicLink(atPath: path + "/audit", withDestinationPath: scratch)
                return .wrongKind(found: .symbolicLink, expected: .directory)
            }
        }

        /// Puts it right as the error tells the operator to.
        func fix(_ path: String) throws {
            switch self {
            case .openToAll, .groupReadable: chmod(path, 0o700)
            case .symbolicLink:
                try FileManager.default.removeItem(atPath: path)
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false,
                                                        attributes: [.posixPermissions: 0o700])
            case .auditLink: try FileManager.default.removeItem(atPath: path + "/audit")
            }
        }
    }

    @Test("a new store is refused in a folder others could use, or through a symbolic link; put right, the same path works",
          arguments: UnfitFolder.allCases)
    func unfitFolder(_ unfit: UnfitFolder) throws {
        let path = scratch.path("store")
        let elsewhere = scratch.path("elsewhere")
        let expected = try unfit.make(at: path, scratch: elsewhere)
        let key = try SecretKey.random()
        let before = modes(under: path).merging(modes(under: elsewhere)) { $1 }
        var refusal: (any Error)?
        do { _ = try Store.create(at: path, keyProvider: StaticKeyProvider(key: key)) } catch { refusal = error }
        #expect(fileProblem(refusal) == expected, "\(String(describing: refusal))")
        let message = refusal.map { "\($0)" } ?? ""
        #expect(message.contains(expected == .wrongKind(found: .symbolicLink, expected: .directory) ? "symbolic link" : "chmod 700"), "\(message)")
        // Nothing was written, here or where a link points.
        #expect(modes(under: path).merging(modes(under: elsewhere)) { $1 } == before)
        // Put right: a store is made there, works, and is private.
        try unfit.fix(path)
        let store = try Store.create(at: path, keyProvider: StaticKeyProvider(key: key))
        let id = try store.create(sampleSubject("fit"), context: StoreFilesTests.reader)
        #expect(try store.read(id, fields: [.name], context: StoreFilesTests.reader).personal.name == "Zebedee Quixotic-fit")
        #expect(try store.verifyAuditLog().isIntact)
        #expect(notPrivate(modes(under: path)) == [])
        store.close()
    }

    @Test("an existing store whose folder and files became open to others (a copy, a restore) is made private again when opened")
    func reopenTightens() throws {
        let test = try TestStore()
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("wide"), context: StoreFilesTests.reader)
        test.store.close()
        // What a careless restore leaves: everything readable by all.
        for (path, mode) in modes(under: test.directory) {
            chmod(path, mode == 0o700 ? 0o755 : 0o644)
        }
        #expect(!notPrivate(modes(under: test.directory)).isEmpty)
        let reopened = try test.reopen()
        #expect(notPrivate(modes(under: test.directory)) == [])
        #expect(try reopened.read(id, fields: [.name], context: StoreFilesTests.reader).personal.name == "Zebedee Quixotic-wide")
        #expect(try reopened.verifyAuditLog().isIntact)
        #expect(notPrivate(modes(under: test.directory)) == [])
        reopened.close()
    }

    /// Where a hostile file goes in the audit folder.
    enum HostilePlace: String, CaseIterable, Sendable {
        /// In place of the only segment (moved aside; a link points at it).
        case existingSegment = "existing segment"
        /// As the next segment, after the real one.
        case nextSegment = "next segment"
        case tail = "audit/TAIL"
        case presence = "audit/PRESENT"

        var name: String {
            switch self {
            case .existingSegment: return "00000001.jsonl"
            case .nextSegment: return "00000002.jsonl"
            case .tail: return "TAIL"
            case .presence: return "PRESENT"
            }
        }

        var isSegment: Bool { self == .existingSegment || self == .nextSegment }
    }

    @Test("a FIFO, symbolic link or folder among the audit files: verify, show and appends fail at once with it named; removed, all is well",
          arguments: HostileKind.allCases, HostilePlace.allCases)
    func hostileAuditFile(kind: HostileKind, place: HostilePlace) throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        let audit = folder.directory + "/audit"
        let hostile = audit + "/" + place.name
        let aside = folder.directory + "/aside"
        // Opened first: a store opened with the hostile file there is refused at once (below).
        let store = try folder.open()
        if FileManager.default.fileExists(atPath: hostile) {
            try FileManager.default.moveItem(atPath: hostile, toPath: aside)
        } else {
            try Data("{}\n".utf8).write(to: URL(fileURLWithPath: aside))
        }
        try kind.make(at: hostile, linkTarget: aside)
        let wrongKind = FileProblem.wrongKind(found: kind.fileKind, expected: .regularFile)
        if place.isSegment {
            let verification = timed { () -> FileProblem? in
                do { _ = try store.verifyAuditLog(); return nil } catch { return fileProblem(error) }
            }
            #expect(verification?.result == wrongKind, "verify")
            #expect((verification?.seconds ?? .infinity) < 1, "verify took \(verification?.seconds ?? .infinity) s")
            let show = timed { () -> FileProblem? in
                do { try store.auditEntries { _, _ in }; return nil } catch { return fileProblem(error) }
            }
            #expect(show?.result == wrongKind, "show")
        }
        let read = timed { () -> String in
            do { _ = try store.read(folder.subject, fields: [.name], context: StoreFilesTests.reader); return "returned" } catch {
                return "\(error)"
            }
        }
        #expect(read?.result.contains("could not be written") == true && read?.result.contains(kind.fileKind.rawValue) == true,
                "the read fails closed naming the \(kind.fileKind.rawValue): \(read?.result ?? "hangs")")
        #expect((read?.seconds ?? .infinity) < 1, "the read took \(read?.seconds ?? .infinity) s")
        // Opened again with the file there: refused at once, with it named.
        var refusal: (any Error)?
        do { _ = try folder.open() } catch { refusal = error }
        #expect(fileProblem(refusal) == wrongKind, "\(String(describing: refusal))")
        // The second act: the hostile file gone (the segment back), the store reads and verifies again,
        // in this handle and in a fresh one.
        try FileManager.default.removeItem(atPath: hostile)
        if place == .existingSegment { try FileManager.default.moveItem(atPath: aside, toPath: hostile) }
        #expect(try store.read(folder.subject, fields: [.name], context: StoreFilesTests.reader).personal.name == "Zebedee Quixotic-fs")
        store.close()
        let again = try folder.open()
        #expect(try again.read(folder.subject, fields: [.name], context: StoreFilesTests.reader).personal.name == "Zebedee Quixotic-fs")
        let verification = try again.verifyAuditLog()
        #expect(verification.isIntact, "\(String(describing: verification.problem))")
        again.close()
    }

    /// Which of the audit log's locks a stopped process holds.
    enum StuckLock: String, CaseIterable, Sendable {
        /// The append lock (the mutex in `audit/TAIL`), after one append of its own.
        case appendLock = "append lock"
        /// The join lock (`flock` on `audit/LOCK`).
        case joinLock = "join lock"
    }

    @Test("a process stopped holding an audit lock: decrypts elsewhere fail closed after the configured wait, naming it; once it is gone, they work",
          arguments: StuckLock.allCases)
    func stoppedLockHolder(lock: StuckLock) async throws {
        let folder = try FolderStore()
        defer { folder.cleanUp() }
        let pidFile = folder.directory + "/holder.pid"
        var configuration = StoreConfiguration()
        configuration.auditLockTimeout = 1
        let key = try #require(SecretKey(base64Encoded: folder.keyText))
        let store = try Store.open(at: folder.directory, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
        let watch = watchStoppedChild(pidFile: pidFile) { _ in
            let read = timed { () -> String in
                do { _ = try store.read(folder.subject, fields: [.name], context: StoreFilesTests.reader); return "returned" } catch {
                    return "\(error)"
                }
            }
            // Verifying takes no lock: it works meanwhile.
            return (read, (try? store.verifyAuditLog())?.isIntact == true)
        }
        await #expect(processExitsWith: .signal(SIGKILL)) {
            [directory = folder.directory as String, key = folder.keyText as String, subject = folder.subject.rawValue as Int64,
             lock = lock.rawValue as String, pidFile = pidFile as String] in
            try StoreFilesTests.stopHolding(StuckLock(rawValue: lock)!, directory: directory, key: key, subject: subject, pidFile: pidFile)
        }
        let (holder, (read, verified)) = try #require(watch(), "the child did not stop holding the lock")
        let (message, seconds) = try #require(read, "the read hangs")
        #expect(message.contains("could not be written") && message.contains("still held by") && message.contains("after 1 s"), "\(message)")
        if lock == .appendLock { #expect(message.contains("process \(holder)"), "the holder is named: \(message)") }
        #expect(seconds >= 0.9 && seconds < 5, "failed after \(seconds) s")
        #expect(verified, "verify works while the lock is held")
        // The second act: the holder gone, the same store decrypts again, and so does another.
        #expect(try store.read(folder.subject, fields: [.name], context: StoreFilesTests.reader).personal.name == "Zebedee Quixotic-fs")
        let other = try folder.open()
        #expect(try other.read(folder.subject, fields: [.name], context: StoreFilesTests.reader).personal.name == "Zebedee Quixotic-fs")
        let verification = try other.verifyAuditLog()
        #expect(verification.isIntact, "\(String(describing: verification.problem))")
        other.close()
        store.close()
    }

    /// In a child process: takes `lock` of the folder store's audit log (the append lock after one read
    /// of its own, through which it joins) and stops itself holding it, for good.
    static func stopHolding(_ lock: StuckLock, directory: String, key: String, subject: Int64, pidFile: String) throws -> Never {
        switch lock {
        case .appendLock:
            let store = try Store.open(at: directory, keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: key)!))
            _ = try store.read(SubjectID(rawValue: subject), fields: [.name], context: AccessContext(actor: "holder", purpose: .admin))
            // audit/TAIL: the append lock at byte 256, kept mapped (and the store open) while stopped.
            let mutex = try SharedMutex(in: MappedBlock(path: directory + "/audit/TAIL", byteCount: 4096), at: 256)
            _ = try mutex.lock(until: LockDeadline(secondsFromNow: 30))
            try withExtendedLifetime((store, mutex)) { try stopForGood(writingPIDTo: pidFile) }
        case .joinLock:
            let join = try FileLock(path: directory + "/audit/LOCK")
            try join.lockExclusive(until: LockDeadline(secondsFromNow: 30))
            try withExtendedLifetime(join) { try stopForGood(writingPIDTo: pidFile) }
        }
    }
}
