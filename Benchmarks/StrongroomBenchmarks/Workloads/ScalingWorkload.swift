import DeterministicRandom
import Foundation
import Strongroom
import StrongroomCrypto

/// Whether each per-subject operation costs the same in a small store and a large one: create,
/// rectification, erasure, call record, consent change and a step of each rotation, timed in a store
/// of `small` contacts and one of `large`. The result of each is its time at both sizes and their
/// ratio (large over small); a ratio above `limit` is a failure (a statement that walks a table
/// instead of probing an index shows up here as a ratio near large/small).
struct ScalingWorkload {
    let small: Int
    let large: Int
    /// Single operations timed of each kind (their median is reported).
    let samples = 300
    /// The largest ratio that passes.
    static let limit = 1.5

    func run() throws -> [BenchmarkResult] {
        try withScratchDirectory { directory in
            let smallTimings = try timings(contacts: small, in: directory + "/small")
            let largeTimings = try timings(contacts: large, in: directory + "/large")
            let rss = peakResidentMegabytes()
            return zip(smallTimings, largeTimings).map { small, large in
                let ratio = large.value / small.value
                return BenchmarkResult(
                    workload: "scaling/\(small.key)", n: self.large, operations: samples, opsPerS: 1e6 / large.value,
                    baselineOpsPerS: 1e6 / small.value, ratio: ratio, p50Us: large.value, p99Us: 0, p999Us: 0,
                    baselineP50Us: small.value, baselineP99Us: 0, peakRssMb: rss,
                    notes: ratio > Self.limit ? "FAIL" : "PASS", smallN: self.small)
            }
        }
    }

    /// Each operation's microseconds (the median of single operations; for whole rotations, the mean
    /// per subject) in a fresh store of `contacts` contacts.
    private func timings(contacts: Int, in directory: String) throws -> [(key: String, value: Double)] {
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
        var results: [(key: String, value: Double)] = []
        func median(_ name: String, _ positions: Range<Int>, _ body: (Int) throws -> Void) throws {
            var sample = LatencySample()
            for position in positions { try sample.measure { try body(position) } }
            results.append((name, sample.percentile(0.5)))
        }
        try median("create", chosen(0)) { position in
            _ = try store.create(SyntheticContacts.subject(SyntheticContacts.contact(contacts + position), externalID: "new\(position)"),
                                 context: admin)
        }
        try median("update", chosen(0)) { position in
            let contact = SyntheticContacts.contact(contacts + samples * 4 + position)
            try store.update(ids[position], personal: PersonalData(name: contact.name,
                                                                   phones: contact.typed.map { LabeledPhone(label: "phone", number: $0) }),
                             context: admin)
        }
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        try median("call-record", chosen(1)) { position in
            let contact = SyntheticContacts.contact(indexes[position])
            _ = try store.recordCall(number: contact.e164[0], at: start.addingTimeInterval(Double(position)), context: caller)
        }
        try median("consent", chosen(1)) { position in
            _ = try store.grantConsent(ids[position], purpose: marketing, evidence: "web form", initiator: .subject, context: admin)
        }
        try median("erase", chosen(2)) { position in
            try store.erase(ids[position], reason: "request", context: admin)
        }
        try median("rotate-data", chosen(3)) { position in
            try store.rotateDataKey(of: ids[position], context: admin)
        }
        var master = LatencySample()
        for _ in 0..<9 {
            let key = try SecretKey.random()
            try master.measure { _ = try store.rotateMasterKey(to: key, context: admin) }
        }
        results.append(("rotate-master", master.percentile(0.5)))
        // The KEK and index rotations walk the whole store in batches: their step is the whole walk's
        // time per subject, so that a batch that costs more the further the walk got shows.
        for kind in ["rotate-kek", "rotate-index"] {
            note("scaling (\(contacts)): \(kind) of the whole store")
            let begin = DispatchTime.now().uptimeNanoseconds
            let report = kind == "rotate-kek" ? try store.rotateKeyEncryptionKey(context: admin) : try store.rotateIndexKey(context: admin)
            results.append((kind, Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e3 / Double(report.items)))
        }
        return results
    }
}
