import Foundation
import StrongroomCrypto
import StrongroomStorage

/// A store in one folder (the embedded default): `data.sqlite`, `keys.sqlite` and the `audit/` log.
struct SQLiteBackend: StoreBackend {
    /// The store's files.
    let layout: Layout

    /// The backend of the store in `directory`.
    init(directory: String) {
        layout = Layout(directory: directory)
    }

    static let dataMigrations = SQLiteSchema.data
    static let keyMigrations = SQLiteSchema.keys
    /// `data_version` changes with any commit by another connection to the key database.
    /// Related SQLite documentation: <https://www.sqlite.org/pragma.html#pragma_data_version>
    static let keyChangeCounterSQL = "PRAGMA data_version"
    /// AUTOINCREMENT's counter plus one (the write lock held by the inserting transaction keeps it free).
    static let nextConsentEntryIDSQL = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'consent_ledger'), 0) + 1"
    /// Any value goes anywhere: a blob parameter stays a blob.
    static let bytesParameter = "?"
    /// Yes: readers keep their snapshot (with the index) until the transaction commits, and writers
    /// wait for it anyway; each random page touched in a large transaction would be written to the
    /// WAL, and again each time the page cache spills, and `secure_delete` zeroes each deleted row.
    static let rebuildsTagIndexForBulkChanges = true

    /// The ids after AUTOINCREMENT's counter: free while the write lock the caller's transaction holds
    /// keeps other writers out, and taken by the insert, which moves the counter past them (a rollback
    /// gives them back, as it gives back an id the insert chose itself).
    /// Related SQLite documentation: <https://www.sqlite.org/autoinc.html>
    func reserveSubjectIDs(_ count: Int, on data: any Database) throws(DatabaseError) -> [Int64] {
        let last = try data.scalarInteger("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'subjects'), 0)") ?? 0
        return (0..<Int64(count)).map { last + 1 + $0 }
    }

    /// The ids after AUTOINCREMENT's counter, which its own transaction moves past them and commits:
    /// another writer's insert takes ids after the counter, and an insert naming its id below the
    /// counter leaves it where it is. (The counter's row is made if no subject was ever inserted.)
    /// Related SQLite documentation: <https://www.sqlite.org/autoinc.html>
    func reserveSubjectIDsAhead(_ count: Int, on data: any Database) throws(DatabaseError) -> [Int64] {
        try data.transaction { () throws(DatabaseError) in
            let ids = try reserveSubjectIDs(count, on: data)
            guard let last = ids.last else { return ids }
            try data.run(SQLiteBackend.moveSubjectCounter, [.integer(last)])
            if data.changes == 0 {
                try data.run("INSERT INTO sqlite_sequence (name, seq) VALUES ('subjects', ?)", [.integer(last)])
            }
            return ids
        }
    }

    /// The statement `reserveSubjectIDsAhead` moves AUTOINCREMENT's counter with (`sqlite_sequence`
    /// holds a row per AUTOINCREMENT table: a scan of it reads two rows, in a store of any size).
    static let moveSubjectCounter = "UPDATE sqlite_sequence SET seq = ? WHERE name = 'subjects'"

    /// A statement is a call into the process, not a round trip: a few dozen rows to a multi-row
    /// statement save most of the per-statement work without making long statement texts.
    private static let multiRowStatements = MultiRowStatements(rowsPerStatement: 32)

    func insert(_ rows: [[SQLValue]], into table: String, columns: [BulkColumn], conflict: String,
                on connection: any Database) throws(DatabaseError) {
        try SQLiteBackend.multiRowStatements.insert(into: table, columns: columns.map(\.name), rows: rows, suffix: conflict,
                                                    on: connection)
    }

    /// Each set bound as its rows are appended, a few dozen rows to a statement
    /// (`MultiRowStatements.insert(count:…)`).
    func inserting<T, Failure: DatabaseFailure>(into tables: [(table: String, columns: [BulkColumn])], on connection: any Database,
                                                _ body: (_ insert: (_ table: Int, _ count: Int, _ row: @escaping RowAppender) throws(Failure) -> Void)
                                                    throws(Failure) -> T) throws(Failure) -> T {
        try body { (table, count, row) throws(Failure) in
            do throws(DatabaseError) {
                try SQLiteBackend.multiRowStatements.insert(count: count, into: tables[table].table, columns: tables[table].columns.map(\.name),
                                                            on: connection, row: row)
            } catch {
                throw Failure(error)
            }
        }
    }

    /// Pages between the data connection's automatic checkpoints (SQLite's default, and the key
    /// database's, is 1,000). A checkpoint copies the latest version of each page changed since the last
    /// one into the database file and syncs it. Writes change pages at random places of the store's
    /// indexes (blind-index tags, external ids): an import changes them in batch after batch, so
    /// checkpoints 16 times further apart copy each such page once where they copied it again and again
    /// (at 1,000 they were a sixth of the import's writing thread at 100,000 rows); a rectification at a
    /// million subjects cost 157 µs of CPU at 1,000 and 96 µs at 16,384 (`strongroom-bench scaling`,
    /// 2026-12-07), where its ratio to 10,000 subjects had reached the 1.5 limit. The WAL file grows to
    /// about 64 MiB (4 KiB pages) between checkpoints; an erasure still checkpoints and truncates it at
    /// once (`discardDeletedContent`). <https://www.sqlite.org/wal.html#automatic_checkpoint>
    static let dataCheckpointPages = 16_384

    /// The data connection's page cache during a bulk write, in KiB (SQLite's default, and this
    /// store's otherwise, is 2,000 KiB). An import's batch changes pages all over its random-order
    /// indexes, more than the default cache holds: SQLite then spilled changed pages into the WAL before
    /// the commit, read them back when the batch changed them again, and wrote them once more at the
    /// commit. <https://www.sqlite.org/pragma.html#pragma_cache_spill>
    static let bulkWriteCacheKiB = 65_536

    /// Gives `data` a page cache of `bulkWriteCacheKiB`.
    func beginBulkWrites(on data: any Database) throws(DatabaseError) {
        try data.execute("PRAGMA cache_size = -\(SQLiteBackend.bulkWriteCacheKiB)")
    }

    /// Checkpoints what the bulk write left in the WAL (passive: waiting for no reader), and sizes the
    /// page cache as before.
    func endBulkWrites(on data: any Database) throws(DatabaseError) {
        try data.execute("PRAGMA wal_checkpoint(PASSIVE); PRAGMA cache_size = -2000")
    }

    func forEachRow(_ query: String, matchingAny keys: [SQLValue], of kind: BulkColumn.Kind, on connection: any Database,
                    _ body: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) {
        try SQLiteBackend.multiRowStatements.forEachRow(query + " IN", in: keys, on: connection, body)
    }

    /// The paths of a folder store's files.
    struct Layout: Sendable {
        let directory: String
        var data: String { directory + "/data.sqlite" }
        var keys: String { directory + "/keys.sqlite" }
        var audit: String { directory + "/audit" }

        /// The store's own files (not the folders), where they exist or may: the databases and the
        /// files SQLite keeps beside them, the audit log's segments and its shared files.
        var files: [String] {
            [data, keys].flatMap { [$0, $0 + "-wal", $0 + "-shm", $0 + "-journal"] }
                + ["TAIL", "LOCK", "PRESENT"].map { audit + "/" + $0 } + AuditLog.segmentPaths(in: audit)
        }

        /// Makes an existing store private again: the folder, the audit folder and the store's files
        /// lose any permission of the group's and others' (a copy or a restore may have given them some).
        /// A symbolic link or another kind of file in their place, or one owned by another user, is
        /// refused (`FileProblem`).
        func tightenPermissions() throws(FileError) {
            try makePrivate(directory, expected: .directory, existing: .tighten)
            try makePrivate(audit, expected: .directory, existing: .tighten)
            for file in files { try makePrivate(file, expected: .regularFile, existing: .tighten) }
        }
    }

    func connect(keys: Bool, existing: Bool) throws(StoreError) -> any Database {
        let mismatch = existing ? StoreError.storeNotFound(path: layout.directory)
                                : StoreError.storeAlreadyExists(path: layout.directory)
        let directory = layout.directory
        let path = keys ? layout.keys : layout.data
        guard FileManager.default.fileExists(atPath: path) == existing else { throw mismatch }
        // A new store's folder is made private (0700), or must be already: a folder others could
        // use, or a symbolic link (whose target others may control), is refused before anything
        // is written. An existing store is made private again (see `Layout.tightenPermissions`).
        do throws(FileError) {
            if existing {
                try layout.tightenPermissions()
            } else {
                try createDirectory(directory, existing: .refuse)
                // An audit folder already there must be a real, private one too (no symbolic link).
                try makePrivate(layout.audit, expected: .directory, existing: .refuse)
                // Created 0600 before SQLite opens it: SQLite gives its WAL and shared-memory files the
                // database file's mode.
                try createPrivateFile(path)
            }
        } catch {
            throw .file(error)
        }
        // WAL lets readers work while a writer commits; `secure_delete` overwrites deleted content, so
        // an erased subject's ciphertext and key do not linger in free pages. Data: `synchronous =
        // NORMAL` survives a process crash and loses at most the last commits on power loss; keys:
        // `FULL`, each committed key durable (erasure truncates the WAL: `discardDeletedContent`).
        // `temp_store = MEMORY` keeps statement journals in memory: a multi-row insert in a transaction
        // (an import's batch) keeps one, which past 64 KiB spilled to a file in /var/tmp (five times the
        // writes of the import's own WAL, and copies of the store's pages outside its folder).
        // Related SQLite documentation: <https://www.sqlite.org/pragma.html#pragma_secure_delete>,
        // <https://www.sqlite.org/tempfiles.html> (statement journals, and where temporary files go)
        do throws(DatabaseError) {
            let connection = try SQLiteConnection(path: path, create: !existing)
            try connection.execute("""
                PRAGMA journal_mode = WAL; PRAGMA synchronous = \(keys ? "FULL" : "NORMAL"); PRAGMA secure_delete = ON;
                PRAGMA mmap_size = 1073741824; PRAGMA temp_store = MEMORY;
                PRAGMA wal_autocheckpoint = \(keys ? 1000 : SQLiteBackend.dataCheckpointPages)
                """)
            return connection
        } catch {
            throw .database(error)
        }
    }

    func openAuditTrail(mac: HMACSHA256, storeID: [UInt8], durability: AuditDurability, segmentByteLimit: Int64,
                        lockTimeout: Double, headStore: any AuditHeadStore) throws(StoreError) -> any AuditTrail {
        do throws(AuditLogError) {
            return try AuditLog(directory: layout.audit, mac: mac, storeID: storeID, durability: durability,
                                segmentByteLimit: segmentByteLimit, lockTimeout: lockTimeout, headStore: headStore)
        } catch {
            throw StoreError(error)
        }
    }

    /// Defines `phoneCheckFunction` on the data connection: each candidate is checked inside the probe's
    /// query, so only exact matches' rows are read (at a million subjects each row read is a cache
    /// miss), and the probe and the reads share one statement's locks.
    func prepareCallerIDProbe(on data: any Database, keyring: Keyring) throws(DatabaseError) -> String? {
        guard let connection = data as? SQLiteConnection else { return nil }
        try connection.definePredicate(Self.phoneCheckFunction, argumentCount: 4) { [keyring] arguments in
            let version = UInt32(truncatingIfNeeded: arguments.int64(0))
            guard let index = keyring.phoneIndex(version: version) else { return false }
            let subject = SubjectID(rawValue: arguments.int64(1))
            return arguments.withBlob(2) { stored in arguments.withBlob(3) { index.matches(stored, subject: subject, fullTag: $0) } }
        }
        return "\(Self.phoneCheckFunction)(?1, p.subject_id, p.check_mac, ?3)"
    }

    /// The SQL function, defined on the data connection, that answers whether an index row's check
    /// (`check_mac`) seals exactly the full tag it is given, under the index key of its version:
    /// `strongroom_phone_check(key_version, subject_id, check_mac, full_tag)`.
    private static let phoneCheckFunction = "strongroom_phone_check"

    func dataVersion(of data: any Database) -> UInt32? {
        (data as? SQLiteConnection)?.dataVersion
    }

    /// None: another process's erasure shows in the data file's `dataVersion` and the key file's counter.
    func listenForErasures(on keys: any Database) throws(DatabaseError) {}

    func takeErasureAnnouncements(from keys: any Database) -> Bool? { nil }
}
