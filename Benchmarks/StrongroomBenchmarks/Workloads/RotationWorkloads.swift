import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage

/// A store of `contacts` synthetic contacts and a plain-SQLite copy of the same rows in clear, for the
/// rotation workloads.
struct LoadedStores {
    let store: Store
    let baseline: SQLiteConnection
    let baselinePath: String

    static let admin = AccessContext(actor: "bench", purpose: .admin)

    init(contacts: Int, in directory: String, label: String) throws {
        note("\(label): loading \(contacts) contacts")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var configuration = StoreConfiguration()
        configuration.defaultRegion = "GB"
        configuration.plannedPhoneNumbers = max(contacts * 2, 16)
        store = try Store.create(at: directory + "/store", keyProvider: StaticKeyProvider(key: try SecretKey.random()),
                                 configuration: configuration)
        baselinePath = directory + "/baseline.sqlite"
        baseline = try SQLiteConnection(path: baselinePath)
        try baseline.execute("""
            PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
            CREATE TABLE contacts (id INTEGER PRIMARY KEY, name BLOB, company BLOB, phones BLOB, key BLOB);
            """)
        try SyntheticContacts.load(contacts, into: store, baselineDatabase: baseline) { [baseline] index, contact in
            // Same sizes as Strongroom's rows: each value padded by the 46-byte envelope overhead.
            let pad = [UInt8](repeating: 0, count: 46)
            try baseline.run("INSERT INTO contacts (id, name, company, phones, key) VALUES (?, ?, ?, ?, ?)", [
                .int(index + 1), .blob(Array(contact.name.utf8) + pad), .blob(Array("Company of \(contact.name)".utf8) + pad),
                .blob(Array(contact.typed.joined(separator: ",").utf8) + pad), .blob([UInt8](repeating: 7, count: 78)),
            ])
        }
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
                              Double((try? FileManager.default.attributesOfItem(atPath: large.baselinePath)[.size] as? Int) ?? 0) / 1e6,
                              baseline.percentile(0.5) / 1000))
        }
    }
}

/// KEK rotation (re-wrap every subject key), data-key rotation of all subjects (re-encrypt every
/// field) and blind-index rotation (index every number again), against plain SQLite rewriting the same
/// rows with same-size values in batches of the same size. These baselines stay on the Swift storage
/// layer: one statement per batch of 200 to 1,000 rows, so the layer's microseconds per statement do not
/// show.
struct RotateWorkload {
    let kind: String
    let contacts: Int

    func run() throws -> BenchmarkResult {
        try withScratchDirectory { directory in
            let stores = try LoadedStores(contacts: contacts, in: directory, label: "rotate-\(kind)")
            note("rotate-\(kind): timing")
            let start = DispatchTime.now().uptimeNanoseconds
            let report = switch kind {
            case "kek": try stores.store.rotateKeyEncryptionKey(context: LoadedStores.admin)
            case "index": try stores.store.rotateIndexKey(context: LoadedStores.admin)
            default: try stores.store.rotateAllDataKeys(context: LoadedStores.admin)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let baselineStart = DispatchTime.now().uptimeNanoseconds
            let batch = ["kek": 1000, "index": 500][kind] ?? 200
            for first in stride(from: 1, through: contacts, by: batch) {
                try stores.baseline.transaction {
                    if kind == "kek" {
                        try stores.baseline.run("UPDATE contacts SET key = randomblob(78) WHERE id BETWEEN ? AND ?", [.int(first), .int(first + batch - 1)])
                    } else if kind == "index" {
                        try stores.baseline.run("UPDATE contacts SET phones = randomblob(length(phones)) WHERE id BETWEEN ? AND ?",
                                                [.int(first), .int(first + batch - 1)])
                    } else {
                        try stores.baseline.run("""
                            UPDATE contacts SET name = randomblob(length(name)), company = randomblob(length(company)),
                                phones = randomblob(length(phones)) WHERE id BETWEEN ? AND ?
                            """, [.int(first), .int(first + batch - 1)])
                    }
                }
            }
            let baselineSeconds = Double(DispatchTime.now().uptimeNanoseconds - baselineStart) / 1e9
            stores.store.close()
            let rate = Double(report.items) / seconds
            let baselineRate = Double(contacts) / baselineSeconds
            return BenchmarkResult(
                workload: "rotate-\(kind)", n: contacts, operations: report.items, opsPerS: rate, baselineOpsPerS: baselineRate,
                ratio: rate / baselineRate, p50Us: 1e6 / rate, p99Us: 0, p999Us: 0, baselineP50Us: 1e6 / baselineRate, baselineP99Us: 0,
                peakRssMb: peakResidentMegabytes(),
                notes: String(format: "%.1f s for %d %@; p50 columns show the mean µs per item (items are timed in batches)",
                              seconds, report.items, ["kek": "subject keys re-wrapped",
                                                      "index": "subjects re-indexed (each decrypt audited); baseline rewrites each contact's numbers"][kind]
                                  ?? "subjects re-encrypted (each decrypt audited)"))
        }
    }
}
