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
    func reserveSubjectIDs(_ count: Int, on data: any Database) throws(DatabaseError) -> [Int64] {
        try data.rows("SELECT nextval(pg_get_serial_sequence('subjects', 'id')) FROM generate_series(1, ?::integer) ORDER BY 1",
                      [.int(count)]) { $0.int64(0) }
    }

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

    /// One round trip, whatever the number of rows. Without a conflict clause, `COPY … FROM STDIN` in
    /// text format: the rows go as one stream the server parses without planning a statement (the
    /// fastest bulk path PostgreSQL has). With one (COPY cannot take it), one statement: each column's
    /// values go as one array parameter, spread back into rows by `unnest` (a statement text per table,
    /// prepared once).
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/sql-copy.html>,
    /// <https://www.postgresql.org/docs/current/functions-array.html>
    func insert(_ rows: [[SQLValue]], into table: String, columns: [BulkColumn], conflict: String,
                on connection: any Database) throws(DatabaseError) {
        guard !rows.isEmpty else { return }
        if conflict.isEmpty, let postgres = connection as? PostgresConnection {
            _ = try postgres.copy("COPY \(table) (\(columns.map(\.name).joined(separator: ", "))) FROM STDIN", PostgresBackend.copyText(rows))
            return
        }
        let arrays = columns.indices.map { column in "?::\(PostgresBackend.arrayType(columns[column].kind))" }
        try connection.run("""
            INSERT INTO \(table) (\(columns.map(\.name).joined(separator: ", ")))
            SELECT * FROM unnest(\(arrays.joined(separator: ", ")))\(conflict.isEmpty ? "" : " " + conflict)
            """, columns.indices.map { column in .text(PostgresBackend.arrayLiteral(rows.lazy.map { $0[column] })) })
    }

    /// Nothing to defer: PostgreSQL's checkpoints are the server's, not a connection's.
    func beginBulkWrites(on data: any Database) throws(DatabaseError) {}

    /// Nothing was deferred (`beginBulkWrites`).
    func endBulkWrites(on data: any Database) throws(DatabaseError) {}

    /// One statement: `= ANY` of the keys as one array parameter.
    func forEachRow(_ query: String, matchingAny keys: [String], on connection: any Database,
                    _ body: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) {
        guard !keys.isEmpty else { return }
        try connection.forEachRow(query + " = ANY(?::text[])", [.text(PostgresBackend.arrayLiteral(keys.lazy.map { .text($0) }))], body)
    }

    /// The array type of a bulk column's values.
    private static func arrayType(_ kind: BulkColumn.Kind) -> String {
        switch kind {
        case .integer: return "bigint[]"
        case .text: return "text[]"
        case .blob: return "bytea[]"
        }
    }

    /// The text form of a one-dimensional array of `values`: `{1,NULL,"text","\\x0a0b"}`, each element
    /// but NULL and integers quoted, with `"` and `\` escaped by a backslash; bytes in bytea's hex form.
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/arrays.html#ARRAYS-IO>
    static func arrayLiteral(_ values: some Sequence<SQLValue>) -> String {
        var literal: [UInt8] = [UInt8(ascii: "{")]
        for value in values {
            if literal.count > 1 { literal.append(UInt8(ascii: ",")) }
            switch value {
            case .null:
                literal += "NULL".utf8
            case .integer(let integer):
                literal += String(integer).utf8
            case .real(let real):
                literal += "\(real)".utf8
            case .text(let text):
                literal.append(UInt8(ascii: "\""))
                for byte in text.utf8 {
                    if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { literal.append(UInt8(ascii: "\\")) }
                    literal.append(byte)
                }
                literal.append(UInt8(ascii: "\""))
            case .blob(let bytes):
                literal += "\"\\\\x".utf8
                AuditLineFormat.appendHex(bytes, to: &literal)
                literal.append(UInt8(ascii: "\""))
            }
        }
        literal.append(UInt8(ascii: "}"))
        return String(decoding: literal, as: UTF8.self)
    }

    /// `rows` in COPY's text format: a line per row, columns separated by tabs, NULL as `\N`; in text,
    /// backslash, tab, line feed and carriage return escaped by a backslash; bytes in bytea's hex form
    /// (`\x…`, its backslash escaped in turn).
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/sql-copy.html> (File Formats, Text Format)
    static func copyText(_ rows: [[SQLValue]]) -> [UInt8] {
        var text: [UInt8] = []
        for row in rows {
            for (position, value) in row.enumerated() {
                if position > 0 { text.append(UInt8(ascii: "\t")) }
                switch value {
                case .null:
                    text += "\\N".utf8
                case .integer(let integer):
                    text += String(integer).utf8
                case .real(let real):
                    text += "\(real)".utf8
                case .text(let string):
                    for byte in string.utf8 {
                        switch byte {
                        case UInt8(ascii: "\\"): text += "\\\\".utf8
                        case UInt8(ascii: "\t"): text += "\\t".utf8
                        case UInt8(ascii: "\n"): text += "\\n".utf8
                        case UInt8(ascii: "\r"): text += "\\r".utf8
                        default: text.append(byte)
                        }
                    }
                case .blob(let bytes):
                    text += "\\\\x".utf8
                    AuditLineFormat.appendHex(bytes, to: &text)
                }
            }
            text.append(UInt8(ascii: "\n"))
        }
        return text
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
        do throws(DatabaseError) { connection = try PostgresConnection(url: url, create: false, writeLock: "audit") } catch { throw .database(error) }
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
