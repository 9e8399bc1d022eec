import Foundation
import Strongroom
import StrongroomCrypto
import Synchronization
import Testing

/// Whether `error` is `StoreError.accessRefused` whose reason contains `reason`.
func isRefusal(_ error: any Error, _ reason: String) -> Bool {
    if case StoreError.accessRefused(_, _, let why) = error { return why.contains(reason) }
    return false
}

/// Whether `error` is `StoreError.consentTokenRejected` whose reason contains `reason`.
func isTokenRejection(_ error: any Error, _ reason: String) -> Bool {
    if case StoreError.consentTokenRejected(let why) = error { return why.contains(reason) }
    return false
}


/// An audit hook that runs an action once, on the first event it is told to wait for.
final class TriggerHook: AuditHook, @unchecked Sendable {
    private let lock = NSLock()
    private var action: ((AuditEvent) -> Bool)?

    /// Runs `action` on each event until it returns true, then no more.
    func arm(_ action: @escaping (AuditEvent) -> Bool) { lock.withLock { self.action = action } }

    func record(_ events: [AuditEvent]) throws {
        let action = lock.withLock { self.action }
        guard let action else { return }
        for event in events where action(event) {
            lock.withLock { self.action = nil }
            return
        }
    }
}

@Suite("Consent ledger and purpose-bound access")
struct ConsentTests {
    static let marketing: Purpose = "marketing-email"
    static let newsletter: Purpose = "newsletter"

    /// A store with a consent purpose (single opt-in), a double opt-in purpose and one subject.
    func prepared(_ backend: TestBackend, hooks: [any AuditHook] = []) throws -> (TestStore, SubjectID) {
        let test = try TestStore(backend, hooks: hooks)
        try test.store.declarePurpose(PurposeDeclaration(name: Self.marketing, description: "Offers by e-mail", lawfulBasis: .consent),
                                      context: TestStore.admin)
        try test.store.declarePurpose(PurposeDeclaration(name: Self.newsletter, description: "Monthly newsletter", lawfulBasis: .consent,
                                                         requiresDoubleOptIn: true), context: TestStore.admin)
        return (test, try test.store.create(sampleSubject("cs"), context: TestStore.admin))
    }

    func context(_ purpose: Purpose) -> AccessContext { AccessContext(actor: "mailer", purpose: purpose) }

    @Test("every store declares the built-in purposes on legitimate interest or legal obligation", arguments: TestBackend.all)
    func builtIns(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let purposes = Dictionary(uniqueKeysWithValues: test.store.purposes().map { ($0.name, $0) })
        #expect(purposes[.callerID]?.lawfulBasis == .legitimateInterest)
        #expect(purposes[.admin]?.lawfulBasis == .legitimateInterest)
        #expect(purposes[.subjectRequest]?.lawfulBasis == .legalObligation)
        #expect(purposes[.legalClaims]?.lawfulBasis == .legalObligation)
        #expect(purposes.values.allSatisfy { $0.lawfulBasis != .consent && !$0.requiresDoubleOptIn })
        // The purposes restriction allows cannot be made to depend on consent; others can be declared and redeclared.
        for builtIn in Purpose.allowedUnderRestriction {
            #expect(throws: StoreError.self) {
                try test.store.declarePurpose(PurposeDeclaration(name: builtIn, description: "x", lawfulBasis: .consent), context: TestStore.admin)
            }
        }
        try test.store.declarePurpose(PurposeDeclaration(name: "billing", description: "Invoices", lawfulBasis: .contract,
                                                         requiresDoubleOptIn: true), context: TestStore.admin)
        let billing = try #require(test.store.purposes().first { $0.name == "billing" })
        #expect(billing.lawfulBasis == .contract && !billing.requiresDoubleOptIn)
        // Declarations are kept in the data database.
        let reopened = try test.reopen()
        #expect(reopened.purposes() == test.store.purposes())
        reopened.close()
    }

    @Test("imported contacts are found, read and exported without consent entries; the importer records no consent", arguments: TestBackend.all)
    func legitimateInterestWithoutConsent(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let csv = "external_id,kind,name,phone,consent,marketing_opt_in\nimp-1,contact,Imogen Import,020 7946 0000,yes,true\n"
        _ = try CSVImporter(store: test.store).run(Array(csv.utf8), context: TestStore.admin)
        let id = try test.store.resolve("imp-1")
        #expect(try test.store.consentLedger(of: id, context: TestStore.admin).isEmpty)
        #expect(try test.store.callerID(number: "+442079460000", context: TestStore.caller).map(\.name) == ["Imogen Import"])
        #expect(try test.store.read(id, context: TestStore.admin).personal.name == "Imogen Import")
        let export = try test.store.export(id, context: AccessContext(actor: "dpo", purpose: .subjectRequest))
        #expect(export.consents.isEmpty && export.personal.name == "Imogen Import")
        #expect(try test.store.read(id, context: AccessContext(actor: "lawyer", purpose: .legalClaims)).personal.name != nil)
    }

    @Test("a consent-based purpose reads only after a grant; missing and withdrawn consent are refused and audited as refused", arguments: TestBackend.all)
    func grantAndWithdraw(backend: TestBackend) throws {
        let hook = RecordingHook()
        let (test, id) = try prepared(backend, hooks: [hook])
        defer { test.cleanUp() }
        #expect { try test.store.read(id, fields: [.emails], context: context(Self.marketing)) } throws: {
            isRefusal($0, "no consent for marketing-email")
        }
        let missing = try #require(hook.events.last)
        #expect(missing.action == .decrypt && missing.outcome == .refused && missing.subject == id)
        #expect(missing.purpose == "marketing-email" && missing.detail == "no consent for marketing-email")
        let grant = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "signup form v3, box ticked by the subject",
                                                initiator: .subject, clientAddress: "203.0.113.7", context: TestStore.admin)
        #expect(grant.state == .granted && grant.confirmationToken == nil && grant.purpose == Self.marketing)
        #expect(try test.store.read(id, fields: [.emails], context: context(Self.marketing)).personal.emails == ["zebedee.cs@example.org"])
        #expect(hook.events.last?.outcome == .ok)
        let withdrawal = try test.store.withdrawConsent(id, purpose: Self.marketing, initiator: .subject, context: TestStore.admin)
        #expect(withdrawal.state == .withdrawn)
        #expect { try test.store.read(id, fields: [.emails], context: context(Self.marketing)) } throws: {
            isRefusal($0, "no consent for marketing-email")
        }
        #expect(hook.events.last?.outcome == .refused && hook.events.last?.subject == id)
        // The export obeys the same rule (it decrypts through the same path).
        #expect { try test.store.export(id, context: context(Self.marketing)) } throws: { isRefusal($0, "no consent") }
        // The refusals are in the store's own log too, as refused.
        var refused: [AuditEntry] = []
        try test.store.auditEntries(AuditFilter(subject: id)) { entry, _ in if entry.outcome == "refused" { refused.append(entry) } }
        #expect(refused.count == 3 && refused.allSatisfy { $0.purpose == "marketing-email" && $0.action == "decrypt" })
        // Legitimate-interest purposes need no consent entry.
        #expect(try test.store.read(id, fields: [.name], context: TestStore.admin).personal.name != nil)
        #expect(try test.store.callerID(number: "+442079460958", context: TestStore.caller).count == 1)
    }

    @Test("no evidence, no consent; consent is only for consent-based, declared purposes; unknown and erased subjects", arguments: TestBackend.all)
    func preTickedAndUndeclared(backend: TestBackend) throws {
        let hook = RecordingHook()
        let (test, id) = try prepared(backend, hooks: [hook])
        defer { test.cleanUp() }
        #expect { try test.store.grantConsent(id, purpose: Self.marketing, evidence: "  ", initiator: .import, context: TestStore.admin) }
            throws: { if case StoreError.consentEvidenceMissing = $0 { true } else { false } }
        #expect { try test.store.grantConsent(id, purpose: .callerID, evidence: "x", initiator: .staff, context: TestStore.admin) }
            throws: { if case StoreError.purposeNotOnConsent(.callerID, lawfulBasis: _) = $0 { true } else { false } }
        #expect { try test.store.grantConsent(id, purpose: "profiling", evidence: "x", initiator: .staff, context: TestStore.admin) }
            throws: { if case StoreError.undeclaredPurpose("profiling") = $0 { true } else { false } }
        #expect { try test.store.withdrawConsent(id, purpose: .callerID, initiator: .subject, context: TestStore.admin) }
            throws: { if case StoreError.purposeNotOnConsent(.callerID, lawfulBasis: _) = $0 { true } else { false } }
        #expect(try test.store.consentLedger(of: id, context: TestStore.admin).isEmpty)
        // A read for an undeclared purpose is refused, and audited as refused.
        #expect { try test.store.read(id, context: AccessContext(actor: "x", purpose: "profiling")) } throws: {
            isRefusal($0, "purpose profiling is not declared")
        }
        #expect(hook.events.last?.outcome == .refused && hook.events.last?.purpose == "profiling")
        // Unknown and erased subjects.
        #expect {
            try test.store.grantConsent(SubjectID(rawValue: 9999), purpose: Self.marketing, evidence: "form", initiator: .subject,
                                        context: TestStore.admin)
        } throws: { error in
            if case StoreError.subjectNotFound("9999") = error { return true }
            return false
        }
        try test.store.erase(id, reason: "Art. 17 request", context: TestStore.admin)
        #expect {
            try test.store.grantConsent(id, purpose: Self.marketing, evidence: "form", initiator: .subject, context: TestStore.admin)
        } throws: { error in
            if case StoreError.subjectErased(id) = error { return true }
            return false
        }
    }

    @Test("double opt-in: pending until confirmed with the single-use token; wrong, reused, overtaken and expired tokens are refused", arguments: TestBackend.all)
    func doubleOptIn(backend: TestBackend) throws {
        let (test, id) = try prepared(backend)
        defer { test.cleanUp() }
        let before = Date()
        let pending = try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "newsletter form", initiator: .subject,
                                                  context: TestStore.admin)
        let token = try #require(pending.confirmationToken)
        #expect(pending.state == .pending && token.count == 48)
        let expiry = try #require(pending.tokenExpiresAt)
        #expect(abs(expiry.timeIntervalSince(before) - Store.confirmationTokenLifetime) < 60)
        // Pending is not consent.
        #expect { try test.store.read(id, fields: [.emails], context: context(Self.newsletter)) } throws: { isRefusal($0, "no consent") }
        #expect { try test.store.confirmConsent(id, token: "not-the-token", context: TestStore.admin) } throws: {
            isTokenRejection($0, "no pending consent")
        }
        // The token is not stored: only its SHA-256 hash.
        let stored = try test.database(.data).firstRow("SELECT token_hash FROM consent_ledger WHERE id = ?",
                                                               [.integer(pending.entryID)]) { $0.blob(0) } ?? nil
        #expect(stored == SHA256.hash(Array(token.utf8)))
        let confirmed = try test.store.confirmConsent(id, token: token, clientAddress: "203.0.113.9", context: TestStore.admin)
        #expect(confirmed.state == .confirmed && confirmed.purpose == Self.newsletter)
        #expect(try test.store.read(id, fields: [.emails], context: context(Self.newsletter)).personal.emails?.count == 1)
        #expect { try test.store.confirmConsent(id, token: token, context: TestStore.admin) } throws: {
            isTokenRejection($0, "used")
        }
        let ledger = try test.store.consentLedger(of: id, context: TestStore.admin)
        #expect(ledger.map(\.state) == [.pending, .confirmed])
        #expect(ledger[1].confirms == ledger[0].id && ledger[1].initiator == .subject && ledger[1].clientAddress == "203.0.113.9")
        // A token whose grant was withdrawn before confirmation no longer works.
        let second = try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "again", initiator: .subject, context: TestStore.admin)
        _ = try test.store.withdrawConsent(id, purpose: Self.newsletter, initiator: .subject, context: TestStore.admin)
        #expect { try test.store.confirmConsent(id, token: second.confirmationToken!, context: TestStore.admin) } throws: {
            isTokenRejection($0, "changed")
        }
        // An expired token is refused, and the consent stays pending.
        let shortLived = try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "form", initiator: .subject,
                                                     tokenLifetime: 0.05, context: TestStore.admin)
        Thread.sleep(forTimeInterval: 0.2)
        #expect { try test.store.confirmConsent(id, token: shortLived.confirmationToken!, context: TestStore.admin) } throws: {
            isTokenRejection($0, "expired")
        }
        #expect(try test.store.consentLedger(of: id, context: TestStore.admin).last?.state == .pending)
        #expect { try test.store.read(id, fields: [.emails], context: context(Self.newsletter)) } throws: { isRefusal($0, "no consent") }
        // A token belongs to its subject.
        let other = try test.store.create(sampleSubject("other"), context: TestStore.admin)
        let third = try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "form", initiator: .subject, context: TestStore.admin)
        #expect { try test.store.confirmConsent(other, token: third.confirmationToken!, context: TestStore.admin) } throws: {
            isTokenRejection($0, "no pending consent")
        }
        #expect { try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "form", initiator: .subject, tokenLifetime: 0,
                                              context: TestStore.admin) } throws: {
            if case StoreError.invalidTokenLifetime(seconds: 0, maxSeconds: _) = $0 { true } else { false }
        }
    }

    @Test("a token confirmed by many threads at once is accepted once", arguments: TestBackend.all)
    func concurrentConfirmation(backend: TestBackend) throws {
        let (test, id) = try prepared(backend)
        defer { test.cleanUp() }
        let token = try #require(try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "form", initiator: .subject,
                                                             context: TestStore.admin).confirmationToken)
        let second = try test.reopen()
        defer { second.close() }
        let stores = [test.store, second]
        let outcomes = Mutex<[Bool]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { index in
            let accepted = (try? stores[index % 2].confirmConsent(id, token: token, context: TestStore.admin)) != nil
            outcomes.withLock { $0.append(accepted) }
        }
        #expect(outcomes.withLock { $0.filter { $0 }.count } == 1)
        #expect(try test.store.consentLedger(of: id, context: TestStore.admin).map(\.state) == [.pending, .confirmed])
    }

    @Test("the ledger is append-only and in order; its address and evidence are not on disk in clear", arguments: TestBackend.all)
    func ledger(backend: TestBackend) throws {
        let (test, id) = try prepared(backend)
        defer { test.cleanUp() }
        let address = "198.51.100.42"
        let evidence = "Formulaire Zéphyr v7: « J'accepte » coché"
        _ = try test.store.grantConsent(id, purpose: Self.marketing, evidence: evidence, initiator: .subject, clientAddress: address,
                                        context: TestStore.admin)
        _ = try test.store.withdrawConsent(id, purpose: Self.marketing, evidence: "unsubscribe link Quokka-77", initiator: .subject,
                                           clientAddress: "2001:db8::77", context: TestStore.admin)
        let pending = try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "newsletter box Wombat-5", initiator: .staff,
                                                  context: TestStore.admin)
        _ = try test.store.confirmConsent(id, token: pending.confirmationToken!, clientAddress: "192.0.2.99", context: TestStore.admin)
        let entries = try test.store.consentLedger(of: id, context: TestStore.admin)
        #expect(entries.map(\.state) == [.granted, .withdrawn, .pending, .confirmed])
        #expect(entries.map(\.purpose) == ["marketing-email", "marketing-email", "newsletter", "newsletter"])
        #expect(entries.map(\.initiator) == [.subject, .subject, .staff, .subject])
        #expect(entries.map(\.id) == entries.map(\.id).sorted() && Set(entries.map(\.id)).count == 4)
        #expect(entries.map(\.time) == entries.map(\.time).sorted())
        #expect(entries[0].clientAddress == address && entries[0].evidence == evidence)
        #expect(entries[1].clientAddress == "2001:db8::77" && entries[1].evidence == "unsubscribe link Quokka-77")
        #expect(entries[2].clientAddress == nil && entries[3].evidence == nil && entries[3].confirms == entries[2].id)

        // Append-only: an entry's facts and sealed parts cannot be changed, nor an entry deleted.
        let raw = try test.database(.data)
        #expect(throws: (any Error).self) { try raw.run("UPDATE consent_ledger SET state = 'granted'") }
        #expect(throws: (any Error).self) { try raw.run("UPDATE consent_ledger SET at = 0 WHERE id = ?", [.integer(entries[1].id)]) }
        #expect(throws: (any Error).self) { try raw.run("UPDATE consent_ledger SET evidence_ct = NULL WHERE id = ?", [.integer(entries[0].id)]) }
        #expect(throws: (any Error).self) { try raw.run("DELETE FROM consent_ledger WHERE id = ?", [.integer(entries[1].id)]) }
        #expect(throws: (any Error).self) { try raw.run("DELETE FROM consent_ledger") }
        #expect(try test.store.consentLedger(of: id, context: TestStore.admin) == entries)

        // A sealed part moved to another entry does not open.
        switch backend {
        case .sqlite: try raw.run("DROP TRIGGER consent_ledger_reseal_only")
        case .postgres: try raw.run("DROP TRIGGER consent_ledger_append_only ON consent_ledger")
        }
        try raw.run("UPDATE consent_ledger SET client_ct = (SELECT client_ct FROM consent_ledger WHERE id = ?) WHERE id = ?",
                    [.integer(entries[0].id), .integer(entries[1].id)])
        #expect { try test.store.consentLedger(of: id, context: TestStore.admin) } throws: { error in
            if case StoreError.unreadableField(_, "consent.client_address", .misplaced) = error { return true }
            return false
        }

        // No file of the store (SQLite), no row of either schema (PostgreSQL), holds the address or the
        // evidence, in UTF-8 or UTF-16 (the audit log included).
        test.store.close()
        let secrets = [address, "2001:db8::77", "192.0.2.99", evidence, "Zéphyr", "Quokka-77", "Wombat-5"]
        let content = try test.storedContent()
        #expect(content.contains { $0.place.hasSuffix(backend == .sqlite ? "data.sqlite" : ".consent_ledger") }
                && content.contains { $0.place.hasSuffix(backend == .sqlite ? ".jsonl" : ".audit_log") })
        PlaintextScan.expectAbsent(secrets, from: content, backend: backend)
    }

    @Test("the export carries the decrypted ledger under the key consents, layout version 1", arguments: TestBackend.all)
    func export(backend: TestBackend) throws {
        let (test, id) = try prepared(backend)
        defer { test.cleanUp() }
        _ = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "form A", initiator: .subject, clientAddress: "198.51.100.4",
                                        context: TestStore.admin)
        let entries = try test.store.consentLedger(of: id, context: TestStore.admin)
        let export = try test.store.export(id, context: AccessContext(actor: "dpo", purpose: .subjectRequest))
        #expect(export.version == 1 && export.consents == entries)
        let json = try #require(try JSONSerialization.jsonObject(with: export.jsonData()) as? [String: Any])
        let consents = try #require(json["consents"] as? [[String: Any]])
        #expect(consents.count == 1)
        #expect(consents[0]["purpose"] as? String == "marketing-email" && consents[0]["state"] as? String == "granted")
        #expect(consents[0]["client_address"] as? String == "198.51.100.4" && consents[0]["evidence"] as? String == "form A")
        #expect(consents[0]["initiator"] as? String == "subject" && consents[0]["time"] is String)
        // The ledger's decryption is in the access log the export returns.
        #expect(export.accessLog.contains { $0.action == "consent" && $0.detail == "marketing-email: granted (subject)" })
    }

    @Test("restriction wins over consent, except for the purposes it allows; refusals audited", arguments: TestBackend.all)
    func restrictionWins(backend: TestBackend) throws {
        let hook = RecordingHook()
        let (test, id) = try prepared(backend, hooks: [hook])
        defer { test.cleanUp() }
        _ = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "form B", initiator: .subject, context: TestStore.admin)
        try test.store.setRestricted(true, id, context: TestStore.admin)
        #expect { try test.store.read(id, context: context(Self.marketing)) } throws: { isRefusal($0, "processing is restricted") }
        #expect(hook.events.last?.outcome == .refused && hook.events.last?.detail == "processing is restricted")
        #expect { try test.store.read(id, context: TestStore.admin) } throws: { isRefusal($0, "processing is restricted") }
        #expect(try test.store.callerID(number: "+442079460958", context: TestStore.caller).isEmpty)
        #expect(hook.events.last?.outcome == .refused && hook.events.last?.purpose == "caller-id")
        #expect(try test.store.export(id, context: AccessContext(actor: "dpo", purpose: .subjectRequest)).consents.count == 1)
        #expect(try test.store.read(id, context: AccessContext(actor: "lawyer", purpose: .legalClaims)).personal.name != nil)
        try test.store.setRestricted(false, id, context: TestStore.admin)
        #expect(try test.store.read(id, fields: [.name], context: context(Self.marketing)).personal.name != nil)
    }

    @Test("data-key rotation re-encrypts the ledger and counts its seals; erasure removes it", arguments: TestBackend.all)
    func rotationAndErasure(backend: TestBackend) throws {
        let (test, id) = try prepared(backend)
        defer { test.cleanUp() }
        let raw = try test.database(.data)
        let seals = { try raw.scalarInteger("SELECT seal_count FROM subjects WHERE id = ?", [.integer(id.rawValue)]) }
        let fieldSeals = try seals()
        _ = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "form B", initiator: .subject, clientAddress: "192.0.2.1",
                                        context: TestStore.admin)
        // Client address, evidence and the sealed actor.
        #expect(try seals() == fieldSeals.map { $0 + 3 })
        _ = try test.store.withdrawConsent(id, purpose: Self.marketing, initiator: .subject, context: TestStore.admin)
        #expect(try seals() == fieldSeals.map { $0 + 4 })
        let before = try raw.firstRow("SELECT client_ct, key_version FROM consent_ledger ORDER BY id LIMIT 1") { ($0.blob(0), $0.int64(1)) }
        _ = try test.store.rotateDataKey(of: id, context: TestStore.admin)
        let after = try raw.firstRow("SELECT client_ct, key_version FROM consent_ledger ORDER BY id LIMIT 1") { ($0.blob(0), $0.int64(1)) }
        #expect(before?.0 != after?.0 && after?.1 == (before?.1 ?? 0) + 1)
        #expect(try seals() == fieldSeals.map { $0 + 4 })
        #expect(try test.store.consentLedger(of: id, context: TestStore.admin).first?.clientAddress == "192.0.2.1")
        try test.store.erase(id, reason: "Art. 17", context: TestStore.admin)
        #expect(try raw.scalarInteger("SELECT count(*) FROM consent_ledger") == 0)
        #expect(try test.store.verifyAuditLog().isIntact)
    }

    @Test("a consent recorded while the subject's data key rotates is never left under the destroyed key", arguments: TestBackend.all)
    func consentDuringRotation(backend: TestBackend) throws {
        let trigger = TriggerHook()
        let (test, id) = try prepared(backend, hooks: [trigger])
        defer { test.cleanUp() }
        _ = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "form 1", initiator: .subject, clientAddress: "192.0.2.1",
                                        context: TestStore.admin)
        // Another process appends to the ledger between the rotation's read and its write.
        let other = try test.reopen()
        defer { other.close() }
        trigger.arm { event in
            guard event.action == .decrypt, event.purpose == Purpose.keyRotation.rawValue else { return false }
            _ = try? other.withdrawConsent(id, purpose: Self.marketing, evidence: "form 2", initiator: .subject, clientAddress: "192.0.2.2",
                                           context: TestStore.admin)
            return true
        }
        #expect { try test.store.rotateDataKey(of: id, context: TestStore.admin) } throws: { error in
            if case StoreError.concurrentChange(id) = error { return true }
            return false
        }
        let ledger = try test.store.consentLedger(of: id, context: TestStore.admin)
        #expect(ledger.map(\.evidence) == ["form 1", "form 2"])
        _ = try test.store.rotateDataKey(of: id, context: TestStore.admin)
        #expect(try test.store.consentLedger(of: id, context: TestStore.admin) == ledger)
        #expect(try test.store.read(id, context: TestStore.admin).personal.name == "Zebedee Quixotic-cs")
    }

    @Test("a purpose declared by another process takes effect within the refresh interval", arguments: TestBackend.all)
    func declarationsFromAnotherProcess(backend: TestBackend) throws {
        let (test, id) = try prepared(backend)
        defer { test.cleanUp() }
        let other = try test.reopen()
        defer { other.close() }
        #expect { try test.store.read(id, fields: [.name], context: context("survey")) } throws: { isRefusal($0, "not declared") }
        try other.declarePurpose(PurposeDeclaration(name: "survey", description: "Satisfaction survey", lawfulBasis: .consent),
                                 context: TestStore.admin)
        try other.declarePurpose(PurposeDeclaration(name: Self.marketing, description: "Offers", lawfulBasis: .legitimateInterest),
                                 context: TestStore.admin)
        Thread.sleep(forTimeInterval: 1.2)
        #expect { try test.store.read(id, fields: [.name], context: context("survey")) } throws: { isRefusal($0, "no consent for survey") }
        #expect(try test.store.read(id, fields: [.name], context: context(Self.marketing)).personal.name != nil)
    }
}
