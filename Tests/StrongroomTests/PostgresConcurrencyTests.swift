import Foundation
@testable import Strongroom
import StrongroomCrypto
import StrongroomStorage
import StrongroomTestSupport
import Testing

/// Concurrency that only a server shows: several processes (exit tests: children of the test binary,
/// started at once) writing, looking up and rotating keys in one PostgreSQL store.
///
/// Skipped, with the loud banner, when STRONGROOM_TEST_POSTGRES=off; failed with the message saying
/// what to do when the variable is unset.
@Suite("PostgreSQL: several processes on one store", .serialized, .timeLimit(.minutes(10)),
       .enabled("the PostgreSQL half is off (STRONGROOM_TEST_POSTGRES=off)", {
           PostgresTestServer.announceIfOff()
           return !PostgresTestServer.isOff
       }))
struct PostgresConcurrencyTests {
    /// A store on the test server, or nil (with the failure recorded) when STRONGROOM_TEST_POSTGRES is unset.
    func postgresStore() throws -> TestStore? {
        if let message = PostgresTestServer.missingMessage {
            Issue.record(Comment(rawValue: message))
            return nil
        }
        return try TestStore(.postgres, region: "GB")
    }

    /// Writes `count` subjects from the parent, numbered +44 7700 90xxxx.
    func seed(_ test: TestStore, _ count: Int) throws -> [Int64] {
        try test.store.write((0..<count).map { sampleSubject("seed\($0)", phones: [ChildJob.seedNumber($0)]) },
                             context: TestStore.admin).map(\.id.rawValue)
    }

    /// The audit table as a run of sequence numbers: (count, min, max).
    func auditRun(_ test: TestStore) throws -> [Int64] {
        try test.database(.data).firstRow("SELECT count(*), min(sequence), max(sequence) FROM audit_log") {
            [$0.int64(0), $0.int64(1), $0.int64(2)]
        } ?? []
    }

    /// The audit log verifies, and its table holds exactly the entries 1…n it verified.
    func expectOneChain(_ test: TestStore, entries expected: Int? = nil) throws {
        let verification = try test.reopen().verifyAuditLog()
        #expect(verification.isIntact, "\(String(describing: verification.problem))")
        let entries = Int64(verification.verifiedEntries)
        if let expected { #expect(entries == Int64(expected), "audited operations") }
        #expect(try auditRun(test) == [entries, 1, entries], "audit_log (count, min, max) with \(entries) verified entries")
    }

    /// Runs `jobs` as child processes at once; each must end as its job says.
    func run(_ jobs: [ChildJob]) async {
        await withTaskGroup(of: Void.self) { group in
            for job in jobs { group.addTask { await spawn(job) } }
        }
    }

    @Test("processes writing and looking up at once: every subject found afterwards, one audit chain with no fork and no gap")
    func writersAndLookups() async throws {
        guard let test = try postgresStore() else { return }
        defer { test.cleanUp() }
        let seeds = try seed(test, 20)
        let before = Int(try auditRun(test).first ?? 0)
        let workers = 3
        let perWorker = 40
        await run((0..<workers).map {
            ChildJob(role: .writer, worker: $0, parties: workers, count: perWorker, seeds: seeds, test: test)
        })
        // Each child counted the audit entries its operations made: one per write, one per caller-ID match.
        var childEntries = 0
        for worker in 0..<workers {
            let tally = try? String(contentsOfFile: test.directory + "/tally-\(worker)", encoding: .utf8)
            #expect(tally != nil, "writer \(worker) left no tally")
            childEntries += Int(tally ?? "") ?? 0
        }
        #expect(childEntries >= workers * perWorker * 3, "each writer wrote, found itself and a seed every round")
        let store = try test.reopen()
        defer { store.close() }
        #expect(try store.count() == seeds.count + workers * perWorker)
        var lookups = 0
        for worker in 0..<workers {
            for index in 0..<perWorker {
                let matches = try store.callerID(number: ChildJob.workerNumber(worker, index), context: TestStore.caller)
                #expect(matches.map(\.name) == ["Zebedee Quixotic-p\(worker)-\(index)"], "writer \(worker), subject \(index)")
                lookups += matches.count
            }
        }
        try expectOneChain(test, entries: before + childEntries + lookups)
        // The writers really ran at once: their entries interleave in the chain (run one after another,
        // the actor would change workers − 1 times).
        let actors = try test.database(.data).rows("SELECT line FROM audit_log ORDER BY sequence") { row -> String in
            let line = row.blob(0) ?? []
            let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
            return object?["actor"] as? String ?? ""
        }.filter { $0.hasPrefix("writer-") }
        let switches = zip(actors, actors.dropFirst()).filter { $0 != $1 }.count
        #expect(switches >= 2 * workers, "the writers' audit entries change hands \(switches) times")
    }

    @Test("processes doing nothing but caller-ID lookups at once: every lookup audited in one chain, each appender waiting its turn")
    func concurrentCallers() async throws {
        guard let test = try postgresStore() else { return }
        defer { test.cleanUp() }
        let seeds = try seed(test, 30)
        let before = Int(try auditRun(test).first ?? 0)
        let callers = 4
        let perCaller = 150
        await run((0..<callers).map { ChildJob(role: .caller, worker: $0, parties: callers, count: perCaller, seeds: seeds, test: test) })
        try expectOneChain(test, entries: before + callers * perCaller)
        // They ran at once: the callers' entries interleave, so most appends found others had appended first.
        let actors = try test.database(.data).rows("SELECT line FROM audit_log WHERE sequence > ? ORDER BY sequence", [.int(before)]) { row in
            let object = try? JSONSerialization.jsonObject(with: Data(row.blob(0) ?? [])) as? [String: Any]
            return object?["actor"] as? String ?? ""
        }
        let switches = zip(actors, actors.dropFirst()).filter { $0 != $1 }.count
        #expect(switches >= callers * perCaller / 4, "the callers' audit entries change hands \(switches) times")
        // Second act: lookups from a fresh instance chain after them; reopened, the log verifies again.
        let store = try test.reopen()
        defer { store.close() }
        for index in 0..<seeds.count {
            #expect(try store.callerID(number: ChildJob.seedNumber(index), context: TestStore.caller).map(\.id.rawValue) == [seeds[index]])
        }
        store.close()
        try expectOneChain(test, entries: before + callers * perCaller + seeds.count)
    }

    @Test("an instance idle while another appended more entries than a turn reads chains after all of them, checked against the signed head")
    func idleInstanceAfterManyAppends() throws {
        guard let test = try postgresStore() else { return }
        defer { test.cleanUp() }
        let seeds = try seed(test, 3)
        let idle = try test.reopen()
        defer { idle.close() }
        #expect(try idle.callerID(number: ChildJob.seedNumber(0), context: TestStore.caller).map(\.id.rawValue) == [seeds[0]])
        // Another instance appends more than `turnReadLimit` entries (one per subject written).
        let busy = try test.reopen()
        _ = try busy.write((0..<(PostgresAuditLog.turnReadLimit + 50)).map { sampleSubject("bulk\($0)", phones: []) }, context: TestStore.admin)
        busy.close()
        for index in 0..<seeds.count {
            #expect(try idle.callerID(number: ChildJob.seedNumber(index), context: TestStore.caller).map(\.id.rawValue) == [seeds[index]])
        }
        idle.close()
        try expectOneChain(test)
        // Second act: a fresh instance looks up and the chain still verifies.
        let fresh = try test.reopen()
        #expect(try fresh.callerID(number: ChildJob.seedNumber(1), context: TestStore.caller).map(\.id.rawValue) == [seeds[1]])
        fresh.close()
        try expectOneChain(test)
    }

    @Test("a KEK and a data-key rotation run by one process in small batches while two others read and write")
    func rotationWhileServing() async throws {
        guard let test = try postgresStore() else { return }
        defer { test.cleanUp() }
        let seeds = try seed(test, 120)
        await run([ChildJob(role: .rotator, worker: 0, parties: 3, kind: "kek+data", seeds: seeds, test: test)]
                  + (1...2).map { ChildJob(role: .server, worker: $0, parties: 3, seeds: seeds, test: test) })
        let store = try test.reopen()
        defer { store.close() }
        #expect(try store.rotationsInProgress().isEmpty)
        #expect(try store.keyStatus().kekVersion == 2)
        let keys = try test.database(.keys)
        #expect(try keys.scalarInteger("SELECT count(*) FROM kek") == 1)
        #expect(try keys.scalarInteger("SELECT count(*) FROM subject_keys WHERE kek_version <> 2") == 0)
        // Every seeded subject got a fresh data key (a subject a server wrote during the walk may have
        // been created after the cursor passed: it has its first key, and that is fine).
        let data = try test.database(.data)
        #expect(try data.scalarInteger("SELECT count(*) FROM subjects WHERE id <= ? AND key_version < 2", [.integer(seeds.max()!)]) == 0)
        try expectServedAndIntact(test, store, seeds: seeds, servers: [1, 2])
    }

    /// Each kind of rotation, killed inside a batch while a server works, then resumed by another process.
    @Test("a rotation killed with SIGKILL mid-way while another process serves is resumed to completion by a different process",
          arguments: ["kek", "data", "index"])
    func killedAndResumedElsewhere(kind: String) async throws {
        guard let test = try postgresStore() else { return }
        defer { test.cleanUp() }
        let seeds = try seed(test, 100)
        // Phase 1: the rotator dies inside its third batch; a server works alongside it throughout.
        await run([ChildJob(role: .doomedRotator, worker: 0, parties: 2, kind: kind, seeds: seeds, test: test),
                   ChildJob(role: .server, worker: 1, parties: 2, seeds: seeds, test: test)])
        let interrupted = try test.reopen().rotationsInProgress()
        #expect(interrupted.map(\.kind.rawValue) == [kind])
        #expect(interrupted.first.map { $0.done > 0 && $0.done < seeds.count } == true, "stopped mid-way: \(interrupted)")
        // Phase 2: another process resumes it while a second server works.
        await run([ChildJob(role: .resumer, worker: 0, parties: 2, kind: kind, seeds: seeds, test: test, phase: 2),
                   ChildJob(role: .server, worker: 2, parties: 2, seeds: seeds, test: test, phase: 2)])
        let store = try test.reopen()
        defer { store.close() }
        #expect(try store.rotationsInProgress().isEmpty)
        let status = try store.keyStatus()
        switch kind {
        case "kek":
            #expect(status.kekVersion == 2)
            #expect(try test.database(.keys).scalarInteger("SELECT count(*) FROM kek") == 1)
        case "data":
            #expect(try test.database(.data).scalarInteger("SELECT count(*) FROM subjects WHERE id <= ? AND key_version < 2",
                                                           [.integer(seeds.max()!)]) == 0)
        default:
            #expect(status.phoneIndex.version == 2)
            let stale = try test.database(.data).rows("SELECT key_version, subject_id FROM phone_index WHERE key_version <> 2 ORDER BY subject_id") {
                "v\($0.int64(0)):\($0.int64(1))"
            }
            #expect(stale.isEmpty, "index rows left under the old key (version:subject): \(stale)")
        }
        #expect(try test.database(.keys).scalarInteger("""
            SELECT count(*) FROM (SELECT subject_id FROM subject_keys GROUP BY subject_id HAVING count(*) > 1) AS doubled
            """) == 0, "every subject holds exactly one key")
        try expectServedAndIntact(test, store, seeds: seeds, servers: [1, 2])
    }

    /// Every seeded subject reads whole and is found by caller ID, every subject a server wrote is found
    /// with its last update, and the audit is one intact chain.
    func expectServedAndIntact(_ test: TestStore, _ store: Store, seeds: [Int64], servers: [Int]) throws {
        for (index, id) in seeds.enumerated() {
            let subject = try store.read(SubjectID(rawValue: id), context: TestStore.admin)
            #expect(subject.personal.name == "Zebedee Quixotic-seed\(index)")
            #expect(try store.callerID(number: ChildJob.seedNumber(index), context: TestStore.caller).map(\.id.rawValue) == [id])
        }
        var written = 0
        for server in servers {
            let rounds = try? String(contentsOfFile: test.directory + "/rounds-\(server)", encoding: .utf8)
            #expect(rounds != nil, "server \(server) left no count")
            let lines = (rounds ?? "").split(separator: " ").compactMap { Int($0) }
            // Rounds in all, and rounds done before the rotation ended: the server worked while it ran.
            #expect(lines.count == 2 && lines[1] > 0, "server \(server): \(rounds ?? "")")
            for round in 0..<(lines.first ?? 0) {
                let matches = try store.callerID(number: ChildJob.workerNumber(server, round), context: TestStore.caller)
                #expect(matches.map(\.name) == ["Zebedee Quixotic-s\(server)-\(round)"], "server \(server), round \(round)")
                if let id = matches.first?.id {
                    #expect(try store.read(id, fields: [.notes], context: TestStore.admin).personal.notes == "served \(server)-\(round)")
                }
                written += 1
            }
        }
        #expect(try store.count() == seeds.count + written)
        try expectOneChain(test)
    }
}

/// Starts `job` as a child process (an exit test of this binary) and waits for it; a failed child's
/// reason is recorded as an issue.
func spawn(_ job: ChildJob) async {
    await #expect(processExitsWith: job.role == .doomedRotator ? .signal(SIGKILL) : .success, "\(job.role) \(job.worker)") {
        [job = job as ChildJob] in
        job.run()
    }
    if let reason = try? String(contentsOfFile: job.errorFile, encoding: .utf8) {
        Issue.record("\(job.role) \(job.worker) failed: \(reason)")
    }
    // A killed rotator cannot say it is done: its servers stop now.
    if job.role == .doomedRotator { _ = FileManager.default.createFile(atPath: job.doneFile, contents: nil) }
}

/// What one child process does against the shared store. Children meet at a barrier (files in the
/// test's scratch folder) before they start, so they really run at once, and leave their counts there.
struct ChildJob: Codable, Sendable {
    enum Role: String, Codable, Sendable {
        /// Writes subjects, looking up its own, another writer's and a seeded one after each.
        case writer
        /// Reads and looks up seeded subjects, writes and updates its own, until the rotation is done.
        case server
        /// Runs the rotation `kind` in small batches.
        case rotator
        /// Runs the rotation `kind` and kills itself inside its third batch.
        case doomedRotator
        /// Resumes the interrupted rotation `kind`.
        case resumer
        /// Looks seeded subjects up `count` times, as fast as it can.
        case caller
    }

    let role: Role
    let worker: Int
    /// How many children meet at the barrier.
    let parties: Int
    var count = 0
    var kind = ""
    let seeds: [Int64]
    let location: String
    let key: String
    let folder: String
    /// Which barrier and "done" signal this child uses (the kill test runs two groups one after the other).
    var phase = 1

    init(role: Role, worker: Int, parties: Int, count: Int = 0, kind: String = "", seeds: [Int64], test: TestStore, phase: Int = 1) {
        self.role = role
        self.worker = worker
        self.parties = parties
        self.count = count
        self.kind = kind
        self.seeds = seeds
        self.location = test.locationText
        self.key = String(decoding: test.key.base64EncodedBytes(), as: UTF8.self)
        self.folder = test.directory
        self.phase = phase
    }

    /// A seeded subject's number: +44 7700 90xxxx.
    static func seedNumber(_ index: Int) -> String { "+44770090" + String(format: "%04d", index) }
    /// The number of a child's `index`-th subject: +44 7700 9wxxxx (w = worker + 1).
    static func workerNumber(_ worker: Int, _ index: Int) -> String { "+4477009\(worker + 1)" + String(format: "%04d", index) }

    /// Runs the job and exits: success, or failure with the reason on standard error.
    func run() -> Never {
        runChild(errorFile: errorFile, perform) { error in
            // A rotation that failed is over too: its servers stop.
            if role == .rotator || role == .resumer { _ = FileManager.default.createFile(atPath: doneFile, contents: nil) }
            FileHandle.standardError.write(Data("\(role) \(worker): \(error)\n".utf8))
        }
    }

    /// Where a failed child leaves its reason.
    var errorFile: String { folder + "/error-\(phase)-\(role.rawValue)-\(worker)" }

    /// Created when this phase's rotation is over: the servers then stop.
    var doneFile: String { folder + "/done-\(phase)" }

    private func perform() throws {
        var configuration = StoreConfiguration()
        if role == .doomedRotator {
            configuration.faultInjection = { name, count in
                if name.hasSuffix(".in-batch") && count >= 3 { kill(getpid(), SIGKILL) }
            }
        }
        let store = try Store.open(at: StoreLocation(location), keyProvider: StaticKeyProvider(key: SecretKey(base64Encoded: key)!),
                                   configuration: configuration)
        defer { store.close() }
        let context = AccessContext(actor: "\(role.rawValue)-\(worker)", purpose: .admin)
        let caller = AccessContext(actor: "\(role.rawValue)-\(worker)", purpose: .callerID)
        try meet(in: folder, prefix: "ready-\(phase)-", name: "\(role.rawValue)-\(worker)", parties: parties, within: 120)
        switch role {
        case .writer: try write(store, context, caller)
        case .server: try serve(store, context, caller)
        case .rotator, .doomedRotator, .resumer: try rotate(store, context)
        case .caller: try call(store, caller)
        }
    }

    private func call(_ store: Store, _ caller: AccessContext) throws {
        for index in 0..<count {
            let seedIndex = (index * 7 + worker) % seeds.count
            let found = try store.callerID(number: ChildJob.seedNumber(seedIndex), context: caller)
            guard found.map(\.id.rawValue) == [seeds[seedIndex]] else { throw ChildFailure(description: "seed \(seedIndex) not found: \(found)") }
        }
    }

    private func write(_ store: Store, _ context: AccessContext, _ caller: AccessContext) throws {
        let workers = parties
        var audited = 0
        for index in 0..<count {
            let id = try store.create(sampleSubject("p\(worker)-\(index)", phones: [ChildJob.workerNumber(worker, index)]), context: context)
            audited += 1
            let own = try store.callerID(number: ChildJob.workerNumber(worker, index), context: caller)
            guard own.map(\.id) == [id] else { throw ChildFailure(description: "own subject \(index) not found: \(own)") }
            audited += own.count
            // Another writer's subject of the same round: there or not yet, never anyone else.
            let neighbour = (worker + 1) % workers
            let other = try store.callerID(number: ChildJob.workerNumber(neighbour, index), context: caller)
            guard other.allSatisfy({ $0.name == "Zebedee Quixotic-p\(neighbour)-\(index)" }), other.count <= 1 else {
                throw ChildFailure(description: "writer \(neighbour)'s subject \(index) found as \(other)")
            }
            audited += other.count
            let seedIndex = (index * 7 + worker) % seeds.count
            let seed = try store.callerID(number: ChildJob.seedNumber(seedIndex), context: caller)
            guard seed.map(\.id.rawValue) == [seeds[seedIndex]] else { throw ChildFailure(description: "seed \(seedIndex) not found: \(seed)") }
            audited += 1
        }
        try String(audited).write(toFile: folder + "/tally-\(worker)", atomically: true, encoding: .utf8)
    }

    /// Serves until the rotation of this phase is done (and at least 10 rounds, at most 5,000): each
    /// round looks up and reads a seeded subject, creates a subject, updates it, and finds it.
    private func serve(_ store: Store, _ context: AccessContext, _ caller: AccessContext) throws {
        var round = 0
        var beforeDone = 0
        while round < 5_000 {
            let done = FileManager.default.fileExists(atPath: doneFile)
            if done && round >= 10 { break }
            if !done { beforeDone += 1 }
            let seedIndex = (round * 13 + worker) % seeds.count
            let found = try store.callerID(number: ChildJob.seedNumber(seedIndex), context: caller)
            guard found.map(\.id.rawValue) == [seeds[seedIndex]] else { throw ChildFailure(description: "seed \(seedIndex) not found: \(found)") }
            let read = try store.read(SubjectID(rawValue: seeds[seedIndex]), context: context)
            guard read.personal.name == "Zebedee Quixotic-seed\(seedIndex)" else { throw ChildFailure(description: "seed \(seedIndex) read wrong") }
            let id = try store.create(sampleSubject("s\(worker)-\(round)", phones: [ChildJob.workerNumber(worker, round)]), context: context)
            try store.update(id, personal: PersonalData(notes: "served \(worker)-\(round)"), context: context)
            let own = try store.callerID(number: ChildJob.workerNumber(worker, round), context: caller)
            guard own.map(\.id) == [id] else { throw ChildFailure(description: "own subject \(round) not found: \(own)") }
            round += 1
            // Written every round, so the parent knows what to look for even if a later round fails.
            try "\(round) \(beforeDone)".write(toFile: folder + "/rounds-\(worker)", atomically: true, encoding: .utf8)
        }
    }

    private func rotate(_ store: Store, _ context: AccessContext) throws {
        if role == .resumer {
            let pending = try store.rotationsInProgress().map(\.kind.rawValue)
            guard pending == [kind] else { throw ChildFailure(description: "expected a \(kind) rotation to resume, found \(pending)") }
        }
        for step in kind.split(separator: "+") {
            // A KEK rotation that saw a key written under the old KEK after its last batch asks to be run
            // again, as an administrator would.
            var attempt = 0
            while true {
                do {
                    let report: RotationReport
                    switch step {
                    case "kek": report = try store.rotateKeyEncryptionKey(batchSize: 10, context: context)
                    case "data": report = try store.rotateAllDataKeys(batchSize: 10, context: context)
                    default: report = try store.rotateIndexKey(batchSize: 10, context: context)
                    }
                    guard attempt > 0 || report.resumed == (role == .resumer) else { throw ChildFailure(description: "\(step): resumed = \(report.resumed)") }
                    break
                } catch StoreError.keyEncryptionKeyRotationOvertaken where attempt < 3 {
                    attempt += 1
                }
            }
        }
        guard FileManager.default.createFile(atPath: doneFile, contents: nil) else { throw ChildFailure(description: "cannot write \(doneFile)") }
    }
}
