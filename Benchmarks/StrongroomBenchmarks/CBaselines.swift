import CBaseline
import StrongroomStorage

/// Why a C baseline could not run.
enum CBaselineError: Error, CustomStringConvertible {
    /// The baseline's database could not be opened or lacks its tables.
    case unavailable(String)
    /// A statement of the baseline failed.
    case failed(String)

    var description: String {
        switch self {
        case .unavailable(let what): return "the C baseline could not open \(what)"
        case .failed(let what): return "the C baseline failed: \(what)"
        }
    }
}

/// Caller-ID lookups by the C baseline (CBaseline.h) on a plain database the workload filled, with
/// the numbers to look up in its `queries` table. The benchmarks' only C calls, marked `unsafe`: a
/// path and an opaque handle cross, nothing else.
@safe final class CCallerIDBaseline {
    private let handle: OpaquePointer

    /// Opens the plain database at `path` and reads its `queries`.
    init(path: String) throws {
        guard let handle = unsafe cbaseline_callerid_open(path) else { throw CBaselineError.unavailable(path) }
        unsafe self.handle = handle
    }

    deinit { unsafe cbaseline_callerid_close(handle) }

    /// How many numbers `queries` holds.
    var queryCount: Int { Int(unsafe cbaseline_callerid_query_count(handle)) }

    /// Looks up the `query`-th number; returns the contacts found.
    @inline(__always)
    func lookup(_ query: Int) throws -> Int {
        let rows = unsafe cbaseline_callerid_lookup(handle, Int64(query))
        guard rows >= 0 else { throw CBaselineError.failed("lookup \(query)") }
        return Int(rows)
    }
}

/// The C baseline of an import: every row of `source_rows` in the database at `sourcePath` inserted
/// into `contacts` and `numbers` of the database at `targetPath`, `batch` rows to a transaction.
/// Returns the seconds the inserts took.
func cBaselineImport(sourcePath: String, targetPath: String, batch: Int) throws -> Double {
    let nanoseconds = unsafe cbaseline_import(sourcePath, targetPath, Int32(batch))
    guard nanoseconds >= 0 else { throw CBaselineError.failed("import into \(targetPath)") }
    return Double(nanoseconds) / 1e9
}

/// The C baseline of an export of every subject: one pass over the plain database at `path` reading every
/// contact with its numbers, calls and consents in clear. Returns the seconds it took and the contacts read.
func cBaselineExportAll(path: String) throws -> (seconds: Double, subjects: Int) {
    var subjects: Int64 = 0
    let nanoseconds = unsafe cbaseline_export_all(path, &subjects)
    guard nanoseconds >= 0 else { throw CBaselineError.failed("export of \(path)") }
    return (Double(nanoseconds) / 1e9, Int(subjects))
}

/// Caller-ID lookups by the C baseline on PostgreSQL (CBaselinePostgres.h): libpq, the lookup prepared
/// once, one round trip each. Its C calls are marked `unsafe`: a connection string, a schema name, a
/// number and an opaque handle cross, nothing else.
@safe final class CPostgresCallerIDBaseline {
    private let handle: OpaquePointer

    /// Connects to the plain schema at `url` (a store URL: server and `?schema=`).
    init(url: String) throws {
        let (connectionInfo, schema) = try PostgresConnection.split(url)
        guard let handle = unsafe cbaseline_pg_callerid_open(connectionInfo, schema) else {
            throw CBaselineError.unavailable("the PostgreSQL schema \(schema)")
        }
        unsafe self.handle = handle
    }

    deinit { unsafe cbaseline_pg_callerid_close(handle) }

    /// Looks up `e164`; returns the contacts found.
    @inline(__always)
    func lookup(_ e164: String) throws -> Int {
        let rows = unsafe cbaseline_pg_callerid_lookup(handle, e164)
        guard rows >= 0 else { throw CBaselineError.failed("PostgreSQL lookup") }
        return Int(rows)
    }
}
