import Foundation
import Strongroom
import StrongroomStorage

/// The database a workload runs on, Strongroom and its baseline alike.
enum BenchmarkBackend {
    /// Files in the scratch folder.
    case sqlite
    /// Fresh schemas on the PostgreSQL server at `url` (the store's, its keys' and the baseline's),
    /// dropped afterwards.
    case postgres(url: String, schema: String)

    /// A PostgreSQL backend with a schema name unique to this run.
    static func postgres(url: String) -> BenchmarkBackend {
        .postgres(url: url, schema: "bench_\(UInt32.random(in: 0...UInt32.max))")
    }

    var name: String {
        switch self {
        case .sqlite: return "sqlite"
        case .postgres: return "postgresql"
        }
    }

    /// Where the Strongroom store goes.
    func storeLocation(scratch: String) throws -> StoreLocation {
        switch self {
        case .sqlite: return .directory(scratch + "/store")
        case .postgres(let url, let schema): return .postgres(url: PostgresConnection.url(url, schema: schema), keysURL: nil)
        }
    }

    /// A connection for the plain baseline: a SQLite file tuned as the store's data file is, or a
    /// schema of its own on the same PostgreSQL server.
    func baselineConnection(scratch: String) throws -> any Database {
        switch self {
        case .sqlite:
            let connection = try SQLiteConnection(path: scratch + "/baseline.sqlite")
            try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 1073741824")
            return connection
        case .postgres:
            return try PostgresConnection(url: baselineURL ?? "", create: true, writeLock: "baseline")
        }
    }

    /// The plain baseline's schema on PostgreSQL, as a store URL (nil on SQLite).
    var baselineURL: String? {
        guard case .postgres(let url, let schema) = self else { return nil }
        return PostgresConnection.url(url, schema: schema + "_plain")
    }

    /// Drops the run's PostgreSQL schemas.
    func dropScratchSchemas() {
        guard case .postgres(let url, let schema) = self,
              let connection = try? PostgresConnection(url: PostgresConnection.url(url, schema: schema), create: false, writeLock: "drop") else { return }
        for name in [schema, schema + "_keys", schema + "_plain"] {
            try? connection.execute("DROP SCHEMA IF EXISTS \"\(name)\" CASCADE")
        }
    }
}
