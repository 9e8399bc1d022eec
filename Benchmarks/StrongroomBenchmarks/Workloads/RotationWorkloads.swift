import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage

/// A store of `contacts` synthetic contacts, each holding an e-mail address (the index rotation
/// rebuilds the e-mail index too), and a plain copy of the same rows in clear on the same backend, for
/// the rotation workloads.
struct LoadedStores {
    let store: Store
    let baseline: any Database
    let backend: BenchmarkBackend

    static let admin = AccessContext(actor: "bench", purpose: .admin)

    init(contacts: Int, in directory: String, label: String, backend: BenchmarkBackend = .sqlite) throws {
        note("\(label): loading \(contacts) contacts")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var configuration = StoreConfiguration()
        configuration.defaultRegion = "GB"
        configuration.plannedPhoneNumbers = max(contacts * 2, 16)
        self.backend = backend
        store = try Store.create(at: try backend.storeLocation(scratch: directory), keyProvider: StaticKeyProvider(key: try SecretKey.random()),
                                 configuration: configuration)
        baseline = try backend.baselineConnection(scratch: directory)
        // On SQLite `INTEGER PRIMARY KEY` is the rowid itself.
        let (id, bytes) = baseline.dialect == .sqlite ? ("INTEGER", "BLOB") : ("BIGINT", "BYTEA")
        try baseline.execute("CREATE TABLE contacts (id \(id) PRIMARY KEY, name \(bytes), company \(bytes), phones \(bytes), emails \(bytes), key \(bytes))")
        try SyntheticContacts.load(contacts, into: store, withEmails: true, baselineDatabase: baseline) { [baseline] (index, contact) throws(DatabaseError) in
            // Same sizes as Strongroom's rows: each value padded by the 46-byte envelope overhead.
            let pad = [UInt8](repeating: 0, count: 46)
            try baseline.run("INSERT INTO contacts (id, name, company, phones, emails, key) VALUES (?, ?, ?, ?, ?, ?)", [
                .int(index + 1), .blob(Array(contact.name.utf8) + pad), .blob(Array("Company of \(contact.name)".utf8) + pad),
                .blob(Array(contact.typed.joined(separator: ",").utf8) + pad), .blob(Array(contact.email.utf8) + pad),
                .blob([UInt8](repeating: 7, count: 78)),
            ])
        }
    }

    /// An SQL expression for new bytes in place of `column`: random ones of its length on SQLite; on
    /// PostgreSQL (no random bytes without an extension) its SHA-512, 64 bytes, the size of most
    /// values here (an UPDATE there writes a whole new row version whatever changed).
    func newBytes(_ column: String) -> String {
        baseline.dialect == .sqlite ? "randomblob(length(\(column)))" : "sha512(\(column))"
    }
}

/// Master-key rotation: re-wrapping the KEK, timed at a small store and at `contacts`; a constant
/// cost. Baseline: what whole-file encryption pays to re-key, rewriting the plain database
/// (`VACUUM INTO`, as SQLCipher's rekey rewrites every page).
struct RotateMasterWorkload {
    let contacts: Int

    func run() throws -> BenchmarkResult {
        try withScratchDirectory { directory in
            func timeRotations(_ stores: LoadedStores, rounds: Int) throws -> LatencySample {
                var sample = LatencySample()
                for _ in 0..<rounds {
                    let key = try SecretKey.random()
                    try sample.measure { _ = try stores.store.rotateMasterKey(to: key, context: LoadedStores.admin) }
                }
                return sample
            }
            let small = try LoadedStores(contacts: 1_000, in: directory + "/small", label: "rotate-master (1,000)")
            let large = try LoadedStores(contacts: contacts, in: directory + "/large", label: "rotate-master (\(contacts))")
            let smallSample = try timeRotations(small, rounds: 20)
            let sample = try timeRotations(large, rounds: 20)
            var baseline = LatencySample()
            for round in 0..<3 {
                try baseline.measure { try large.baseline.execute("VACUUM INTO '\(directory)/rekeyed-\(round).sqlite'") }
            }
            return BenchmarkResult(
                workload: "rotate-master", n: contacts, operations: 20, opsPerS: sample.operationsPerSecond,
                baselineOpsPerS: baseline.operationsPerSecond, ratio: sample.operationsPerSecond / baseline.operationsPerSecond,
                p50Us: sample.percentile(0.5), p99Us: sample.percentile(0.99), p999Us: sample.percentile(0.999),
                baselineP50Us: baseline.percentile(0.5), baselineP99Us: baseline.percentile(0.99), peakRssMb: peakResidentMegabytes(),
                notes: String(format: "p50 %.2f ms at 1,000 contacts vs %.2f ms at %d: constant; baseline rewrites the whole %.0f MB plain file (%.0f ms)",
                              smallSample.percentile(0.5) / 1000, sample.percentile(0.5) / 1000, contacts,
                              Double((try? FileManager.default.attributesOfItem(atPath: directory + "/large/baseline.sqlite")[.size] as? Int) ?? 0) / 1e6,
                              baseline.percentile(0.5) / 1000))
        }
    }
}

/// KEK rotation (re-wrap every subject key), data-key rotation of all subjects (re-encrypt every
/// field) and blind-index rotation (index every number again), against the plain table rewriting the
/// same rows with same-size values in batches of the same size, on the same backend. These baselines
/// stay on the Swift storage layer: one statement per batch of 200 to 1,000 rows, so the layer's
/// microseconds per statement do not show.
struct RotateWorkload {
    let kind: String
    let contacts: Int
    var backend: BenchmarkBackend = .sqlite

    func run() throws -> BenchmarkResult {
        try withScratchDirectory { directory in
            defer { backend.dropScratchSchemas() }
            let stores = try LoadedStores(contacts: contacts, in: directory, label: "rotate-\(kind)", backend: backend)
            defer { stores.store.close() }
            return try Self.time(kind, of: stores, contacts: contacts)
        }
    }

    /// Times the rotation of `kind` ("master", "kek", "data" or "index") of `stores`' store, then its
    /// baseline on the plain table (for "master", rewriting the whole table once, as whole-file
    /// encryption re-keys).
    static func time(_ kind: String, of stores: LoadedStores, contacts: Int, workload: String? = nil) throws -> BenchmarkResult {
        note("rotate-\(kind): timing")
        let start = DispatchTime.now().uptimeNanoseconds
        let report = switch kind {
        case "master": try stores.store.rotateMasterKey(to: try SecretKey.random(), context: LoadedStores.admin)
        case "kek": try stores.store.rotateKeyEncryptionKey(context: LoadedStores.admin)
        case "index": try stores.store.rotateIndexKey(context: LoadedStores.admin)
        default: try stores.store.rotateAllDataKeys(context: LoadedStores.admin)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let baselineStart = DispatchTime.now().uptimeNanoseconds
        let baseline = stores.baseline
        if kind == "master" {
            try baseline.execute("CREATE TABLE rekeyed AS SELECT * FROM contacts")
            try baseline.execute("DROP TABLE rekeyed")
        }
        let batch = ["kek": 1000, "index": 500][kind] ?? 200
        for first in stride(from: 1, through: contacts, by: batch) where kind != "master" {
            let columns = ["kek": ["key"], "index": ["phones", "emails"]][kind] ?? ["name", "company", "phones", "emails"]
            try baseline.transaction { () throws(DatabaseError) in
                try baseline.run("UPDATE contacts SET " + columns.map { "\($0) = \(stores.newBytes($0))" }.joined(separator: ", ")
                                 + " WHERE id BETWEEN ? AND ?", [.int(first), .int(first + batch - 1)])
            }
        }
        let baselineSeconds = Double(DispatchTime.now().uptimeNanoseconds - baselineStart) / 1e9
        // Per subject, even for the master key (whose cost does not grow with them): the figures add up.
        let rate = Double(contacts) / seconds
        let baselineRate = Double(contacts) / baselineSeconds
        let what = ["master": "the master key rotated (%d KEK re-wrapped); baseline rewrites the whole plain table",
                    "kek": "%d subject keys re-wrapped", "index": "%d subjects re-indexed, numbers and e-mail (each decrypt audited); baseline rewrites each contact's numbers and address"][kind]
            ?? "%d subjects re-encrypted (each decrypt audited)"
        var result = BenchmarkResult(
            workload: workload ?? "rotate-\(kind)", n: contacts, operations: report.items, opsPerS: rate, baselineOpsPerS: baselineRate,
            ratio: rate / baselineRate, p50Us: 1e6 / rate, p99Us: 0, p999Us: 0, baselineP50Us: 1e6 / baselineRate, baselineP99Us: 0,
            peakRssMb: peakResidentMegabytes(),
            notes: String(format: "%.1f s for ", seconds) + String(format: what, report.items)
                + "; ops/s are subjects per second, p50 columns the mean µs per subject (timed as a whole)")
        result.backend = stores.backend.name
        return result
    }
}

/// The four rotations of one store, one after another, as an operator would run them: master, KEK,
/// data, index. One result per rotation (subjects per second) and their sum, `rotate-all`, whose
/// time is judged against `limit` seconds (the 10 minutes for a million subjects).
struct RotateAllWorkload {
    let contacts: Int
    let backend: BenchmarkBackend
    /// The longest total that passes, for a million subjects (scaled with `contacts`).
    static let limit = 600.0

    func run() throws -> [BenchmarkResult] {
        try withScratchDirectory { directory in
            defer { backend.dropScratchSchemas() }
            let stores = try LoadedStores(contacts: contacts, in: directory, label: "rotate-all", backend: backend)
            defer { stores.store.close() }
            var results: [BenchmarkResult] = []
            for kind in ["master", "kek", "data", "index"] {
                results.append(try RotateWorkload.time(kind, of: stores, contacts: contacts, workload: "rotate-all/\(kind)"))
            }
            let seconds = results.map { Double(contacts) / $0.opsPerS }.reduce(0, +)
            let baselineSeconds = results.map { Double(contacts) / $0.baselineOpsPerS }.reduce(0, +)
            let limit = Self.limit * Double(contacts) / 1_000_000
            var total = BenchmarkResult(
                workload: "rotate-all", n: contacts, operations: 4, opsPerS: Double(contacts) / seconds,
                baselineOpsPerS: Double(contacts) / baselineSeconds, ratio: baselineSeconds / seconds, p50Us: 1e6 * seconds / Double(contacts),
                p99Us: 0, p999Us: 0, baselineP50Us: 1e6 * baselineSeconds / Double(contacts), baselineP99Us: 0, peakRssMb: peakResidentMegabytes(),
                notes: (seconds <= limit ? "PASS" : "FAIL") + String(format: ": %.1f s in all (limit %.0f s): ", seconds, limit)
                    + zip(["master", "KEK", "data", "index"], results).map { String(format: "%@ %.1f s", $0.0, Double(contacts) / $0.1.opsPerS) }
                        .joined(separator: ", "))
            total.backend = backend.name
            return results + [total]
        }
    }
}
