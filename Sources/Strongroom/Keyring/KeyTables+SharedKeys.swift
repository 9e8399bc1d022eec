import StrongroomStorage

/// The key tables' statements on the shared keys: the audit keys and the blind-index keys.
extension KeyTables {
    /// Stores a wrapped audit key.
    func insertAuditKey(version: Int64, identifier: UInt32, kekVersion: UInt32, wrapped: [UInt8], createdAt: Int64) throws(DatabaseError) {
        try connection.run("INSERT INTO audit_keys (version, key_id, kek_version, wrapped, created_at) VALUES (?, ?, ?, ?, ?)", [
            .integer(version), .int(Int(identifier)), .int(Int(kekVersion)), .blob(wrapped), .integer(createdAt),
        ])
    }

    /// The newest audit key: its version, its KEK's version and its wrapping.
    func latestAuditKey() throws(DatabaseError) -> (version: Int64, kekVersion: UInt32, wrapped: [UInt8])? {
        try connection.firstRow("SELECT version, kek_version, wrapped FROM audit_keys ORDER BY version DESC LIMIT 1", []) {
            ($0.int64(0), UInt32(truncatingIfNeeded: $0.int64(1)), $0.blob(2) ?? [])
        }
    }

    /// Stores a wrapped phone index key in `state` ("active" or "building").
    func insertIndexKey(version: UInt32, identifier: UInt32, kekVersion: UInt32, wrapped: [UInt8], bits: Int,
                        plannedPopulation: Int, state: String, createdAt: Int64) throws(DatabaseError) {
        try connection.run("""
            INSERT INTO index_keys (field, version, key_id, kek_version, wrapped, bits, planned_population, state, created_at)
            VALUES ('phones', ?, ?, ?, ?, ?, ?, ?, ?)
            """, [
                .int(Int(version)), .int(Int(identifier)), .int(Int(kekVersion)), .blob(wrapped), .int(bits),
                .int(plannedPopulation), .text(state), .integer(createdAt),
            ])
    }

    /// The phone index keys that answer lookups, the active one first: version, KEK version, wrapping, bits.
    func answeringIndexKeys() throws(DatabaseError) -> [(version: UInt32, kekVersion: UInt32, wrapped: [UInt8], bits: Int)] {
        try connection.rows("""
            SELECT version, kek_version, wrapped, bits FROM index_keys
            WHERE field = 'phones' AND state IN ('active', 'building') ORDER BY state = 'building', version
            """) {
            (UInt32(truncatingIfNeeded: $0.int64(0)), UInt32(truncatingIfNeeded: $0.int64(1)), $0.blob(2) ?? [], Int($0.int64(3)))
        }
    }

    /// The newest phone index key version (0 when none).
    func newestIndexKeyVersion() throws(DatabaseError) -> UInt32 {
        UInt32(try connection.scalarInteger("SELECT max(version) FROM index_keys") ?? 0)
    }

    /// The population the phone index of `version` (the active one when nil) was planned for.
    func plannedPopulation(ofIndexVersion version: UInt32?) throws(DatabaseError) -> Int {
        guard let version else {
            return Int(try connection.scalarInteger("SELECT planned_population FROM index_keys WHERE state = 'active'") ?? 0)
        }
        return Int(try connection.scalarInteger("SELECT planned_population FROM index_keys WHERE field = 'phones' AND version = ?",
                                                [.int(Int(version))]) ?? 0)
    }

    /// Makes the phone index of `version` the only active one; the others retire.
    func activateIndexKey(_ version: UInt32) throws(DatabaseError) {
        try connection.run("UPDATE index_keys SET state = 'retired' WHERE field = 'phones' AND state = 'active' AND version <> ?",
                           [.int(Int(version))])
        try connection.run("UPDATE index_keys SET state = 'active' WHERE field = 'phones' AND version = ?", [.int(Int(version))])
    }

    /// Destroys the retired phone index keys.
    func deleteRetiredIndexKeys() throws(DatabaseError) {
        try connection.run("DELETE FROM index_keys WHERE field = 'phones' AND state = 'retired'")
    }

    /// The shared keys (index and audit keys) not yet wrapped under KEK `version`.
    func sharedKeys(notUnder version: UInt32) throws(DatabaseError) -> [WrappedSharedKey] {
        var keys: [WrappedSharedKey] = []
        for table in SharedKeyTable.allCases {
            keys += try connection.rows("SELECT version, kek_version, wrapped FROM \(table.rawValue) WHERE kek_version <> ?", [.int(Int(version))]) {
                WrappedSharedKey(table: table, version: $0.int64(0), kekVersion: UInt32($0.int64(1)), wrapped: $0.blob(2) ?? [])
            }
        }
        return keys
    }

    /// Replaces the wrapping of a shared key, now under KEK `kekVersion`.
    func rewrapSharedKey(_ key: WrappedSharedKey, wrapped: [UInt8], kekVersion: UInt32) throws(DatabaseError) {
        try connection.run("UPDATE \(key.table.rawValue) SET wrapped = ?, kek_version = ? WHERE version = ?",
                           [.blob(wrapped), .int(Int(kekVersion)), .integer(key.version)])
    }
}
