import Foundation
@testable import Strongroom
import StrongroomStorage
import Testing

/// Retention: subjects untouched for longer than a period are erased, each with its receipt.
@Suite("Retention: erase what was untouched too long, with receipts")
struct RetentionTests {
    static let reason = "retention: untouched for 2y"
    /// The cutoff of the tests (a whole millisecond).
    static let cutoff = Date(timeIntervalSince1970: 1_750_000_000)

    /// A subject last contacted at `lastContacted` (nil: never).
    static func subject(_ tag: String, kind: SubjectKind = .contact, lastContacted: Date?) -> NewSubject {
        var subject = sampleSubject(tag, kind: kind, phones: [])
        subject.metadata.lastContactedAt = lastContacted
        return subject
    }

    @Test("the boundaries: exactly at the cutoff is kept, a millisecond before is erased; never contacted goes by creation; restricted skipped and counted; kind filters",
          arguments: TestBackend.all)
    func boundaries(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let store = test.store
        let atCutoff = try store.create(Self.subject("at", lastContacted: Self.cutoff), context: TestStore.admin)
        let before = try store.create(Self.subject("before", lastContacted: Self.cutoff.addingTimeInterval(-0.001)), context: TestStore.admin)
        let oldLead = try store.create(Self.subject("lead", kind: .lead, lastContacted: Self.cutoff.addingTimeInterval(-86_400)),
                                       context: TestStore.admin)
        let restricted = try store.create(Self.subject("restricted", lastContacted: Self.cutoff.addingTimeInterval(-86_400)),
                                          context: TestStore.admin)
        try store.setRestricted(true, restricted, context: TestStore.admin)
        let neverContacted = try store.create(Self.subject("never", kind: .lead, lastContacted: nil), context: TestStore.admin)
        let created = try #require(try store.list().first { $0.id == neverContacted }).createdAt

        // Contacts only, at the fixed cutoff: the one a millisecond before goes; the lead waits.
        let contacts = try store.applyRetention(untouchedBefore: Self.cutoff, kind: .contact, reason: Self.reason, context: TestStore.admin)
        #expect(contacts.subjects.map(\.id) == [before] && contacts.receipts.map(\.id) == [before])
        #expect(contacts.skippedRestricted == [restricted])
        #expect(try store.verifyErasureReceipt(contacts.receipts[0]).isVerified && contacts.receipts[0].reason == Self.reason)
        #expect(try store.count() == 4)

        // Leads: never contacted, its creation counts, exactly as a last contact would.
        let keptByCreation = try store.applyRetention(untouchedBefore: created, kind: .lead, reason: Self.reason, context: TestStore.admin)
        #expect(keptByCreation.receipts.map(\.id) == [oldLead])
        let afterCreation = try store.applyRetention(untouchedBefore: created.addingTimeInterval(0.002), kind: .lead, reason: Self.reason,
                                                     context: TestStore.admin)
        #expect(afterCreation.receipts.map(\.id) == [neverContacted])
        #expect(afterCreation.skippedRestricted.isEmpty)
        // Second act: what is left is the subject at the cutoff and the restricted one, both readable.
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.list().map(\.id) == [atCutoff, restricted])
        #expect(try reopened.read(atCutoff, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-at")
    }

    @Test("--dry-run lists what would be erased and changes nothing", arguments: TestBackend.all)
    func dryRun(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let old = try test.store.create(Self.subject("old", lastContacted: Self.cutoff.addingTimeInterval(-1)), context: TestStore.admin)
        _ = try test.store.create(Self.subject("new", lastContacted: Self.cutoff.addingTimeInterval(1)), context: TestStore.admin)
        let entries = try Self.auditEntryCount(test.store)
        let report = try test.store.applyRetention(untouchedBefore: Self.cutoff, reason: Self.reason, dryRun: true, context: TestStore.admin)
        #expect(report.dryRun && report.subjects.map(\.id) == [old] && report.receipts.isEmpty)
        #expect(report.subjects[0].metadata.externalID == "ext-old")
        #expect(try test.store.count() == 2)
        #expect(try Self.auditEntryCount(test.store) == entries)
        #expect { try test.store.erasureReceipt(for: "ext-old") } throws: { _ in true }
        // Second act: the real run erases exactly what the dry run listed.
        #expect(try test.store.applyRetention(untouchedBefore: Self.cutoff, reason: Self.reason, context: TestStore.admin).receipts.map(\.id) == [old])
    }

    @Test("a run interrupted after two erasures leaves them complete; the next run, from another opening, finishes the job",
          arguments: TestBackend.all)
    func resumes(backend: TestBackend) throws {
        let test = try TestStore(backend) { configuration in
            configuration.faultInjection = { point, count in
                if point == "retention.erased" && count == 2 { throw CancellationError() }
            }
        }
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<5).map { Self.subject("r\($0)", lastContacted: Self.cutoff.addingTimeInterval(-60)) },
                                       context: TestStore.admin).map(\.id)
        #expect(throws: StoreError.self) {
            try test.store.applyRetention(untouchedBefore: Self.cutoff, reason: Self.reason, context: TestStore.admin)
        }
        #expect(try test.store.count() == 3)
        let reopened = try test.reopen()
        defer { reopened.close() }
        let rest = try reopened.applyRetention(untouchedBefore: Self.cutoff, reason: Self.reason, context: TestStore.admin)
        #expect(rest.receipts.map(\.id) == Array(ids[2...]))
        #expect(try reopened.count() == 0)
        for id in ids {
            #expect(try reopened.verifyErasureReceipt(try reopened.erasureReceipt(for: String(id.rawValue))).isVerified)
        }
        #expect(try reopened.applyRetention(untouchedBefore: Self.cutoff, reason: Self.reason, context: TestStore.admin).subjects.isEmpty)
    }

    @Test("a subject who calls in while the run erases others is kept: each erasure checks the cutoff again", arguments: TestBackend.all)
    func contactedDuringTheRun(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let store = test.store
        var subjects = (0..<3).map { Self.subject("c\($0)", lastContacted: Self.cutoff.addingTimeInterval(-60)) }
        subjects[2].personal.phones = [LabeledPhone(label: "mobile", number: "+44 20 7946 0977")]
        let ids = try store.write(subjects, context: TestStore.admin).map(\.id)
        // After the first erasure, the third subject calls (the run selected it before).
        let report = try store.applyRetention(untouchedBefore: Self.cutoff, reason: Self.reason, context: TestStore.admin) { done, _ in
            if done == 1 { _ = try? store.recordCall(number: "+44 20 7946 0977", at: Self.cutoff, context: TestStore.caller) }
        }
        #expect(report.subjects.map(\.id) == ids && report.receipts.map(\.id) == Array(ids[..<2]))
        #expect(report.skippedContactedSince == [ids[2]])
        // Second act: another opening finds the caller, and a second run erases nothing more.
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.callerID(number: "+44 20 7946 0977", context: TestStore.caller).map(\.id) == [ids[2]])
        #expect(try reopened.applyRetention(untouchedBefore: Self.cutoff, reason: Self.reason, context: TestStore.admin).subjects.isEmpty)
    }

    @Test("retention periods: 90d, 24m, 2y are read; anything else is refused; months and years go by the calendar")
    func periods() throws {
        #expect(RetentionPeriod("90d")?.description == "90d")
        #expect(RetentionPeriod("24m")?.unit == .months)
        #expect(RetentionPeriod("2y")?.count == 2)
        for bad in ["", "d", "90", "0d", "-1d", "1w", "1.5y", "10000d", " 2y", "2Y", "٣d"] { #expect(RetentionPeriod(bad) == nil, "\(bad)") }
        let march31 = try #require(Timestamp.parse("2026-03-31T12:00:00Z"))
        #expect(RetentionPeriod("1m")!.cutoff(before: march31) == Timestamp.parse("2026-02-28T12:00:00Z"))
        #expect(RetentionPeriod("24m")!.cutoff(before: march31) == Timestamp.parse("2024-03-31T12:00:00Z"))
        #expect(RetentionPeriod("2y")!.cutoff(before: march31) == Timestamp.parse("2024-03-31T12:00:00Z"))
        #expect(RetentionPeriod("90d")!.cutoff(before: march31) == Timestamp.parse("2025-12-31T12:00:00Z"))
    }

    static func auditEntryCount(_ store: Store) throws -> Int {
        var count = 0
        try store.auditEntries { _, _ in count += 1 }
        return count
    }
}
