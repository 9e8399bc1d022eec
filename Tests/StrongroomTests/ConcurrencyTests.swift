import Foundation
import Strongroom
import Testing

@Suite("Concurrent readers and writers")
struct ConcurrencyTests {
    @Test("8 tasks writing, updating and reading at once: no lost write, no torn record, one intact audit chain", arguments: TestBackend.all)
    func concurrentTasks(backend: TestBackend) async throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let store = test.store
        let ids = try await withThrowingTaskGroup(of: [SubjectID].self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var mine: [SubjectID] = []
                    for index in 0..<15 {
                        let id = try store.create(sampleSubject("w\(worker)-\(index)", phones: ["+44 7700 9\(worker)\(String(format: "%04d", index))"]),
                                                  context: TestStore.admin)
                        try store.update(id, personal: PersonalData(notes: "final \(worker)-\(index)"), context: TestStore.admin)
                        let read = try store.read(id, fields: [.name, .notes], context: TestStore.admin)
                        guard read.personal.notes == "final \(worker)-\(index)", read.personal.name == "Zebedee Quixotic-w\(worker)-\(index)" else {
                            throw ChildFailure(description: "torn record \(id)")
                        }
                        mine.append(id)
                    }
                    return mine
                }
            }
            var all: [SubjectID] = []
            for try await batch in group { all += batch }
            return all
        }
        #expect(Set(ids).count == 120)
        #expect(try store.count() == 120)
        for worker in 0..<8 {
            let matches = try store.callerID(number: "+44 7700 9\(worker)0007", context: TestStore.caller)
            #expect(matches.map(\.name) == ["Zebedee Quixotic-w\(worker)-7"])
        }
        let verification = try store.verifyAuditLog()
        #expect(verification.isIntact)
        #expect(verification.verifiedEntries == 1 + 120 * 3 + 8)
        try expectAuditTable(test, entries: verification.verifiedEntries)
    }

    @Test("two store instances on one folder (two processes' view) keep one audit chain", arguments: TestBackend.all)
    func twoInstances(backend: TestBackend) async throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let other = try test.reopen()
        let id = try test.store.create(sampleSubject("two"), context: TestStore.admin)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for store in [test.store, other] {
                group.addTask {
                    for _ in 0..<100 { _ = try store.read(id, fields: [.name], context: TestStore.admin) }
                }
            }
            try await group.waitForAll()
        }
        let verification = try other.verifyAuditLog()
        #expect(verification.isIntact, "\(String(describing: verification.problem))")
        #expect(verification.verifiedEntries == 202)
        try expectAuditTable(test, entries: verification.verifiedEntries)
    }

    /// PostgreSQL: the audit table holds exactly the entries 1…n, one row each (no fork, no gap); a
    /// folder store's segment files are covered by the verification alone.
    func expectAuditTable(_ test: TestStore, entries: Int) throws {
        guard test.backend == .postgres else { return }
        let run = try test.database(.data).firstRow("SELECT count(*), min(sequence), max(sequence) FROM audit_log") {
            [$0.int64(0), $0.int64(1), $0.int64(2)]
        }
        #expect(run == [Int64(entries), 1, Int64(entries)], "audit_log (count, min, max)")
    }
}
