/// One step of a database schema's history.
public struct Migration: Sendable {
    /// The schema version this step brings the database to (1, 2, …).
    public let version: Int
    /// The SQL that performs the step.
    public let sql: String

    /// Creates a step.
    public init(version: Int, sql: String) {
        self.version = version
        self.sql = sql
    }
}

/// Why a database's schema could not be brought up to date.
public enum MigrationError: Error, Equatable, Sendable {
    /// The file was written by a newer build than this one: opening it could lose data.
    case schemaNewerThanBuild(found: Int, supported: Int)
    /// The database failed while reading the version or applying a step (rolled back).
    case database(DatabaseError)
}

extension Database {
    /// Applies, each in its own transaction, every migration newer than the database's schema version.
    /// A database written by a newer build is refused: opening it could lose data.
    public func migrate(_ migrations: [Migration]) throws(MigrationError) {
        let latest = migrations.map(\.version).max() ?? 0
        let current: Int
        do { current = try schemaVersion() } catch { throw .database(error) }
        guard current <= latest else {
            throw .schemaNewerThanBuild(found: current, supported: latest)
        }
        for migration in migrations.sorted(by: { $0.version < $1.version }) where migration.version > current {
            do {
                try transaction { () throws(DatabaseError) in
                    try execute(migration.sql)
                    try setSchemaVersion(migration.version)
                }
            } catch {
                throw .database(error)
            }
        }
    }
}
