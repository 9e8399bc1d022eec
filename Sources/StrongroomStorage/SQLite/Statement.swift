internal import CSQLite

/// A prepared SQLite statement, owned by the connection that compiled it.
///
/// Not thread-safe: used only by its `SQLiteConnection`, which is itself confined to one thread at a time.
public final class Statement: Row {
    /// The raw handle: `sqlite3_stmt *`, finalized in `deinit`.
    private let handle: OpaquePointer
    /// The connection handle, for error messages.
    private let database: OpaquePointer
    /// The SQL text, kept for errors.
    public let sql: String

    init(database: OpaquePointer, sql: String, persistent: Bool) throws(DatabaseError) {
        var statement: OpaquePointer?
        // SQLITE_PREPARE_PERSISTENT hints that the statement is cached and reused many times.
        let flags: UInt32 = persistent ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0
        let code = unsafe sqlite3_prepare_v3(database, sql, -1, flags, &statement, nil)
        guard code == SQLITE_OK, let statement else {
            throw SQLiteConnection.error(database, code: code, sql: sql)
        }
        unsafe self.handle = statement
        unsafe self.database = database
        self.sql = sql
    }

    deinit {
        unsafe sqlite3_finalize(handle)
    }

    /// Binds `values` to the parameters `?1...?n`, after resetting the statement.
    /// The corresponding C functions are `sqlite3_reset`, `sqlite3_clear_bindings` and `sqlite3_bind_*`.
    public func bind(_ values: [SQLValue]) throws(DatabaseError) {
        unsafe sqlite3_reset(handle)
        unsafe sqlite3_clear_bindings(handle)
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let code: Int32
            switch value {
            case .null, .integer, .real:
                code = bindWithoutBytes(value, at: index)
            case .text(let text):
                // Bound by its length, not up to a NUL: the whole text, as `runLendingValues` binds it, so
                // a value is never stored by one statement and compared cut short by another.
                code = unsafe sqlite3_bind_text64(handle, index, text, sqlite3_uint64(text.utf8.count), CSQLite_transient(), UInt8(SQLITE_UTF8))
            case .blob(let bytes):
                code = unsafe bytes.withUnsafeBytes { buffer in
                    // A zero-length blob must not bind as NULL: SQLite needs a non-null pointer.
                    unsafe sqlite3_bind_blob64(handle, index, buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1),
                                               sqlite3_uint64(buffer.count), CSQLite_transient())
                }
            }
            guard code == SQLITE_OK else { throw SQLiteConnection.error(database, code: code, sql: sql) }
        }
    }

    /// Runs the statement, which returns no rows, once with `values` bound to `?1...?n`: the bytes of
    /// every blob and text are copied into one buffer made for this run and lent to SQLite from there
    /// (`SQLITE_STATIC`), rather than SQLite allocating and copying each value (`bind`'s
    /// `SQLITE_TRANSIENT`: a bulk insert's ciphertexts cost an allocation each). The bindings are cleared
    /// before the buffer is freed, so the statement never keeps a pointer past it.
    /// Related SQLite documentation: <https://www.sqlite.org/c3ref/bind_blob.html>
    public func runLendingValues(_ values: [SQLValue]) throws(DatabaseError) {
        unsafe sqlite3_reset(handle)
        var byteCount = 0
        for value in values {
            switch value {
            case .text(let text): byteCount += text.utf8.count
            case .blob(let bytes): byteCount += bytes.count
            case .null, .integer, .real: break
            }
        }
        // One byte at least: a zero-length text or blob must not bind as NULL (SQLite needs a non-null pointer).
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: byteCount + 1, alignment: 1)
        defer {
            unsafe sqlite3_reset(handle)
            unsafe sqlite3_clear_bindings(handle)
            unsafe buffer.deallocate()
        }
        var used = 0
        for (offset, value) in values.enumerated() {
            let parameter = Int32(offset + 1)
            let code: Int32
            // A nil destructor below is `SQLITE_STATIC`: the bytes stay in `buffer` until the bindings are cleared.
            switch value {
            case .null, .integer, .real:
                code = bindWithoutBytes(value, at: parameter)
            case .text(let text):
                let start = used
                used += text.utf8.count
                unsafe UnsafeMutableRawBufferPointer(rebasing: buffer[start..<used]).copyBytes(from: text.utf8)
                code = unsafe sqlite3_bind_text64(handle, parameter, (buffer.baseAddress! + start).assumingMemoryBound(to: CChar.self),
                                                  sqlite3_uint64(used - start), nil, UInt8(SQLITE_UTF8))
            case .blob(let bytes):
                let start = used
                used += bytes.count
                unsafe UnsafeMutableRawBufferPointer(rebasing: buffer[start..<used]).copyBytes(from: bytes)
                code = unsafe sqlite3_bind_blob64(handle, parameter, buffer.baseAddress! + start, sqlite3_uint64(bytes.count), nil)
            }
            guard code == SQLITE_OK else { throw SQLiteConnection.error(database, code: code, sql: sql) }
        }
        while try step() {}
    }

    /// Binds `value`, a null, integer or real, to parameter `index`; SQLite's result code (a text or
    /// blob, which `bind` and `runLendingValues` each bind their way, binds nothing here: `SQLITE_MISUSE`).
    private func bindWithoutBytes(_ value: SQLValue, at index: Int32) -> Int32 {
        switch value {
        case .null: unsafe sqlite3_bind_null(handle, index)
        case .integer(let integer): unsafe sqlite3_bind_int64(handle, index, integer)
        case .real(let real): unsafe sqlite3_bind_double(handle, index, real)
        case .text, .blob: SQLITE_MISUSE
        }
    }

    /// Advances to the next row; false when the statement is done. The corresponding C function is `sqlite3_step`.
    public func step() throws(DatabaseError) -> Bool {
        let code = unsafe sqlite3_step(handle)
        switch code {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            unsafe sqlite3_reset(handle)
            throw SQLiteConnection.error(database, code: code, sql: sql)
        }
    }

    /// Resets the statement so that it releases its read lock, and clears bound values.
    public func reset() {
        unsafe sqlite3_reset(handle)
        unsafe sqlite3_clear_bindings(handle)
    }

    /// The number of result columns.
    public var columnCount: Int { Int(unsafe sqlite3_column_count(handle)) }

    /// True when column `index` of the current row is SQL `NULL`.
    public func isNull(_ index: Int) -> Bool {
        unsafe sqlite3_column_type(handle, Int32(index)) == SQLITE_NULL
    }

    /// Column `index` of the current row as an integer (0 for NULL).
    public func int64(_ index: Int) -> Int64 {
        unsafe sqlite3_column_int64(handle, Int32(index))
    }

    /// Column `index` of the current row as a double (0 for NULL).
    public func double(_ index: Int) -> Double {
        unsafe sqlite3_column_double(handle, Int32(index))
    }

    /// Column `index` of the current row as text, nil for NULL.
    public func text(_ index: Int) -> String? {
        guard let pointer = unsafe sqlite3_column_text(handle, Int32(index)) else { return nil }
        let count = Int(unsafe sqlite3_column_bytes(handle, Int32(index)))
        return unsafe String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    /// Column `index` of the current row as bytes, nil for NULL.
    public func blob(_ index: Int) -> [UInt8]? {
        let column = Int32(index)
        if unsafe sqlite3_column_type(handle, column) == SQLITE_NULL { return nil }
        guard let pointer = unsafe sqlite3_column_blob(handle, column) else { return [] }
        let count = Int(unsafe sqlite3_column_bytes(handle, column))
        return unsafe Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}

@available(*, unavailable, message: "A Statement belongs to its SQLiteConnection, which is confined to one thread at a time")
extension Statement: Sendable {}
