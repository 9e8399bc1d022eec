import Foundation
@testable import Strongroom
import Testing

/// A re-import changes only what the file carries (issue #19): absent columns and empty cells keep the
/// stored values, and the last contact never moves backwards.
@Suite("Re-import keeps what the file does not carry")
struct PartialReimportTests {
    static let fullHeader = "external_id,kind,name,company,email,phone,mobile,work_phone,address,notes,source,owner,last_contacted,tier\n"
    static let full = fullHeader
        + "crm-1,contact,Ann Example,Acme,ann@example.org,020 7946 0958,07700 900123,,1 Road,first,Referral,alice,2026-12-01,gold\n"

    private func importing(_ csv: String, into store: Store) throws -> ImportReport {
        try CSVImporter(store: store).run(Array(csv.utf8), context: TestStore.admin)
    }

    /// Checks everything the partial re-import must have kept, on `store`.
    private func expectKept(in store: Store, name: String, notes: String) throws {
        let id = try store.resolve("crm-1")
        let subject = try store.read(id, context: TestStore.admin)
        #expect(subject.personal.name == name && subject.personal.notes == notes)
        #expect(subject.personal.company == "Acme" && subject.personal.emails == ["ann@example.org"])
        #expect(subject.personal.address == "1 Road" && subject.personal.customFields == ["tier": "gold"])
        #expect(subject.personal.phones?.map(\.label) == ["phone", "mobile"])
        #expect(subject.metadata.kind == .contact && subject.metadata.source == "Referral" && subject.metadata.owner == "alice")
        #expect(subject.metadata.lastContactedAt == Timestamp.parse("2026-12-01"))
        // The numbers' index entries are kept too: caller ID still finds the person by either number.
        #expect(try store.callerID(number: "+44 20 7946 0958", context: TestStore.caller).map(\.id) == [id])
        #expect(try store.callerID(number: "+44 7700 900123", context: TestStore.caller).map(\.id) == [id])
    }

    @Test("a re-import with only external_id,name,notes keeps phones (caller ID still finds), source, owner, last contact, custom fields",
          arguments: TestBackend.all)
    func absentColumnsKeep(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        _ = try importing(PartialReimportTests.full, into: test.store)
        let report = try importing("external_id,name,notes\ncrm-1,Ann Rectified,second\n", into: test.store)
        #expect(report.updated == 1 && report.created == 0 && report.rejected.isEmpty)
        try expectKept(in: test.store, name: "Ann Rectified", notes: "second")
        // Second act: a third import (empty cells in present columns keep too), then another process.
        let third = try importing("external_id,name,notes,source,owner,phone,last_contacted,tier\ncrm-1,Ann Rectified,third,,,,,\n",
                                  into: test.store)
        #expect(third.updated == 1 && third.rejected.isEmpty)
        let reopened = try test.reopen()
        try expectKept(in: reopened, name: "Ann Rectified", notes: "third")
        #expect(try reopened.count() == 1)
    }

    @Test("a file with some number columns or custom fields keeps the stored others; the new number is indexed, the replaced one not",
          arguments: TestBackend.all)
    func someNumbersAndCustomFields(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, region: "GB", hooks: [hook])
        defer { test.cleanUp() }
        _ = try importing(PartialReimportTests.full, into: test.store)
        let id = try test.store.resolve("crm-1")
        let report = try importing("external_id,mobile,shoe_size\ncrm-1,07700 900456,42\n", into: test.store)
        #expect(report.updated == 1 && report.rejected.isEmpty)
        let subject = try test.store.read(id, context: TestStore.admin)
        #expect(subject.personal.phones == [LabeledPhone(label: "phone", number: "020 7946 0958"),
                                            LabeledPhone(label: "mobile", number: "07700 900456")])
        #expect(subject.personal.customFields == ["tier": "gold", "shoe_size": "42"])
        // The stored lists were read through the audited decrypt path, for the import's purpose.
        #expect(hook.events.contains { $0.action == .decrypt && $0.subject == id && $0.detail?.contains("import") == true })
        // Second act: caller ID finds the kept and the new number, no longer the replaced one, also after a reopen.
        let reopened = try test.reopen()
        #expect(try reopened.callerID(number: "+44 20 7946 0958", context: TestStore.caller).map(\.id) == [id])
        #expect(try reopened.callerID(number: "+44 7700 900456", context: TestStore.caller).map(\.id) == [id])
        #expect(try reopened.callerID(number: "+44 7700 900123", context: TestStore.caller).isEmpty)
        // A restricted subject's row is refused as before (the read for the merge is refused, and audited).
        try reopened.setRestricted(true, id, context: TestStore.admin)
        let refused = try CSVImporter(store: reopened).run(Array("external_id,mobile\ncrm-1,07700 900789\n".utf8), context: TestStore.admin)
        #expect(refused.updated == 0 && refused.rejected.first?.reason.contains("restricted") == true)
    }

    @Test("a full re-import with an older last contact keeps the newer; a newer one moves it forward", arguments: TestBackend.all)
    func lastContactedNeverMovesBackwards(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        _ = try importing(PartialReimportTests.full, into: test.store)
        let older = PartialReimportTests.full.replacingOccurrences(of: "2026-12-01", with: "2026-05-03")
            .replacingOccurrences(of: "first", with: "older file")
        #expect(try importing(older, into: test.store).updated == 1)
        let id = try test.store.resolve("crm-1")
        var subject = try test.store.read(id, context: TestStore.admin)
        #expect(subject.metadata.lastContactedAt == Timestamp.parse("2026-12-01"))
        #expect(subject.personal.notes == "older file")
        // Every update path keeps it: `update` with older metadata, and a call recorded in the past.
        subject.metadata.lastContactedAt = Timestamp.parse("2025-01-01")
        try test.store.update(id, metadata: subject.metadata, personal: PersonalData(), context: TestStore.admin)
        _ = try test.store.recordCall(number: "+44 20 7946 0958", at: Timestamp.parse("2026-06-01")!, context: TestStore.caller)
        #expect(try test.store.read(id, fields: [.name], context: TestStore.admin).metadata.lastContactedAt == Timestamp.parse("2026-12-01"))
        // Second act: a newer file moves it forward, and that holds across a reopen.
        let newer = PartialReimportTests.full.replacingOccurrences(of: "2026-12-01", with: "2026-12-05")
        #expect(try importing(newer, into: test.store).updated == 1)
        let reopened = try test.reopen()
        #expect(try reopened.read(id, fields: [.name], context: TestStore.admin).metadata.lastContactedAt == Timestamp.parse("2026-12-05"))
        #expect(try reopened.callerID(number: "+44 20 7946 0958", context: TestStore.caller).first?.lastContactedAt
                == Timestamp.parse("2026-12-05"))
    }

    @Test("a subject stored by another opening between two batches of a new file: the next batch's write finds it in its transaction, writes nothing, and the batch merges over it and lands; nothing is written or audited twice",
          arguments: TestBackend.all)
    func storedBetweenBatchesMerges(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, region: "GB", hooks: [hook])
        defer { test.cleanUp() }
        let other = try test.reopen()
        var options = ImportOptions()
        options.batchSize = 2
        let file = "external_id,name,phone,tier\n" + (1...5).map { "crm-\($0),Person \($0),020 7946 000\($0),\n" }.joined()
        let importing = { (store: Store, between: @escaping (Int) -> Void) throws -> ImportReport in
            try CSVImporter(store: store, options: options).run(Array(file.utf8), context: TestStore.admin, progress: between)
        }
        // After the first batch, another opening stores crm-3, with a mobile and a custom field the file does not carry.
        var storedMeanwhile: SubjectID?
        let report = try importing(test.store) { done in
            guard done == 2 else { return }
            storedMeanwhile = try? other.write([NewSubject(metadata: SubjectMetadata(kind: .contact, externalID: "crm-3"),
                                                           personal: PersonalData(phones: [LabeledPhone(label: "mobile", number: "07700 900123")],
                                                                                  customFields: ["tier": "gold"]))],
                                               context: TestStore.admin).first?.id
        }
        let id = try #require(storedMeanwhile)
        #expect(report.created == 4 && report.updated == 1 && report.rejected.isEmpty)
        let subject = try test.store.read(id, context: TestStore.admin)
        #expect(subject.personal.name == "Person 3" && subject.personal.customFields == ["tier": "gold"])
        #expect(subject.personal.phones == [LabeledPhone(label: "mobile", number: "07700 900123"), LabeledPhone(label: "phone", number: "020 7946 0003")])
        // One entry per subject written: the stopped write recorded nothing, its batch's retry wrote crm-3 once.
        let writes = hook.events.filter { $0.action == .create || $0.action == .update }
        #expect(writes.filter { $0.action == .create }.count == 4 && writes.filter { $0.subject == id }.map(\.action) == [.update])
        // Second act: the same file again (every batch merges now), then another opening: five subjects, each
        // found by its number, crm-3 by its kept mobile too, and the audit log verifies.
        let again = try importing(test.store) { _ in }
        #expect(again.updated == 5 && again.created == 0 && again.rejected.isEmpty)
        let reopened = try test.reopen()
        #expect(try reopened.count() == 5)
        for row in 1...5 {
            #expect(try reopened.callerID(number: "+44 20 7946 000\(row)", context: TestStore.caller).map(\.id) == [try reopened.resolve("crm-\(row)")])
        }
        #expect(try reopened.callerID(number: "+44 7700 900123", context: TestStore.caller).map(\.id) == [id])
        #expect(try reopened.read(id, context: TestStore.admin).personal.customFields == ["tier": "gold"])
        #expect(try reopened.verifyAuditLog().problem == nil)
    }
}
