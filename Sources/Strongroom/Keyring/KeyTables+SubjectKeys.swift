import StrongroomStorage

/// The key tables' statements on `subject_keys`: writing, reading (one, a range, a subject's versions),
/// deleting, counting and rewrapping subject keys.
extension KeyTables {
    /// A subject's wrapped key, as `upsertSubjectKeys` writes it.
    struct NewSubjectKey {
        let subject: SubjectID
        let version: UInt32
        let identifier: UInt32
        let kekVersion: UInt32
        let wrapped: [UInt8]
    }

    /// Writes subjects' wrapped keys (replacing orphans at the same subject and version), in sets of rows.
    func upsertSubjectKeys(_ keys: [NewSubjectKey], createdAt: Int64) throws(DatabaseError) {
        try backend.insert(
            keys.map { [.integer($0.subject.rawValue), .int(Int($0.version)), .int(Int($0.identifier)), .int(Int($0.kekVersion)),
                        .blob($0.wrapped), .integer(createdAt)] },
            into: "subject_keys", columns: [BulkColumn("subject_id", .integer), BulkColumn("version", .integer), BulkColumn("key_id", .integer),
                                            BulkColumn("kek_version", .integer), BulkColumn("wrapped", .blob), BulkColumn("created_at", .integer)],
            conflict: KeyDatabase.upsertSubjectKeysConflict, on: connection)
    }

    /// A subject's wrapped key of `version`: identifier, wrapping, KEK version.
    func subjectKey(_ subject: SubjectID, version: UInt32) throws(DatabaseError) -> (identifier: UInt32, wrapped: [UInt8], kekVersion: UInt32)? {
        try connection.firstRow(KeyDatabase.subjectKey, [.integer(subject.rawValue), .int(Int(version))]) {
            (UInt32(truncatingIfNeeded: $0.int64(0)), $0.blob(1) ?? [], UInt32(truncatingIfNeeded: $0.int64(2)))
        }
    }

    /// Every wrapped key of the subjects from `first` through `last`, in primary-key order.
    func subjectKeys(from first: SubjectID, through last: SubjectID) throws(DatabaseError)
        -> [(subject: SubjectID, version: UInt32, identifier: UInt32, wrapped: [UInt8], kekVersion: UInt32)] {
        try connection.rows(KeyDatabase.subjectKeysInRange, [.integer(first.rawValue), .integer(last.rawValue)]) {
            (SubjectID(rawValue: $0.int64(0)), UInt32(truncatingIfNeeded: $0.int64(1)), UInt32(truncatingIfNeeded: $0.int64(2)),
             $0.blob(4) ?? [], UInt32(truncatingIfNeeded: $0.int64(3)))
        }
    }

    /// The versions of a subject's keys.
    func subjectKeyVersions(_ subject: SubjectID) throws(DatabaseError) -> [UInt32] {
        try connection.rows("SELECT version FROM subject_keys WHERE subject_id = ?", [.integer(subject.rawValue)]) {
            UInt32(truncatingIfNeeded: $0.int64(0))
        }
    }

    /// Destroys every key of `subject`.
    func deleteSubjectKeys(_ subject: SubjectID) throws(DatabaseError) {
        try connection.run(KeyDatabase.deleteSubjectKeys, [.integer(subject.rawValue)])
    }

    /// Destroys `subject`'s keys newer than `version`.
    func deleteSubjectKeys(_ subject: SubjectID, newerThan version: UInt32) throws(DatabaseError) {
        try connection.run(KeyDatabase.deleteNewerSubjectKeys, [.integer(subject.rawValue), .int(Int(version))])
    }

    /// Destroys `subject`'s keys but the one of `version`.
    func deleteSubjectKeys(_ subject: SubjectID, except version: UInt32) throws(DatabaseError) {
        try connection.run(KeyDatabase.deleteOtherSubjectKeys, [.integer(subject.rawValue), .int(Int(version))])
    }

    /// How many subject keys exist (every version).
    func subjectKeyCount() throws(DatabaseError) -> Int {
        Int(try connection.scalarInteger("SELECT count(*) FROM subject_keys") ?? 0)
    }

    /// Up to `limit` subject keys after subject `cursor` not under KEK `version`, in primary-key order:
    /// subject, key version, KEK version, wrapping.
    func subjectKeysToRewrap(after cursor: Int64, notUnder version: UInt32,
                             limit: Int) throws(DatabaseError) -> [(subject: Int64, version: Int64, kekVersion: UInt32, wrapped: [UInt8])] {
        try connection.rows(KeyDatabase.subjectKeysToRewrap, [.integer(cursor), .int(Int(version)), .int(limit)]) {
            ($0.int64(0), $0.int64(1), UInt32($0.int64(2)), $0.blob(3) ?? [])
        }
    }

    /// Replaces the wrapping of subject keys (subject, key version, new wrapping), now under KEK
    /// `kekVersion`.
    func rewrapSubjectKeys(_ keys: [(subject: Int64, version: Int64, wrapped: [UInt8])], kekVersion: UInt32) throws(DatabaseError) {
        try connection.runInRows(keys.flatMap { [SQLValue.integer($0.subject), .integer($0.version), .blob($0.wrapped)] }, valuesPerRow: 3,
                                 leading: [.int(Int(kekVersion))]) { KeyDatabase.rewrapSubjectKeys($0, bytes: type(of: backend).bytesParameter) }
    }

    /// How many subject keys are under a KEK other than `version`.
    func subjectKeysLeftBehind(notUnder version: UInt32) throws(DatabaseError) -> Int {
        Int(try connection.scalarInteger(KeyDatabase.subjectKeysLeftBehind, [.int(Int(version))]) ?? 0)
    }
}
