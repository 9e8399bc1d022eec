import StrongroomStorage

/// The key tables' statements on erasures: the `erased_subjects` record other processes watch, and the
/// `tombstones` that hold erasure receipts.
extension KeyTables {
    /// Records `subject`'s erasure under the next erasure number (taken under the key database's write
    /// lock, so no two erasures share one); nothing if it was recorded before.
    func recordErasure(of subject: SubjectID, at now: Int64) throws(DatabaseError) {
        try connection.run("""
            INSERT INTO erased_subjects (subject_id, erased_at, erasure_number)
            VALUES (?, ?, (SELECT coalesce(max(erasure_number), 0) + 1 FROM erased_subjects)) ON CONFLICT DO NOTHING
            """, [.integer(subject.rawValue), .integer(now)])
    }

    /// Writes the tombstone of an erasure with its receipt (once per subject: `Keyring.destroySubjectKeys`
    /// keeps the first receipt when an erasure is run again).
    func insertTombstone(_ receipt: ErasureReceipt) throws(DatabaseError) {
        try connection.run("INSERT INTO tombstones (\(KeyDatabase.tombstoneColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            .integer(receipt.id.rawValue), .text(receipt.receipt), .blob(receipt.externalIDTag),
            .integer(receipt.erasedAtMilliseconds), .text(receipt.actor), .text(receipt.reason),
            .int(receipt.destroyed.subjectKeys), .int(receipt.destroyed.rows), .int(receipt.destroyed.indexEntries),
            .int(receipt.destroyed.consentEntries), .int(receipt.destroyed.calls),
            .integer(receipt.auditSequence.map { Int64($0) }), .blob(receipt.mac),
        ])
    }

    /// The receipt kept with the tombstone of the external id whose keyed hash is `tag`.
    func tombstone(externalIDTag tag: [UInt8]) throws(DatabaseError) -> ErasureReceipt? {
        try connection.firstRow(KeyDatabase.tombstoneByExternalID, [.blob(tag)], KeyTables.receipt(from:))
    }

    /// The receipts kept with the tombstones of the external ids whose keyed hashes are `tags`, in as
    /// few statements as the backend can (`StoreBackend.forEachRow(_:matchingAny:of:on:_:)`: on
    /// PostgreSQL one round trip for a batch, where chunks of 50 took ten for 500 rows).
    func tombstones(externalIDTags tags: [[UInt8]]) throws(DatabaseError) -> [ErasureReceipt] {
        var receipts: [ErasureReceipt] = []
        try backend.forEachRow(KeyDatabase.tombstonesByExternalIDs, matchingAny: tags.map { .blob($0) }, of: .blob, on: connection) {
            receipts.append(KeyTables.receipt(from: $0))
        }
        return receipts
    }

    /// The receipt kept with the tombstone of `subject`.
    func tombstone(of subject: SubjectID) throws(DatabaseError) -> ErasureReceipt? {
        try connection.firstRow(KeyDatabase.tombstoneBySubject, [.integer(subject.rawValue)], KeyTables.receipt(from:))
    }

    /// A receipt from a row of `KeyDatabase.tombstoneColumns` (its external id not known in clear).
    private static func receipt(from row: any Row) -> ErasureReceipt {
        ErasureReceipt(receipt: row.text(1) ?? "", id: SubjectID(rawValue: row.int64(0)), externalID: nil, externalIDTag: row.blob(2),
                       erasedAtMilliseconds: row.int64(3), actor: row.text(4) ?? "", reason: row.text(5) ?? "",
                       destroyed: ErasureReceipt.Destroyed(subjectKeys: Int(row.int64(6)), rows: Int(row.int64(7)),
                                                           indexEntries: Int(row.int64(8)), consentEntries: Int(row.int64(9)),
                                                           calls: Int(row.int64(10))),
                       auditSequence: row.isNull(11) ? nil : UInt64(row.int64(11)), mac: row.blob(12) ?? [])
    }

    /// The number of the latest erasure (0 when none).
    func latestErasureNumber() throws(DatabaseError) -> Int64 {
        try connection.scalarInteger(Schema.latestErasureNumber) ?? 0
    }

    /// The subjects erased under numbers after `number`, with their numbers.
    func erasures(after number: Int64) throws(DatabaseError) -> [(subject: SubjectID, number: Int64)] {
        try connection.rows("SELECT subject_id, erasure_number FROM erased_subjects WHERE erasure_number > ?", [.integer(number)]) {
            (SubjectID(rawValue: $0.int64(0)), $0.int64(1))
        }
    }

    /// Whether `subject` was erased.
    func isErased(_ subject: SubjectID) throws(DatabaseError) -> Bool {
        try connection.scalarInteger("SELECT 1 FROM erased_subjects WHERE subject_id = ?", [.integer(subject.rawValue)]) != nil
    }

    /// How many subjects were erased.
    func erasedSubjectCount() throws(DatabaseError) -> Int {
        Int(try connection.scalarInteger("SELECT count(*) FROM erased_subjects") ?? 0)
    }
}
