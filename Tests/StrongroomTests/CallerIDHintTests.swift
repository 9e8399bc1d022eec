import Foundation
@testable import Strongroom
import StrongroomTestSupport
import Testing

/// The caller-ID hint (`CallerIDHint`): on PostgreSQL a lookup is answered in one round trip from the
/// blind index's pairs kept in the process. Another instance of the store changes what the hint holds
/// behind its back; each test checks that the answer follows the data, never the hint, and that every
/// lookup is audited. On SQLite the same guarantees hold through its own hint (`SQLiteCallerIDHintTests`).
@Suite("Caller ID through the in-process hint", .serialized)
struct CallerIDHintTests {
    static let old = "+442079460958"
    static let new = "+447700900123"

    /// A store, a second instance of it (another service instance), and a subject holding `old`,
    /// looked up once by the first so that its hint is read.
    private func twoInstances(_ backend: TestBackend, hooks: [any AuditHook] = []) throws
        -> (test: TestStore, first: Store, other: Store, id: SubjectID) {
        let test = try TestStore(backend, region: "GB")
        let first = try test.reopen(hooks: hooks)
        let other = try test.reopen()
        let id = try other.create(sampleSubject("moved", phones: [Self.old]), context: TestStore.admin)
        #expect(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
        #expect(first.callerIDHint.withLock { $0 != nil } == (backend == .postgres), "the hint is read on PostgreSQL only")
        return (test, first, other, id)
    }

    @Test("a number changed or given to someone else by another instance: the stale hint never returns the wrong person",
          arguments: TestBackend.all)
    func staleHintAfterChange(backend: TestBackend) throws {
        let (test, first, other, id) = try twoInstances(backend)
        defer { first.close(); other.close(); test.cleanUp() }
        // Elsewhere: the person's number changes, and the old number goes to someone new.
        try other.update(id, personal: PersonalData(name: "Moved", phones: [LabeledPhone(label: "m", number: Self.new)]),
                         context: TestStore.admin)
        let newcomer = try other.create(sampleSubject("newcomer", phones: [Self.old]), context: TestStore.admin)
        for _ in 0..<3 {   // the first lookup finds the hint stale, the next ones use the refreshed hint
            let byOld = try first.callerID(number: Self.old, context: TestStore.caller)
            #expect(byOld.map(\.id) == [newcomer])
            #expect(byOld.first?.name == "Zebedee Quixotic-newcomer")
            let byNew = try first.callerID(number: Self.new, context: TestStore.caller)
            #expect(byNew.map(\.id) == [id])
            #expect(byNew.first?.name == "Moved")
        }
        // Second act: the number leaves the newcomer; no one holds it now, here or in a fresh instance.
        try other.update(newcomer, personal: PersonalData(name: "Gone", phones: []), context: TestStore.admin)
        #expect(try first.callerID(number: Self.old, context: TestStore.caller).isEmpty)
        let third = try test.reopen()
        defer { third.close() }
        #expect(try third.callerID(number: Self.old, context: TestStore.caller).isEmpty)
        #expect(try first.verifyAuditLog().verifiedEntries > 0)
    }

    @Test("a subject erased by another instance is never returned through the hint; others sharing the number still are",
          arguments: TestBackend.all)
    func erasedThroughHint(backend: TestBackend) throws {
        let (test, first, other, id) = try twoInstances(backend)
        defer { first.close(); other.close(); test.cleanUp() }
        let sharer = try other.create(sampleSubject("sharer", phones: [Self.old]), context: TestStore.admin)
        #expect(Set(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id)) == [id, sharer])
        _ = try other.erase(id, reason: "request", context: TestStore.admin)
        for _ in 0..<3 {
            #expect(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [sharer])
        }
        // Second act: the sharer erased too; nothing is found, and the log still verifies.
        _ = try other.erase(sharer, reason: "request", context: TestStore.admin)
        #expect(try first.callerID(number: Self.old, context: TestStore.caller).isEmpty)
        #expect(try first.callerID(number: Self.old, context: TestStore.caller).isEmpty)
        #expect(try first.verifyAuditLog().verifiedEntries > 0)
    }

    @Test("numbers no one holds, their tags shared with others' (short tags): no one, nothing audited; a number given to someone by another instance since is found",
          arguments: TestBackend.all)
    func missesAmongCollidingTags(backend: TestBackend) throws {
        // 16 planned numbers: tags of 8 bits, the fewest a store takes.
        let test = try TestStore(backend, region: "GB", plannedPhoneNumbers: 16)
        let first = try test.reopen()
        let other = try test.reopen()
        defer { first.close(); other.close(); test.cleanUp() }
        // 12 people with 30 numbers each: 360 numbers over tags of 8 bits, so about three tags in four hold
        // someone's (fewer than two of the twelve misses sharing one: about two runs in a million).
        let numbers = (0..<12).map { person in (0..<30).map { String(format: "+447700%06d", 900_000 + 100 * person + $0) } }
        let held = numbers.map { $0[0] }
        let absent = (0..<12).map { String(format: "+447700%06d", 902_000 + $0) }
        var holders: [String: SubjectID] = [:]
        for (person, phones) in numbers.enumerated() {
            holders[phones[0]] = try other.create(sampleSubject("held-\(person)", phones: phones), context: TestStore.admin)
        }
        for number in held { #expect(try first.callerID(number: number, context: TestStore.caller).map(\.id) == [holders[number]!]) }
        if backend == .postgres {
            let index = try #require(first.keyring.keys.phoneIndexes.first)
            let tags = try absent.map { try index.tags(for: $0).truncated }
            let shared = tags.filter { tag in !(first.callerIDHint.withLock { $0?.entries(under: tag) } ?? []).isEmpty }
            #expect(shared.count >= 2, "the misses' tags hold others' numbers in the hint: \(shared.count) of \(tags.count)")
        }
        let lines = try auditLines(of: first)
        for _ in 0..<2 {
            for number in absent { #expect(try first.callerID(number: number, context: TestStore.caller).isEmpty) }
        }
        #expect(try auditLines(of: first) == lines, "a miss decrypts nothing and appends nothing")
        // Second act: another instance gives one of them to a newcomer; the first finds the newcomer at once
        // and again, and the other numbers still hold no one.
        let newcomer = try other.create(sampleSubject("newcomer", phones: [absent[3]]), context: TestStore.admin)
        for _ in 0..<2 {
            #expect(try first.callerID(number: absent[3], context: TestStore.caller).map(\.id) == [newcomer])
            for number in absent where number != absent[3] { #expect(try first.callerID(number: number, context: TestStore.caller).isEmpty) }
            for number in held { #expect(try first.callerID(number: number, context: TestStore.caller).map(\.id) == [holders[number]!]) }
        }
        // Third: erased there, gone here; the chain verifies.
        _ = try other.erase(newcomer, reason: "request", context: TestStore.admin)
        #expect(try first.callerID(number: absent[3], context: TestStore.caller).isEmpty)
        #expect(try first.callerID(number: absent[3], context: TestStore.caller).isEmpty)
        #expect(try first.verifyAuditLog().verifiedEntries > 0)
    }

    @Test("every lookup answered through the hint has its audit entry, chained with another instance's entries",
          arguments: TestBackend.all)
    func everyHintHitAudited(backend: TestBackend) throws {
        let hook = RecordingHook()
        let (test, first, other, id) = try twoInstances(backend, hooks: [hook])
        defer { first.close(); other.close(); test.cleanUp() }
        let before = try auditLines(of: first)
        for round in 0..<5 {
            #expect(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
            #expect(try first.callerID(number: "+33612345678", context: TestStore.caller).isEmpty)   // a miss: nothing decrypted
            // Another instance appends between the lookups: the hinted append chains after its entries.
            _ = try other.read(id, context: TestStore.admin)
            #expect(try auditLines(of: first) == before + 2 * (round + 1))
        }
        let decrypts = hook.events.filter { $0.action == .decrypt && $0.subject == id && $0.purpose == TestStore.caller.purpose.rawValue }
        #expect(decrypts.count == 6 && decrypts.allSatisfy { $0.outcome == .ok && $0.fields == [.name] })
        // Second act: a fresh instance verifies the whole chain, and still answers.
        let third = try test.reopen()
        defer { third.close() }
        #expect(try third.verifyAuditLog().verifiedEntries > 0)
        #expect(try third.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
    }

    @Test("a subject restricted by another instance is refused, and audited as refused, as on the full path",
          arguments: TestBackend.all)
    func restrictedThroughHint(backend: TestBackend) throws {
        let hook = RecordingHook()
        let (test, first, other, id) = try twoInstances(backend, hooks: [hook])
        defer { first.close(); other.close(); test.cleanUp() }
        try other.setRestricted(true, id, context: TestStore.admin)
        #expect(try first.callerID(number: Self.old, context: TestStore.caller).isEmpty)
        #expect(try first.callerID(number: Self.old, context: TestStore.caller).isEmpty)
        let refused = hook.events.filter { $0.subject == id && $0.outcome == .refused }
        #expect(refused.count == 2)
        // Second act: lifted, the person is found again, through the hint, with an ok entry.
        try other.setRestricted(false, id, context: TestStore.admin)
        #expect(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
        #expect(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
        #expect(hook.events.last?.outcome == .ok && hook.events.last?.subject == id)
        #expect(try first.verifyAuditLog().verifiedEntries > 0)
    }

    @Test("a holder's check altered in the database (same subject, other bytes) is checked again, never given the verdict the hint's bytes had",
          arguments: TestBackend.all.filter { $0 == .postgres })
    func alteredCheckCheckedAgain(backend: TestBackend) throws {
        let (test, first, other, id) = try twoInstances(backend)
        defer { first.close(); other.close(); test.cleanUp() }
        let raw = try test.database(.data)
        // One bit of the holder's check flipped (a corrupted or tampered row); flipped again, it is restored.
        let flip = "UPDATE phone_index SET check_mac = set_byte(check_mac, 0, get_byte(check_mac, 0) # 1) WHERE subject_id = ?"
        try raw.run(flip, [.integer(id.rawValue)])
        // The first lookup finds the row changed under the hint's holder; the next, the hint refreshed with it.
        for _ in 0..<2 {
            #expect(try first.callerID(number: Self.old, context: TestStore.caller).isEmpty)
        }
        // Second act: the check restored, the holder is found again, through this instance and a fresh one.
        try raw.run(flip, [.integer(id.rawValue)])
        for _ in 0..<2 {
            #expect(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
        }
        let third = try test.reopen()
        defer { third.close() }
        #expect(try third.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
        #expect(try third.verifyAuditLog().isIntact)
    }

    @Test("with the hint fresh, the one statement that reads the tag's rows appends the entries: the hint's fingerprint of the rows is the server's",
          arguments: TestBackend.all.filter { $0 == .postgres })
    func freshHintAppendsInTheRead(backend: TestBackend) throws {
        let (test, first, other, id) = try twoInstances(backend)
        defer { first.close(); other.close(); test.cleanUp() }
        // Two subjects under one tag (the same number), and one of them under a second number too.
        let sharer = try other.create(sampleSubject("sharer", phones: [Self.old, Self.new]), context: TestStore.admin)
        for number in [Self.old, Self.new] {
            // Looked up first: a tag whose rows changed since the hint was read is refreshed.
            #expect(Set(try first.callerID(number: number, context: TestStore.caller).map(\.id)) == (number == Self.old ? [id, sharer] : [sharer]))
            let index = try #require(first.keyring.keys.phoneIndexes.first)
            let tags = try index.tags(for: number)
            let known = try #require(first.callerIDHint.withLock { $0?.entries(under: tags.truncated) })
            try #require(known.count == (number == Self.old ? 2 : 1))
            let read = CallerIDHint.auditedRead([.int(Int(index.version)), .integer(tags.truncated), .blob(CallerIDHint.fingerprint(known))])
            let event = AuditEvent(.decrypt, TestStore.caller, subject: sharer, fields: Store.nameOnly, time: Date())
            var recordedRows: [SubjectID] = []
            // `as Bool?`: the outcome is unwrapped (nil: no entries given), not taken for the condition.
            let recorded = try #require(first.auditTrail.record([event], with: read) { recordedRows.append(CallerCandidate($0).id) } as Bool?)
            #expect(recorded, "the server's rows under the tag differ from the hint's fingerprint")
            #expect(Set(recordedRows) == (number == Self.old ? [id, sharer] : [sharer]))
            // A fingerprint one byte off appends nothing, and still returns the rows.
            var wrong = CallerIDHint.fingerprint(known)
            wrong[wrong.count - 1] ^= 1
            var refusedRows: [SubjectID] = []
            let refused = try #require(first.auditTrail.record([event], with: CallerIDHint.auditedRead(
                [.int(Int(index.version)), .integer(tags.truncated), .blob(wrong)])) { refusedRows.append(CallerCandidate($0).id) } as Bool?)
            #expect(!refused && refusedRows.count == known.count)
        }
        // Second act: lookups go on through the hint, and a fresh instance verifies the chain.
        #expect(try first.callerID(number: Self.new, context: TestStore.caller).map(\.id) == [sharer])
        let third = try test.reopen()
        defer { third.close() }
        #expect(try third.verifyAuditLog().isIntact)
    }

    @Test("entries cut off the log's end under an instance answering through the hint: its next lookups append nothing and return no name until the gap is acknowledged",
          arguments: TestBackend.all.filter { $0 == .postgres })
    func cutTailRefusedThroughHint(backend: TestBackend) throws {
        let (test, first, other, id) = try twoInstances(backend)
        defer { first.close(); other.close(); test.cleanUp() }
        for _ in 0..<3 { #expect(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id]) }
        first.auditTrail.flushHead()
        let data = try test.database(.data)
        let end = try #require(try data.scalarInteger("SELECT max(sequence) FROM audit_log"))
        try data.run("DELETE FROM audit_log WHERE sequence > ?", [.integer(end - 2)])
        let gap = AuditGap(kind: .cut, expected: UInt64(end), found: UInt64(end - 2))
        // The instance whose last entry is gone (its statement finds no predecessor), and a fresh one
        // (it reads the end back): no name, no entry.
        let fresh = try test.reopen()
        for store in [first, fresh] {
            for _ in 0..<2 {
                #expect { _ = try store.callerID(number: Self.old, context: TestStore.caller) } throws: { error in
                    guard case StoreError.auditGap(let found) = error else { return false }
                    return found == gap
                }
            }
        }
        fresh.close()
        #expect(try auditLines(of: first) == Int(end - 2), "nothing chained onto the cut log")
        // Second act: acknowledged, lookups go on through the hint, an entry each, and a reopened store
        // verifies everything but the acknowledged gap.
        #expect(try first.acknowledgeAuditGap(reason: "incident 7", context: TestStore.admin) == gap)
        let acknowledged = try auditLines(of: first)
        for round in 1...3 {
            #expect(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
            #expect(try auditLines(of: first) == acknowledged + round)
        }
        let third = try test.reopen()
        defer { third.close() }
        let verification = try third.verifyAuditLog()
        #expect(verification.problem == nil && verification.isIntactExceptAcknowledgedGaps && !verification.isIntact)
        #expect(try third.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
    }

    @Test("entries cut off the end that another instance never saw: its appends refill the cut numbers for at most a second, then its next save of the head finds the signed entry gone and it refuses until the gap is acknowledged; verification reports the cut",
          arguments: TestBackend.all.filter { $0 == .postgres })
    func cutUnseenByAnotherInstance(backend: TestBackend) throws {
        let (test, first, other, id) = try twoInstances(backend)
        defer { first.close(); other.close(); test.cleanUp() }
        // `other` knows the log up to its own lookup; `first` appends four more and signs the last.
        #expect(try other.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
        let data = try test.database(.data)
        let known = try #require(try data.scalarInteger("SELECT max(sequence) FROM audit_log"))
        for _ in 0..<4 { #expect(try first.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id]) }
        first.auditTrail.flushHead()
        let signed = try #require(try data.scalarInteger("SELECT max(sequence) FROM audit_log"))
        // Everything `other` never saw is cut: its entry is still the last, so its next append finds
        // its predecessor and takes the first cut number.
        try data.run("DELETE FROM audit_log WHERE sequence > ?", [.integer(known)])
        #expect(try other.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
        // Its head save (due within the second; made now) finds the signed entry gone: no head moved,
        // and its next lookups refuse, as a fresh instance's do.
        other.auditTrail.flushHead()
        let gap = AuditGap(kind: .cut, expected: UInt64(signed), found: UInt64(known + 1))
        let fresh = try test.reopen()
        for store in [other, fresh, other] {
            #expect { _ = try store.callerID(number: Self.old, context: TestStore.caller) } throws: { error in
                guard case StoreError.auditGap(let found) = error else { return false }
                return found == gap
            }
        }
        fresh.close()
        #expect(try auditLines(of: other) == Int(known + 1), "nothing more chained onto the refilled log")
        let verification = try test.reopen().verifyAuditLog()
        #expect(!verification.isIntact && !verification.isIntactExceptAcknowledgedGaps)
        // Second act: acknowledged, lookups go on from both instances, and a reopened store verifies
        // everything but the acknowledged gap.
        #expect(try other.acknowledgeAuditGap(reason: "incident 8", context: TestStore.admin) == gap)
        for store in [other, first, other] {
            #expect(try store.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
        }
        for store in [other, first] { store.auditTrail.flushHead() }
        let reopened = try test.reopen()
        defer { reopened.close() }
        let after = try reopened.verifyAuditLog()
        #expect(after.problem == nil && after.isIntactExceptAcknowledgedGaps && !after.isIntact)
        #expect(try reopened.callerID(number: Self.old, context: TestStore.caller).map(\.id) == [id])
    }

    /// The lines of the store's audit log.
    private func auditLines(of store: Store) throws -> Int {
        var count = 0
        try store.auditTrail.forEachLine { _, _, _ in count += 1 }
        return count
    }
}
