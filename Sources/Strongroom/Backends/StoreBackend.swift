import StrongroomCrypto
import StrongroomStorage

/// What differs between the places a store can live (a folder of SQLite files, a PostgreSQL server):
/// everything the engine needs from them, so that it never asks which one it has. `StoreLocation`
/// chooses the backend once (`StoreLocation.backend`); a new backend is one more folder beside
/// Backends/SQLite and Backends/PostgreSQL implementing this protocol. Its functions throw typed
/// errors: `DatabaseError` for statements, `StoreError` where the place itself answers (no store there,
/// a folder that cannot be made private, an audit trail that does not open).
protocol StoreBackend: Sendable {
    /// The data database's migrations (ciphertext, clear operational fields, the blind index).
    static var dataMigrations: [Migration] { get }
    /// The key database's migrations (the wrapped key hierarchy, the audit head, erasure tombstones).
    static var keyMigrations: [Migration] { get }
    /// A query whose integer result changes whenever another connection changed the upper keys or
    /// erased a subject, so a process notices a rotation or an erasure made by another without
    /// re-reading the keys every time.
    static var keyChangeCounterSQL: String { get }
    /// A query for the id the next consent ledger entry takes (it is sealed into the entry's AAD before
    /// the insert, so it must never be reused, not even after a rollback).
    static var nextConsentEntryIDSQL: String { get }
    /// A `?` parameter taken as bytes where the statement gives it no type of its own (a column of a
    /// VALUES list, which PostgreSQL would otherwise take for text).
    static var bytesParameter: String { get }
    /// Whether the blind index's bulk changes (an index rotation's copy of the new version and its drop
    /// of the old) drop `phone_index_by_tag` and build it again in their transaction: those changes
    /// meet its rows in random tag order, and touching its pages at random costs more per row the
    /// larger the store grows, where building it again is one sort.
    static var rebuildsTagIndexForBulkChanges: Bool { get }

    /// Takes the ids of `count` new subjects, in ascending order, inside a write transaction on `data`
    /// (a connection this backend made): ids no committed subject had and no other writer takes, so
    /// that their rows can be inserted with their ciphertexts, which bind the id, in one statement.
    func reserveSubjectIDs(_ count: Int, on data: any Database) throws(DatabaseError) -> [Int64]

    /// Takes the ids of `count` new subjects, in ascending order, on `data` (a connection this backend
    /// made) outside any transaction, committed at once: ids no writer will ever take, so that the
    /// subjects can be sealed under them before the transaction that inserts them (an import seals its
    /// next batch while the one before is written). An id its caller leaves unused stays unused.
    func reserveSubjectIDsAhead(_ count: Int, on data: any Database) throws(DatabaseError) -> [Int64]

    /// Inserts `rows` (each one value per column of `columns`) into `table` on `connection` (made by
    /// this backend) in as few statements as the backend can, each followed by `conflict` (an
    /// `ON CONFLICT` clause, or empty): bulk paths such as an import's batches move rows in sets, not one
    /// statement per row.
    func insert(_ rows: [[SQLValue]], into table: String, columns: [BulkColumn], conflict: String,
                on connection: any Database) throws(DatabaseError)

    /// Inserts rows into `table` (no conflict clause) on `connection` (made by this backend) while `body`
    /// makes them: `body` passes each set of rows to `insert` as soon as it has it, one value per column
    /// of `columns` each. The backend may send them on at once and finish once `body` returns (one
    /// `COPY` for all of them on PostgreSQL, its rows stored while the next ones are made), or insert
    /// each set as `insert` does. Returns `body`'s value.
    func inserting<T, Failure: DatabaseFailure>(into table: String, columns: [BulkColumn], on connection: any Database,
                                                _ body: (_ insert: ([[SQLValue]]) throws(Failure) -> Void) throws(Failure) -> T)
        throws(Failure) -> T

    /// `inserting(into:columns:on:_:)` for several tables in turn: `body` passes each set of `count` rows
    /// with its table's place in `tables`, the tables in order (all of one table's sets before the
    /// next's), and `row(i, &values)` appending the set's row i, one value per column of the table, to
    /// `values`. The backend may run them as one stream (one query of COPYs on PostgreSQL, each begun by
    /// the server as the one before ends, without a round trip of its own) or bind each row as it is
    /// appended (SQLite: a few dozen rows to a statement, no array made per row).
    func inserting<T, Failure: DatabaseFailure>(into tables: [(table: String, columns: [BulkColumn])], on connection: any Database,
                                                _ body: (_ insert: (_ table: Int, _ count: Int, _ row: @escaping RowAppender) throws(Failure) -> Void)
                                                    throws(Failure) -> T)
        throws(Failure) -> T

    /// Readies `data` (a connection this backend made) for a bulk write, such as an import's batches,
    /// until `endBulkWrites`: where the backend has settings that suit one (SQLite's page cache).
    func beginBulkWrites(on data: any Database) throws(DatabaseError)

    /// Ends what `beginBulkWrites` began on `data`, doing the work a bulk write leaves (SQLite: a checkpoint).
    func endBulkWrites(on data: any Database) throws(DatabaseError)

    /// Runs `query`, a SELECT whose condition ends with a column left for this function to compare,
    /// for the rows whose column holds one of `keys` (each a value of `kind`), in as few statements as
    /// the backend can.
    func forEachRow(_ query: String, matchingAny keys: [SQLValue], of kind: BulkColumn.Kind, on connection: any Database,
                    _ body: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError)

    /// Connects to the store's data database (`keys` false) or key database (`keys` true): of the store
    /// here when `existing`, or of a new one when not; `storeNotFound` or `storeAlreadyExists` when the
    /// place says otherwise, `file` when the folder cannot be made private, `database` when the
    /// database refuses the connection.
    func connect(keys: Bool, existing: Bool) throws(StoreError) -> any Database

    /// Opens the store's audit trail. `lockTimeout`: how long appends may wait for the trail's locks
    /// (seconds), where it has any. The trail's own failure is `StoreError(AuditLogError)`; a connection
    /// the trail needs and cannot get, `database`.
    func openAuditTrail(mac: HMACSHA256, storeID: [UInt8], durability: AuditDurability, segmentByteLimit: Int64,
                        lockTimeout: Double, headStore: any AuditHeadStore) throws(StoreError) -> any AuditTrail

    /// Readies `data`, a connection this backend made, for caller-ID probes under `keyring`'s index keys,
    /// and returns the SQL condition, over `?1` (the index version), `p.subject_id`, `p.check_mac` and
    /// `?3` (the full tag), that keeps only exact matches inside the probe's query; nil when the backend
    /// cannot check in the query, and the engine checks each candidate's `check_mac` itself.
    func prepareCallerIDProbe(on data: any Database, keyring: Keyring) throws(DatabaseError) -> String?

    /// A number that changes with every commit made to `data` (a connection this backend made) by
    /// another connection, read without a query; nil when the backend has none.
    func dataVersion(of data: any Database) -> UInt32?

    /// Has `keys` (a key connection this backend made) told of erasures committed by other connections,
    /// where the backend can announce them (PostgreSQL's LISTEN); otherwise does nothing.
    func listenForErasures(on keys: any Database) throws(DatabaseError)

    /// Whether an erasure was announced on `keys` since the last call; nil where the backend has no
    /// announcements (the engine then relies on `keyChangeCounterSQL` and `dataVersion(of:)`).
    func takeErasureAnnouncements(from keys: any Database) -> Bool?
}

/// Appends row `position` of a set of rows to `values`, one value per column of its table
/// (`StoreBackend.inserting(into:on:_:)` with several tables).
typealias RowAppender = (_ position: Int, _ values: inout [SQLValue]) -> Void

extension StoreBackend {
    /// Each set of rows inserted as it comes, by `insert`.
    func inserting<T, Failure: DatabaseFailure>(into table: String, columns: [BulkColumn], on connection: any Database,
                                                _ body: (_ insert: ([[SQLValue]]) throws(Failure) -> Void) throws(Failure) -> T)
        throws(Failure) -> T {
        try body { (rows) throws(Failure) in
            do throws(DatabaseError) { try insert(rows, into: table, columns: columns, conflict: "", on: connection) } catch { throw Failure(error) }
        }
    }

    /// `forEachRow(_:matchingAny:of:on:_:)` for a text column.
    func forEachRow(_ query: String, matchingAny keys: [String], on connection: any Database,
                    _ body: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) {
        try forEachRow(query, matchingAny: keys.map { .text($0) }, of: .text, on: connection, body)
    }
}

/// A column a bulk insert (`StoreBackend.insert`) fills: its name and the kind of its values.
struct BulkColumn: Sendable {
    /// The kinds of values a column takes (PostgreSQL's arrays of them are typed).
    enum Kind: Sendable {
        case integer, text, blob
    }

    let name: String
    let kind: Kind

    /// The column `name` of `kind`.
    init(_ name: String, _ kind: Kind) {
        self.name = name
        self.kind = kind
    }
}
