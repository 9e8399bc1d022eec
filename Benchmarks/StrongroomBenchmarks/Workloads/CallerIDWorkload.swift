import Foundation
import Strongroom
import DeterministicRandom
import StrongroomCrypto
import StrongroomStorage

/// Caller ID at scale: N contacts with 1–3 numbers each; random lookups of existing (80%) and absent
/// (20%) numbers in E.164 as a telephony layer presents them, every decrypt audited. Baseline: the
/// same contacts in a plain table of the same backend with the numbers in clear and an index, queried by
/// prepared statement: on SQLite in C against the sqlite3 API (CBaseline.h; the previous baseline,
/// through the project's Swift storage layer, is reported beside it), on PostgreSQL through the storage
/// layer on the same server.
struct CallerIDWorkload {
    let contacts: Int
    let lookups: Int
    let backend: BenchmarkBackend

    func run() throws -> BenchmarkResult {
        try withScratchDirectory { directory in
            note("callerid: generating and loading \(contacts) contacts into Strongroom and into plain \(backend.name)")
            var configuration = StoreConfiguration()
            configuration.defaultRegion = "GB"
            configuration.plannedPhoneNumbers = contacts * 2
            let location = try backend.storeLocation(scratch: directory)
            defer { backend.dropScratchSchemas() }
            let store = try Store.create(at: location, keyProvider: StaticKeyProvider(key: try SecretKey.random()),
                                         configuration: configuration)
            let baseline = try backend.baselineConnection(scratch: directory)
            try baseline.execute("""
                CREATE TABLE contacts (id BIGINT PRIMARY KEY, name TEXT, last_contacted BIGINT, source TEXT);
                CREATE TABLE numbers (e164 TEXT NOT NULL, contact_id BIGINT NOT NULL);
                """)
            let loadStart = Date()
            try SyntheticContacts.load(contacts, into: store, baselineDatabase: baseline) { index, contact in
                try baseline.run("INSERT INTO contacts (id, name, last_contacted, source) VALUES (?, ?, ?, ?)",
                                 [.int(index + 1), .text(contact.name), .integer(Int64(contact.lastContacted.timeIntervalSince1970)),
                                  .text(contact.source)])
                for number in contact.e164 {
                    try baseline.run("INSERT INTO numbers (e164, contact_id) VALUES (?, ?)", [.text(number), .int(index + 1)])
                }
            }
            try baseline.execute("CREATE INDEX numbers_by_e164 ON numbers (e164, contact_id)")
            if baseline.dialect == .postgresql { try baseline.execute("ANALYZE contacts; ANALYZE numbers") }
            note("callerid: loaded in \(Int(Date().timeIntervalSince(loadStart))) s; timing \(lookups) lookups each")

            var random = SplitMix64(seed: 42)
            let queries: [String] = (0..<lookups).map { index in
                if random.next() % 5 == 0 { return SyntheticContacts.absentNumber(index) }
                let contact = SyntheticContacts.contact(Int(random.next() % UInt64(contacts)))
                return contact.e164[Int(random.next() % UInt64(contact.e164.count))]
            }
            // On SQLite the baseline is C against the sqlite3 API (CBaseline.h), reading the numbers to look
            // up from the plain database itself; the Swift-layer baseline still runs, for comparison.
            var cBaseline: CCallerIDBaseline?
            if case .sqlite = backend {
                try baseline.execute("CREATE TABLE queries (n INTEGER PRIMARY KEY, e164 TEXT NOT NULL)")
                try baseline.transaction {
                    for (index, number) in queries.enumerated() {
                        try baseline.run("INSERT INTO queries (n, e164) VALUES (?, ?)", [.int(index), .text(number)])
                    }
                }
                cBaseline = try CCallerIDBaseline(path: directory + "/baseline.sqlite")
            }
            let caller = AccessContext(actor: "pbx", purpose: .callerID)
            let baselineQuery = """
                SELECT c.id, c.name, c.last_contacted, c.source FROM numbers n JOIN contacts c ON c.id = n.contact_id
                WHERE n.e164 = ? ORDER BY c.last_contacted DESC
                """
            func baselineLookup(_ number: String) throws {
                blackHole(try baseline.rows(baselineQuery, [.text(number)]) { ($0.int64(0), $0.text(1), $0.int64(2), $0.text(3)) })
            }
            func strongroomLookup(_ number: String) throws {
                blackHole(try store.callerID(number: number, context: caller))
            }
            // Warm-up, then interleaved passes so that both see the same machine noise: short ones (5,000
            // lookups, a few hundredths of a second), because on a shared machine the noise comes and
            // goes within seconds.
            for (query, number) in queries.prefix(5_000).enumerated() {
                try baselineLookup(number)
                blackHole(try cBaseline?.lookup(query))
                try strongroomLookup(number)
            }
            var strongroomSample = LatencySample()
            var baselineSample = LatencySample()
            var cBaselineSample = LatencySample()
            strongroomSample.reserve(lookups)
            baselineSample.reserve(lookups)
            cBaselineSample.reserve(cBaseline == nil ? 0 : lookups)
            var found = 0
            let chunk = 5_000
            let passes = (lookups + chunk - 1) / chunk
            for pass in 0..<passes {
                let slice = queries[min(pass * chunk, lookups)..<min((pass + 1) * chunk, lookups)]
                for number in slice { try baselineSample.measure { try baselineLookup(number) } }
                if let cBaseline {
                    for query in slice.indices { try cBaselineSample.measure { blackHole(try cBaseline.lookup(query)) } }
                }
                for number in slice {
                    try strongroomSample.measure {
                        if !(try store.callerID(number: number, context: caller)).isEmpty { found += 1 }
                    }
                }
            }
            store.close()
            let status = try store.keyStatus().phoneIndex
            let reference = cBaseline == nil ? baselineSample : cBaselineSample
            let swiftBaseline = String(format: "; baseline: %@", cBaseline == nil
                ? "plain \(backend.name) through the storage layer" as NSString
                : String(format: "C against the sqlite3 API (the Swift storage-layer baseline: %.0f/s, p50 %.1f µs)",
                         baselineSample.operationsPerSecond, baselineSample.percentile(0.5)) as NSString)
            return BenchmarkResult(
                workload: "callerid", backend: backend.name, n: contacts, operations: lookups,
                opsPerS: strongroomSample.operationsPerSecond, baselineOpsPerS: reference.operationsPerSecond,
                ratio: strongroomSample.operationsPerSecond / reference.operationsPerSecond,
                p50Us: strongroomSample.percentile(0.5), p99Us: strongroomSample.percentile(0.99),
                p999Us: strongroomSample.percentile(0.999),
                baselineP50Us: reference.percentile(0.5), baselineP99Us: reference.percentile(0.99),
                peakRssMb: peakResidentMegabytes(),
                notes: "\(found) of \(lookups) lookups matched; index \(status.bits)-bit tags over \(status.indexedNumbers) numbers "
                    + "(\(String(format: "%.1f", status.expectedCoincidences)) per tag); every match's name decrypted and audited"
                    + swiftBaseline,
                swiftBaselineOpsPerS: cBaseline == nil ? nil : baselineSample.operationsPerSecond,
                swiftBaselineP50Us: cBaseline == nil ? nil : baselineSample.percentile(0.5))
        }
    }
}
