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
///
/// CPU time moves with the load too (other processes evict the caches and share the cores' other
/// halves), by up to twice between two runs here. So both stores stay open and are timed in turns,
/// in `rounds` rounds (`wholeStoreRounds` for the rotations of the whole store), and each size's cost
/// is its cheapest round: the round least disturbed. A load burst then has to hit every round of one
/// size and none of the other to move the ratio, and a scan still shows in every round.
struct ScalingWorkload {
    let small: Int
    let large: Int
    /// Single operations timed of each kind, per round.
    static let samples = 300
    /// Rounds of the single operations, the sizes in turn.
    static let rounds = 3
    /// The fewest contacts a store may have: each round's four groups of operations take distinct subjects.
    static let minimumContacts = samples * 4 * rounds
    private var samples: Int { Self.samples }
    private var rounds: Int { Self.rounds }
    /// Rounds of the KEK and blind-index rotations of the whole store.
    let wholeStoreRounds = 2
    /// Master-key rotations timed per round: a few milliseconds' worth, like the other operations' groups.
    let masterRotations = 30
    /// The largest ratio that passes.
    static let limit = 1.5

    /// One operation's cost in one store: CPU and wall microseconds per operation.
    struct Cost {
        let cpu: Double
        let wall: Double

        /// The cheaper of `kept` (none yet: nil) and `new`, by CPU time.
        static func min(_ kept: Cost?, _ new: Cost) -> Cost {
            guard let kept, kept.cpu <= new.cpu else { return new }
            return kept
        }
    }

    func run() throws -> [BenchmarkResult] {
        try withScratchDirectory { directory in
            let scenes = [try Scene(contacts: small, picks: samples * 4 * rounds, in: directory + "/small"),
                          try Scene(contacts: large, picks: samples * 4 * rounds, in: directory + "/large")]
            defer { for scene in scenes { scene.store.close() } }
            let costs = try cheapestCosts(scenes)
            let rss = peakResidentMegabytes()
            return costs.map { name, small, large in
                let ratio = large.cpu / small.cpu
                return BenchmarkResult(
                    workload: "scaling/\(name)", n: self.large, operations: samples, opsPerS: 1e6 / large.cpu,
                    baselineOpsPerS: 1e6 / small.cpu, ratio: ratio, p50Us: large.cpu, p99Us: 0, p999Us: 0,
                    baselineP50Us: small.cpu, baselineP99Us: 0, peakRssMb: rss,
                    notes: (ratio > Self.limit ? "FAIL" : "PASS")
                        + String(format: "; µs per operation in CPU time, the cheapest of %d rounds at each size; wall time %.1f → %.1f µs",
                                 name.hasPrefix("rotate-kek") || name.hasPrefix("rotate-index") ? wholeStoreRounds : rounds,
                                 small.wall, large.wall),
                    smallN: self.small)
            }
        }
    }

    /// A store of `contacts` contacts and the subjects picked in it for the single operations.
    struct Scene {
        let contacts: Int
        let store: Store
        /// Positions of distinct existing contacts spread over the whole store (the same picks at
        /// both sizes, as far as the small one allows), and their ids.
        let positions: [Int]
        let ids: [SubjectID]

        init(contacts: Int, picks: Int, in directory: String) throws {
            self.contacts = contacts
            let store = try LoadedStores(contacts: contacts, in: directory, label: "scaling (\(contacts))").store
            var random = SplitMix64(seed: 21)
            var picked = Set<Int>()
            while picked.count < picks { picked.insert(Int(random.next() % UInt64(contacts))) }
            let positions = picked.sorted().shuffled(using: &random)
            (self.store, self.positions, ids) = (store, positions, try positions.map { try store.resolve("c\($0)") })
            try store.declarePurpose(PurposeDeclaration(name: ScalingWorkload.marketing, description: "Offers by e-mail",
                                                        lawfulBasis: .consent), context: LoadedStores.admin)
        }
    }

    static let marketing: Purpose = "marketing-email"

    /// Each operation's name and its cheapest cost at the small and the large size.
    private func cheapestCosts(_ scenes: [Scene]) throws -> [(name: String, small: Cost, large: Cost)] {
        var names: [String] = []
        /// Each operation's cheapest cost so far at each size (index 0 small, 1 large).
        var cheapest: [String: [Cost?]] = [:]
        /// Times `body` (`count` operations, or a whole rotation over `count` subjects) in scene `size`,
        /// keeping the cheaper cost.
        func measure(_ name: String, size: Int, per count: Int, _ body: () throws -> Void) rethrows {
            // The process's CPU time counts its background threads too (the audit log readying its next
            // pages, SQLite's checkpoints): work the previous operation left running is let finish
            // first, so that it is not charged to this one.
            Thread.sleep(forTimeInterval: 0.05)
            let cpuStart = clock(), wallStart = DispatchTime.now().uptimeNanoseconds
            try body()
            let cpu = Double(clock() - cpuStart) / Double(CLOCKS_PER_SEC) * 1e6 / Double(count)
            let wall = Double(DispatchTime.now().uptimeNanoseconds - wallStart) / 1e3 / Double(count)
            if cheapest[name] == nil { names.append(name) }
            cheapest[name, default: [nil, nil]][size] = Cost.min(cheapest[name]?[size], Cost(cpu: cpu, wall: wall))
        }
        let admin = LoadedStores.admin
        let caller = AccessContext(actor: "pbx", purpose: .callerID)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        for round in 0..<rounds {
            for (size, scene) in scenes.enumerated() {
                note("scaling (\(scene.contacts)): round \(round + 1) of \(rounds), \(samples) of each operation")
                let store = scene.store
                // Group g of this round: `samples` picks no other round or operation group uses.
                func each(_ name: String, group: Int, _ body: (Int) throws -> Void) throws {
                    let picks = (round * 4 + group) * samples..<(round * 4 + group + 1) * samples
                    try measure(name, size: size, per: samples) { for pick in picks { try body(pick) } }
                }
                try each("create", group: 0) { pick in
                    _ = try store.create(SyntheticContacts.subject(SyntheticContacts.contact(scene.contacts + pick), externalID: "new\(pick)"),
                                         context: admin)
                }
                try each("update", group: 0) { pick in
                    let contact = SyntheticContacts.contact(scene.contacts + samples * 4 * rounds + pick)
                    try store.update(scene.ids[pick], personal: PersonalData(name: contact.name,
                                                                             phones: contact.typed.map { LabeledPhone(label: "phone", number: $0) }),
                                     context: admin)
                }
                try each("call-record", group: 1) { pick in
                    let contact = SyntheticContacts.contact(scene.positions[pick])
                    _ = try store.recordCall(number: contact.e164[0], at: start.addingTimeInterval(Double(pick)), context: caller)
                }
                try each("consent", group: 1) { pick in
                    _ = try store.grantConsent(scene.ids[pick], purpose: Self.marketing, evidence: "web form", initiator: .subject, context: admin)
                }
                try each("erase", group: 2) { pick in
                    try store.erase(scene.ids[pick], reason: "request", context: admin)
                }
                try each("rotate-data", group: 3) { pick in
                    try store.rotateDataKey(of: scene.ids[pick], context: admin)
                }
                try measure("rotate-master", size: size, per: masterRotations) {
                    for _ in 0..<masterRotations { _ = try store.rotateMasterKey(to: try SecretKey.random(), context: admin) }
                }
            }
        }
        // The KEK and index rotations walk the whole store in batches: their step is the whole walk's
        // cost per subject, so that a batch that costs more the further the walk got shows.
        for round in 0..<wholeStoreRounds {
            for (size, scene) in scenes.enumerated() {
                let count = try scene.store.count()
                note("scaling (\(scene.contacts)): round \(round + 1) of \(wholeStoreRounds), rotate-kek and rotate-index of the whole store")
                try measure("rotate-kek", size: size, per: count) { _ = try scene.store.rotateKeyEncryptionKey(context: admin) }
                try measure("rotate-index", size: size, per: count) { _ = try scene.store.rotateIndexKey(context: admin) }
            }
        }
        return names.map { ($0, cheapest[$0]![0]!, cheapest[$0]![1]!) }
    }
}
