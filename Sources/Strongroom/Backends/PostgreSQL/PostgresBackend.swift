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
    /// Each statement is a round trip to the server: 512 rows to one (a batch of an import's 500 in
    /// a handful of statements), within the parameter limit `MultiRowStatements` keeps.
    static let rowsPerStatement = 512

    /// Values of the identity sequence, taken in one round trip (never given back, not even by a rollback).
    func reserveSubjectIDs(_ count: Int, on data: any Database) throws -> [Int64] {
        try data.rows("SELECT nextval(pg_get_serial_sequence('subjects', 'id')) FROM generate_series(1, ?::integer) ORDER BY 1",
                      [.int(count)]) { $0.int64(0) }
    }

    /// The key database's URL: `keysURL`, or `url` with its schema suffixed `_keys`.
    var keyDatabaseURL: String {
        if let keysURL { return keysURL }
        let schema = (try? PostgresConnection.split(url).schema) ?? PostgresConnection.defaultSchema
        return PostgresConnection.url(url, schema: schema + "_keys")
    }

    func connect(keys: Bool, existing: Bool) throws -> any Database {
        let mismatch = existing ? StoreError.storeNotFound(path: StoreLocation.withoutPassword(url))
                                : StoreError.storeAlreadyExists(path: StoreLocation.withoutPassword(url))
        let connection = try PostgresConnection(url: keys ? keyDatabaseURL : url,
                                                create: !existing, writeLock: keys ? "keys" : "data")
        guard (try connection.scalarText("SELECT to_regclass('store')::text") != nil) == existing else { throw mismatch }
        return connection
    }

    func openAuditTrail(mac: HMACSHA256, storeID: [UInt8], durability: AuditDurability, segmentByteLimit: Int64,
                        lockTimeout: Double, headStore: any AuditHeadStore) throws -> any AuditTrail {
        try PostgresAuditLog(connection: PostgresConnection(url: url, create: false, writeLock: "audit"),
                             mac: mac, storeID: storeID, headStore: headStore)
    }

    /// None: the probe reads the few candidates' rows with their checks, and the engine checks them (a
    /// second round trip to check in the server would cost more).
    func prepareCallerIDProbe(on data: any Database, keyring: Keyring) throws -> String? { nil }

    func dataVersion(of data: any Database) -> UInt32? { nil }

    /// Erasures are announced on commit (`NOTIFY` from a trigger on `erased_subjects`, `PostgresSchema.keys`).
    func listenForErasures(on keys: any Database) throws {
        try (keys as? PostgresConnection)?.listen(Schema.erasureChannel)
    }

    func takeErasureAnnouncements(from keys: any Database) -> Bool? {
        (keys as? PostgresConnection)?.takeNotifications()
    }
}
