import Foundation
import Strongroom
import StrongroomPhone

/// `strongroom demo`: a guided tour on a new embedded store.
struct DemoCommand: StandaloneCommand {
    static let name = "demo"
    static let abstract = "a guided tour of the product on a new embedded store"
    static let help = """
        Usage: strongroom demo [--dir D] [--sample FILE.csv]

        Creates a store and a fresh master key file in D (default: a new temporary folder), imports
        sample contacts (FILE, else Fixtures/contacts-sample.csv when run from the repository, else a
        built-in sample), reads a contact back, looks a caller up by phone number, logs a call from an
        unknown number, records a double opt-in consent, exports a subject, does a DPO's day (find by
        e-mail, rectify, export every subject), restricts and erases one with its receipt (a re-import
        does not bring it back), rotates the master key, and verifies the audit log, printing what each step did and what the
        audit log recorded.

        Example:
          swift run strongroom demo --dir /tmp/strongroom-demo
        """

    /// Used when no sample file is at hand: invented people, numbers in national and international styles.
    static let builtInSample = """
        external_id,kind,name,company,email,phone,mobile,work_phone,address,notes,source,owner,last_contacted
        demo-1,contact,Amara Eriksen,Nordlicht GmbH,amara@example.org,+44 7400 142870,,,"14 Eriksen Street, Springfield",Prefers calls after 5pm,Referral,agent-3,2026-05-03T15:49:00Z
        demo-2,lead,Ivo Rossi,Casa Verde SL,ivo@example.org,0121-242-9247,+972 50-273-7319,,"52 Novak Street, Springfield",Asked about listing 1141,Google Ads,agent-12,2026-07-22T02:24:00Z
        demo-3,contact,Hana Fischer,Maple & Oak LLP,hana@example.org,+82-10-2000-7045,,020 7946 0958,"202 Moreau Street, Springfield",,Cold call,agent-3,2026-05-06T09:05:00Z
        demo-4,lead,Bruno Tanaka,Acme Realty,bruno@example.org,+41 78 173 65 32,,,"259 Šimek Street, Springfield",,Website form,agent-8,2026-08-11T20:51:00Z
        """

    /// Where the demo's store and keys go.
    let directory: String
    /// A CSV to import instead of the sample.
    let samplePath: String?

    init(parsing arguments: inout Arguments) throws(UsageError) {
        directory = try arguments.option("--dir")
            ?? (NSTemporaryDirectory() + "strongroom-demo-" + UUID().uuidString.prefix(8).lowercased())
        samplePath = try arguments.option("--sample")
    }

    func run(console: Console) throws -> ExitStatus {
        let storePath = directory + "/store"
        let keyPath = directory + "/master.key"
        let admin = AccessContext(actor: "demo-admin", purpose: .admin)

        func step(_ title: String) { console.print("\n== \(title)") }

        step("1. Create a store and its master key")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try MasterKeyFile.create(at: keyPath)
        var configuration = StoreConfiguration()
        configuration.defaultRegion = "GB"
        let store = try Store.create(at: storePath, keyProvider: KeyFileProvider(path: keyPath), configuration: configuration)
        defer { store.close() }
        console.print("store   \(storePath)  (data.sqlite, keys.sqlite, audit/)")
        console.print("key     \(keyPath)  (mode 0600, 256 random bits; wraps the store's key-encryption key)")

        step("2. Import leads and contacts")
        let sample: (name: String, bytes: [UInt8])
        if let path = samplePath ?? ["Fixtures/contacts-sample.csv"].first(where: { FileManager.default.fileExists(atPath: $0) }),
           let data = FileManager.default.contents(atPath: path) {
            sample = (path, [UInt8](data))
        } else {
            sample = ("the built-in sample", Array(Self.builtInSample.utf8))
        }
        let report = try CSVImporter(store: store).run(sample.bytes, context: admin)
        console.print("imported \(sample.name): \(report.created) created, \(report.rejected.count) rows skipped, "
                      + "\(report.unindexed.count) numbers stored but not indexed")
        console.print("every personal field is AES-256-GCM ciphertext under its subject's own key; no name or number is on disk in clear")

        step("3. Read a contact back (audited)")
        guard let first = try store.list(limit: 1).first else { throw ToolError(message: "the sample imported nothing", status: .failure) }
        let subject = try store.read(first.id, fields: [.name, .phones, .emails], context: admin)
        console.printEscaped("subject \(subject.id) (\(subject.metadata.externalID ?? "-")): \(subject.personal.name ?? "")")
        for phone in subject.personal.phones ?? [] { console.printEscaped("  \(phone.label): \(phone.number)") }

        step("4. Caller ID: an incoming call, in the form the telephony layer gives it")
        let caller = AccessContext(actor: "pbx", purpose: .callerID)
        if let number = subject.personal.phones?.first?.number,
           let e164 = try? PhoneNormalizer(defaultRegion: store.defaultRegion).normalize(number).e164 {
            let matches = try store.callerID(number: e164, context: caller)
            console.print("incoming \(e164) -> " + (matches.map(MatchOutput.init).map(\.line).first ?? "no match"))
        }

        step("5. A call from an unknown number becomes a lead")
        let call = try store.recordCall(number: "+44 7700 900123", at: Date(), context: caller)
        console.print("+447700900123 -> \(MatchOutput(call.caller).line)\(call.createdLead ? "  (new lead)" : "")")

        step("6. Consent: a double opt-in purpose, a pending grant, its confirmation")
        try store.declarePurpose(PurposeDeclaration(name: "marketing-email", description: "Offers by e-mail", lawfulBasis: .consent,
                                                    requiresDoubleOptIn: true), context: admin)
        let mailer = AccessContext(actor: "mailer", purpose: "marketing-email")
        do {
            _ = try store.read(first.id, fields: [.emails], context: mailer)
        } catch {
            console.printEscaped("before consent, the mailer is refused: \(error)")
        }
        let grant = try store.grantConsent(first.id, purpose: "marketing-email", evidence: "signup form v3, box ticked",
                                           initiator: .subject, clientAddress: "203.0.113.7", context: admin)
        console.print("granted: \(grant.state.rawValue); a confirmation token goes to the subject (stored only as its hash)")
        _ = try store.confirmConsent(first.id, token: grant.confirmationToken ?? "", context: admin)
        let emails = try store.read(first.id, fields: [.emails], context: mailer).personal.emails ?? []
        console.print("confirmed: the mailer may now read \(emails.count) e-mail address(es); the ledger holds "
                      + "\(try store.consentLedger(of: first.id, context: admin).count) entries")

        step("7. Right of access: export everything held on the subject")
        let export = try store.export(first.id, context: AccessContext(actor: "dpo", purpose: .subjectRequest))
        console.print("export of subject \(export.subject.id): \(export.personal.phones.count) numbers, \(export.consents.count) consent entries, "
                      + "\(export.accessLog.count) audit entries about them (layout \(export.format) v\(export.version))")

        step("8. The DPO's day: find a requester by e-mail, rectify, export everyone")
        let dpo = AccessContext(actor: "dpo", purpose: .subjectRequest)
        if let address = subject.personal.emails?.first {
            let found = try store.find(.email(address), context: dpo)
            console.print("find by e-mail (blind index, audited) -> " + (found.map(MatchOutput.init).map(\.line).first ?? "no match"))
        }
        let changed = try store.rectify(first.id, [FieldChange(field: "company", value: "Renamed Ltd"), FieldChange(field: "notes", value: "")],
                                        context: dpo)
        console.print("rectified subject \(first.id): \(changed.joined(separator: ", ")) (only those; the audit entry names them, not their values)")
        let bulk = try store.exportAll(context: dpo) { _ in }
        console.print("export of every subject: \(bulk.exported) JSON lines in one pass, each subject's decrypt audited")

        step("9. Restriction of processing, then erasure by crypto-shredding, with a receipt")
        try store.setRestricted(true, call.caller.id, context: admin)
        let restricted = try store.callerID(number: "+447700900123", context: caller)
        console.print("restricted subject \(call.caller.id): caller ID now finds \(restricted.count) (refusal audited)")
        let erasure = try store.erase(first.id, reason: "demo: Art. 17 request", context: admin)
        do {
            _ = try store.read(first.id, context: admin)
        } catch {
            console.printEscaped("erased subject \(first.id): reading it now fails: \(error)")
        }
        let destroyed = erasure.receipt.destroyed
        console.print("receipt \(erasure.receipt.receipt): \(destroyed.subjectKeys) key(s), \(destroyed.indexEntries) index entries, "
                      + "\(destroyed.consentEntries) consent entries destroyed; audit entry #\(erasure.receipt.auditSequence.map(String.init) ?? "-")")
        if let externalID = first.metadata.externalID {
            let verified = try store.checkErasureReceipt(externalID, context: AccessContext(actor: "dpo", purpose: .subjectRequest))
            console.print("audit receipt \(externalID): " + (verified.isVerified ? "MAC and audit entry verified" : "NOT verified"))
        }
        let again = try CSVImporter(store: store).run(sample.bytes, context: admin)
        console.print("the nightly re-import of the same file: \(again.created) created, \(again.updated) updated, "
                      + "\(again.rejected.filter { $0.reason.hasPrefix("erased on") }.count) erased row(s) skipped, never re-created")

        step("10. Rotate the master key (constant time), then check the old one is refused")
        let newKeyPath = directory + "/master.key.2"
        try MasterKeyFile.create(at: newKeyPath)
        let rotation = try store.rotateMasterKey(to: KeyFileProvider(path: newKeyPath).masterKey(), context: admin)
        console.print(String(format: "re-wrapped %d key-encryption key under %@ (generation %d)", rotation.items, newKeyPath, rotation.toVersion))
        do {
            _ = try Store.open(at: storePath, keyProvider: KeyFileProvider(path: keyPath))
            console.print("the old key still opened the store: this should not happen")
        } catch {
            console.printEscaped("opening with the old key: \(error)")
        }

        step("11. The audit log")
        var lines: [String] = []
        try store.auditEntries { entry, _ in
            lines.append("#\(entry.seq) \(entry.action) \(entry.outcome) by \(entry.actor) for \(entry.purpose)"
                         + (entry.subject.map { " subject \($0)" } ?? "") + (entry.fields.isEmpty ? "" : " [\(entry.fields.joined(separator: ","))]"))
        }
        console.print("\(lines.count) entries; the last ones:")
        lines.suffix(8).forEach { console.printEscaped("  " + $0) }
        let verification = try store.verifyAuditLog()
        console.printEscaped(verification.isIntact
                             ? "audit verify: intact, \(verification.verifiedEntries) entries chained under HMAC-SHA256"
                             : "audit verify: FAILED: \(verification.problem!)")

        console.print("\nTry the tool on this store:")
        console.print("  export STRONGROOM_STORE=\(storePath) STRONGROOM_KEY_FILE=\(newKeyPath)")
        console.print("  swift run strongroom lookup --json \"+44 121 242 9247\"")
        console.print("  swift run strongroom audit show --since \(formatTime(Date()).prefix(10))")
        return verification.isIntact ? .success : .failure
    }
}
