internal import CPostgreSQL

/// Bulk writes in PostgreSQL's binary formats: `COPY … FROM STDIN (FORMAT binary)`, its rows streamed as
/// they are made, and one-dimensional arrays in binary form for a statement that spreads them into rows
/// (`unnest`). Values go as the server stores them — an integer as 8 bytes in network order, bytes as
/// they are — so neither side turns ciphertext into hex and back.
extension PostgresConnection {
    /// The element type of a binary array (`binaryArray`), with the server's type OID.
    public enum ArrayElement: Sendable {
        case bigint, float, text, bytea

        /// The type's name in SQL, for the cast that gives the parameter its array type.
        public var typeName: String {
            switch self {
            case .bigint: return "bigint"
            case .float: return "double precision"
            case .text: return "text"
            case .bytea: return "bytea"
            }
        }

        /// The type's OID in `pg_type` (fixed for built-in types).
        var oid: UInt32 {
            switch self {
            case .bigint: return 20
            case .float: return 701
            case .text: return 25
            case .bytea: return 17
            }
        }
    }

    /// Runs `COPY table (columns) FROM STDIN (FORMAT binary)` around `body`, which sends rows (each one
    /// value per column, in `columns` order) by calling `send` as many times as it wants: each call's
    /// rows go to the server at once, which stores them while `body` goes on making the next ones (one
    /// round trip to start, one to finish, whatever the number of rows). Returns `body`'s value and the
    /// rows copied. Integers go to `bigint` columns, reals to `double precision`, text to `text` and
    /// bytes to `bytea` (the binary format carries no types: the server checks each field's length).
    /// If `body` throws, the COPY is abandoned (the server's transaction fails) and `body`'s error is
    /// thrown; the connection must not run anything else while `body` runs.
    /// The corresponding C functions are `PQputCopyData`, `PQputCopyEnd` and `PQgetResult`.
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/sql-copy.html> (Binary Format)
    public func copyBinary<T, Failure: DatabaseFailure>(into table: String, columns: [String],
                                                        _ body: (_ send: ([[SQLValue]]) throws(Failure) -> Void) throws(Failure) -> T)
        throws(Failure) -> (value: T, rows: Int) {
        try copyBinary(into: table, columns: columns, after: "", body)
    }

    /// Copies `rows` into `table` by binary COPY (`copyBinary`) unless a unique constraint refuses one
    /// of them: then none of them stays (inside a transaction the COPY is undone to a savepoint taken in
    /// its first round trip; outside one it was a transaction of its own) and `instead` runs, such as
    /// the same rows' `INSERT … ON CONFLICT`. For rows that rarely meet a conflict: COPY costs the
    /// server about half of what a statement spreading arrays into rows does (20,000 subject keys,
    /// 44–60 ms against 88–100 ms, 2026-12-07), and the savepoint's release one round trip more.
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/sql-savepoint.html>
    public func copyBinary(_ rows: [[SQLValue]], into table: String, columns: [String],
                           onUniqueViolation instead: () throws(DatabaseError) -> Void) throws(DatabaseError) {
        let savepoint = inTransaction ? "strongroom_bulk_insert" : nil
        do {
            _ = try copyBinary(into: table, columns: columns, after: savepoint.map { "SAVEPOINT \($0); " } ?? "") {
                (send) throws(DatabaseError) in try send(rows)
            }
            if let savepoint { try execute("RELEASE SAVEPOINT \(savepoint)") }
        } catch where error.isUniqueViolation {
            if let savepoint { try execute("ROLLBACK TO SAVEPOINT \(savepoint); RELEASE SAVEPOINT \(savepoint)") }
            try instead()
        }
    }

    /// `copyBinary(into:columns:_:)`, the COPY sent after `prefix` (statements run in the same round trip).
    private func copyBinary<T, Failure: DatabaseFailure>(into table: String, columns: [String], after prefix: String,
                                                         _ body: (_ send: ([[SQLValue]]) throws(Failure) -> Void) throws(Failure) -> T)
        throws(Failure) -> (value: T, rows: Int) {
        let sql = "COPY \(table) (\(columns.joined(separator: ", "))) FROM STDIN (FORMAT binary)"
        do { try beginCopy(prefix + sql) } catch { throw Failure(error) }
        var buffer = PostgresConnection.binaryCopySignature
        let value: T
        do throws(Failure) {
            value = try body { (rows) throws(Failure) in
                do throws(DatabaseError) {
                    try PostgresConnection.appendBinaryCopyRows(rows, columns: columns.count, to: &buffer, sql: sql)
                    try sendCopyData(buffer, sql: sql)
                } catch {
                    throw Failure(error)
                }
                buffer.removeAll(keepingCapacity: true)
            }
        } catch {
            _ = try? endCopy(sql, failure: "abandoned by the client")
            throw error
        }
        // The trailer: a field count of -1.
        buffer += [0xFF, 0xFF]
        do throws(DatabaseError) {
            try sendCopyData(buffer, sql: sql)
            return (value, try endCopy(sql, failure: nil))
        } catch {
            throw Failure(error)
        }
    }

    /// Runs `COPY … FROM STDIN` (`sql`) with `data`, the rows in the format the statement names;
    /// returns the rows copied. Used by the benchmarks' plain-PostgreSQL baseline.
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/libpq-copy.html>
    public func copy(_ sql: String, _ data: [UInt8]) throws(DatabaseError) -> Int {
        try beginCopy(sql)
        do { try sendCopyData(data, sql: sql) } catch {
            _ = try? endCopy(sql, failure: "the client could not send the data")
            throw error
        }
        return try endCopy(sql, failure: nil)
    }

    /// `values` as a one-dimensional array of `element` in the server's binary form, to bind as the
    /// bytes of a parameter the statement casts to that array type (`?::bigint[]`): the server reads it
    /// with the element type's receive function, no text to parse. Each value must be of the element's
    /// kind or NULL; text must not hold a NUL character.
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/arrays.html> (the binary
    /// form is `array_send`'s: dimensions, a has-NULLs flag, the element OID, each dimension's length and
    /// lower bound, then each element as a length, -1 for NULL, and its bytes).
    public static func binaryArray(_ values: some Collection<SQLValue>, of element: ArrayElement) throws(DatabaseError) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(20 + values.count * 12)
        appendBigEndian(UInt32(1), to: &bytes)
        appendBigEndian(UInt32(values.contains(.null) ? 1 : 0), to: &bytes)
        appendBigEndian(element.oid, to: &bytes)
        appendBigEndian(UInt32(values.count), to: &bytes)
        appendBigEndian(UInt32(1), to: &bytes)
        for value in values {
            let kind = try appendField(value, to: &bytes, sql: nil)
            guard kind == nil || kind == element else {
                throw DatabaseError(code: .postgresql(sqlState: "22000"), message: "an array element is not of the array's type")
            }
        }
        return bytes
    }

    /// The binary COPY header: the signature, no flags, no header extension.
    static let binaryCopySignature: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0] + [0, 0, 0, 0]

    /// Appends `rows` as binary COPY tuples (a 16-bit field count, then each field: a 32-bit length, -1
    /// for NULL, and its bytes); each row must have `columns` values.
    static func appendBinaryCopyRows(_ rows: [[SQLValue]], columns: Int, to bytes: inout [UInt8], sql: String) throws(DatabaseError) {
        for row in rows {
            guard row.count == columns else {
                throw DatabaseError(code: .postgresql(sqlState: "22000"), message: "a row has \(row.count) values for \(columns) columns", sql: sql)
            }
            appendBigEndian(UInt16(columns), to: &bytes)
            for value in row { _ = try appendField(value, to: &bytes, sql: sql) }
        }
    }

    /// Appends one field (a 32-bit length, -1 for NULL, then the value's bytes in the server's binary
    /// form); returns the element type the value has, nil for NULL.
    private static func appendField(_ value: SQLValue, to bytes: inout [UInt8], sql: String?) throws(DatabaseError) -> ArrayElement? {
        switch value {
        case .null:
            appendBigEndian(UInt32.max, to: &bytes)
            return nil
        case .integer(let integer):
            appendBigEndian(UInt32(8), to: &bytes)
            appendBigEndian(UInt64(bitPattern: integer), to: &bytes)
            return .bigint
        case .real(let real):
            appendBigEndian(UInt32(8), to: &bytes)
            appendBigEndian(real.bitPattern, to: &bytes)
            return .float
        case .text(let text):
            // The server would refuse it too, but only after the rest of the batch was sent.
            guard !text.utf8.contains(0) else {
                throw DatabaseError(code: .postgresql(sqlState: "22000"), message: "PostgreSQL text cannot hold a NUL character", sql: sql)
            }
            appendBigEndian(UInt32(text.utf8.count), to: &bytes)
            bytes += text.utf8
            return .text
        case .blob(let blob):
            appendBigEndian(UInt32(blob.count), to: &bytes)
            bytes += blob
            return .bytea
        }
    }

    /// Appends `value` in network byte order.
    private static func appendBigEndian<Integer: FixedWidthInteger>(_ value: Integer, to bytes: inout [UInt8]) {
        var big = value.bigEndian
        unsafe withUnsafeBytes(of: &big) { unsafe bytes += $0 }
    }

    /// Starts `sql`, a `COPY … FROM STDIN`: the server then waits for its data.
    private func beginCopy(_ sql: String) throws(DatabaseError) {
        try reconnectIfLost()
        let start = PostgresResult(unsafe PQexec(handle, sql))
        guard start.isCopyIn else {
            try check(start, sql: sql)
            throw DatabaseError(code: .postgresql(sqlState: "XX000"), message: "not a COPY FROM STDIN statement", sql: sql)
        }
    }

    /// Sends `data` to the COPY in progress.
    private func sendCopyData(_ data: [UInt8], sql: String) throws(DatabaseError) {
        // libpq takes the data in pieces of at most Int32.max bytes; 1 MiB keeps its buffer small.
        var offset = 0
        while offset < data.count {
            let count = min(data.count - offset, 1 << 20)
            let sent = unsafe data.withUnsafeBufferPointer { bytes in
                unsafe (bytes.baseAddress! + offset).withMemoryRebound(to: CChar.self, capacity: count) {
                    unsafe PQputCopyData(handle, $0, Int32(count)) == 1
                }
            }
            guard sent else {
                let reason = unsafe PostgresConnection.trimmed(String(cString: PQerrorMessage(handle)))
                // The server's own error, if it ended the COPY with one, is the failure to report.
                _ = try endCopy(sql, failure: "the client could not send the data")
                throw DatabaseError(code: .postgresql(sqlState: "08006"), message: "the COPY's data could not be sent: \(reason)", sql: sql)
            }
            offset += count
        }
    }

    /// Ends the COPY in progress (as failed, with `failure` as its message, when there is one) and
    /// reads every result, so the connection is ready again; returns the rows copied.
    private func endCopy(_ sql: String, failure: String?) throws(DatabaseError) -> Int {
        _ = unsafe PQputCopyEnd(handle, failure)
        var copied = 0
        var error: DatabaseError?
        // The COPY's own result, then nil.
        while let next = unsafe PQgetResult(handle) {
            let result = PostgresResult(next)
            if let failed = result.error(connection: handle, sql: sql) { error = error ?? failed } else { copied += result.changes }
        }
        if let error { throw error }
        return copied
    }
}
