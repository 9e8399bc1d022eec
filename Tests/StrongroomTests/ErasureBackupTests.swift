import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import StrongroomTestSupport
import Testing

@Suite("Erasure reaches backups of the data file")
struct ErasureBackupTests {
    static let reason = "Art. 17 request 2026-114"
    static let marketing: Purpose = "marketing-email"

    /// A store's place (a folder, or a schema pair on the test server) and master key, with stores opened
    /// and dropped at will (a dropped store closes its data connection, so its files can be copied and
    /// replaced), and a backup of its data taken and put back: the file `data.sqlite` (SQLite), or every
    /// table of the data schema but the audit log, copied with SQL into a schema `<schema>_backup`
    /// (PostgreSQL; the audit log is left out as it is on SQLite, where it is not in the data file).
    struct Place {
        let backend: TestBackend
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-backup-\(UUID().uuidString)").path
        let location: StoreLocation
        let key: SecretKey
        var data: String { directory + "/data.sqlite" }
        /// The backup's folder, apart from the store's (removed with its WAL files when the place goes).
        let backupFolder = TemporaryDirectory("strongroom-backup")
        var backupFile: String { backupFolder.path("data.sqlite.backup") }
        /// The data schema's name (PostgreSQL).
        var schema: String {
            guard case .postgres(let url, _) = location else { return "" }
            return (try? PostgresConnection.split(url).schema) ?? ""
        }
        var backupSchema: String { schema + "_backup" }

        init(_ backend: TestBackend) throws {
            self.backend = backend
            key = try SecretKey.random()
            location = try TestStore.location(backend, directory: directory)
        }

        func create() throws -> Store {
            var configuration = StoreConfiguration()
            configuration.defaultRegion = "GB"
            return try Store.create(at: location, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
        }

        func open() throws -> Store { try Store.open(at: location, keyProvider: StaticKeyProvider(key: key)) }

        /// A raw connection to the store's data or key database.
        func database(_ role: TestStore.DatabaseRole) throws -> any Database { try TestStore.database(role, at: location) }

        /// A raw connection to the backup: the copied file, or (PostgreSQL) the data database with the
        /// backup schema as its search path.
        func backup() throws -> any Database {
            switch backend {
            case .sqlite: return try SQLiteConnection(path: backupFile, create: false, readOnly: true)
            case .postgres:
                let connection = try database(.data)
                try connection.execute("SET search_path TO \"\(backupSchema)\"")
                return connection
            }
        }

        /// The data tables of the PostgreSQL schema, referenced tables before the tables that refer to them.
        func dataTables(_ connection: any Database) throws -> [String] {
            var tables = try connection.rows("""
                SELECT table_name::text FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE'
                AND table_name <> 'audit_log' ORDER BY 1
                """, [.text(schema)]) { $0.text(0) ?? "" }
            let references = try connection.rows("""
                SELECT c.relname::text, r.relname::text FROM pg_constraint k
                JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE k.contype = 'f' AND n.nspname = ? AND c.oid <> r.oid
                """, [.text(schema)]) { ($0.text(0) ?? "", $0.text(1) ?? "") }
            var ordered: [String] = []
            while !tables.isEmpty {
                let ready = tables.filter { table in !references.contains { $0.0 == table && !ordered.contains($0.1) } }
                guard !ready.isEmpty else { throw PostgresUnavailable(description: "circular foreign keys among \(tables)") }
                ordered += ready
                tables.removeAll { ready.contains($0) }
            }
            return ordered
        }

        /// Takes the backup (the store must be closed).
        func backUpData() throws {
            switch backend {
            case .sqlite:
                // The data file alone, after the last connection closed (SQLite checkpoints the WAL into the file then).
                try SQLiteConnection(path: data).execute("PRAGMA wal_checkpoint(TRUNCATE)")
                try FileManager.default.copyItem(atPath: data, toPath: backupFile)
            case .postgres:
                let connection = try database(.data)
                try connection.execute("CREATE SCHEMA \"\(backupSchema)\"")
                for table in try dataTables(connection) {
                    try connection.execute("CREATE TABLE \"\(backupSchema)\".\"\(table)\" AS TABLE \"\(schema)\".\"\(table)\"")
                }
            }
        }

        /// Puts the backup back in place of today's data (the store must be closed): the file replaced, or
        /// every data table emptied and filled from the backup schema in one transaction. With `auditLog`,
        /// PostgreSQL's audit log table is put back too (a restore of the whole schema).
        func restoreData(auditLog: Bool = false) throws {
            switch backend {
            case .sqlite:
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: data + suffix) }
                try FileManager.default.copyItem(atPath: backupFile, toPath: data)
            case .postgres:
                let connection = try database(.data)
                if auditLog {
                    try connection.execute("TRUNCATE audit_log; INSERT INTO audit_log SELECT * FROM \"\(backupSchema)\".audit_log")
                    return
                }
                let tables = try dataTables(connection)
                try connection.transaction { () throws(DatabaseError) in
                    // TRUNCATE fires no row trigger (the consent ledger's delete guard) and takes all tables at once.
                    try connection.execute("TRUNCATE " + tables.map { "\"\($0)\"" }.joined(separator: ", "))
                    for table in tables {
                        try connection.execute("INSERT INTO \"\(table)\" SELECT * FROM \"\(backupSchema)\".\"\(table)\"")
                    }
                }
            }
        }

        /// Copies the audit log table into the backup schema too (PostgreSQL), for `restoreData(auditLog: true)`.
        func backUpAuditLog() throws {
            guard backend == .postgres else { return }
            try database(.data).execute("CREATE TABLE \"\(backupSchema)\".audit_log AS TABLE \"\(schema)\".audit_log")
        }

        func cleanUp() {
            try? FileManager.default.removeItem(atPath: directory)
            if backend == .postgres, let connection = try? database(.data) {
                for name in [schema, schema + "_keys", backupSchema] {
                    try? connection.execute("DROP SCHEMA IF EXISTS \"\(name)\" CASCADE")
                }
            }
        }
    }

    @Test("a data backup taken before an erasure and put back beside today's keys: the subject is unreadable and reported as erased, everyone else reads, the log verifies",
          arguments: TestBackend.all)
    func restoredDataFile(backend: TestBackend) throws {
        let place = try Place(backend)
        defer { place.cleanUp() }
        let victimSubject = sampleSubject("gone", phones: ["+44 20 7946 0101"])
        var victim = SubjectID(rawValue: 0)
        var keepers: [SubjectID] = []
        weak var dropped: Store?

        // 1. A store with the subject, two others, a consent ledger and reads in the audit log; then closed.
        do {
            let store = try place.create()
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
        #expect(dropped == nil, "the store (and its data connection) must be gone before its data is copied")

        // 2. The backup. It must hold the subject's rows, or the test would prove nothing.
        try place.backUpData()
        try place.backUpAuditLog()
        do {
            let copy = try place.backup()
            #expect(try copy.scalarInteger("SELECT count(*) FROM subjects WHERE id = ? AND name_ct IS NOT NULL",
                                           [.integer(victim.rawValue)]) == 1)
            #expect(try copy.scalarInteger("SELECT count(*) FROM consent_ledger WHERE subject_id = ? AND client_ct IS NOT NULL",
                                           [.integer(victim.rawValue)]) == 1)
            #expect(try copy.scalarInteger("SELECT count(*) FROM phone_index WHERE subject_id = ?", [.integer(victim.rawValue)]) == 1)
        }

        // 3. Erasure, then the store is closed.
        var entriesBeforeErasure: [AuditEntry] = []
        do {
            let store = try place.open()
            try store.auditEntries { entry, _ in entriesBeforeErasure.append(entry) }
            try store.erase(victim, reason: Self.reason, context: TestStore.admin)
            store.close()
            dropped = store
        }
        #expect(dropped == nil)

        // 4. The old data goes back beside today's key database, and the store opens with today's key.
        try place.restoreData()
        let store = try place.open()
        defer { store.close() }
        #expect(try place.database(.data).scalarInteger("SELECT count(*) FROM subjects WHERE id = ?", [.integer(victim.rawValue)]) == 1)
        #expect(try place.database(.data).scalarInteger("SELECT count(*) FROM consent_ledger WHERE subject_id = ?", [.integer(victim.rawValue)]) == 1)

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
        let keys = try place.database(.keys)
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

        // PostgreSQL keeps the audit log in the data schema: a restore of the whole schema puts back the
        // log as it was before the erasure, and the signed head in the key schema shows it.
        if backend == .postgres {
            store.close()
            try place.restoreData(auditLog: true)
            let verification = try place.open().verifyAuditLog()
            guard case .missingFromEnd(let expected, let head) = verification.problem else {
                Issue.record("expected entries missing from the end, got \(String(describing: verification.problem))")
                return
            }
            let backedUp = try #require(try place.backup().scalarInteger("SELECT count(*) FROM audit_log"))
            #expect(expected == UInt64(backedUp + 1) && head >= expected)
        }
    }

    @Test("erasure and export of a subject that does not exist, or no longer does, give a clear error", arguments: TestBackend.all)
    func missingSubjects(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let nobody = SubjectID(rawValue: 4242)
        for attempt in [{ _ = try test.store.erase(nobody, reason: Self.reason, context: TestStore.admin) },
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
        for attempt in [{ _ = try test.store.erase(id, reason: Self.reason, context: TestStore.admin) },
                        { _ = try test.store.export(id, context: AccessContext(actor: "dpo", purpose: .subjectRequest)) },
                        { _ = try test.store.resolve(String(id.rawValue)) }] {
            #expect(performing: attempt, throws: { error in
                guard case StoreError.subjectErased(id) = error else { return false }
                return "\(error)".contains("subject \(id.rawValue) was erased")
            })
        }
        // An erasure needs a reason (a ticket, not personal data).
        let other = try test.store.create(sampleSubject("twice"), context: TestStore.admin)
        #expect { try test.store.erase(other, reason: "  ", context: TestStore.admin) } throws: {
            if case StoreError.invalidReason(.erasure, maxCharacters: 200) = $0 { true } else { false }
        }
        #expect(try test.store.read(other, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-twice")
    }
}
