import Foundation
@testable import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Synchronization
import Testing

extension RecordingHook {
    /// The entries about `subject` that are not decrypts, after the first `from`.
    func writes(of subject: SubjectID, from: Int = 0) -> [AuditEvent] {
        events.dropFirst(from).filter { $0.subject == subject && $0.action != .decrypt }
    }
}

/// What the data database holds, as text: every subject row's clear columns and seal count, and the
/// rows of the tables that hang off subjects. Equal before and after means nothing was written.
func dataState(_ test: TestStore) throws -> [String] {
    let data = try test.database(.data)
    var state = try data.rows("""
        SELECT id, kind, coalesce(external_id, ''), restricted, coalesce(last_contacted_at, 0), updated_at, key_version, seal_count
        FROM subjects ORDER BY id
        """) { row in (0..<8).map { row.isNull($0) ? "-" : (row.text($0) ?? String(row.int64($0))) }.joined(separator: "|") }
    for table in ["calls", "consent_ledger", "phone_index"] {
        state.append("\(table): \(try data.scalarInteger("SELECT count(*) FROM \(table)") ?? -1)")
    }
    return state
}

@Suite("Write path: every write audited inside its transaction, restriction on every path")
struct WritePathTests {
    static let subjectRequest = AccessContext(actor: "test-dpo", purpose: .subjectRequest)
    static let number = "+44 20 7946 0958"
    static let otherNumber = "+44 20 7946 0123"

    @Test("a call for a restricted subject is refused: nothing changed, the refusal audited; then calls work again",
          arguments: TestBackend.all)
    func restrictedCallRecord(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let restricted = try test.store.create(sampleSubject("r", phones: [Self.number]), context: TestStore.admin)
        let other = try test.store.create(sampleSubject("o", phones: [Self.otherNumber]), context: TestStore.admin)
        try test.store.setRestricted(true, restricted, context: TestStore.admin)
        let before = try dataState(test)
        let seen = hook.events.count

        #expect {
            _ = try test.store.recordCall(number: Self.number, context: TestStore.caller)
        } throws: { error in
            guard case StoreError.accessRefused(let id, _, let reason) = error else { return false }
            return id == restricted && reason.contains("call record") && reason.contains("restricted")
        }
        #expect(try dataState(test) == before, "a refused call changed the store")
        let entries = hook.writes(of: restricted, from: seen)
        #expect(entries.count == 1 && entries[0].outcome == .refused && entries[0].detail?.contains("call record") == true)
        #expect(try test.store.count() == 2, "no lead was made for the refused number")

        // Second act: another number's call is logged, the restricted one is still refused from another
        // process's view, and once the restriction is lifted its call is logged too.
        let logged = try test.store.recordCall(number: Self.otherNumber, at: Date(timeIntervalSince1970: 1_800_000_000),
                                               context: TestStore.caller)
        #expect(logged.caller.id == other && logged.logged && !logged.createdLead)
        #expect(hook.writes(of: other, from: seen).count == 1)
        let reopened = try test.reopen()
        defer { reopened.close() }
        let reopenedState = try dataState(test)
        #expect(throws: StoreError.self) { _ = try reopened.recordCall(number: Self.number, context: TestStore.caller) }
        #expect(try dataState(test) == reopenedState)
        try test.store.setRestricted(false, restricted, context: TestStore.admin)
        let record = try test.store.recordCall(number: Self.number, at: Date(timeIntervalSince1970: 1_800_000_000), context: TestStore.caller)
        #expect(record.caller.id == restricted && record.logged)
        #expect(try test.database(.data).scalarInteger("SELECT count(*) FROM calls") == 2)
        #expect(try test.store.verifyAuditLog().isIntact)
    }

    @Test("a number held by a restricted and an unrestricted subject logs the call for the unrestricted one only",
          arguments: TestBackend.all)
    func sharedNumber(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let restricted = try test.store.create(sampleSubject("r", phones: [Self.number]), context: TestStore.admin)
        let free = try test.store.create(sampleSubject("f", phones: [Self.number]), context: TestStore.admin)
        try test.store.setRestricted(true, restricted, context: TestStore.admin)
        let seen = hook.events.count
        let time = Date(timeIntervalSince1970: 1_800_000_000)
        let record = try test.store.recordCall(number: Self.number, at: time, context: TestStore.caller)
        #expect(record.caller.id == free && record.logged)
        let summaries = Dictionary(uniqueKeysWithValues: try test.store.list().map { ($0.id, $0) })
        #expect(summaries[free]?.metadata.lastContactedAt == time)
        #expect(summaries[restricted]?.metadata.lastContactedAt != time)
        #expect(hook.writes(of: restricted, from: seen).map(\.outcome) == [.refused])
        #expect(hook.writes(of: free, from: seen).map(\.outcome) == [.ok])
    }

    @Test("a call for a purpose resting on consent: refused with nothing changed, no lead made, until consent is given",
          arguments: TestBackend.all)
    func consentBasedCallRecord(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        try test.store.declarePurpose(PurposeDeclaration(name: "sales-calls", description: "Sales calls", lawfulBasis: .consent),
                                      context: TestStore.admin)
        let sales = AccessContext(actor: "test-pbx", purpose: "sales-calls")
        let id = try test.store.create(sampleSubject("c", phones: [Self.number]), context: TestStore.admin)
        let before = try dataState(test)
        let seen = hook.events.count
        #expect(throws: StoreError.self) { _ = try test.store.recordCall(number: Self.number, context: sales) }
        #expect(throws: StoreError.self) { _ = try test.store.recordCall(number: Self.otherNumber, context: sales) }
        #expect(try dataState(test) == before, "a refused call changed the store or made a lead")
        #expect(hook.events.dropFirst(seen).filter { $0.action != .decrypt }.map(\.outcome) == [.refused, .refused])

        // Second act: with consent the call is logged.
        _ = try test.store.grantConsent(id, purpose: "sales-calls", evidence: "call script v2", initiator: .subject, context: TestStore.admin)
        #expect(try test.store.recordCall(number: Self.number, context: sales).caller.id == id)
        #expect(try test.database(.data).scalarInteger("SELECT count(*) FROM calls") == 1)
    }

    /// One write of each kind, run against `subject` (a restricted-free lead with a consent-based purpose
    /// declared as "newsletter").
    static let writeKinds: [(name: String, run: @Sendable (Store, SubjectID) throws -> Void)] = [
        ("update", { store, id in try store.update(id, personal: PersonalData(notes: "changed"), context: TestStore.admin) }),
        ("call record", { store, _ in _ = try store.recordCall(number: number, context: TestStore.caller) }),
        ("consent grant", { store, id in
            _ = try store.grantConsent(id, purpose: "newsletter", evidence: "form v1", initiator: .staff, context: TestStore.admin)
        }),
        ("consent withdrawal", { store, id in
            _ = try store.withdrawConsent(id, purpose: "newsletter", initiator: .subject, context: TestStore.admin)
        }),
        ("restrict", { store, id in try store.setRestricted(true, id, context: TestStore.admin) }),
        ("convert", { store, id in try store.convertToContact(id, context: TestStore.admin) }),
        ("data-key rotation", { store, id in try store.rotateDataKey(of: id, context: TestStore.admin) }),
        ("erase", { store, id in try store.erase(id, reason: "Art. 17 request 1", context: TestStore.admin) }),
        ("delete", { store, id in try store.delete(id, context: TestStore.admin) }),
    ]

    @Test("each write kind leaves exactly one write entry; with the audit refusing, it leaves nothing",
          arguments: TestBackend.all)
    func oneEntryPerWrite(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        try test.store.declarePurpose(PurposeDeclaration(name: "newsletter", description: "news", lawfulBasis: .consent),
                                      context: TestStore.admin)
        let before = try dataState(test)
        hook.failWrites(true)
        #expect(throws: StoreError.self) { _ = try test.store.create(sampleSubject("refused"), context: TestStore.admin) }
        hook.failWrites(false)
        #expect(try dataState(test) == before, "create wrote with its audit entry refused")
        let seen = hook.events.count
        let created = try test.store.create(sampleSubject("created"), context: TestStore.admin)
        #expect(hook.writes(of: created, from: seen).map(\.action) == [.create])
        for (name, run) in Self.writeKinds {
            let id = try test.store.create(sampleSubject(name, kind: .lead, phones: [Self.number]), context: TestStore.admin)
            if name == "consent withdrawal" {
                _ = try test.store.grantConsent(id, purpose: "newsletter", evidence: "form v1", initiator: .staff, context: TestStore.admin)
            }
            let keysBefore = try test.database(.keys).scalarInteger("SELECT count(*) FROM subject_keys WHERE subject_id = ?",
                                                                    [.integer(id.rawValue)])
            let before = try dataState(test)
            hook.failWrites(true)
            #expect(throws: StoreError.self, "\(name) with the audit refusing") { try run(test.store, id) }
            hook.failWrites(false)
            #expect(try dataState(test) == before, "\(name) wrote with its audit entry refused")
            if ["erase", "delete"].contains(name) {
                #expect(try test.database(.keys).scalarInteger("SELECT count(*) FROM subject_keys WHERE subject_id = ?",
                                                               [.integer(id.rawValue)]) == keysBefore, "\(name) destroyed the key")
            }

            // Second act: the same write with the log working, one entry, and the store still reads.
            let seen = hook.events.count
            try run(test.store, id)
            let entries = hook.writes(of: id, from: seen)
            #expect(entries.count == 1 && entries.first?.outcome == .ok, "\(name): \(entries)")
            if !["erase", "delete"].contains(name) { _ = try test.store.read(id, context: Self.subjectRequest) }
            if name == "call record" { try test.store.delete(id, context: TestStore.admin) }
        }
        #expect(try test.store.verifyAuditLog().isIntact)
    }

    @Test("while restricted: processing writes are refused and change nothing; storage, erasure and the subject's own requests are not",
          arguments: TestBackend.all)
    func restrictionRule(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        try test.store.declarePurpose(PurposeDeclaration(name: "newsletter", description: "news", lawfulBasis: .consent),
                                      context: TestStore.admin)
        let id = try test.store.create(sampleSubject("x", kind: .lead), context: TestStore.admin)
        _ = try test.store.grantConsent(id, purpose: "newsletter", evidence: "form v1", initiator: .staff, context: TestStore.admin)
        try test.store.setRestricted(true, id, context: TestStore.admin)
        let refused: [(String, () throws -> Void)] = [
            ("update for admin", { try test.store.update(id, personal: PersonalData(notes: "n"), context: TestStore.admin) }),
            ("convert", { try test.store.convertToContact(id, context: TestStore.admin) }),
            ("consent grant", {
                _ = try test.store.grantConsent(id, purpose: "newsletter", evidence: "form v2", initiator: .subject, context: TestStore.admin)
            }),
            ("delete", { try test.store.delete(id, context: TestStore.admin) }),
            ("re-import", { _ = try test.store.write([sampleSubject("x", kind: .lead)], context: TestStore.admin) }),
        ]
        for (name, run) in refused {
            let before = try dataState(test)
            let seen = hook.events.count
            #expect(throws: StoreError.self, "\(name)") { try run() }
            #expect(try dataState(test) == before, "\(name) changed the store")
            #expect(hook.writes(of: id, from: seen).last?.outcome == .refused, "\(name) not audited as refused")
        }
        // Allowed: rectification on the subject's request, storage (re-encryption), withdrawal, unrestrict, erasure.
        try test.store.update(id, personal: PersonalData(notes: "rectified"), context: Self.subjectRequest)
        #expect(try test.store.read(id, fields: [.notes], context: Self.subjectRequest).personal.notes == "rectified")
        try test.store.rotateDataKey(of: id, context: TestStore.admin)
        _ = try test.store.withdrawConsent(id, purpose: "newsletter", initiator: .staff, context: TestStore.admin)
        try test.store.setRestricted(true, id, context: TestStore.admin)
        try test.store.setRestricted(false, id, context: TestStore.admin)
        try test.store.convertToContact(id, context: TestStore.admin)
        try test.store.setRestricted(true, id, context: TestStore.admin)
        try test.store.erase(id, reason: "Art. 17 request 2", context: TestStore.admin)
        #expect(throws: StoreError.self) { _ = try test.store.read(id, context: Self.subjectRequest) }
        #expect(try test.store.verifyAuditLog().isIntact)
    }
}

/// A flag a fault-injection closure reads.
final class Switch: Sendable {
    let on = Atomic<Bool>(true)
}

@Suite("Master key: rotation commits before it is used; its identifier is computed under a key of its own")
struct MasterKeyTests {
    @Test("a master rotation whose commit fails leaves the process on the old key; reopening agrees", arguments: TestBackend.all)
    func failedCommit(backend: TestBackend) throws {
        let failing = Switch()
        let test = try TestStore(backend) { configuration in
            configuration.faultInjection = { point, _ in
                if point == "rotate-master.in-transaction", failing.on.load(ordering: .relaxed) { throw InjectedCrash() }
            }
        }
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("m"), context: TestStore.admin)
        let newMaster = try SecretKey.random()
        #expect(throws: StoreError.self) { _ = try test.store.rotateMasterKey(to: newMaster, context: TestStore.admin) }

        // The process goes on under the old key, also for what the master key wraps: a new KEK.
        _ = try test.store.rotateKeyEncryptionKey(context: TestStore.admin)
        let other = try test.store.create(sampleSubject("n"), context: TestStore.admin)
        let reopened = try test.reopen()
        #expect(try reopened.read(id, context: TestStore.admin).personal.name == "Zebedee Quixotic-m")
        #expect(try reopened.read(other, context: TestStore.admin).personal.name == "Zebedee Quixotic-n")
        reopened.close()
        #expect {
            _ = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: newMaster))
        } throws: { error in
            if case StoreError.wrongMasterKey = error { return true } else { return false }
        }

        // Second act: the rotation goes through once the commit does.
        failing.on.store(false, ordering: .relaxed)
        _ = try test.store.rotateMasterKey(to: newMaster, context: TestStore.admin)
        _ = try test.store.rotateKeyEncryptionKey(context: TestStore.admin)
        let rotated = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: newMaster))
        defer { rotated.close() }
        #expect(try rotated.read(id, context: TestStore.admin).personal.name == "Zebedee Quixotic-m")
        #expect(throws: StoreError.self) { _ = try test.reopen() }
    }

    /// The legacy identifier: the first 32 bits of HMAC-SHA256(master, label), the master key used as a MAC key.
    static func legacyIdentifier(_ master: SecretKey) throws -> UInt32 {
        readUInt32(try HMACSHA256(key: master).authenticationCode(for: Array("strongroom.master-key-id.v1".utf8)), at: 0)
    }

    /// The identifier in the header of each wrapped KEK, by version.
    static func kekIdentifiers(_ test: TestStore) throws -> [UInt32] {
        try test.database(.keys).rows("SELECT wrapped FROM kek ORDER BY version") { readUInt32($0.blob(0) ?? [], at: 14) }
    }

    @Test("the stored identifier is derived with HKDF under its own label, not HMAC(master, …)", arguments: TestBackend.all)
    func identifierDerivation(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let storeID = try #require(try test.database(.keys).firstRow("SELECT store_id FROM store WHERE id = 1") { $0.blob(0) } ?? nil)
        let derived = try HKDFSHA256.deriveKey(inputKeyMaterial: test.key, salt: storeID, info: Array("strongroom.master.key-id.v1".utf8),
                                               outputByteCount: 32)
        let expected = readUInt32(try HMACSHA256(key: derived).authenticationCode(for: Array("strongroom.master.key-id.v1".utf8)), at: 0)
        #expect(try Self.kekIdentifiers(test) == [expected])
        #expect(try Self.kekIdentifiers(test) != [try Self.legacyIdentifier(test.key)])
    }

    @Test("a store whose KEK is wrapped under the old identifier opens, is migrated once, and refuses a wrong key",
          arguments: TestBackend.all)
    func legacyStoreMigrates(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("old"), context: TestStore.admin)
        test.store.close()
        // Build the old state: the KEK wrapped again under the master key with the legacy identifier.
        let keys = try test.database(.keys)
        let storeID = try #require(try keys.firstRow("SELECT store_id FROM store WHERE id = 1") { $0.blob(0) } ?? nil)
        let usage = KeyUsage(name: "test", budget: 1 << 20, reserved: 0)
        usage.didReserve(2)
        let current = try Keyring.masterKeyHandle(test.key, generation: 1, storeID: storeID, usage: usage)
        let legacy = KeyHandle(cipher: try AES256GCM(key: test.key), version: 1, identifier: try Self.legacyIdentifier(test.key), usage: usage)
        let (version, wrapped) = try #require(try keys.firstRow("SELECT version, wrapped FROM kek") { ($0.int64(0), $0.blob(1) ?? []) })
        let location = EnvelopeLocation(slot: .keyEncryptionKey, recordID: version)
        let kek = try Envelope.openKey(wrapped, at: location, under: current, storeID: storeID)
        try keys.run("UPDATE kek SET wrapped = ? WHERE version = ?",
                     [.blob(try Envelope.seal(key: kek, at: location, under: legacy, storeID: storeID)), .integer(version)])
        #expect(try Self.kekIdentifiers(test) == [legacy.identifier])

        // A wrong key is still refused as such on the old format, and migrates nothing.
        #expect {
            _ = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: try SecretKey.random()))
        } throws: { error in
            if case StoreError.wrongMasterKey = error { return true } else { return false }
        }
        #expect(try Self.kekIdentifiers(test) == [legacy.identifier])

        let reopened = try test.reopen()
        #expect(try Self.kekIdentifiers(test) == [current.identifier], "not migrated")
        #expect(try reopened.read(id, context: TestStore.admin).personal.name == "Zebedee Quixotic-old")
        reopened.close()
        // Second act: opened again (no migration left), used, and its KEK rotated under the master key.
        let again = try test.reopen()
        defer { again.close() }
        _ = try again.rotateKeyEncryptionKey(context: TestStore.admin)
        #expect(try Self.kekIdentifiers(test).allSatisfy { $0 == current.identifier })
        #expect(try again.read(id, context: TestStore.admin).personal.name == "Zebedee Quixotic-old")
        #expect(try again.verifyAuditLog().isIntact)
    }

    @Test("the call-record key has its own HKDF label: a logged call's key is neither the tag of the old prefix nor the number's tag",
          arguments: TestBackend.all)
    func callRecordKeyLabel(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let time = Date(timeIntervalSince1970: 1_800_000_000)
        _ = try test.store.recordCall(number: WritePathTests.number, at: time, context: TestStore.caller)
        let stored = try #require(try test.database(.data).firstRow("SELECT call_key FROM calls") { $0.blob(0) })
        let index = test.store.keyring.phoneIndex
        let milliseconds = Store.milliseconds(time)
        #expect(stored == (try index.callKey(e164: "+442079460958", milliseconds: milliseconds, direction: "in")))
        #expect(stored != (try index.tags(for: "call|+442079460958|\(milliseconds)|in").full))
        #expect(stored != (try index.tags(for: "+442079460958").full))
        // Second act: the same call is recognised as a repeat, a new one is not.
        #expect(!(try test.store.recordCall(number: WritePathTests.number, at: time, context: TestStore.caller).logged))
        #expect(try test.store.recordCall(number: WritePathTests.number, at: time.addingTimeInterval(60), context: TestStore.caller).logged)
    }
}
