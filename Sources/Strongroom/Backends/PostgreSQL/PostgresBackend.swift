import StrongroomCrypto
import StrongroomStorage

/// A store in PostgreSQL, for several service instances sharing it: data, blind index and audit log in
/// the schema that `url` names; the key tables at `keysURL` (see `StoreLocation.postgres`).
struct PostgresBackend: StoreBackend {
    /// The data database's URL.
    let url: String
    /// The key database's URL, if not the default beside the data (`keyDatabaseURL`).
    let keysURL: String?

    static let dataMigrations = PostgresSchema.data
    static let keyMigrations = PostgresSchema.keys
    /// Kept by triggers on the tables of the upper keys and on `erased_subjects` (`PostgresSchema.keys`).
    static let keyChangeCounterSQL = "SELECT counter FROM key_changes WHERE id = 1"
    /// The identity sequence's next value, then taken (a rolled-back entry leaves a gap, never a reused id).
    static let nextConsentEntryIDSQL = "SELECT nextval(pg_get_serial_sequence('consent_ledger', 'id'))"
    static let bytesParameter = "?::bytea"
    /// No: `DROP INDEX` would lock caller-ID lookups out of the table until the commit.
    static let rebuildsTagIndexForBulkChanges = false

    /// Values of the identity sequence, taken in one round trip (never given back, not even by a rollback).
    /// The sequence is looked up once per statement (a materialised CTE): as a function of each row,
    /// `pg_get_serial_sequence` resolved the table's name for every id, four fifths of the statement's
    /// time (1.05 ms → 0.2 ms for 500 ids, `EXPLAIN ANALYZE`, 2026-12-07).
    func reserveSubjectIDs(_ count: Int, on data: any Database) throws(DatabaseError) -> [Int64] {
        try data.rows(PostgresBackend.reserveSubjectIDsSQL, [.int(count)]) { $0.int64(0) }
    }

    /// `reserveSubjectIDs`' statement: `?` ids of the subjects' identity sequence, ascending.
    static let reserveSubjectIDsSQL = """
        WITH sequence AS MATERIALIZED (SELECT pg_get_serial_sequence('subjects', 'id')::regclass AS id)
        SELECT nextval(sequence.id) FROM sequence, generate_series(1, ?::integer) ORDER BY 1
        """

    /// The same ids `reserveSubjectIDs` takes: a sequence never gives a value twice, in a transaction or not.
    func reserveSubjectIDsAhead(_ count: Int, on data: any Database) throws(DatabaseError) -> [Int64] {
        try reserveSubjectIDs(count, on: data)
    }

    /// The key database's URL: `keysURL`, or `url` with its schema suffixed `_keys`.
    var keyDatabaseURL: String {
        if let keysURL { return keysURL }
        let schema = (try? PostgresConnection.split(url).schema) ?? PostgresConnection.defaultSchema
        return PostgresConnection.url(url, schema: schema + "_keys")
    }

    /// `COPY … FROM STDIN` in binary format (`inserting`), whatever the number of rows; no value is
    /// turned into text. With a conflict clause (COPY cannot take one) the COPY is tried first, as its
    /// callers' conflicts are rare (a subject key left behind by a rolled-back write: on PostgreSQL a
    /// subject id is never handed out twice, so only a data schema restored behind its keys meets one),
    /// and only when it meets a unique violation does one statement run instead: each column's values
    /// as one array parameter in binary form, spread back into rows by `unnest`, then the clause
    /// (`upsertSQL`, prepared once per table).
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/functions-array.html>
    func insert(_ rows: [[SQLValue]], into table: String, columns: [BulkColumn], conflict: String,
                on connection: any Database) throws(DatabaseError) {
        guard !rows.isEmpty else { return }
        guard !conflict.isEmpty else {
            try inserting(into: table, columns: columns, on: connection) { (insert) throws(DatabaseError) in try insert(rows) }
            return
        }
        try PostgresBackend.postgres(connection).copyBinary(rows, into: table, columns: columns.map(\.name)) { () throws(DatabaseError) in
            var parameters: [SQLValue] = []
            for (position, column) in columns.enumerated() {
                parameters.append(.blob(try PostgresConnection.binaryArray(rows.lazy.map { $0[position] }, of: PostgresBackend.arrayElement(column.kind))))
            }
            try connection.run(PostgresBackend.upsertSQL(into: table, columns: columns, conflict: conflict), parameters)
        }
    }

    /// The statement `insert` falls back on when its COPY meets a conflict: the rows from one binary
    /// array parameter per column, then `conflict`.
    static func upsertSQL(into table: String, columns: [BulkColumn], conflict: String) -> String {
        """
        INSERT INTO \(table) (\(columns.map(\.name).joined(separator: ", ")))
        SELECT * FROM unnest(\(columns.map { "?::\(arrayElement($0.kind).typeName)[]" }.joined(separator: ", "))) \(conflict)
        """
    }

    /// `connection` as the PostgreSQL connection this backend made it.
    private static func postgres(_ connection: any Database) throws(DatabaseError) -> PostgresConnection {
        guard let postgres = connection as? PostgresConnection else {
            throw DatabaseError(code: .postgresql(sqlState: "08000"), message: "not a PostgreSQL connection")
        }
        return postgres
    }

    /// One `COPY … FROM STDIN (FORMAT binary)` for every row `body` makes, each set sent on as it comes
    /// (`PostgresConnection.copyBinary`): the server stores a set while the next is made, and the COPY
    /// takes two round trips in all. COPY parses no statement and sends no value as text: the fastest
    /// bulk path PostgreSQL has.
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/sql-copy.html>
    func inserting<T, Failure: DatabaseFailure>(into table: String, columns: [BulkColumn], on connection: any Database,
                                                _ body: (_ insert: ([[SQLValue]]) throws(Failure) -> Void) throws(Failure) -> T)
        throws(Failure) -> T {
        let postgres: PostgresConnection
        do { postgres = try PostgresBackend.postgres(connection) } catch { throw Failure(error) }
        return try postgres.copyBinary(into: table, columns: columns.map(\.name), body).value
    }

    /// One query of `COPY … FROM STDIN (FORMAT binary)`s, one per table (`PostgresConnection.copyBinary(into:_:)`):
    /// the server begins each as the one before ends, so a batch's rows and blind-index rows cost the
    /// round trips of one COPY, two, where each table's cost two more.
    func inserting<T, Failure: DatabaseFailure>(into tables: [(table: String, columns: [BulkColumn])], on connection: any Database,
                                                _ body: (_ insert: (_ table: Int, _ count: Int, _ row: @escaping RowAppender) throws(Failure) -> Void)
                                                    throws(Failure) -> T) throws(Failure) -> T {
        let postgres: PostgresConnection
        do { postgres = try PostgresBackend.postgres(connection) } catch { throw Failure(error) }
        return try postgres.copyBinary(into: tables.map { ($0.table, $0.columns.map(\.name)) }) { (send) throws(Failure) in
            try withoutActuallyEscaping(send) { (send) throws(Failure) in
                try body { (table, count, row) throws(Failure) in
                    try send(table, (0..<count).map { (position) -> [SQLValue] in
                        var values: [SQLValue] = []
                        values.reserveCapacity(tables[table].columns.count)
                        row(position, &values)
                        return values
                    })
                }
            }
        }.value
    }

    /// Nothing to ready: PostgreSQL's memory and checkpoints are the server's, not a connection's.
    func beginBulkWrites(on data: any Database) throws(DatabaseError) {}

    /// Nothing was deferred (`beginBulkWrites`).
    func endBulkWrites(on data: any Database) throws(DatabaseError) {}

    /// One statement: `= ANY` of the keys as one array parameter (in binary form), one round trip
    /// whatever their number; its plan, generic after the first runs, probes the column's index once per key.
    func forEachRow(_ query: String, matchingAny keys: [SQLValue], of kind: BulkColumn.Kind, on connection: any Database,
                    _ body: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) {
        guard !keys.isEmpty else { return }
        let element = PostgresBackend.arrayElement(kind)
        try connection.forEachRow(query + " = ANY(?::\(element.typeName)[])", [.blob(try PostgresConnection.binaryArray(keys, of: element))], body)
    }

    /// The element type of an array of a bulk column's values.
    private static func arrayElement(_ kind: BulkColumn.Kind) -> PostgresConnection.ArrayElement {
        switch kind {
        case .integer: return .bigint
        case .text: return .text
        case .blob: return .bytea
        }
    }

    func connect(keys: Bool, existing: Bool) throws(StoreError) -> any Database {
        let mismatch = existing ? StoreError.storeNotFound(path: StoreLocation.withoutPassword(url))
                                : StoreError.storeAlreadyExists(path: StoreLocation.withoutPassword(url))
        let connection: PostgresConnection
        let hasStore: Bool
        do throws(DatabaseError) {
            connection = try PostgresConnection(url: keys ? keyDatabaseURL : url, create: !existing, writeLock: keys ? "keys" : "data")
            hasStore = try connection.scalarText("SELECT to_regclass('store')::text") != nil
        } catch {
            throw .database(error)
        }
        guard hasStore == existing else { throw mismatch }
        return connection
    }

    func openAuditTrail(mac: HMACSHA256, storeID: [UInt8], durability: AuditDurability, segmentByteLimit: Int64,
                        lockTimeout: Double, headStore: any AuditHeadStore) throws(StoreError) -> any AuditTrail {
        let connection: PostgresConnection
        // A synced log's entries are flushed before the plaintext they record leaves, as the folder log's
        // `fdatasync`: its commits wait for the WAL flush even on a server whose default is
        // `synchronous_commit = off` (which, after a server crash, loses commits it had acknowledged).
        do throws(DatabaseError) {
            connection = try PostgresConnection(url: url, create: false, writeLock: "audit", durableCommits: durability == .synced)
        } catch {
            throw .database(error)
        }
        do throws(AuditLogError) {
            return try PostgresAuditLog(connection: connection, mac: mac, storeID: storeID, headStore: headStore)
        } catch {
            throw StoreError(error)
        }
    }

    /// None: the probe reads the few candidates' rows with their checks, and the engine checks them (a
    /// second round trip to check in the server would cost more).
    func prepareCallerIDProbe(on data: any Database, keyring: Keyring) throws(DatabaseError) -> String? { nil }

    func dataVersion(of data: any Database) -> UInt32? { nil }

    /// Erasures are announced on commit (`NOTIFY` from a trigger on `erased_subjects`, `PostgresSchema.keys`).
    func listenForErasures(on keys: any Database) throws(DatabaseError) {
        try (keys as? PostgresConnection)?.listen(Schema.erasureChannel)
    }

    func takeErasureAnnouncements(from keys: any Database) -> Bool? {
        (keys as? PostgresConnection)?.takeNotifications()
    }
}
