import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Testing

@Suite("Store: records, keys and access")
struct StoreTests {
    @Test("a subject round-trips through encryption, all fields and partial reads", arguments: TestBackend.all)
    func roundTrip(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let subject = sampleSubject("rt", phones: ["+44 20 7946 0958", "07400 123538"])
        let id = try test.store.create(subject, context: TestStore.admin)
        let read = try test.store.read(id, context: TestStore.admin)
        #expect(read.personal == subject.personal)
        #expect(read.metadata == subject.metadata)
        let partial = try test.store.read(id, fields: [.name], context: TestStore.admin)
        #expect(partial.personal.name == subject.personal.name)
        #expect(partial.personal.emails == nil && partial.personal.phones == nil)
    }

    @Test("property: random personal data round-trips", arguments: TestBackend.all, 0..<25)
    func randomRoundTrip(backend: TestBackend, seed: Int) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        var generator = SystemRandomNumberGenerator()
        func text() -> String {
            let alphabet = Array("aé漢字 ,\"\n\t0123456789ßΩ😀'") + ["\u{0}"]
            return String((0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
        }
        let personal = PersonalData(
            name: text(), company: Bool.random() ? nil : text(), emails: (0..<Int.random(in: 0...3)).map { _ in text() },
            phones: (0..<Int.random(in: 0...3)).map { _ in LabeledPhone(label: text(), number: text()) },
            address: text(), notes: text(), photo: (0..<Int.random(in: 0...300)).map { _ in UInt8.random(in: 0...255) },
            customFields: Dictionary(uniqueKeysWithValues: (0..<Int.random(in: 0...4)).map { ("k\($0)\(text())", text()) }))
        let id = try test.store.create(NewSubject(metadata: SubjectMetadata(kind: .lead), personal: personal), context: TestStore.admin)
        #expect(try test.store.read(id, context: TestStore.admin).personal == personal, "seed \(seed)")
    }

    @Test("update replaces only the given fields and re-indexes changed numbers", arguments: TestBackend.all)
    func rectification(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("up"), context: TestStore.admin)
        try test.store.update(id, personal: PersonalData(name: "Renamed Person", phones: [LabeledPhone(label: "mobile", number: "07700 900456")]),
                              context: TestStore.admin)
        let read = try test.store.read(id, context: TestStore.admin)
        #expect(read.personal.name == "Renamed Person")
        #expect(read.personal.company == "Quasar Widgets up")
        #expect(try test.store.callerID(number: "+447700900456", context: TestStore.caller).map(\.id) == [id])
        #expect(try test.store.callerID(number: "+442079460958", context: TestStore.caller).isEmpty)
    }

    @Test("list pages by id without decrypting; a lead converts into a contact keeping its id", arguments: TestBackend.all)
    func listAndConvert(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let hook = RecordingHook()
        let store = try test.reopen(hooks: [hook])
        let ids = try (0..<5).map { try store.create(sampleSubject("l\($0)", kind: .lead), context: TestStore.admin) }
        let firstPage = try store.list(limit: 3)
        let secondPage = try store.list(after: firstPage.last?.id, limit: 3)
        #expect((firstPage + secondPage).map(\.id) == ids)
        #expect(!hook.events.contains { $0.action == .decrypt })
        try store.convertToContact(ids[2], context: TestStore.admin)
        #expect(try store.list(kind: .contact).map(\.id) == [ids[2]])
        #expect(throws: StoreError.self) { try store.convertToContact(ids[2], context: TestStore.admin) }
    }

    @Test("external ids are unique and resolve to subjects", arguments: TestBackend.all)
    func externalIDs(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("ex"), context: TestStore.admin)
        #expect(try test.store.resolve("ext-ex") == id)
        #expect(try test.store.resolve(String(id.rawValue)) == id)
        #expect(throws: StoreError.self) { try test.store.resolve("nobody") }
        // Writing the same external id again updates the subject instead of duplicating it.
        let results = try test.store.write([sampleSubject("ex")], context: TestStore.admin)
        #expect(results.map(\.created) == [false])
        #expect(try test.store.count() == 1)
    }

    @Test("deleting destroys the key: the subject reads as erased", arguments: TestBackend.all)
    func delete(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("del"), context: TestStore.admin)
        try test.store.delete(id, context: TestStore.admin)
        #expect {
            try test.store.read(id, context: TestStore.admin)
        } throws: { error in
            if case StoreError.subjectErased(id) = error { return true }
            return false
        }
        #expect(try test.store.count() == 0)
    }

    @Test("a database failure surfaces as StoreError.database with the backend's code and SQL, never a bound value; the store works on",
          arguments: TestBackend.all)
    func databaseErrorIsTyped(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("dbe"), context: TestStore.admin)
        try test.database(.data).execute("ALTER TABLE phone_index RENAME TO phone_index_moved")
        let change = PersonalData(phones: [LabeledPhone(label: "m", number: "+44 20 7946 0321")], notes: "Kumquat-secret-note")
        #expect {
            try test.store.update(id, personal: change, context: TestStore.admin)
        } throws: { error in
            guard case StoreError.database(let database) = error else { return false }
            // SQLITE_ERROR (no such table), PostgreSQL's undefined_table.
            let expected: DatabaseError.Code = backend == .sqlite ? .sqlite(extendedCode: 1) : .postgresql(sqlState: "42P01")
            let texts = [database.description, database.message, database.sql ?? "", "\(error)", String(reflecting: error)]
            return database.code == expected && database.sql?.contains("phone_index WHERE subject_id = ?") == true
                && !texts.contains { $0.contains("Kumquat") || $0.contains("7946") || $0.contains("ext-dbe") }
        }
        try test.database(.data).execute("ALTER TABLE phone_index_moved RENAME TO phone_index")
        // Second act: nothing was changed, and the same update goes through now.
        #expect(try test.store.read(id, fields: [.notes], context: TestStore.admin).personal.notes == "Prefers ultramarine dbe")
        try test.store.update(id, personal: change, context: TestStore.admin)
        #expect(try test.store.read(id, fields: [.notes], context: TestStore.admin).personal.notes == "Kumquat-secret-note")
        #expect(try test.store.callerID(number: "+442079460321", context: TestStore.caller).map(\.id) == [id])
    }

    @Test("an external id another subject holds is refused as duplicateExternalID, not as a database error; nothing changes",
          arguments: TestBackend.all)
    func duplicateExternalID(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let first = try test.store.create(sampleSubject("one"), context: TestStore.admin)
        let second = try test.store.create(sampleSubject("two"), context: TestStore.admin)
        let taken = SubjectMetadata(kind: .contact, externalID: "ext-one")
        #expect {
            try test.store.update(second, metadata: taken, personal: PersonalData(notes: "moved"), context: TestStore.admin)
        } throws: { error in
            if case StoreError.duplicateExternalID("ext-one") = error { return true }
            return false
        }
        // Second act: both keep their external ids and data, and the second updates under its own id.
        #expect(try test.store.resolve("ext-one") == first && test.store.resolve("ext-two") == second)
        #expect(try test.store.read(second, fields: [.notes], context: TestStore.admin).personal.notes == "Prefers ultramarine two")
        try test.store.update(second, metadata: SubjectMetadata(kind: .contact, externalID: "ext-two-b"), personal: PersonalData(notes: "moved"),
                              context: TestStore.admin)
        #expect(try test.store.resolve("ext-two-b") == second)
    }

    @Test("a wrong master key is refused at open, before any data is read", arguments: TestBackend.all)
    func wrongMasterKey(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        _ = try test.store.create(sampleSubject("wk"), context: TestStore.admin)
        #expect {
            try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: try SecretKey.random()))
        } throws: { error in
            if case StoreError.wrongMasterKey = error { return true }
            return false
        }
        // A place that holds no store (a folder, or a schema, that does not exist) is not found, and not made.
        let missing = try TestStore.missingLocation(backend)
        #expect {
            try Store.open(at: missing, keyProvider: StaticKeyProvider(key: test.key))
        } throws: { error in
            if case StoreError.storeNotFound = error { return true }
            return false
        }
        switch missing {
        case .directory(let path): #expect(!FileManager.default.fileExists(atPath: path))
        case .postgres(let url, _):
            let schema = try PostgresConnection.split(url).schema
            #expect(try test.database(.data).scalarInteger("SELECT count(*) FROM pg_namespace WHERE nspname IN (?, ?)",
                                            [.text(schema), .text(schema + "_keys")]) == 0)
        }
        // The right key still opens it.
        #expect(try test.reopen().count() == 1)
    }

    @Test("a PostgreSQL location prints without its password, in the user part or as a parameter")
    func locationWithoutPassword() {
        #expect(StoreLocation("postgresql://crm:s3cret@db/crm?schema=x").description == "postgresql://crm:***@db/crm?schema=x")
        #expect(StoreLocation("postgresql://crm@db/crm?password=s3cret&schema=x").description
                == "postgresql://crm@db/crm?password=***&schema=x")
        #expect(StoreLocation("/srv/crm-store").description == "/srv/crm-store")
    }

    @Test("a store cannot be created twice in one place (folder or schema), nor over a store's key database alone", arguments: TestBackend.all)
    func createTwice(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("twice"), context: TestStore.admin)
        func isAlreadyThere(_ error: any Error) -> Bool {
            if case StoreError.storeAlreadyExists = error { return true }
            return false
        }
        #expect { try Store.create(at: test.location, keyProvider: StaticKeyProvider(key: test.key)) } throws: { isAlreadyThere($0) }
        #expect { try Store.create(at: test.location, keyProvider: StaticKeyProvider(key: try SecretKey.random())) } throws: { isAlreadyThere($0) }
        // Nothing was overwritten: the store opens with its key and reads its subject.
        #expect(try test.reopen().read(id, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-twice")
        // With the data gone but the key database left, creating there is still refused (the keys are kept).
        switch backend {
        case .sqlite: try FileManager.default.removeItem(atPath: test.directory + "/data.sqlite")
        case .postgres: try test.database(.data).execute("DROP TABLE store CASCADE")
        }
        #expect { try Store.create(at: test.location, keyProvider: StaticKeyProvider(key: test.key)) } throws: { isAlreadyThere($0) }
        #expect(try test.database(.keys).scalarInteger("SELECT count(*) FROM subject_keys WHERE subject_id = ?", [.integer(id.rawValue)]) == 1)
    }

    @Test("restriction refuses reads but for the purposes GDPR Art. 18(2) allows, and audits the refusal", arguments: TestBackend.all)
    func restriction(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("rs"), context: TestStore.admin)
        try test.store.setRestricted(true, id, context: TestStore.admin)
        #expect(throws: StoreError.self) { try test.store.read(id, context: TestStore.admin) }
        #expect(hook.events.last?.outcome == .refused)
        #expect(try test.store.read(id, context: AccessContext(actor: "dpo", purpose: .subjectRequest)).personal.name != nil)
        #expect(try test.store.callerID(number: "+442079460958", context: TestStore.caller).isEmpty)
        try test.store.setRestricted(false, id, context: TestStore.admin)
        #expect(try test.store.callerID(number: "+442079460958", context: TestStore.caller).map(\.id) == [id])
    }
}
