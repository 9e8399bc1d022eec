import StrongroomStorage

/// The row of the `rotations` table of a rotation in progress.
struct RotationRow: Sendable {
    let targetVersion: UInt32
    let done: Int
    let cursor: Int64
    let total: Int
}

/// The key tables' statements on `rotations`: the rotations in progress, started, advanced by their walks
/// and finished.
extension KeyTables {
    /// The rotation of `kind` in progress, if any.
    func rotation(_ kind: RotationKind) throws -> RotationRow? {
        try connection.firstRow("SELECT target_version, done, cursor, total FROM rotations WHERE kind = ?", [.text(kind.rawValue)]) {
            RotationRow(targetVersion: UInt32($0.int64(0)), done: Int($0.int64(1)), cursor: $0.int64(2), total: Int($0.int64(3)))
        }
    }

    /// Records the start of a rotation of `kind` (a row already there keeps its progress; its total is replaced).
    func startRotation(_ kind: RotationKind, targetVersion: UInt32, total: Int, startedAt: Int64) throws {
        try connection.run("""
            INSERT INTO rotations (kind, target_version, total, started_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (kind) DO UPDATE SET total = excluded.total
            """, [.text(kind.rawValue), .int(Int(targetVersion)), .int(total), .integer(startedAt)])
    }

    /// Sets the number of items the rotation of `kind` walks.
    func setRotationTotal(_ kind: RotationKind, _ total: Int) throws {
        try connection.run("UPDATE rotations SET total = ? WHERE kind = ?", [.int(total), .text(kind.rawValue)])
    }

    /// Commits the KEK rotation's position after a batch of `count` keys ending at subject `cursor`.
    func advanceKEKRotation(by count: Int, cursor: Int64) throws {
        try connection.run(KeyDatabase.advanceKEKRotation, [.int(count), .integer(cursor)])
    }

    /// Commits the position of a walk over subjects.
    func advanceRotation(_ kind: RotationKind, cursor: Int64, done: Int) throws {
        try connection.run(KeyDatabase.advanceRotation, [.integer(cursor), .int(done), .text(kind.rawValue)])
    }

    /// Ends the rotation of `kind`.
    func finishRotation(_ kind: RotationKind) throws {
        try connection.run("DELETE FROM rotations WHERE kind = ?", [.text(kind.rawValue)])
    }

    /// Every rotation in progress, by kind; a kind this version does not know (none is ever written) is not shown.
    func rotationsInProgress() throws -> [RotationProgress] {
        try connection.rows("SELECT kind, target_version, done, total, started_at FROM rotations ORDER BY kind") { row in
            RotationKind(rawValue: row.text(0) ?? "").map { kind in
                RotationProgress(kind: kind, targetVersion: Int(row.int64(1)), done: Int(row.int64(2)),
                                 total: Int(row.int64(3)), startedAt: Store.date(milliseconds: row.int64(4)))
            }
        }.compactMap { $0 }
    }
}
