import Foundation
import Strongroom
import StrongroomTestSupport
import Testing

@Suite("Caller ID through the blind index")
struct CallerIDTests {
    @Test("every incoming call of the sample finds its person, among 992 imported leads and contacts", arguments: TestBackend.all)
    func sampleCalls(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let report = try CSVImporter(store: test.store).run([UInt8](try Fixture.data("contacts-sample.csv")), context: TestStore.admin)
        #expect(report.created == 992 && report.rejected.isEmpty && report.unindexed.isEmpty)
        let calls = try csvRows("contacts-sample.calls.csv")
        #expect(calls.count == 1713)
        for call in calls {
            let matches = try test.store.callerID(number: call["incoming"]!, region: call["region"], context: TestStore.caller)
            #expect(matches.contains { $0.externalID == call["external_id"] && $0.name == call["expected_name"] },
                    "\(call["incoming"]!) did not find \(call["external_id"]!)")
        }
    }

    @Test("truncation collisions never return the wrong person (8-bit tags, 600 numbers)", arguments: TestBackend.all)
    func collisions(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB", plannedPhoneNumbers: 16)
        defer { test.cleanUp() }
        #expect(try test.store.keyStatus().phoneIndex.bits == 8)
        var owners: [String: SubjectID] = [:]
        for index in 0..<600 {
            let number = "+4477009\(String(format: "%05d", index))"
            owners[number] = try test.store.create(NewSubject(metadata: SubjectMetadata(kind: .lead),
                                                              personal: PersonalData(name: "Person \(index)", phones: [LabeledPhone(label: "m", number: number)])),
                                                   context: TestStore.admin)
        }
        for (number, owner) in owners {
            #expect(try test.store.callerID(number: number, context: TestStore.caller).map(\.id) == [owner])
        }
        for index in 600..<700 {
            #expect(try test.store.callerID(number: "+4477009\(String(format: "%05d", index))", context: TestStore.caller).isEmpty)
        }
    }

    @Test("a number written in any style finds the person", arguments: TestBackend.all, [
        "+44 20 7946 0958", "020 7946 0958", "0044 20 7946 0958", "+44 (0)20 7946 0958", "+442079460958", "020-7946-0958 ext. 12",
        "＋４４ ２０ ７９４６ ０９５８",
    ])
    func styles(backend: TestBackend, number: String) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("st", phones: ["(020) 7946 0958"]), context: TestStore.admin)
        #expect(try test.store.callerID(number: number, context: TestStore.caller).map(\.id) == [id])
    }

    @Test("an answer shows the person's stored kind, ids, name, source and last contact, and decrypts only the name", arguments: TestBackend.all)
    func answerColumns(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, region: "GB", hooks: [hook])
        defer { test.cleanUp() }
        let leadID = try test.store.create(sampleSubject("lead", kind: .lead, phones: ["+44 20 7946 0001"]), context: TestStore.admin)
        var contact = sampleSubject("contact", phones: ["+44 20 7946 0002"])
        contact.metadata.source = "Trade show"
        let contactID = try test.store.create(contact, context: TestStore.admin)
        for (number, id, kind, tag, source) in [("020 7946 0001", leadID, SubjectKind.lead, "lead", "Website form"),
                                                ("020 7946 0002", contactID, .contact, "contact", "Trade show")] {
            let matches = try test.store.callerID(number: number, context: TestStore.caller)
            #expect(matches.count == 1)
            let match = try #require(matches.first)
            #expect(match.id == id && match.kind == kind && match.externalID == "ext-\(tag)" && match.name == "Zebedee Quixotic-\(tag)")
            #expect(match.source == source && match.lastContactedAt == Date(timeIntervalSince1970: 1_790_000_000))
        }
        let decrypts = hook.events.filter { $0.action == .decrypt && $0.purpose == TestStore.caller.purpose.rawValue }
        #expect(decrypts.map(\.subject) == [leadID, contactID] && decrypts.allSatisfy { $0.fields == [.name] && $0.outcome == .ok })
    }

    @Test("several matches come newest activity first; erased subjects are never returned", arguments: TestBackend.all)
    func orderAndErasure(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        var older = sampleSubject("old")
        older.metadata.lastContactedAt = Date(timeIntervalSince1970: 1_700_000_000)
        var newer = sampleSubject("new")
        newer.metadata.lastContactedAt = Date(timeIntervalSince1970: 1_800_000_000)
        let olderID = try test.store.create(older, context: TestStore.admin)
        let newerID = try test.store.create(newer, context: TestStore.admin)
        #expect(try test.store.callerID(number: "+442079460958", context: TestStore.caller).map(\.id) == [newerID, olderID])
        try test.store.erase(newerID, reason: "test", context: TestStore.admin)
        #expect(try test.store.callerID(number: "+442079460958", context: TestStore.caller).map(\.id) == [olderID])
    }

    @Test("an invalid number is a typed error, not a match", arguments: TestBackend.all)
    func invalidNumber(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        #expect {
            try test.store.callerID(number: "12", context: TestStore.caller)
        } throws: { error in
            if case StoreError.invalidPhoneNumber = error { return true }
            return false
        }
    }

    @Test("a call from an unknown number makes a lead; logging the same call again changes nothing", arguments: TestBackend.all)
    func recordCall(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let time = Date(timeIntervalSince1970: 1_790_000_000)
        let first = try test.store.recordCall(number: "07700 900123", at: time, context: TestStore.caller)
        #expect(first.createdLead && first.logged)
        #expect(first.caller.source == "Call log" && first.caller.kind == .lead)
        let again = try test.store.recordCall(number: "+447700900123", at: time, context: TestStore.caller)
        #expect(!again.createdLead && !again.logged && again.caller.id == first.caller.id)
        #expect(try test.store.count() == 1)
        let later = try test.store.recordCall(number: "+447700900123", at: time.addingTimeInterval(60), direction: .outgoing,
                                              context: TestStore.caller)
        #expect(later.caller.lastContactedAt == time.addingTimeInterval(60))
        let earlier = try test.store.recordCall(number: "+447700900123", at: time.addingTimeInterval(-600), context: TestStore.caller)
        #expect(earlier.logged && earlier.caller.lastContactedAt == time.addingTimeInterval(60))
        let export = try test.store.export(first.caller.id, context: TestStore.admin)
        #expect(export.calls.count == 3)
    }
}

@Suite("Caller ID over a restored data file")
struct CallerIDRestoreTests {
    @Test("an erased subject's row restored from a backup is never returned, and others sharing the number still are", arguments: TestBackend.all)
    func restoredErasedRow(backend: TestBackend) throws {
        let test = try TestStore(backend, region: "GB")
        defer { test.cleanUp() }
        let gone = try test.store.create(sampleSubject("gone"), context: TestStore.admin)
        let kept = try test.store.create(sampleSubject("kept"), context: TestStore.admin)
        let fileManager = FileManager.default
        let restoredFolder = test.directory + "-restored"
        defer { try? fileManager.removeItem(atPath: restoredFolder) }
        let restored: Store
        switch backend {
        case .sqlite:
            try fileManager.createDirectory(atPath: restoredFolder, withIntermediateDirectories: true)
            // The data file (and its WAL) as backed up before the erasure…
            for name in ["data.sqlite", "data.sqlite-wal"] where fileManager.fileExists(atPath: test.directory + "/" + name) {
                try fileManager.copyItem(atPath: test.directory + "/" + name, toPath: restoredFolder + "/" + name)
            }
            try test.store.erase(gone, reason: "Art. 17", context: TestStore.admin)
            test.store.close()
            // …beside today's key database.
            for name in ["keys.sqlite", "keys.sqlite-wal"] where fileManager.fileExists(atPath: test.directory + "/" + name) {
                try fileManager.copyItem(atPath: test.directory + "/" + name, toPath: restoredFolder + "/" + name)
            }
            restored = try Store.open(at: restoredFolder, keyProvider: StaticKeyProvider(key: test.key))
        case .postgres:
            // The subject's rows (subject and blind-index entries) copied out with SQL before the erasure…
            let raw = try test.database(.data)
            try raw.run("CREATE TEMP TABLE saved_subjects AS SELECT * FROM subjects WHERE id = ?", [.integer(gone.rawValue)])
            try raw.run("CREATE TEMP TABLE saved_phone_index AS SELECT * FROM phone_index WHERE subject_id = ?", [.integer(gone.rawValue)])
            #expect(try raw.scalarInteger("SELECT count(*) FROM saved_phone_index") == 1, "the backup must hold the subject's index entry")
            try test.store.erase(gone, reason: "Art. 17", context: TestStore.admin)
            test.store.close()
            #expect(try raw.scalarInteger("SELECT count(*) FROM subjects WHERE id = ?", [.integer(gone.rawValue)]) == 0)
            // …and inserted back into today's data schema, beside today's key schema.
            try raw.execute("""
                INSERT INTO subjects SELECT * FROM saved_subjects;
                INSERT INTO phone_index SELECT * FROM saved_phone_index
                """)
            restored = try test.reopen()
        }
        defer { restored.close() }
        if backend == .sqlite {
            // The folder was restored without today's audit log, which ends before today's signed
            // head: the store refuses until the gap is recorded.
            #expect(throws: StoreError.self) { try restored.callerID(number: "+442079460958", context: TestStore.caller) }
            try restored.acknowledgeAuditGap(reason: "data restored from a backup", context: TestStore.admin)
        }
        #expect(try restored.count() == 2, "the restored data holds the erased subject's row")
        #expect(try restored.callerID(number: "+442079460958", context: TestStore.caller).map(\.id) == [kept])
    }
}
