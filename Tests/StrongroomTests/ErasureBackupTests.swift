import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Testing

@Suite("Erasure reaches backups of the data file")
struct ErasureBackupTests {
    static let reason = "Art. 17 request 2026-114"
    static let marketing: Purpose = "marketing-email"

    /// A store folder and master key, with stores opened and dropped at will (a dropped store closes its
    /// data connection, so its files can be copied and replaced).
    struct Folder {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-backup-\(UUID().uuidString)").path
        let key: SecretKey
        var data: String { directory + "/data.sqlite" }

        init() throws { key = try SecretKey.random() }

        func create() throws -> Store {
            var configuration = StoreConfiguration()
            configuration.defaultRegion = "GB"
            return try Store.create(at: directory, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
        }

        func open() throws -> Store { try Store.open(at: directory, keyProvider: StaticKeyProvider(key: key)) }

        func cleanUp() { try? FileManager.default.removeItem(atPath: directory) }
    }

    @Test("a data file copied before an erasure and put back beside today's keys: the subject is unreadable and reported as erased, everyone else reads, the log verifies")
    func restoredDataFile() throws {
        let folder = try Folder()
        defer { folder.cleanUp() }
        let backup = folder.directory + "-data.sqlite.backup"
        defer { try? FileManager.default.removeItem(atPath: backup) }
        let victimSubject = sampleSubject("gone", phones: ["+44 20 7946 0101"])
        var victim = SubjectID(rawValue: 0)
        var keepers: [SubjectID] = []
        weak var dropped: Store?

        // 1. A store with the subject, two others, a consent ledger and reads in the audit log; then closed.
        do {
            let store = try folder.create()
            victim = try store.create(victimSubject, context: TestStore.admin)
            keepers = [try store.create(sampleSubject("keep1", phones: ["+44 20 7946 0202"]), context: TestStore.admin),
                       try store.create(sampleSubject("keep2", phones: ["+44 20 7946 0303"]), context: TestStore.admin)]
            try store.declarePurpose(PurposeDeclaration(name: Self.marketing, description: "Offers", lawfulBasis: .consent),
                                     context: TestStore.admin)
            for id in [victim] + keepers {
                _ = try store.grantConsent(id, purpose: Self.marketing, evidence: "signup form v3", initiator: .subject,
                                           clientAddress: "203.0.113.\(id.rawValue)", context: TestStore.admin)
                _ = try store.read(id, context: TestStore.admin)
            }
            #expect(try store.callerID(number: "+442079460101", context: TestStore.caller).map(\.id) == [victim])
            store.close()
            dropped = store
        }
        #expect(dropped == nil, "the store (and its data connection) must be gone before its files are copied")

        // 2. The backup: the data file alone, after the last connection closed (SQLite checkpoints the WAL
        //    into the file then). It must hold the subject's rows, or the test would prove nothing.
        do {
            try SQLiteConnection(path: folder.data).execute("PRAGMA wal_checkpoint(TRUNCATE)")
            try FileManager.default.copyItem(atPath: folder.data, toPath: backup)
            let copy = try SQLiteConnection(path: backup, create: false, readOnly: true)
            #expect(try copy.scalarInteger("SELECT count(*) FROM subjects WHERE id = ? AND name_ct IS NOT NULL",
                                           [.integer(victim.rawValue)]) == 1)
            #expect(try copy.scalarInteger("SELECT count(*) FROM consent_ledger WHERE subject_id = ? AND client_ct IS NOT NULL",
                                           [.integer(victim.rawValue)]) == 1)
            #expect(try copy.scalarInteger("SELECT count(*) FROM phone_index WHERE subject_id = ?", [.integer(victim.rawValue)]) == 1)
        }

        // 3. Erasure, then the store is closed.
        var entriesBeforeErasure: [AuditEntry] = []
        do {
            let store = try folder.open()
            try store.auditEntries { entry, _ in entriesBeforeErasure.append(entry) }
            try store.erase(victim, reason: Self.reason, context: TestStore.admin)
            store.close()
            dropped = store
        }
        #expect(dropped == nil)

        // 4. The old data file goes back beside today's key database, and the store opens with today's key.
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: folder.data + suffix) }
        try FileManager.default.copyItem(atPath: backup, toPath: folder.data)
        let store = try folder.open()
        defer { store.close() }
        #expect(try SQLiteConnection(path: folder.data).scalarInteger("SELECT count(*) FROM subjects WHERE id = ?", [.integer(victim.rawValue)]) == 1)

        // The subject's row is back, but its key is not: every way in reports it as erased.
        func isErased(_ error: any Error) -> Bool {
            if case StoreError.subjectErased(victim) = error { return true }
            return false
        }
        #expect { try store.read(victim, context: TestStore.admin) } throws: { isErased($0) }
        #expect { try store.read(victim, fields: [.name], context: AccessContext(actor: "dpo", purpose: .subjectRequest)) } throws: { isErased($0) }
        #expect { try store.consentLedger(of: victim, context: TestStore.admin) } throws: { isErased($0) }
        #expect { try store.export(victim, context: AccessContext(actor: "dpo", purpose: .subjectRequest)) } throws: { isErased($0) }
        #expect { try store.update(victim, personal: PersonalData(name: "New"), context: TestStore.admin) } throws: { isErased($0) }
        #expect { try store.grantConsent(victim, purpose: Self.marketing, evidence: "form", initiator: .staff, context: TestStore.admin) }
            throws: { isErased($0) }
        #expect("\(StoreError.subjectErased(victim))".contains("erased"))
        let keys = try SQLiteConnection(path: folder.directory + "/keys.sqlite")
        #expect(try keys.scalarInteger("SELECT count(*) FROM subject_keys WHERE subject_id = ?", [.integer(victim.rawValue)]) == 0)
        #expect(try keys.scalarInteger("SELECT count(*) FROM erased_subjects WHERE subject_id = ?", [.integer(victim.rawValue)]) == 1)

        // Everyone else reads fine: fields, ledger, caller ID.
        for (id, tag) in zip(keepers, ["keep1", "keep2"]) {
            let subject = try store.read(id, context: TestStore.admin)
            #expect(subject.personal.name == "Zebedee Quixotic-\(tag)" && subject.personal.notes == "Prefers ultramarine \(tag)")
            #expect(try store.consentLedger(of: id, context: TestStore.admin).first?.clientAddress == "203.0.113.\(id.rawValue)")
            #expect(try store.read(id, fields: [.emails], context: AccessContext(actor: "mailer", purpose: Self.marketing)).personal.emails?.count == 1)
        }
        #expect(try store.callerID(number: "+442079460202", context: TestStore.caller).map(\.id) == [keepers[0]])
        // Caller ID for the erased subject's number never names them: nobody, or "erased".
        do { #expect(try store.callerID(number: "+442079460101", context: TestStore.caller).isEmpty) } catch { #expect(isErased(error)) }

        // The audit log: every earlier entry still there and verifying, and one erasure entry naming only the subject id.
        let verification = try store.verifyAuditLog()
        #expect(verification.isIntact)
        var entries: [(AuditEntry, String)] = []
        try store.auditEntries { entry, line in entries.append((entry, String(decoding: line, as: UTF8.self))) }
        #expect(Array(entries.prefix(entriesBeforeErasure.count).map(\.0)) == entriesBeforeErasure)
        let erasures = entries.filter { $0.0.action == "erase" }
        #expect(erasures.count == 1)
        let (erasure, line) = try #require(erasures.first)
        #expect(erasure.subject == String(victim.rawValue) && erasure.fields.isEmpty && erasure.outcome == "ok")
        #expect(erasure.detail == Self.reason)
        let personal = victimSubject.personal
        for value in [personal.name!, personal.company!, personal.emails![0], personal.address!, personal.notes!, "7946 0101",
                      "442079460101", "203.0.113.\(victim.rawValue)", "ext-gone"] {
            #expect(!line.contains(value), "the erasure entry holds \(value)")
        }
        // The refused reads of the restored row are audited as failed, "erased".
        #expect(entries.contains { $0.0.subject == String(victim.rawValue) && $0.0.outcome == "failed" && $0.0.detail == "erased" })
    }

    @Test("erasure and export of a subject that does not exist, or no longer does, give a clear error")
    func missingSubjects() throws {
        let test = try TestStore()
        defer { test.cleanUp() }
        let nobody = SubjectID(rawValue: 4242)
        for attempt in [{ try test.store.erase(nobody, reason: Self.reason, context: TestStore.admin) },
                        { _ = try test.store.export(nobody, context: AccessContext(actor: "dpo", purpose: .subjectRequest)) }] {
            #expect(performing: attempt, throws: { error in
                guard case StoreError.subjectNotFound("4242") = error else { return false }
                return "\(error)" == "no subject 4242"
            })
        }
        #expect { try test.store.resolve("ext-nobody") } throws: { error in
            if case StoreError.subjectNotFound("ext-nobody") = error { return true }
            return false
        }
        let id = try test.store.create(sampleSubject("once"), context: TestStore.admin)
        try test.store.erase(id, reason: Self.reason, context: TestStore.admin)
        for attempt in [{ try test.store.erase(id, reason: Self.reason, context: TestStore.admin) },
                        { _ = try test.store.export(id, context: AccessContext(actor: "dpo", purpose: .subjectRequest)) },
                        { _ = try test.store.resolve(String(id.rawValue)) }] {
            #expect(performing: attempt, throws: { error in
                guard case StoreError.subjectErased(id) = error else { return false }
                return "\(error)".contains("subject \(id.rawValue) was erased")
            })
        }
        // An erasure needs a reason (a ticket, not personal data).
        let other = try test.store.create(sampleSubject("twice"), context: TestStore.admin)
        #expect { try test.store.erase(other, reason: "  ", context: TestStore.admin) } throws: { isInvalidInput($0) }
        #expect(try test.store.read(other, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-twice")
    }
}
