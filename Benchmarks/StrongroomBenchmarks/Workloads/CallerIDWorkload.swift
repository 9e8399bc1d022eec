import Foundation
import Strongroom
import DeterministicRandom
import StrongroomCrypto
import StrongroomStorage

/// Caller ID at scale: N contacts with 1–3 numbers each; random lookups of existing (80%) and absent
/// (20%) numbers in E.164 as a telephony layer presents them, every decrypt audited. Baseline: the
/// same contacts in a plain table of the same backend with the numbers in clear and an index, queried by
/// prepared statement in C: on SQLite against the sqlite3 API (CBaseline.h), on PostgreSQL through libpq
/// on the same server, one round trip each (CBaselinePostgres.h). The previous baseline, through the
/// project's Swift storage layer, is reported beside it.
///
/// With `clients` above 1, that many threads look up at once, each with its own store handle and its
/// own baseline connection, each taking every `clients`-th number: lookups/s are the total over the
/// wall-clock time, latencies those of all clients.
struct CallerIDWorkload {
    let contacts: Int
    let lookups: Int
    let backend: BenchmarkBackend
    /// Clients looking up at once (1: one client, the store and baselines interleaved in short passes).
    var clients = 1
    /// The store's audit durability (nil: the store's setting, `written`).
    var auditDurability: AuditDurability? = nil

    func run() throws -> BenchmarkResult {
        try withScratchDirectory { directory in
            note("callerid: generating and loading \(contacts) contacts into Strongroom and into plain \(backend.name)")
            var configuration = StoreConfiguration()
            configuration.defaultRegion = "GB"
            configuration.plannedPhoneNumbers = contacts * 2
            configuration.auditDurability = auditDurability
            let location = try backend.storeLocation(scratch: directory)
            defer { backend.dropScratchSchemas() }
            let keyProvider = StaticKeyProvider(key: try SecretKey.random())
            let store = try Store.create(at: location, keyProvider: keyProvider, configuration: configuration)
            let baseline = try backend.baselineConnection(scratch: directory)
            try baseline.execute("""
                CREATE TABLE contacts (id BIGINT PRIMARY KEY, name TEXT, last_contacted BIGINT, source TEXT);
                CREATE TABLE numbers (e164 TEXT NOT NULL, contact_id BIGINT NOT NULL);
                """)
            let loadStart = Date()
            try SyntheticContacts.load(contacts, into: store, baselineDatabase: baseline) { (index, contact) throws(DatabaseError) in
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
            // The baseline is C: on SQLite against the sqlite3 API (CBaseline.h), reading the numbers to look
            // up from the plain database itself; on PostgreSQL through libpq (CBaselinePostgres.h). The
            // Swift-layer baseline still runs, for comparison.
            var cBaseline: CCallerIDBaseline?
            let cPostgres = try backend.baselineURL.map { try CPostgresCallerIDBaseline(url: $0) }
            let baselinePath = directory + "/baseline.sqlite"
            if case .sqlite = backend {
                try baseline.execute("CREATE TABLE queries (n INTEGER PRIMARY KEY, e164 TEXT NOT NULL)")
                try baseline.transaction { () throws(DatabaseError) in
                    for (index, number) in queries.enumerated() {
                        try baseline.run("INSERT INTO queries (n, e164) VALUES (?, ?)", [.int(index), .text(number)])
                    }
                }
                cBaseline = try CCallerIDBaseline(path: baselinePath)
            }
            func cLookup(_ query: Int, _ number: String) throws -> Int {
                if let cPostgres { return try cPostgres.lookup(number) }
                return try cBaseline?.lookup(query) ?? 0
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
            // goes within seconds. On PostgreSQL the warm-up looks every number up once, so that the
            // figure is a running service's, whose subject keys are cached (a subject's first lookup in a
            // process also reads its key from the key database, a second round trip).
            let warmUp = backend.baselineURL == nil ? 5_000 : lookups
            // The first lookup reads the caller-ID hint (`CallerIDHint`, `SQLiteCallerIDHint`): what it holds, measured on the heap and as resident size.
            let (heapBefore, residentBefore) = (heapInUseMegabytes(), residentMegabytes())
            let firstLookupStart = Date()
            try strongroomLookup(queries[0])
            let firstLookupMilliseconds = Date().timeIntervalSince(firstLookupStart) * 1000
            let hintMemory = (heap: heapInUseMegabytes() - heapBefore, resident: residentMegabytes() - residentBefore)
            for (query, number) in queries.prefix(warmUp).enumerated() {
                try baselineLookup(number)
                blackHole(try cLookup(query, number))
                try strongroomLookup(number)
            }
            if clients > 1 {
                let result = try concurrentRun(store: store, location: location, keyProvider: keyProvider, configuration: configuration,
                                               queries: queries, baselinePath: baselinePath)
                store.close()
                return result
            }
            var strongroomSample = LatencySample()
            var baselineSample = LatencySample()
            var cBaselineSample = LatencySample()
            strongroomSample.reserve(lookups)
            baselineSample.reserve(lookups)
            cBaselineSample.reserve(lookups)
            // On PostgreSQL, where each lookup's CPU goes: the client's and, on a local server, the server's.
            let server = try cPostgres == nil ? nil : baseline.scalarInteger("SELECT pg_backend_pid()").flatMap(LocalPostgresCluster.init)
            var (strongroomCPU, cBaselineCPU) = (CPUTally(server: server), CPUTally(server: server))
            var found = 0
            let chunk = 5_000
            let passes = (lookups + chunk - 1) / chunk
            for pass in 0..<passes {
                let slice = queries[min(pass * chunk, lookups)..<min((pass + 1) * chunk, lookups)]
                for number in slice { try baselineSample.measure { try baselineLookup(number) } }
                try cBaselineCPU.measure(operations: slice.count) {
                    for query in slice.indices { try cBaselineSample.measure { blackHole(try cLookup(query, queries[query])) } }
                }
                try strongroomCPU.measure(operations: slice.count) {
                    for number in slice {
                        try strongroomSample.measure {
                            if !(try store.callerID(number: number, context: caller)).isEmpty { found += 1 }
                        }
                    }
                }
            }
            store.close()
            let status = try store.keyStatus().phoneIndex
            let hintNote = String(
                format: "; hint read on the first lookup (%.0f ms): heap +%.1f MB, resident +%.1f MB over %d numbers (%.0f MB per million by the heap)",
                firstLookupMilliseconds, hintMemory.heap, hintMemory.resident, status.indexedNumbers, hintMemory.heap * 1_000_000 / Double(max(status.indexedNumbers, 1)))
            let reference = cBaselineSample
            let swiftBaseline = String(format: "; baseline: C against %@ (the Swift storage-layer baseline: %.0f/s, p50 %.1f µs)",
                                       (cPostgres == nil ? "the sqlite3 API" : "libpq, one round trip") as NSString,
                                       baselineSample.operationsPerSecond, baselineSample.percentile(0.5))
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
                    + hintNote + durabilityNote + swiftBaseline
                    + (cPostgres == nil ? "" : CallerIDWorkload.cpuNote(store: strongroomCPU, baseline: cBaselineCPU)),
                swiftBaselineOpsPerS: baselineSample.operationsPerSecond, swiftBaselineP50Us: baselineSample.percentile(0.5))
        }
    }

    /// The CPU time of a lookup, the client's (its own code and the kernel's work for it) and, on a local
    /// server, the server's, the store's beside the C baseline's.
    private static func cpuNote(store: CPUTally, baseline: CPUTally) -> String {
        let (storeCPU, baselineCPU) = (store.perOperation, baseline.perOperation)
        let client = String(format: "client (user + system) %.1f + %.1f µs, the C baseline's %.1f + %.1f",
                            storeCPU.clientUser, storeCPU.clientSystem, baselineCPU.clientUser, baselineCPU.clientSystem)
        guard let storeServer = storeCPU.server, let baselineServer = baselineCPU.server else {
            return "; CPU a lookup: \(client) (the server's is not visible from here)"
        }
        return "; CPU a lookup: \(client); server "
            + String(format: "%.1f µs, the C baseline's %.1f (every process of the local cluster, from /proc)", storeServer, baselineServer)
    }

    private var durabilityNote: String {
        auditDurability.map { "; audit durability \($0.rawValue)" } ?? ""
    }

    /// The store and the C baseline with `clients` threads each, after the single-client warm-up: each
    /// client opens its own store handle (and, on PostgreSQL, reads its own hint with an untimed first
    /// lookup) and its own baseline connection.
    private func concurrentRun(store: Store, location: StoreLocation, keyProvider: StaticKeyProvider, configuration: StoreConfiguration,
                               queries: [String], baselinePath: String) throws -> BenchmarkResult {
        let (clients, lookups, baselineURL) = (clients, lookups, backend.baselineURL)
        let caller = AccessContext(actor: "pbx", purpose: .callerID)
        let stores = try (0..<clients).map { _ in try Store.open(at: location, keyProvider: keyProvider, configuration: configuration) }
        defer { for store in stores { store.close() } }
        for handle in stores { _ = try handle.callerID(number: queries[0], context: caller) }
        note("callerid: \(clients) clients, \(lookups) lookups in all, baseline first")
        let baseline = try concurrentLatencies(clients: clients) { client in
            let lookup: (Int) throws -> Int
            if let baselineURL {
                let connection = try CPostgresCallerIDBaseline(url: baselineURL)
                lookup = { try connection.lookup(queries[$0]) }
            } else {
                let connection = try CCallerIDBaseline(path: baselinePath)
                lookup = { try connection.lookup($0) }
            }
            return {
                var sample = LatencySample()
                sample.reserve(lookups / clients + 1)
                for query in stride(from: client, to: lookups, by: clients) { try sample.measure { blackHole(try lookup(query)) } }
                return sample
            }
        }
        let strongroom = try concurrentLatencies(clients: clients) { client in
            let handle = stores[client]
            return {
                var sample = LatencySample()
                sample.reserve(lookups / clients + 1)
                for query in stride(from: client, to: lookups, by: clients) {
                    try sample.measure { blackHole(try handle.callerID(number: queries[query], context: caller)) }
                }
                return sample
            }
        }
        let storeRate = Double(lookups) / strongroom.seconds, baselineRate = Double(lookups) / baseline.seconds
        let status = try store.keyStatus().phoneIndex
        return BenchmarkResult(
            workload: "callerid", backend: backend.name, n: contacts, operations: lookups,
            opsPerS: storeRate, baselineOpsPerS: baselineRate, ratio: storeRate / baselineRate,
            p50Us: strongroom.sample.percentile(0.5), p99Us: strongroom.sample.percentile(0.99),
            p999Us: strongroom.sample.percentile(0.999),
            baselineP50Us: baseline.sample.percentile(0.5), baselineP99Us: baseline.sample.percentile(0.99),
            peakRssMb: peakResidentMegabytes(),
            notes: "\(clients) clients at once, each its own store handle and baseline connection; lookups/s over the wall-clock time; "
                + "index \(status.bits)-bit tags over \(status.indexedNumbers) numbers; every match's name decrypted and audited"
                + durabilityNote + "; baseline: C against " + (baselineURL == nil ? "the sqlite3 API" : "libpq, one round trip"),
            clients: clients)
    }
}
