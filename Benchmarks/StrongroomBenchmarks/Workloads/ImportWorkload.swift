import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage

/// CSV import: N synthetic contacts through `CSVImporter` (parse, validate, encrypt every field, index
/// every number, audit every row) against plain SQLite inserting the same rows in clear, in
/// transactions of the same size (`batch` rows): in C against the sqlite3 API (CBaseline.h), with the
/// previous baseline through the project's Swift storage layer reported beside it.
struct ImportWorkload {
    let contacts: Int
    /// Rows to a transaction, the store's and the baselines' alike.
    let batch: Int

    func run() throws -> BenchmarkResult {
        try withScratchDirectory { directory in
            note("import: writing a CSV file of \(contacts) contacts")
            let rows = (0..<contacts).map { index in
                let contact = SyntheticContacts.contact(index)
                return ("c\(index)", contact.name, contact.source, contact.typed)
            }
            let bytes = SyntheticContacts.importFile(contacts)
            var configuration = StoreConfiguration()
            configuration.defaultRegion = "GB"
            let store = try Store.create(at: directory + "/store", keyProvider: StaticKeyProvider(key: try SecretKey.random()),
                                         configuration: configuration)
            let schema = """
                PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                CREATE TABLE contacts (id INTEGER PRIMARY KEY, external_id TEXT UNIQUE, name TEXT, company TEXT, source TEXT);
                CREATE TABLE numbers (e164 TEXT NOT NULL, contact_id INTEGER NOT NULL);
                CREATE INDEX numbers_by_e164 ON numbers (e164, contact_id);
                """
            let baseline = try SQLiteConnection(path: directory + "/baseline.sqlite")
            try baseline.execute(schema)
            try SQLiteConnection(path: directory + "/baseline-c.sqlite").execute(schema)
            // The C baseline's rows, read into its memory before it is timed.
            let source = try SQLiteConnection(path: directory + "/source.sqlite")
            try source.execute("""
                PRAGMA journal_mode = WAL;
                CREATE TABLE source_rows (external_id TEXT, name TEXT, company TEXT, source TEXT, phone1 TEXT, phone2 TEXT, phone3 TEXT)
                """)
            try source.transaction { () throws(DatabaseError) in
                for row in rows {
                    let phones = row.3 + Array(repeating: "", count: 3 - row.3.count)
                    try source.run("INSERT INTO source_rows VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   [.text(row.0), .text(row.1), .text("Company of \(row.1)"), .text(row.2)] + phones.map { .text($0) })
                }
            }
            note("import: timing")
            let cBaselineSeconds = try cBaselineImport(sourcePath: directory + "/source.sqlite", targetPath: directory + "/baseline-c.sqlite",
                                                       batch: batch)
            // The bulk-write settings the store's import takes, as the C baseline does (CBaseline.c).
            try baseline.execute("PRAGMA wal_autocheckpoint = 16384; PRAGMA cache_size = -65536")
            let baselineStart = DispatchTime.now().uptimeNanoseconds
            for start in stride(from: 0, to: rows.count, by: batch) {
                try baseline.transaction { () throws(DatabaseError) in
                    for row in rows[start..<min(start + batch, rows.count)] {
                        try baseline.run("INSERT INTO contacts (external_id, name, company, source) VALUES (?, ?, ?, ?)",
                                         [.text(row.0), .text(row.1), .text("Company of \(row.1)"), .text(row.2)])
                        let id = baseline.lastInsertedRowID
                        for number in row.3 { try baseline.run("INSERT INTO numbers (e164, contact_id) VALUES (?, ?)", [.text(number), .integer(id)]) }
                    }
                }
            }
            try baseline.execute("PRAGMA wal_checkpoint(PASSIVE)")
            let baselineSeconds = Double(DispatchTime.now().uptimeNanoseconds - baselineStart) / 1e9
            var options = ImportOptions()
            options.batchSize = batch
            let (created, seconds, cpuSeconds, _) = try ImportWorkload.timeImport(bytes, into: store, options: options)
            let rate = Double(created) / seconds
            let swiftBaselineRate = Double(rows.count) / baselineSeconds
            let baselineRate = Double(rows.count) / cBaselineSeconds
            return BenchmarkResult(workload: "import", n: contacts, operations: created, opsPerS: rate,
                                   baselineOpsPerS: baselineRate, ratio: rate / baselineRate,
                                   p50Us: 1e6 / rate, p99Us: 0, p999Us: 0, baselineP50Us: 1e6 / baselineRate, baselineP99Us: 0,
                                   peakRssMb: peakResidentMegabytes(),
                                   notes: "\(batch) rows to a transaction; rows/s including CSV parsing, phone normalisation, per-subject keys and an audit entry per row; "
                                       + "p50 columns show the mean µs per row (rows are timed in batches); baseline: C against the "
                                       + String(format: "sqlite3 API (the Swift storage-layer baseline: %.0f rows/s); CPU %.1f µs per row",
                                                swiftBaselineRate, cpuSeconds * 1e6 / Double(max(created, 1))),
                                   swiftBaselineOpsPerS: swiftBaselineRate)
        }
    }

    /// Imports `bytes` into `store` with `options`, then closes it: the rows created, the seconds the import took,
    /// the process's CPU seconds over them (both threads; on a shared machine the wall time also holds
    /// the time other processes had the cores), and the mean µs per row of the batches in the first and
    /// in the last tenth of the rows (a cost per row that grows with the store shows as the second above the first).
    static func timeImport(_ bytes: [UInt8], into store: Store, options: ImportOptions = ImportOptions()) throws
        -> (created: Int, seconds: Double, cpuSeconds: Double, firstAndLastTenth: (first: Double, last: Double)) {
        defer { store.close() }
        let start = DispatchTime.now().uptimeNanoseconds, cpuStart = clock()
        var progress: [(rows: Int, at: UInt64)] = [(0, start)]
        let report = try CSVImporter(store: store, options: options).run(bytes, context: AccessContext(actor: "bench", purpose: .admin)) {
            progress.append(($0, DispatchTime.now().uptimeNanoseconds))
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, cpuSeconds = Double(clock() - cpuStart) / Double(CLOCKS_PER_SEC)
        // µs per row from the batch ending at `from` to the one ending at `to` (indexes into `progress`).
        func microsecondsPerRow(_ from: Int, _ to: Int) -> Double {
            Double(progress[to].at - progress[from].at) / 1e3 / Double(max(progress[to].rows - progress[from].rows, 1))
        }
        let total = progress.last?.rows ?? 0
        let firstTenthEnd = progress.firstIndex { $0.rows * 10 >= total } ?? 0
        let lastTenthStart = progress.lastIndex { $0.rows * 10 <= total * 9 } ?? 0
        return (report.created, seconds, cpuSeconds, (microsecondsPerRow(0, firstTenthEnd), microsecondsPerRow(lastTenthStart, progress.count - 1)))
    }
}
