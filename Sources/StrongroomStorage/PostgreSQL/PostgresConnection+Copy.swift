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
        try copyBinary(into: [(table, columns)], after: "", then: "") { (send) throws(Failure) in
            try withoutActuallyEscaping(send) { (send) throws(Failure) in try body { (rows) throws(Failure) in try send(0, rows) } }
        }
    }

    /// `copyBinary(into:columns:_:)` for several tables in one query: their COPYs run one after the other,
    /// the server beginning each as the one before ends, without a round trip of its own. `body` sends
    /// each table's rows with the table's place in `tables`, the tables in order (once a later table's
    /// rows are sent, an earlier table's COPY is over; a table sent nothing gets no rows). A failure in
    /// any of them ends the query there (in a transaction, the transaction fails).
    public func copyBinary<T, Failure: DatabaseFailure>(into tables: [(table: String, columns: [String])],
                                                        _ body: (_ send: (_ table: Int, _ rows: [[SQLValue]]) throws(Failure) -> Void) throws(Failure) -> T)
        throws(Failure) -> (value: T, rows: Int) {
        try copyBinary(into: tables, after: "", then: "", body)
    }

    /// Copies `rows` into `table` by binary COPY (`copyBinary`) unless a unique constraint refuses one
    /// of them: then none of them stays (inside a transaction the COPY is undone to a savepoint taken in
    /// its first round trip and released in its last; outside one it was a transaction of its own) and
    /// `instead` runs, such as the same rows' `INSERT … ON CONFLICT`. For rows that rarely meet a
    /// conflict: COPY costs the server about half of what a statement spreading arrays into rows does
    /// (20,000 subject keys, 44–60 ms against 88–100 ms, 2026-12-07).
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/sql-savepoint.html>
    public func copyBinary(_ rows: [[SQLValue]], into table: String, columns: [String],
                           onUniqueViolation instead: () throws(DatabaseError) -> Void) throws(DatabaseError) {
        let savepoint = inTransaction ? "strongroom_bulk_insert" : nil
        do {
            // The savepoint is released by the same query, after the COPY (not run if the COPY fails).
            _ = try copyBinary(into: [(table, columns)], after: savepoint.map { "SAVEPOINT \($0); " } ?? "",
                               then: savepoint.map { "; RELEASE SAVEPOINT \($0)" } ?? "") { (send) throws(DatabaseError) in try send(0, rows) }
        } catch where error.isUniqueViolation {
            if let savepoint { try execute("ROLLBACK TO SAVEPOINT \(savepoint); RELEASE SAVEPOINT \(savepoint)") }
            try instead()
        }
    }

    /// `copyBinary(into:_:)`, the COPYs sent after `prefix` and before `suffix` (statements run in the
    /// same query: `prefix` in the first round trip, `suffix` in the last, once the COPYs are over).
    private func copyBinary<T, Failure: DatabaseFailure>(into tables: [(table: String, columns: [String])], after prefix: String, then suffix: String,
                                                         _ body: (_ send: (_ table: Int, _ rows: [[SQLValue]]) throws(Failure) -> Void) throws(Failure) -> T)
        throws(Failure) -> (value: T, rows: Int) {
        let statements = tables.map { "COPY \($0.table) (\($0.columns.joined(separator: ", "))) FROM STDIN (FORMAT binary)" }
        do { try beginCopy(prefix + statements.joined(separator: "; ") + suffix) } catch { throw Failure(error) }
        var current = 0
        var copied = 0
        var buffer = PostgresConnection.binaryCopySignature
        // Ends the COPY of `tables[current]` (its trailer: a field count of -1) and reads its result, up
        // to the next COPY's start when there is one.
        func endCurrent() throws(DatabaseError) {
            buffer += [0xFF, 0xFF]
            try sendCopyData(buffer, sql: statements[current])
            copied += try endCopy(statements[current], failure: nil, beforeAnother: current < tables.count - 1)
            current += 1
            buffer = PostgresConnection.binaryCopySignature
        }
        let value: T
        do throws(Failure) {
            value = try body { (table, rows) throws(Failure) in
                do throws(DatabaseError) {
                    guard table >= current, table < tables.count else {
                        throw DatabaseError(code: .postgresql(sqlState: "XX000"), message: "rows for a table whose COPY is over", sql: statements[current])
                    }
                    while current < table { try endCurrent() }
                    try PostgresConnection.appendBinaryCopyRows(rows, columns: tables[table].columns.count, to: &buffer, sql: statements[table])
                    try sendCopyData(buffer, sql: statements[table])
                } catch {
                    throw Failure(error)
                }
                buffer.removeAll(keepingCapacity: true)
            }
        } catch {
            if current < tables.count { _ = try? endCopy(statements[current], failure: "abandoned by the client") }
            throw error
        }
        do throws(DatabaseError) {
            while current < tables.count { try endCurrent() }
            return (value, copied)
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
        var size = 20
        var hasNull = false
        for value in values {
            size += try fieldByteCount(value, sql: nil)
            switch value {
            case .null: hasNull = true
            case .integer where element == .bigint, .real where element == .float, .text where element == .text, .blob where element == .bytea: break
            default: throw DatabaseError(code: .postgresql(sqlState: "22000"), message: "an array element is not of the array's type")
            }
        }
        var bytes: [UInt8] = []
        appendStored(size, to: &bytes) { (buffer, offset) in
            for header in [1, hasNull ? 1 : 0, element.oid, UInt32(values.count), 1] as [UInt32] {
                storeBigEndian(header, in: buffer, at: &offset)
            }
            for value in values { storeField(value, in: buffer, at: &offset) }
        }
        return bytes
    }

    /// The binary COPY header: the signature, no flags, no header extension.
    static let binaryCopySignature: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00] + [0, 0, 0, 0] + [0, 0, 0, 0]

    /// Appends `rows` as binary COPY tuples (a 16-bit field count, then each field: a 32-bit length, -1
    /// for NULL, and its bytes); each row must have `columns` values. The tuples' size is added up
    /// first and the buffer grown once, then each field stored in place: appending field by field
    /// (a check of the array's capacity and uniqueness per integer, a generic append per value) was
    /// about a tenth of a PostgreSQL import's writing thread (2026-12-07).
    static func appendBinaryCopyRows(_ rows: [[SQLValue]], columns: Int, to bytes: inout [UInt8], sql: String) throws(DatabaseError) {
        var size = 0
        for row in rows {
            guard row.count == columns else {
                throw DatabaseError(code: .postgresql(sqlState: "22000"), message: "a row has \(row.count) values for \(columns) columns", sql: sql)
            }
            size += 2
            for value in row { size += try fieldByteCount(value, sql: sql) }
        }
        appendStored(size, to: &bytes) { (buffer, offset) in
            for row in rows {
                storeBigEndian(UInt16(columns), in: buffer, at: &offset)
                for value in row { storeField(value, in: buffer, at: &offset) }
            }
        }
    }

    /// Grows `bytes` by `count` bytes and has `store` fill them, given the buffer and the offset to
    /// store at (moved on by each store, ending at the buffer's end).
    private static func appendStored(_ count: Int, to bytes: inout [UInt8], _ store: (UnsafeMutableRawBufferPointer, inout Int) -> Void) {
        var offset = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: count))
        unsafe bytes.withUnsafeMutableBytes { buffer in
            unsafe store(buffer, &offset)
            precondition(offset == buffer.count, "binary fields stored short of their size")
        }
    }

    /// The bytes one field takes in the server's binary form (its 32-bit length and its value);
    /// throws for text holding a NUL character, which PostgreSQL's text cannot hold.
    private static func fieldByteCount(_ value: SQLValue, sql: String?) throws(DatabaseError) -> Int {
        switch value {
        case .null: return 4
        case .integer, .real: return 12
        case .text(let text):
            // The server would refuse it too, but only after the rest of the batch was sent.
            guard !text.utf8.contains(0) else {
                throw DatabaseError(code: .postgresql(sqlState: "22000"), message: "PostgreSQL text cannot hold a NUL character", sql: sql)
            }
            return 4 + text.utf8.count
        case .blob(let blob): return 4 + blob.count
        }
    }

    /// Stores one field at `offset` in `buffer` (a 32-bit length, -1 for NULL, then the value's bytes in
    /// the server's binary form; `fieldByteCount` bytes) and moves `offset` past it.
    private static func storeField(_ value: SQLValue, in buffer: UnsafeMutableRawBufferPointer, at offset: inout Int) {
        switch value {
        case .null:
            storeBigEndian(UInt32.max, in: buffer, at: &offset)
        case .integer(let integer):
            storeBigEndian(UInt32(8), in: buffer, at: &offset)
            storeBigEndian(UInt64(bitPattern: integer), in: buffer, at: &offset)
        case .real(let real):
            storeBigEndian(UInt32(8), in: buffer, at: &offset)
            storeBigEndian(real.bitPattern, in: buffer, at: &offset)
        case .text(var text):
            storeBigEndian(UInt32(text.utf8.count), in: buffer, at: &offset)
            // Native strings are contiguous UTF-8 (`withUTF8` makes a bridged one so first).
            text.withUTF8 { unsafe storeBytes(UnsafeRawBufferPointer($0), in: buffer, at: &offset) }
        case .blob(let blob):
            storeBigEndian(UInt32(blob.count), in: buffer, at: &offset)
            blob.withUnsafeBytes { unsafe storeBytes($0, in: buffer, at: &offset) }
        }
    }

    /// Stores `value` in network byte order at `offset` in `buffer` (any alignment), and moves `offset` past it.
    private static func storeBigEndian<Integer: FixedWidthInteger>(_ value: Integer, in buffer: UnsafeMutableRawBufferPointer, at offset: inout Int) {
        unsafe buffer.storeBytes(of: value.bigEndian, toByteOffset: offset, as: Integer.self)
        offset += MemoryLayout<Integer>.size
    }

    /// Copies `bytes` to `offset` in `buffer`, and moves `offset` past them.
    private static func storeBytes(_ bytes: UnsafeRawBufferPointer, in buffer: UnsafeMutableRawBufferPointer, at offset: inout Int) {
        unsafe UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + bytes.count]).copyMemory(from: bytes)
        offset += bytes.count
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
    /// reads every result, so the connection is ready again; returns the rows copied. `beforeAnother`:
    /// the query runs another COPY after this one, whose start ends the reading instead (a COPY that
    /// fails ends the query, and its error is thrown).
    private func endCopy(_ sql: String, failure: String?, beforeAnother: Bool = false) throws(DatabaseError) -> Int {
        _ = unsafe PQputCopyEnd(handle, failure)
        var copied = 0
        var error: DatabaseError?
        // The COPY's own result, then nil, or the next COPY's start.
        while let next = unsafe PQgetResult(handle) {
            let result = PostgresResult(next)
            if result.isCopyIn {
                if beforeAnother && error == nil && failure == nil { return copied }
                // A COPY not asked for: ended at once, so that the connection is ready again.
                _ = unsafe PQputCopyEnd(handle, "abandoned by the client")
                continue
            }
            if let failed = result.error(connection: handle, sql: sql) { error = error ?? failed } else { copied += result.changes }
        }
        if let error { throw error }
        guard !beforeAnother else {
            throw DatabaseError(code: .postgresql(sqlState: "XX000"), message: "the query ended before its next COPY", sql: sql)
        }
        return copied
    }
}
