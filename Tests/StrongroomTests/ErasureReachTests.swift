import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Testing

@Suite("Erasure reaches every file of the key database and every process")
struct ErasureReachTests {
    static let reason = "Art. 17 request 2026-115"

    /// The bytes of the key database's files (main file, WAL, rollback journal) of a folder store.
    static func keyDatabaseBytes(_ test: TestStore) throws -> [(place: String, bytes: [UInt8])] {
        try ["", "-wal", "-journal"].map { test.directory + "/keys.sqlite" + $0 }
            .filter { FileManager.default.fileExists(atPath: $0) }
            .map { ($0, [UInt8](try Data(contentsOf: URL(fileURLWithPath: $0)))) }
    }

    /// The places among the key database's files that hold `wrapped` or its last 16 bytes (the GCM tag).
    static func copies(of wrapped: [UInt8], in test: TestStore) throws -> [String] {
        try keyDatabaseBytes(test).filter { PlaintextScan.contains($0.bytes, wrapped) || PlaintextScan.contains($0.bytes, Array(wrapped.suffix(16))) }
            .map(\.place)
    }

    /// The subject's wrapped key, read raw from the key database.
    static func wrappedKey(of id: SubjectID, in test: TestStore) throws -> [UInt8] {
        try #require(try test.database(.keys).firstRow("SELECT wrapped FROM subject_keys WHERE subject_id = ?", [.integer(id.rawValue)]) {
            $0.blob(0)
        } ?? nil)
    }

    /// A folder store of 200 subjects (enough for the key database to span several pages), subject i
    /// holding +44 7700 9xxxxx with i as the last digits.
    static func storeOf200(erasureWait: Duration) throws -> (TestStore, [SubjectID]) {
        let test = try TestStore { $0.erasureWait = erasureWait }
        let ids = try test.store.write((0..<200).map { sampleSubject("s\($0)", phones: ["+44 7700 9\(String(format: "%05d", $0))"]) },
                                       context: TestStore.admin).map(\.id)
        return (test, ids)
    }

    /// Another connection to keys.sqlite with an open read transaction (an online backup, another
    /// process's long read), ended by `end`.
    final class KeyDatabaseReader: @unchecked Sendable {
        let connection: SQLiteConnection
        init(_ test: TestStore) throws {
            connection = try SQLiteConnection(path: test.directory + "/keys.sqlite", create: false)
            try connection.execute("BEGIN")
            _ = try connection.scalarInteger("SELECT count(*) FROM subject_keys")
        }
        func end() throws { try connection.execute("COMMIT") }
    }

    @Test("an erasure under a reader that ends within the wait leaves no copy of the wrapped key in keys.sqlite, its WAL or journal; the store works on")
    func readerEndsWithinTheWait() throws {
        let (test, ids) = try Self.storeOf200(erasureWait: .seconds(5))
        defer { test.cleanUp() }
        let victim = ids[117]
        let wrapped = try Self.wrappedKey(of: victim, in: test)
        let nameCiphertext = try #require(try test.database(.data).firstRow("SELECT name_ct FROM subjects WHERE id = ?",
                                                                             [.integer(victim.rawValue)]) { $0.blob(0) } ?? nil)
        #expect(try !Self.copies(of: wrapped, in: test).isEmpty, "the scan finds the key before the erasure")
        let reader = try KeyDatabaseReader(test)
        let ended = Thread { usleep(300_000); try? reader.end() }
        ended.start()
        let started = Date()
        #expect(try test.store.erase(victim, reason: Self.reason, context: TestStore.admin).completion == .complete)
        #expect(Date().timeIntervalSince(started) >= 0.25, "the erasure waited for the reader")
        #expect(try Self.copies(of: wrapped, in: test) == [])
        // The data file too, as no reader held it: the subject's ciphertext is in none of its files.
        for path in test.files() where path.contains("data.sqlite") {
            #expect(!PlaintextScan.contains([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), nameCiphertext), "\(path)")
        }
        // Second act: the store goes on; more writes and reads leave the erased key gone.
        let more = try test.store.create(sampleSubject("after"), context: TestStore.admin)
        #expect(try test.store.read(more, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-after")
        #expect(try test.store.callerID(number: "+44 7700 900004", context: TestStore.caller).map(\.id) == [ids[4]])
        #expect(throws: StoreError.self) { try test.store.read(victim, context: TestStore.admin) }
        #expect(try Self.copies(of: wrapped, in: test) == [])
    }

    @Test("an erasure under a reader that outlasts the wait destroys the key, reports old pages; keys compact or the next open overwrites them once the reader ends")
    func readerOutlastsTheWait() throws {
        let (test, ids) = try Self.storeOf200(erasureWait: .milliseconds(200))
        defer { test.cleanUp() }
        for (victim, finish) in [(ids[42], "keys compact"), (ids[43], "reopen")] {
            let wrapped = try Self.wrappedKey(of: victim, in: test)
            let reader = try KeyDatabaseReader(test)
            let outcome = try test.store.erase(victim, reason: Self.reason, context: TestStore.admin).completion
            guard case .oldPagesRemain(let since) = outcome else {
                Issue.record("\(finish): a reader held the old pages, yet the erasure reported \(outcome)")
                continue
            }
            #expect(abs(since.timeIntervalSinceNow) < 60)
            #expect(try !Self.copies(of: wrapped, in: test).isEmpty, "\(finish): the reader's pages still hold the key, as reported")
            // The key itself is gone at once: no read, and the compaction cannot finish while the reader reads.
            #expect { try test.store.read(victim, context: TestStore.admin) } throws: { error in
                if case StoreError.subjectErased(victim) = error { return true }
                return false
            }
            #expect(try test.store.compactKeyDatabase() == .oldPagesRemain(since: since))
            // Writes go on meanwhile (WAL: the reader blocks no writer).
            _ = try test.store.create(sampleSubject("meanwhile-\(finish)"), context: TestStore.admin)
            try reader.end()
            if finish == "keys compact" {
                #expect(try test.store.compactKeyDatabase() == .complete)
            } else {
                let reopened = try test.reopen()
                reopened.close()
            }
            #expect(try Self.copies(of: wrapped, in: test) == [], "\(finish)")
            #expect(try test.store.compactKeyDatabase() == .complete)
        }
        // Second act: more creates, lookups and a reopen; the erased keys stay gone.
        let more = try test.store.create(sampleSubject("later"), context: TestStore.admin)
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.read(more, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-later")
        #expect(try reopened.callerID(number: "+44 7700 900044", context: TestStore.caller).map(\.id) == [ids[44]])
        #expect(try reopened.callerID(number: "+44 7700 900042", context: TestStore.caller).isEmpty)
    }

    @Test("a subject erased by another process cannot be read from a restored copy of its rows by a process that had its key cached",
          arguments: TestBackend.all)
    func erasureSeenByAnotherProcess(backend: TestBackend) async throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<5).map { sampleSubject("p\($0)", phones: ["+44 7700 90000\($0)"]) },
                                       context: TestStore.admin).map(\.id)
        let victim = ids[2]
        // This process reads the subject: its key is now cached here.
        #expect(try test.store.read(victim, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-p2")
        #expect(try test.store.callerID(number: "+44 7700 900002", context: TestStore.caller).map(\.id) == [victim])
        // A copy of its rows, as a backup of the data holds them.
        let data = try test.database(.data)
        try data.execute("CREATE TABLE saved_subject AS SELECT * FROM subjects WHERE id = \(victim.rawValue)")
        try data.execute("CREATE TABLE saved_index AS SELECT * FROM phone_index WHERE subject_id = \(victim.rawValue)")

        // Another process erases it.
        let locationText = test.locationText
        let keyText = String(decoding: test.key.base64EncodedBytes(), as: UTF8.self)
        await #expect(processExitsWith: .success) { [locationText = locationText as String, keyText = keyText as String,
                                                     victim = victim.rawValue as Int64] in
            let store = try Store.open(at: StoreLocation(locationText), keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: keyText)!))
            _ = try store.erase(SubjectID(rawValue: victim), reason: "Art. 17 request 2026-115",
                                context: AccessContext(actor: "test-dpo", purpose: .admin))
            store.close()
        }
        // The copy is put back.
        try data.execute("INSERT INTO subjects SELECT * FROM saved_subject; INSERT INTO phone_index SELECT * FROM saved_index")

        #expect { try test.store.read(victim, fields: [.name], context: TestStore.admin) } throws: { error in
            if case StoreError.subjectErased(victim) = error { return true }
            return false
        }
        #expect(try test.store.callerID(number: "+44 7700 900002", context: TestStore.caller).isEmpty)
        // Second act: everyone else still reads, here and in a fresh view; more writes; the copy stays unreadable.
        #expect(try test.store.read(ids[3], fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-p3")
        #expect(try test.store.callerID(number: "+44 7700 900004", context: TestStore.caller).map(\.id) == [ids[4]])
        let more = try test.store.create(sampleSubject("p-more", phones: ["+44 7700 900009"]), context: TestStore.admin)
        #expect(try test.store.callerID(number: "+44 7700 900009", context: TestStore.caller).map(\.id) == [more])
        #expect(throws: StoreError.self) { try test.store.read(victim, fields: [.name], context: TestStore.admin) }
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(throws: StoreError.self) { try reopened.read(victim, fields: [.name], context: TestStore.admin) }
        #expect(try reopened.read(ids[1], fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-p1")
    }

    @Test("an erasure by another instance is noticed at once, within the second after this one's last check (PostgreSQL: by its announcement)",
          arguments: TestBackend.all)
    func erasureNoticedAtOnce(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let other = try test.reopen()
        defer { other.close() }
        let ids = try test.store.write((0..<3).map { sampleSubject("n\($0)") }, context: TestStore.admin).map(\.id)
        let data = try test.database(.data)
        for victim in ids.prefix(2) {
            #expect(try test.store.read(victim, fields: [.name], context: TestStore.admin).personal.name != nil)
            try data.execute("CREATE TABLE saved_\(victim.rawValue) AS SELECT * FROM subjects WHERE id = \(victim.rawValue)")
            #expect(try other.erase(victim, reason: Self.reason, context: TestStore.admin).completion == .complete)
            try data.execute("INSERT INTO subjects SELECT * FROM saved_\(victim.rawValue)")
            // The announcement travels after the erasure's commit, asynchronously (SECURITY.md: well under a
            // millisecond, longer on a loaded machine): a fifth of a second lets it arrive, and is still far
            // inside the second this store would trust its last check without it.
            Thread.sleep(forTimeInterval: 0.2)
            #expect { try test.store.read(victim, fields: [.name], context: TestStore.admin) } throws: { error in
                if case StoreError.subjectErased(victim) = error { return true }
                return false
            }
        }
        // Second act: the third subject reads in both, and after a pause with nothing announced too.
        Thread.sleep(forTimeInterval: 1.1)
        #expect(try test.store.read(ids[2], fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-n2")
        #expect(try other.read(ids[2], fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-n2")
        #expect(throws: StoreError.self) { try test.store.read(ids[0], fields: [.name], context: TestStore.admin) }
    }

    @Test("a key database of schema version 4 (before erasure numbers) opens, is migrated, and erases", arguments: TestBackend.all)
    func olderKeyDatabaseOpens(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<3).map { sampleSubject("v\($0)") }, context: TestStore.admin).map(\.id)
        try test.store.erase(ids[0], reason: Self.reason, context: TestStore.admin)
        test.store.close()
        // Back to version 4: the columns and index of version 5 and the tombstones of version 6 removed,
        // the erasure kept without a number.
        let keys = try test.database(.keys)
        try PreviousSchema.rewindKeys(keys, to: 4, backend)
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try keys.schemaVersion() == PreviousSchema.latestKeys(backend))
        #expect(throws: StoreError.self) { try reopened.read(ids[0], context: TestStore.admin) }
        #expect(try reopened.erase(ids[1], reason: Self.reason, context: TestStore.admin).completion == .complete)
        #expect(try keys.scalarInteger("SELECT erasure_number FROM erased_subjects WHERE subject_id = ?", [.integer(ids[1].rawValue)]) == 1)
        #expect(try reopened.read(ids[2], fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-v2")
    }
}
