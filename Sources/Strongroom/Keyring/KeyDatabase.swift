import StrongroomStorage
import Synchronization

/// The key database (`keys.sqlite`, or the key schema on PostgreSQL): the one owner of its connection
/// and of every statement on its tables (store row, kek, subject_keys, index_keys, audit_keys,
/// key_usage, audit_head, erased_subjects, tombstones, rotations). It holds wrapped keys only: `Keyring` unwraps
/// and caches them.
///
/// Thread safety: safe from any thread; the connection sits behind a lock, taken once per `read` or
/// `transaction`. Never call the audit hook inside one.
final class KeyDatabase: Sendable {
    private let tables: Mutex<KeyTables>
    /// The backend that made the connection: its key schema, change counter and erasure announcements.
    private let backend: any StoreBackend

    /// Takes `connection`, made by `backend`, bringing the key tables to the current schema and
    /// listening for erasure announcements where the backend has them.
    init(_ connection: consuming sending any Database, backend: any StoreBackend) throws(StoreError) {
        do throws(MigrationError) { try connection.migrate(type(of: backend).keyMigrations) } catch { throw StoreError(error) }
        do throws(DatabaseError) { try backend.listenForErasures(on: connection) } catch { throw .database(error) }
        self.backend = backend
        self.tables = Mutex(KeyTables(connection: connection, changeCounterSQL: type(of: backend).keyChangeCounterSQL, backend: backend))
    }

    /// Runs `body` on the key tables, outside any transaction (each statement commits on its own). The
    /// key database's failures become `StoreError.database` here, once for every caller. The body says
    /// `throws(DatabaseError)`: Swift 6.3 never infers a closure's thrown type.
    func read<Result: Sendable>(_ body: (KeyTables) throws(DatabaseError) -> Result) throws(StoreError) -> Result {
        do { return try locked(body) } catch { throw .database(error) }
    }

    /// Runs `body` on the key tables under their lock, throwing what it throws.
    private func locked<Result: Sendable, Failure: Error>(_ body: (KeyTables) throws(Failure) -> Result) throws(Failure) -> Result {
        try tables.withLock { (tables) throws(Failure) -> Result in try body(tables) }
    }

    /// Runs `body` on the key tables in one transaction, committed when it returns; a failure is
    /// `StoreError.database`, as in `read`.
    func transaction<Result: Sendable>(_ body: (KeyTables) throws(DatabaseError) -> Result) throws(StoreError) -> Result {
        try read { (tables) throws(DatabaseError) in
            try tables.connection.transaction { () throws(DatabaseError) in try body(tables) }
        }
    }

    /// Runs `body`, which also unwraps or seals keys, on the key tables in one transaction, rolled back
    /// when it throws. Its statements' `DatabaseError`s are its own to convert (`do throws(DatabaseError)`
    /// around them): Swift has no implicit conversion between thrown types.
    func transaction<Result: Sendable>(_ body: (KeyTables) throws(StoreError) -> Result) throws(StoreError) -> Result {
        try locked { (tables) throws(StoreError) in
            try tables.connection.transaction { () throws(StoreError) in try body(tables) }
        }
    }

    /// The connection itself, for the query-plan tests that ask it for its prepared statements; the
    /// engine goes through `read` and `transaction`.
    var connectionForInspection: any Database { tables.withLock { $0.connection } }

    /// Whether an erasure was announced since the last call (PostgreSQL); nil where the backend has no
    /// announcements.
    func takeErasureAnnouncements() -> Bool? {
        tables.withLock { backend.takeErasureAnnouncements(from: $0.connection) }
    }

    // MARK: Statements run per subject or per batch, pinned by QueryPlanTests

    /// A subject's key of one version, read on a cache miss: by primary key.
    static let subjectKey = "SELECT key_id, wrapped, kek_version FROM subject_keys WHERE subject_id = ? AND version = ?"
    /// The conflict clause of subject keys' inserts: an orphan of a rolled-back data write at the same
    /// subject and version is replaced, found by primary key.
    static let upsertSubjectKeysConflict = """
        ON CONFLICT (subject_id, version) DO UPDATE SET key_id = excluded.key_id,
            kek_version = excluded.kek_version, wrapped = excluded.wrapped, created_at = excluded.created_at
        """
    /// The subject keys of a range of subjects, for a bulk read to unwrap a batch at once: the primary key's range.
    static let subjectKeysInRange = """
        SELECT subject_id, version, key_id, kek_version, wrapped FROM subject_keys
        WHERE subject_id >= ? AND subject_id <= ? ORDER BY subject_id, version
        """
    /// The next batch of subject keys the KEK rotation re-wraps, after the cursor: the primary key's range.
    static let subjectKeysToRewrap = """
        SELECT subject_id, version, kek_version, wrapped FROM subject_keys
        WHERE subject_id > ? AND kek_version <> ? ORDER BY subject_id, version LIMIT ?
        """
    /// `rows` subject keys re-wrapped under the new KEK (?1) in one statement, each found by primary
    /// key: a VALUES row per key of its subject, key version and new wrapping (`bytes`: the backend's
    /// `bytesParameter`). One statement per batch instead of one per key: one round trip on PostgreSQL.
    static func rewrapSubjectKeys(_ rows: Int, bytes: String) -> String {
        "UPDATE subject_keys SET kek_version = ?, wrapped = rewrapped.column3 FROM (VALUES "
            + Array(repeating: "(CAST(? AS BIGINT), CAST(? AS BIGINT), \(bytes))", count: rows).joined(separator: ", ")
            + ") AS rewrapped WHERE subject_keys.subject_id = rewrapped.column1 AND subject_keys.version = rewrapped.column2"
    }
    /// Subject keys still under another KEK, counted once when the KEK rotation finishes.
    static let subjectKeysLeftBehind = "SELECT count(*) FROM subject_keys WHERE kek_version <> ?"
    /// A subject's keys newer than the version its data uses: left by a data rotation that crashed.
    static let deleteNewerSubjectKeys = "DELETE FROM subject_keys WHERE subject_id = ? AND version > ?"
    /// A subject's keys other than the one its data now uses: destroyed after a data rotation.
    static let deleteOtherSubjectKeys = "DELETE FROM subject_keys WHERE subject_id = ? AND version <> ?"
    /// Every key of a subject, destroyed by an erasure.
    static let deleteSubjectKeys = "DELETE FROM subject_keys WHERE subject_id = ?"
    /// The nonce reservation of one shared key moved forward (never back: another process may have
    /// reserved further).
    static let reserveEncryptions = """
        INSERT INTO key_usage (key, reserved) VALUES (?, ?)
        ON CONFLICT (key) DO UPDATE SET reserved = CASE WHEN excluded.reserved > key_usage.reserved
            THEN excluded.reserved ELSE key_usage.reserved END
        """
    /// The columns of a tombstone, in the order `KeyTables.receipt(from:)` reads them.
    static let tombstoneColumns = """
        subject_id, receipt, external_id_tag, erased_at, actor, reason, destroyed_keys, destroyed_rows,
        destroyed_index_entries, destroyed_consent_entries, destroyed_calls, audit_sequence, mac
        """
    /// The tombstone of an erased external id (a receipt's lookup, a strict import's check): by its
    /// unique index on the keyed hash.
    static let tombstoneByExternalID = "SELECT \(tombstoneColumns) FROM tombstones WHERE external_id_tag = ?"
    /// The tombstones of the erased external ids among those of the rows a write would create, their
    /// keyed hashes compared by `StoreBackend.forEachRow(_:matchingAny:of:on:_:)` (SQLite: `IN` lists;
    /// PostgreSQL: `= ANY` of one array): through the same unique index as `tombstoneByExternalID`.
    static let tombstonesByExternalIDs = "SELECT \(tombstoneColumns) FROM tombstones WHERE external_id_tag"
    /// The tombstone of an erased subject, by store id: the primary key.
    static let tombstoneBySubject = "SELECT \(tombstoneColumns) FROM tombstones WHERE subject_id = ?"
    /// The rotation's committed position after a batch of a walk over subjects.
    static let advanceRotation = "UPDATE rotations SET cursor = ?, done = ? WHERE kind = ?"
}

/// A wrapped key-encryption key as stored.
struct WrappedKEK: Sendable {
    let version: UInt32
    let identifier: UInt32
    let wrapped: [UInt8]
    let current: Bool
}

/// A wrapped key of one of the few shared keys the KEK wraps beside the subject keys.
struct WrappedSharedKey: Sendable {
    /// Where it lives: `index_keys` (phone index keys) or `audit_keys`.
    let table: SharedKeyTable
    let version: Int64
    let kekVersion: UInt32
    let wrapped: [UInt8]
}

/// The tables of the shared keys a KEK wraps besides subject keys; both keyed by version.
enum SharedKeyTable: String, Sendable, CaseIterable {
    case indexKeys = "index_keys"
    case auditKeys = "audit_keys"
}

/// The key tables over one connection of the key database, inside `KeyDatabase.read` or `transaction`.
struct KeyTables {
    let connection: any Database
    /// The backend's key change counter query (`StoreBackend.keyChangeCounterSQL`).
    fileprivate let changeCounterSQL: String
    /// The backend that made the connection, for its bulk inserts.
    let backend: any StoreBackend

    /// Has the database drop deleted rows from its files (`Database.discardDeletedContent`), waiting
    /// up to `milliseconds` for readers of older snapshots (nil: as long as it takes); true when done.
    @discardableResult
    func discardDeletedContent(waitingUpTo milliseconds: Int32? = nil) throws(DatabaseError) -> Bool {
        try connection.discardDeletedContent(waitingUpTo: milliseconds)
    }

    // MARK: Store row

    /// Creates the store row (generation 1).
    func insertStoreRow(storeID: [UInt8], createdAt: Int64, auditDurability: String) throws(DatabaseError) {
        try connection.run("INSERT INTO store (id, store_id, master_generation, created_at, audit_durability) VALUES (1, ?, 1, ?, ?)",
                           [.blob(storeID), .integer(createdAt), .text(auditDurability)])
    }

    /// The store id and master generation; nil when the store row is missing.
    func storeIdentity() throws(DatabaseError) -> (storeID: [UInt8], masterGeneration: UInt32)? {
        try connection.firstRow("SELECT store_id, master_generation FROM store WHERE id = 1", [], {
            ($0.blob(0) ?? [], UInt32(truncatingIfNeeded: $0.int64(1)))
        })
    }

    /// The master key's generation (nil without a store row).
    func masterGeneration() throws(DatabaseError) -> UInt32? {
        try connection.scalarInteger("SELECT master_generation FROM store WHERE id = 1").map { UInt32(truncatingIfNeeded: $0) }
    }

    /// Records a new master generation.
    func setMasterGeneration(_ generation: UInt32) throws(DatabaseError) {
        try connection.run("UPDATE store SET master_generation = ? WHERE id = 1", [.int(Int(generation))])
    }

    /// The audit durability recorded at creation.
    func auditDurability() throws(DatabaseError) -> String? {
        try connection.scalarText("SELECT audit_durability FROM store WHERE id = 1")
    }

    /// Since when (milliseconds) old pages of destroyed keys wait to be overwritten; nil when none do.
    func erasedPagesSince() throws(DatabaseError) -> Int64? {
        try connection.scalarInteger("SELECT erased_pages_since FROM store WHERE id = 1")
    }

    /// Records that destroyed keys left old pages, unless an earlier erasure already did.
    func markErasedPages(at now: Int64) throws(DatabaseError) {
        try connection.run("UPDATE store SET erased_pages_since = coalesce(erased_pages_since, ?) WHERE id = 1", [.integer(now)])
    }

    /// Clears the record of old pages, if no erasure numbered after `latestErasure` came meanwhile.
    func clearErasedPages(ifLatestErasureIs latestErasure: Int64) throws(DatabaseError) {
        try connection.run("UPDATE store SET erased_pages_since = NULL WHERE id = 1 AND (\(Schema.latestErasureNumber)) = ?",
                           [.integer(latestErasure)])
    }

    /// The key database's change counter (`StoreBackend.keyChangeCounterSQL`).
    func changeCounter() throws(DatabaseError) -> Int64 {
        try connection.scalarInteger(changeCounterSQL) ?? 0
    }

    // MARK: Nonce reservations (key_usage)

    /// Encryptions reserved so far, by key name.
    func reservations() throws(DatabaseError) -> [String: UInt64] {
        Dictionary(uniqueKeysWithValues: try connection.rows("SELECT key, reserved FROM key_usage") {
            ($0.text(0) ?? "", UInt64($0.int64(1)))
        })
    }

    /// Encryptions reserved so far under the key named `name`.
    func reserved(_ name: String) throws(DatabaseError) -> UInt64 {
        UInt64(try connection.scalarInteger("SELECT reserved FROM key_usage WHERE key = ?", [.text(name)]) ?? 0)
    }

    /// Makes sure `count` more encryptions under `usage`'s key are reserved, writing a new block when
    /// needed (inside the caller's transaction, if any); `keyBudgetExhausted` past the key's budget.
    func reserve(_ usage: KeyUsage, count: Int) throws(StoreError) {
        guard let total = try usage.reservationNeeded(for: UInt64(count), block: Keyring.reservationBlock(budget: usage.budget))
        else { return }
        do throws(DatabaseError) { try reserve(usage, through: total) } catch { throw .database(error) }
    }

    /// Records that encryptions under `usage`'s key are reserved up to `total` (a block from
    /// `KeyUsage.reservationNeeded`, checked against the budget before the transaction).
    func reserve(_ usage: KeyUsage, through total: UInt64) throws(DatabaseError) {
        try connection.run(KeyDatabase.reserveEncryptions, [.text(usage.name), .integer(Int64(total))])
        usage.didReserve(total)
    }

    // MARK: Key-encryption keys (kek)

    /// Stores a wrapped KEK.
    func insertKEK(version: UInt32, identifier: UInt32, wrapped: [UInt8], createdAt: Int64, current: Bool) throws(DatabaseError) {
        try connection.run("INSERT INTO kek (version, key_id, wrapped, created_at, current) VALUES (?, ?, ?, ?, ?)", [
            .int(Int(version)), .int(Int(identifier)), .blob(wrapped), .integer(createdAt), .int(current ? 1 : 0),
        ])
    }

    /// Every wrapped KEK.
    func wrappedKEKs() throws(DatabaseError) -> [WrappedKEK] {
        try connection.rows("SELECT version, key_id, wrapped, current FROM kek") {
            WrappedKEK(version: UInt32(truncatingIfNeeded: $0.int64(0)), identifier: UInt32(truncatingIfNeeded: $0.int64(1)),
                       wrapped: $0.blob(2) ?? [], current: $0.int64(3) != 0)
        }
    }

    /// Replaces the wrapping of KEK `version` (a master rotation or migration).
    func updateKEK(version: UInt32, wrapped: [UInt8]) throws(DatabaseError) {
        try connection.run("UPDATE kek SET wrapped = ? WHERE version = ?", [.blob(wrapped), .int(Int(version))])
    }

    /// The version new keys are wrapped under.
    func currentKEKVersion() throws(DatabaseError) -> UInt32? {
        try connection.scalarInteger("SELECT version FROM kek WHERE current = 1").map { UInt32(truncatingIfNeeded: $0) }
    }

    /// The oldest and newest KEK versions present.
    func kekVersionRange() throws(DatabaseError) -> (oldest: UInt32, newest: UInt32)? {
        try connection.firstRow("SELECT min(version), max(version) FROM kek", []) { row in
            row.isNull(0) ? nil : (UInt32(truncatingIfNeeded: row.int64(0)), UInt32(truncatingIfNeeded: row.int64(1)))
        } ?? nil
    }

    /// Makes `version` the current KEK, and no other.
    func makeKEKCurrent(_ version: UInt32) throws(DatabaseError) {
        try connection.run("UPDATE kek SET current = CASE WHEN version = ? THEN 1 ELSE 0 END", [.int(Int(version))])
    }

    /// Destroys every KEK but `version`.
    func deleteKEKs(except version: UInt32) throws(DatabaseError) {
        try connection.run("DELETE FROM kek WHERE version <> ?", [.int(Int(version))])
    }
}
