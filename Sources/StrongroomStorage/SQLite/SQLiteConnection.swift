internal import CSQLite

/// One SQLite database connection and its cache of prepared statements: the embedded backend.
///
/// Thread safety: not thread-safe. A connection is confined to one thread at a time; the engine
/// keeps each one behind a lock. It is opened with `SQLITE_OPEN_NOMUTEX` for that reason.
public final class SQLiteConnection: Database {
    /// The raw handle: `sqlite3 *`, closed in `deinit`.
    let handle: OpaquePointer
    /// Statements compiled once and reused, keyed by their SQL text.
    private var statementCache: [String: Statement] = [:]
    /// The statement asked for last. A caller that runs the same statement again (the engine's hot
    /// paths keep their SQL in constants) is answered by one string comparison, which for the same
    /// string storage is a pointer check, instead of hashing the whole SQL text.
    private var lastStatement: Statement?
    /// The path the connection was opened on.
    public let path: String
    /// How long a statement waits for another connection's lock.
    let busyTimeoutMilliseconds: Int32
    /// What this connection's own transactions changed, once `keepChangeJournal` started it.
    var changeJournal: ChangeJournal?

    /// Opens (or creates) the database file at `path`, in defensive mode with foreign keys on.
    ///
    /// - Parameters:
    ///   - path: the file; created if absent and `create` is true.
    ///   - create: whether a missing file may be created.
    ///   - readOnly: open for reading only.
    ///   - busyTimeoutMilliseconds: how long a statement waits for another connection's lock.
    /// The corresponding C function is `sqlite3_open_v2`.
    public init(path: String, create: Bool = true, readOnly: Bool = false,
                busyTimeoutMilliseconds: Int32 = 10_000) throws(DatabaseError) {
        var flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        if readOnly {
            flags |= SQLITE_OPEN_READONLY
        } else {
            flags |= SQLITE_OPEN_READWRITE
            if create { flags |= SQLITE_OPEN_CREATE }
        }
        var database: OpaquePointer?
        let code = unsafe sqlite3_open_v2(path, &database, flags, nil)
        guard code == SQLITE_OK, let database else {
            let error = unsafe database.map { unsafe SQLiteConnection.error($0, code: code, sql: nil) }
                ?? DatabaseError(code: .sqlite(extendedCode: code), message: String(cString: sqlite3_errstr(code)))
            unsafe sqlite3_close_v2(database)
            throw error
        }
        unsafe sqlite3_busy_timeout(database, busyTimeoutMilliseconds)
        _ = unsafe CSQLite_enableDefensive(database)
        unsafe self.handle = database
        self.path = path
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        try execute("PRAGMA foreign_keys = ON")
    }

    deinit {
        lastStatement = nil
        statementCache.removeAll()
        unsafe sqlite3_close_v2(handle)
    }

    /// Runs one or more SQL statements that take no parameters and return no rows the caller needs.
    /// The corresponding C function is `sqlite3_exec`.
    public func execute(_ sql: String) throws(DatabaseError) {
        let code = unsafe sqlite3_exec(handle, sql, nil, nil, nil)
        guard code == SQLITE_OK else { throw unsafe SQLiteConnection.error(handle, code: code, sql: sql) }
    }

    /// Returns a cached prepared statement for `sql`, compiling it on first use.
    public func statement(_ sql: String) throws(DatabaseError) -> Statement {
        if let lastStatement, lastStatement.sql == sql { return lastStatement }
        let statement: Statement
        if let cached = statementCache[sql] {
            statement = cached
        } else {
            statement = try unsafe Statement(database: handle, sql: sql, persistent: true)
            statementCache[sql] = statement
        }
        lastStatement = statement
        return statement
    }

    /// SQLite.
    public var dialect: SQLDialect { .sqlite }

    /// Runs a statement that returns no rows, with `values` bound to its parameters.
    public func run(_ sql: String, _ values: [SQLValue]) throws(DatabaseError) {
        let statement = try statement(sql)
        try statement.bind(values)
        defer { statement.reset() }
        while try statement.step() {}
    }

    /// Runs a statement that returns no rows, with `values`' bytes lent to its parameters from one
    /// buffer (`Statement.runLendingValues`): for bulk inserts of ciphertexts.
    public func runLendingValues(_ sql: String, _ values: [SQLValue]) throws(DatabaseError) {
        try statement(sql).runLendingValues(values)
    }

    /// Runs a query and calls `row` for each result row; the statement is valid only inside `row`.
    public func forEachRow(_ sql: String, _ values: [SQLValue], _ row: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) {
        let statement = try statement(sql)
        try statement.bind(values)
        defer { statement.reset() }
        while try statement.step() { try row(statement) }
    }

    /// Runs a query and maps its first row, or returns nil when it has none.
    public func firstRow<T>(_ sql: String, _ values: [SQLValue], _ map: (any Row) throws(DatabaseError) -> T) throws(DatabaseError) -> T? {
        let statement = try statement(sql)
        try statement.bind(values)
        defer { statement.reset() }
        guard try statement.step() else { return nil }
        return try map(statement)
    }

    /// Runs `body` inside a transaction: committed when it returns, rolled back when it throws.
    ///
    /// `BEGIN IMMEDIATE` takes the write lock up front, so two writers never deadlock upgrading
    /// read locks. With a change journal kept (`keepChangeJournal`), each commit is recorded there with
    /// its data versions, and a rollback drops the keys its statements reported.
    /// Related SQLite documentation: <https://www.sqlite.org/lang_transaction.html>
    public func transaction<T, Failure: DatabaseFailure>(_ body: () throws(Failure) -> T) throws(Failure) -> T {
        do { try execute("BEGIN IMMEDIATE") } catch { throw Failure(error) }
        let result: T
        do {
            result = try body()
        } catch {
            try? execute("ROLLBACK")
            changeJournal?.rollBack()
            throw error
        }
        // Inside the transaction, which holds the write lock: the version of the latest data.
        let fromVersion = changeJournal == nil ? 0 : dataVersion
        do { try execute("COMMIT") } catch {
            try? execute("ROLLBACK")
            changeJournal?.rollBack()
            throw Failure(error)
        }
        changeJournal?.commit(from: fromVersion, to: dataVersion)
        return result
    }

    /// Whether the connection is inside a transaction.
    public var isInTransaction: Bool { unsafe sqlite3_get_autocommit(handle) == 0 }

    /// The rowid of the last row inserted on this connection.
    public var lastInsertedRowID: Int64 { unsafe sqlite3_last_insert_rowid(handle) }

    /// The number of rows changed by the last statement.
    public var changes: Int { Int(unsafe sqlite3_changes64(handle)) }

    /// A number that changes whenever the main database file changes, by this connection or any other
    /// (in any process), as of this connection's last read: the same value twice means the statements
    /// in between read the same data. Costs no system call.
    /// Related SQLite documentation: <https://www.sqlite.org/c3ref/c_fcntl_begin_atomic_write.html#sqlitefcntldataversion>
    public var dataVersion: UInt32 {
        var version: UInt32 = 0
        _ = unsafe sqlite3_file_control(handle, "main", SQLITE_FCNTL_DATA_VERSION, &version)
        return version
    }

    /// The schema version recorded in the file (`PRAGMA user_version`).
    /// Related SQLite documentation: <https://www.sqlite.org/pragma.html#pragma_user_version>
    public func schemaVersion() throws(DatabaseError) -> Int {
        Int(try scalarInteger("PRAGMA user_version") ?? 0)
    }

    /// Records `version` in `PRAGMA user_version`.
    public func setSchemaVersion(_ version: Int) throws(DatabaseError) {
        try execute("PRAGMA user_version = \(version)")
    }

    /// Copies the WAL into the database and truncates it to zero bytes, so deleted rows (already
    /// overwritten in their pages by `secure_delete`) leave no copy in the journal nor, in their old
    /// page versions, in the main file. A connection reading an older snapshot needs those old pages:
    /// the checkpoint then waits for it (the busy handler, `milliseconds` or the usual lock wait) and,
    /// if it is still reading, leaves the rest undone and reports it by returning false (the pragma's
    /// "busy" column, which SQLite reports as a result and not as an error).
    /// Related SQLite documentation: <https://www.sqlite.org/pragma.html#pragma_wal_checkpoint>
    public func discardDeletedContent(waitingUpTo milliseconds: Int32?) throws(DatabaseError) -> Bool {
        if let milliseconds { unsafe sqlite3_busy_timeout(handle, milliseconds) }
        defer { if milliseconds != nil { unsafe sqlite3_busy_timeout(handle, busyTimeoutMilliseconds) } }
        return try firstRow("PRAGMA wal_checkpoint(TRUNCATE)", []) { $0.int64(0) } == 0
    }

    /// Builds an error from the connection's last error, keeping the SQL but no bound values.
    static func error(_ database: OpaquePointer, code: Int32, sql: String?) -> DatabaseError {
        let extended = unsafe sqlite3_extended_errcode(database)
        let message = unsafe String(cString: sqlite3_errmsg(database))
        return DatabaseError(code: .sqlite(extendedCode: extended != 0 ? extended : code), message: message, sql: sql)
    }
}

@available(*, unavailable, message: "A Connection is confined to one thread at a time; keep it behind a lock")
extension SQLiteConnection: Sendable {}
