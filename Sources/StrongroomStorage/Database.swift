/// The SQL dialect a database speaks, for the few statements that differ between backends
/// (schema definitions, triggers, the change counter).
public enum SQLDialect: String, Sendable {
    /// SQLite 3.35 or later (the embedded default).
    case sqlite
    /// PostgreSQL 12 or later, through libpq.
    case postgresql
}

/// An error type that can hold a database failure: what a transaction's body may throw, so that
/// BEGIN's and COMMIT's failures take the body's own error type (`Database.transaction`).
public protocol DatabaseFailure: Error {
    /// The failure `error` of the database, as this type.
    init(_ error: DatabaseError)
}

extension DatabaseError: DatabaseFailure {
    /// `error` itself.
    public init(_ error: DatabaseError) { self = error }
}

/// One result row, valid only inside the closure it is passed to.
public protocol Row {
    /// True when column `index` is SQL `NULL`.
    func isNull(_ index: Int) -> Bool
    /// Column `index` as an integer (0 for NULL).
    func int64(_ index: Int) -> Int64
    /// Column `index` as a double (0 for NULL).
    func double(_ index: Int) -> Double
    /// Column `index` as text, nil for NULL.
    func text(_ index: Int) -> String?
    /// Column `index` as bytes, nil for NULL.
    func blob(_ index: Int) -> [UInt8]?
    /// Calls `body` with column `index`'s bytes (none for NULL), read in place where the backend
    /// allows it.
    func withBlob<Result>(_ index: Int, _ body: (Span<UInt8>) -> Result) -> Result
}

extension Row {
    /// Calls `body` with a copy of column `index`'s bytes (none for NULL).
    public func withBlob<Result>(_ index: Int, _ body: (Span<UInt8>) -> Result) -> Result {
        let bytes = blob(index) ?? []
        return body(bytes.span)
    }
}

/// A connection to one of a store's databases, whatever the backend. The engine writes its SQL in
/// the subset both backends share: `?` parameters, `ON CONFLICT … DO …`, `RETURNING`, no
/// backend-specific functions; what differs is asked of `dialect`. Every failure of the backend is a
/// `DatabaseError` (typed throws); `transaction` throws its body's error type, which can hold one
/// (`DatabaseFailure`).
///
/// Thread safety: not thread-safe. A connection is confined to one thread at a time; the engine
/// keeps each one behind a lock.
public protocol Database: AnyObject {
    /// The dialect this connection speaks.
    var dialect: SQLDialect { get }

    /// Runs one or more SQL statements that take no parameters and return no rows the caller needs.
    func execute(_ sql: String) throws(DatabaseError)

    /// Runs a statement that returns no rows, with `values` bound to its `?` parameters.
    func run(_ sql: String, _ values: [SQLValue]) throws(DatabaseError)

    /// Runs a query and calls `row` for each result row.
    func forEachRow(_ sql: String, _ values: [SQLValue], _ row: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError)

    /// Runs a statement that returns no rows, with `values` bound to its `?` parameters without an
    /// allocation and copy per value where the backend can (SQLite: blobs and texts lent from one buffer
    /// for the statement's run); otherwise as `run`. For bulk inserts.
    func runLendingValues(_ sql: String, _ values: [SQLValue]) throws(DatabaseError)

    /// Runs a query and maps its first row, or returns nil when it has none.
    func firstRow<T>(_ sql: String, _ values: [SQLValue], _ map: (any Row) throws(DatabaseError) -> T) throws(DatabaseError) -> T?

    /// Runs `body` inside a write transaction: committed when it returns, rolled back when it throws.
    /// Write transactions on one database never run at the same time (SQLite's write lock; an advisory
    /// lock on PostgreSQL), so a read inside `body` sees what the write after it will change.
    /// Throws `body`'s own error unchanged, or BEGIN's or COMMIT's `DatabaseError` made a `Failure`
    /// (`DatabaseFailure.init(_:)`): the thrown type is the body's, so a caller knows every error it
    /// can get. Swift 6.3 never infers a closure's thrown type (not from its body, not from context):
    /// the body says it, e.g. `transaction { () throws(DatabaseError) in ... }`.
    func transaction<T, Failure: DatabaseFailure>(_ body: () throws(Failure) -> T) throws(Failure) -> T

    /// The number of rows changed by the last statement.
    var changes: Int { get }

    /// The schema version recorded in the database (0 when none).
    func schemaVersion() throws(DatabaseError) -> Int

    /// Records `version` as the schema version (inside a migration's transaction).
    func setSchemaVersion(_ version: Int) throws(DatabaseError)

    /// Makes deleted rows' bytes leave the database's files where the backend allows it, waiting up to
    /// `milliseconds` (nil: the connection's usual lock wait) for readers of older snapshots; returns
    /// false when a reader still holds pages with deleted content, which the next successful call
    /// removes. SQLite: the WAL is copied into the main file, whose deleted content `secure_delete`
    /// has overwritten, and cut to zero bytes. PostgreSQL: returns true at once; the server keeps old
    /// row versions until VACUUM, and its own WAL, beyond a client's reach. Call outside a transaction.
    func discardDeletedContent(waitingUpTo milliseconds: Int32?) throws(DatabaseError) -> Bool
}

extension Database {
    /// `discardDeletedContent(waitingUpTo:)` with the connection's usual lock wait, for callers that
    /// leave what a reader holds to a later call.
    public func discardDeletedContent() throws(DatabaseError) { _ = try discardDeletedContent(waitingUpTo: nil) }

    /// Runs a statement that takes no parameters and returns no rows.
    public func run(_ sql: String) throws(DatabaseError) { try run(sql, []) }

    /// `run`: a backend that sends values over a wire copies them anyway.
    public func runLendingValues(_ sql: String, _ values: [SQLValue]) throws(DatabaseError) { try run(sql, values) }

    /// Runs a query without parameters and calls `row` for each result row.
    public func forEachRow(_ sql: String, _ row: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) { try forEachRow(sql, [], row) }

    /// Runs a query without parameters and maps its first row.
    public func firstRow<T>(_ sql: String, _ map: (any Row) throws(DatabaseError) -> T) throws(DatabaseError) -> T? { try firstRow(sql, [], map) }

    /// Runs a query and maps every row.
    /// (Inlinable, so that the engine's calls are specialised for their row type: generic, each paid
    /// for runtime type lookups and an unspecialised array append on every query.)
    @inlinable
    public func rows<T>(_ sql: String, _ values: [SQLValue] = [], _ map: (any Row) throws(DatabaseError) -> T) throws(DatabaseError) -> [T] {
        var result: [T] = []
        try forEachRow(sql, values) { (row) throws(DatabaseError) in result.append(try map(row)) }
        return result
    }

    /// The integer in the first column of the first row, or nil (also for NULL).
    public func scalarInteger(_ sql: String, _ values: [SQLValue] = []) throws(DatabaseError) -> Int64? {
        try firstRow(sql, values) { $0.isNull(0) ? nil : $0.int64(0) } ?? nil
    }

    /// The text in the first column of the first row, or nil.
    public func scalarText(_ sql: String, _ values: [SQLValue] = []) throws(DatabaseError) -> String? {
        try firstRow(sql, values) { $0.text(0) } ?? nil
    }
}
