import DeterministicRandom
import Foundation
import Strongroom
import StrongroomCrypto

/// Whether each per-subject operation costs the same in a small store and a large one: create,
/// rectification, erasure, call record, consent change and a step of each rotation, timed in a store
/// of `small` contacts and one of `large`. The result of each is its cost at both sizes and their
/// ratio (large over small); a ratio above `limit` is a failure (a statement that walks a table
/// instead of probing an index shows up here as a ratio near large/small).
///
/// The cost judged is the process's CPU time per operation: on a shared machine the wall time of the
/// same operation moves several-fold with the other processes' load, which would hide a scaling fault
/// or invent one. The wall time is reported beside it (the notes), with what it includes that CPU time
/// does not: waits for the disk (each commit of the key database is synced).
struct ScalingWorkload {
    let small: Int
    let large: Int
    /// Single operations timed of each kind.
    let samples = 300
    /// The largest ratio that passes.
    static let limit = 1.5

    /// One operation's cost in one store: CPU and wall microseconds per operation.
    struct Cost {
        let cpu: Double
        let wall: Double
    }

    func run() throws -> [BenchmarkResult] {
        try withScratchDirectory { directory in
            let smallCosts = try costs(contacts: small, in: directory + "/small")
            let largeCosts = try costs(contacts: large, in: directory + "/large")
            let rss = peakResidentMegabytes()
            return zip(smallCosts, largeCosts).map { small, large in
                let ratio = large.cost.cpu / small.cost.cpu
                return BenchmarkResult(
                    workload: "scaling/\(small.name)", n: self.large, operations: samples, opsPerS: 1e6 / large.cost.cpu,
                    baselineOpsPerS: 1e6 / small.cost.cpu, ratio: ratio, p50Us: large.cost.cpu, p99Us: 0, p999Us: 0,
                    baselineP50Us: small.cost.cpu, baselineP99Us: 0, peakRssMb: rss,
                    notes: (ratio > Self.limit ? "FAIL" : "PASS")
                        + String(format: "; µs per operation in CPU time; wall time %.1f → %.1f µs", small.cost.wall, large.cost.wall),
                    smallN: self.small)
            }
        }
    }

    /// Each operation's cost (for single operations, the mean of `samples`; for whole rotations, per
    /// subject) in a fresh store of `contacts` contacts.
    private func costs(contacts: Int, in directory: String) throws -> [(name: String, cost: Cost)] {
        let stores = try LoadedStores(contacts: contacts, in: directory, label: "scaling (\(contacts))")
        let store = stores.store
        defer { store.close() }
        let admin = LoadedStores.admin
        let caller = AccessContext(actor: "pbx", purpose: .callerID)
        let marketing: Purpose = "marketing-email"
        try store.declarePurpose(PurposeDeclaration(name: marketing, description: "Offers by e-mail", lawfulBasis: .consent), context: admin)
        // Distinct existing contacts spread over the whole store, the same picks at both sizes.
        var random = SplitMix64(seed: 21)
        var picked = Set<Int>()
        while picked.count < samples * 4 { picked.insert(Int(random.next() % UInt64(contacts))) }
        let indexes = picked.sorted().shuffled(using: &random)
        let ids = try indexes.map { try store.resolve("c\($0)") }
        func chosen(_ group: Int) -> Range<Int> { group * samples..<(group + 1) * samples }

        note("scaling (\(contacts)): timing \(samples) of each operation")
        var results: [(name: String, cost: Cost)] = []
        /// Runs `body` `count` times (or, for a whole rotation, once over `count` subjects) and records its cost.
        func measure(_ name: String, per count: Int, _ body: () throws -> Void) rethrows {
            let cpuStart = clock(), wallStart = DispatchTime.now().uptimeNanoseconds
            try body()
            let cpu = Double(clock() - cpuStart) / Double(CLOCKS_PER_SEC) * 1e6
            let wall = Double(DispatchTime.now().uptimeNanoseconds - wallStart) / 1e3
            results.append((name, Cost(cpu: cpu / Double(count), wall: wall / Double(count))))
        }
        func each(_ name: String, _ positions: Range<Int>, _ body: (Int) throws -> Void) throws {
            try measure(name, per: positions.count) { for position in positions { try body(position) } }
        }
        try each("create", chosen(0)) { position in
            _ = try store.create(SyntheticContacts.subject(SyntheticContacts.contact(contacts + position), externalID: "new\(position)"),
                                 context: admin)
        }
        try each("update", chosen(0)) { position in
            let contact = SyntheticContacts.contact(contacts + samples * 4 + position)
            try store.update(ids[position], personal: PersonalData(name: contact.name,
                                                                   phones: contact.typed.map { LabeledPhone(label: "phone", number: $0) }),
                             context: admin)
        }
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        try each("call-record", chosen(1)) { position in
            let contact = SyntheticContacts.contact(indexes[position])
            _ = try store.recordCall(number: contact.e164[0], at: start.addingTimeInterval(Double(position)), context: caller)
        }
        try each("consent", chosen(1)) { position in
            _ = try store.grantConsent(ids[position], purpose: marketing, evidence: "web form", initiator: .subject, context: admin)
        }
        try each("erase", chosen(2)) { position in
            try store.erase(ids[position], reason: "request", context: admin)
        }
        try each("rotate-data", chosen(3)) { position in
            try store.rotateDataKey(of: ids[position], context: admin)
        }
        try measure("rotate-master", per: 9) {
            for _ in 0..<9 { _ = try store.rotateMasterKey(to: try SecretKey.random(), context: admin) }
        }
        // The KEK and index rotations walk the whole store in batches: their step is the whole walk's
        // cost per subject, so that a batch that costs more the further the walk got shows.
        note("scaling (\(contacts)): rotate-kek of the whole store")
        try measure("rotate-kek", per: try store.count()) { _ = try store.rotateKeyEncryptionKey(context: admin) }
        note("scaling (\(contacts)): rotate-index of the whole store")
        try measure("rotate-index", per: try store.count()) { _ = try store.rotateIndexKey(context: admin) }
        return results
    }
}
