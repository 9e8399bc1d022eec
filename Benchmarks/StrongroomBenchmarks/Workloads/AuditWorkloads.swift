import Foundation
import Strongroom
import DeterministicRandom
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// An audit hook that keeps nothing: what lookups cost without any audit record.
struct NullAuditHook: AuditHook {
    func record(_ events: [AuditEvent]) throws {}
}

/// Caller-ID lookups with the audit log as it ships (each entry written before the answer returns),
/// in its durable mode (each entry also fsync'd, group-committed across threads), and with a null
/// hook as the baseline; on one thread and on several.
struct AuditOverheadWorkload {
    let contacts: Int
    let lookups: Int
    let threads = 2

    func run() throws -> BenchmarkResult {
        try withScratchDirectory { directory in
            let key = try SecretKey.random()
            var configuration = StoreConfiguration()
            configuration.defaultRegion = "GB"
            configuration.plannedPhoneNumbers = contacts * 2
            note("audit-overhead: loading \(contacts) contacts")
            let loader = try Store.create(at: directory + "/store", keyProvider: StaticKeyProvider(key: key), configuration: configuration)
            try SyntheticContacts.load(contacts, into: loader)
            loader.close()
            var random = SplitMix64(seed: 7)
            let queries: [String] = (0..<lookups).map { _ in
                let contact = SyntheticContacts.contact(Int(random.next() % UInt64(contacts)))
                return contact.e164[Int(random.next() % UInt64(contact.e164.count))]
            }
            func open(_ mode: String) throws -> Store {
                var configuration = StoreConfiguration()
                switch mode {
                case "null":
                    configuration.auditLogFile = false
                    configuration.additionalAuditHooks = [NullAuditHook()]
                case "durable": configuration.auditDurability = .synced
                default: break
                }
                return try Store.open(at: directory + "/store", keyProvider: StaticKeyProvider(key: key), configuration: configuration)
            }
            let caller = AccessContext(actor: "pbx", purpose: .callerID)
            /// Lookups per second on one thread, with latencies.
            func single(_ store: Store, _ slice: ArraySlice<String>) throws -> LatencySample {
                var sample = LatencySample()
                sample.reserve(slice.count)
                for number in slice { try sample.measure { blackHole(try store.callerID(number: number, context: caller)) } }
                return sample
            }
            /// Lookups per second with `threads` threads sharing the store.
            func concurrent(_ store: Store, _ slice: ArraySlice<String>) throws -> Double {
                let start = DispatchTime.now().uptimeNanoseconds
                let failures = Mutex(0)
                DispatchQueue.concurrentPerform(iterations: threads) { thread in
                    for (index, number) in slice.enumerated() where index % threads == thread {
                        if (try? store.callerID(number: number, context: caller)) == nil { failures.withLock { $0 += 1 } }
                    }
                }
                guard failures.withLock({ $0 }) == 0 else { throw WorkloadFailure("lookups failed under concurrency") }
                return Double(slice.count) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            let stores = try ["null", "written", "durable"].map { ($0, try open($0)) }
            for (_, store) in stores { _ = try single(store, queries.prefix(2_000)) }
            var samples: [String: LatencySample] = [:]
            var parallel: [String: Double] = [:]
            note("audit-overhead: timing \(lookups) lookups per mode")
            for (mode, store) in stores {
                samples[mode] = try single(store, queries[...])
                parallel[mode] = try concurrent(store, queries[...])
            }
            let written = samples["written"]!, null = samples["null"]!, durable = samples["durable"]!
            stores.forEach { $0.1.close() }
            return BenchmarkResult(
                workload: "audit-overhead", n: contacts, operations: lookups, opsPerS: written.operationsPerSecond,
                baselineOpsPerS: null.operationsPerSecond, ratio: written.operationsPerSecond / null.operationsPerSecond,
                p50Us: written.percentile(0.5), p99Us: written.percentile(0.99), p999Us: written.percentile(0.999),
                baselineP50Us: null.percentile(0.5), baselineP99Us: null.percentile(0.99), peakRssMb: peakResidentMegabytes(),
                notes: String(format: "baseline here: a null audit hook. 1 thread: null %.0f/s, written %.0f/s, durable %.0f/s (p50 %.0f µs); "
                              + "%d threads: null %.0f/s, written %.0f/s, durable %.0f/s (fsyncs group-committed)",
                              null.operationsPerSecond, written.operationsPerSecond, durable.operationsPerSecond, durable.percentile(0.5),
                              threads, parallel["null"]!, parallel["written"]!, parallel["durable"]!))
        }
    }
}

/// `audit verify` speed: entries checked per second, against the raw HMAC-SHA256 speed over the same
/// lines as the baseline (the least any verification must do).
struct AuditVerifyWorkload {
    let entries: Int

    func run() throws -> BenchmarkResult {
        try withScratchDirectory { directory in
            let key = try SecretKey.random()
            let store = try Store.create(at: directory + "/store", keyProvider: StaticKeyProvider(key: key))
            note("audit-verify: writing \(entries) audit entries")
            let id = try store.create(SyntheticContacts.subject(SyntheticContacts.contact(0), externalID: "c0"),
                                      context: AccessContext(actor: "bench", purpose: .admin))
            let reader = AccessContext(actor: "bench", purpose: .admin, clientAddress: "10.0.0.7")
            for _ in 0..<(entries - 2) { _ = try store.read(id, fields: [.name, .phones], context: reader) }
            store.close()
            let verifyStart = DispatchTime.now().uptimeNanoseconds
            let result = try store.verifyAuditLog()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - verifyStart) / 1e9
            guard result.isIntact else { throw WorkloadFailure("the benchmark's log did not verify") }
            let mac = try HMACSHA256(key: try SecretKey.random())
            var lines: [[UInt8]] = []
            for path in try FileManager.default.contentsOfDirectory(atPath: directory + "/store/audit") where path.hasSuffix(".jsonl") {
                let bytes = try AppendOnlyFile.readAll(path: directory + "/store/audit/" + path)
                lines += bytes.split(separator: UInt8(ascii: "\n")).map(Array.init)
            }
            let baselineStart = DispatchTime.now().uptimeNanoseconds
            var previous = [UInt8](repeating: 0, count: 32)
            for line in lines { previous = try mac.authenticationCode(for: [previous, line]) }
            blackHole(previous)
            let baselineSeconds = Double(DispatchTime.now().uptimeNanoseconds - baselineStart) / 1e9
            let rate = Double(result.verifiedEntries) / seconds
            let baselineRate = Double(lines.count) / baselineSeconds
            return BenchmarkResult(workload: "audit-verify", n: result.verifiedEntries, operations: result.verifiedEntries, opsPerS: rate,
                                   baselineOpsPerS: baselineRate, ratio: rate / baselineRate, p50Us: 1e6 / rate, p99Us: 0, p999Us: 0,
                                   baselineP50Us: 1e6 / baselineRate, baselineP99Us: 0, peakRssMb: peakResidentMegabytes(),
                                   notes: "entries verified per second (target: 200,000); baseline: HMAC-SHA256 alone over the same lines")
        }
    }
}

/// A workload whose own check of its results failed (the engine answered, but not as it must).
struct WorkloadFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) { self.description = description }
}
