import Foundation
import Strongroom
import StrongroomTestSupport
import StrongroomCrypto
import StrongroomStorage

/// Caller ID at scale: N contacts with 1–3 numbers each; random lookups of existing (80%) and absent
/// (20%) numbers in E.164 as a telephony layer presents them, every decrypt audited. Baseline: the
/// same contacts in a plain table of the same backend (SQLite, or PostgreSQL on the same server) with
/// the numbers in clear and an index, queried by prepared statement.
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
            for number in queries.prefix(5_000) {
                try baselineLookup(number)
                try strongroomLookup(number)
            }
            var strongroomSample = LatencySample()
            var baselineSample = LatencySample()
            strongroomSample.reserve(lookups)
            baselineSample.reserve(lookups)
            var found = 0
            let chunk = 5_000
            let passes = (lookups + chunk - 1) / chunk
            for pass in 0..<passes {
                let slice = queries[min(pass * chunk, lookups)..<min((pass + 1) * chunk, lookups)]
                for number in slice { try baselineSample.measure { try baselineLookup(number) } }
                for number in slice {
                    try strongroomSample.measure {
                        if !(try store.callerID(number: number, context: caller)).isEmpty { found += 1 }
                    }
                }
            }
            store.close()
            let status = try store.keyStatus().phoneIndex
            return BenchmarkResult(
                workload: "callerid", backend: backend.name, n: contacts, operations: lookups,
                opsPerS: strongroomSample.operationsPerSecond, baselineOpsPerS: baselineSample.operationsPerSecond,
                ratio: strongroomSample.operationsPerSecond / baselineSample.operationsPerSecond,
                p50Us: strongroomSample.percentile(0.5), p99Us: strongroomSample.percentile(0.99),
                p999Us: strongroomSample.percentile(0.999),
                baselineP50Us: baselineSample.percentile(0.5), baselineP99Us: baselineSample.percentile(0.99),
                peakRssMb: peakResidentMegabytes(),
                notes: "\(found) of \(lookups) lookups matched; index \(status.bits)-bit tags over \(status.indexedNumbers) numbers "
                    + "(\(String(format: "%.1f", status.expectedCoincidences)) per tag); every match's name decrypted and audited")
        }
    }
}
