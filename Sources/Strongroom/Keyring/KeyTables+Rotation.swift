import StrongroomStorage

/// The row of the `rotations` table of a rotation in progress.
struct RotationRow: Sendable {
    let targetVersion: UInt32
    let done: Int
    let cursor: Int64
    let total: Int
}

/// One version of a subject's key, as a data rotation replaces it.
struct SubjectKeyVersion: Sendable, Hashable {
    /// Whose key it is.
    let subject: SubjectID
    /// Which of the subject's keys.
    let version: UInt32
}

extension KeyDatabase {
    /// The key versions of a batch's subjects, read once per batch of a data rotation: the primary key's range.
    static let subjectKeyVersionsInRange = "SELECT subject_id, version FROM subject_keys WHERE subject_id >= ? AND subject_id <= ?"

    /// `rows` subject keys of the subjects ?1 to ?2 destroyed in one statement, each a VALUES row of its
    /// subject and version: the range keeps the search on the primary key whatever the planner makes of
    /// the VALUES list.
    static func deleteSubjectKeyVersions(_ rows: Int) -> String {
        "DELETE FROM subject_keys WHERE subject_id >= ? AND subject_id <= ? AND (subject_id, version) IN (VALUES "
            + MultiRowStatements.valuesList(rows, row: ["CAST(? AS BIGINT)", "CAST(? AS BIGINT)"]) + ")"
    }
}

/// The key tables' statements on `rotations`: the rotations in progress, started, advanced by their walks
/// and finished.
extension KeyTables {
    /// The rotation of `kind` in progress, if any.
    func rotation(_ kind: RotationKind) throws(DatabaseError) -> RotationRow? {
        try connection.firstRow("SELECT target_version, done, cursor, total FROM rotations WHERE kind = ?", [.text(kind.rawValue)]) {
            RotationRow(targetVersion: UInt32($0.int64(0)), done: Int($0.int64(1)), cursor: $0.int64(2), total: Int($0.int64(3)))
        }
    }

    /// Records the start of a rotation of `kind` (a row already there keeps its progress; its total is replaced).
    func startRotation(_ kind: RotationKind, targetVersion: UInt32, total: Int, startedAt: Int64) throws(DatabaseError) {
        try connection.run("""
            INSERT INTO rotations (kind, target_version, total, started_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (kind) DO UPDATE SET total = excluded.total
            """, [.text(kind.rawValue), .int(Int(targetVersion)), .int(total), .integer(startedAt)])
    }

    /// Commits the position of a rotation's walk (`RotationWalk`).
    func advanceRotation(_ kind: RotationKind, cursor: Int64, done: Int) throws(DatabaseError) {
        try connection.run(KeyDatabase.advanceRotation, [.integer(cursor), .int(done), .text(kind.rawValue)])
    }

    /// The (subject, version) of every key of the subjects from `first` through `last`: a data
    /// rotation's batch learns in one query which keys it replaces and which a crashed run left.
    func subjectKeyVersions(from first: SubjectID, through last: SubjectID) throws(DatabaseError) -> [SubjectKeyVersion] {
        try connection.rows(KeyDatabase.subjectKeyVersionsInRange, [.integer(first.rawValue), .integer(last.rawValue)]) {
            SubjectKeyVersion(subject: SubjectID(rawValue: $0.int64(0)), version: UInt32(truncatingIfNeeded: $0.int64(1)))
        }
    }

    /// Destroys the subject keys `keys`, all of subjects from `first` through `last`, in sets of rows
    /// (a data rotation's batch: one round trip per 128 keys on PostgreSQL).
    func deleteSubjectKeys(_ keys: [SubjectKeyVersion], from first: SubjectID, through last: SubjectID) throws(DatabaseError) {
        try MultiRowStatements.rotation.run(keys.map { [.integer($0.subject.rawValue), .int(Int($0.version))] },
                                            leading: [.integer(first.rawValue), .integer(last.rawValue)], on: connection,
                                            statement: KeyDatabase.deleteSubjectKeyVersions)
    }

    /// Ends the rotation of `kind`.
    func finishRotation(_ kind: RotationKind) throws(DatabaseError) {
        try connection.run("DELETE FROM rotations WHERE kind = ?", [.text(kind.rawValue)])
    }

    /// Every rotation in progress, by kind; a kind this version does not know (none is ever written) is not shown.
    func rotationsInProgress() throws(DatabaseError) -> [RotationProgress] {
        try connection.rows("SELECT kind, target_version, done, total, started_at FROM rotations ORDER BY kind") { row in
            RotationKind(rawValue: row.text(0) ?? "").map { kind in
                RotationProgress(kind: kind, targetVersion: Int(row.int64(1)), done: Int(row.int64(2)),
                                 total: Int(row.int64(3)), startedAt: Store.date(milliseconds: row.int64(4)))
            }
        }.compactMap { $0 }
    }
}
