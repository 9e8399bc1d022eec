import Foundation
@testable import Strongroom
import StrongroomStorage
import Testing

/// Purposes that cannot undo consent, and the consent ledger's actor (issue #19).
@Suite("Purposes that cannot undo consent; the ledger's actor")
struct PurposeLedgerTests {
    static let marketing: Purpose = "marketing-email"
    static let newsletter: Purpose = "newsletter"
    static let mailer = AccessContext(actor: "mailer", purpose: marketing)
    static let alice = AccessContext(actor: "alice", purpose: .admin)

    /// Whether `error` is `StoreError.purposeWeakened` whose reason contains `reason`.
    func isWeakening(_ error: any Error, _ reason: String) -> Bool {
        if case StoreError.purposeWeakened(_, let why) = error { return why.contains(reason) }
        return false
    }

    func declare(_ name: Purpose, _ basis: LawfulBasis, doubleOptIn: Bool = false, in store: Store) throws {
        try store.declarePurpose(PurposeDeclaration(name: name, description: "test", lawfulBasis: basis,
                                                    requiresDoubleOptIn: doubleOptIn), context: TestStore.admin)
    }

    @Test("re-declaring a purpose with ledger entries away from consent, or without double opt-in, is refused; strengthening is not",
          arguments: TestBackend.all)
    func weakeningRefused(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        try declare(Self.marketing, .consent, in: test.store)
        try declare(Self.newsletter, .consent, doubleOptIn: true, in: test.store)
        let id = try test.store.create(sampleSubject("pw"), context: TestStore.admin)
        // Before any ledger entry a purpose may still change freely.
        try declare(Self.marketing, .consent, in: test.store)
        _ = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "form", initiator: .subject, context: Self.alice)
        _ = try test.store.withdrawConsent(id, purpose: Self.marketing, initiator: .subject, context: Self.alice)
        _ = try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "form", initiator: .subject, context: Self.alice)

        #expect { try declare(Self.marketing, .legitimateInterest, in: test.store) } throws: { isWeakening($0, "from consent") }
        #expect { try declare(Self.newsletter, .consent, in: test.store) } throws: { isWeakening($0, "double opt-in") }
        #expect(StoreError.purposeWeakened(Self.marketing, reason: "x").description.contains("declare a new purpose instead"))
        // Nothing changed: the withdrawn subject stays unreadable for marketing.
        #expect(test.store.purposes().first { $0.name == Self.marketing }?.lawfulBasis == .consent)
        #expect { try test.store.read(id, context: Self.mailer) } throws: { isRefusal($0, "no consent") }
        // Repeating or strengthening is fine.
        try declare(Self.newsletter, .consent, doubleOptIn: true, in: test.store)
        try declare(Self.marketing, .consent, doubleOptIn: true, in: test.store)
        #expect { try declare(Self.marketing, .consent, in: test.store) } throws: { isWeakening($0, "double opt-in") }

        // Second act: another process sees the same declarations and refuses the same weakening.
        let reopened = try test.reopen()
        #expect { try declare(Self.marketing, .contract, in: reopened) } throws: { isWeakening($0, "from consent") }
        #expect(reopened.purposes().first { $0.name == Self.marketing }?.requiresDoubleOptIn == true)
        #expect { try reopened.read(id, context: Self.mailer) } throws: { isRefusal($0, "no consent") }
        // The export lists the declarations of the purposes consented to (marketing, once granted).
        let export = try reopened.export(id, context: AccessContext(actor: "dpo", purpose: .subjectRequest))
        #expect(export.purposes.map(\.name) == [Self.marketing])
        #expect(export.purposes.first?.lawfulBasis == .consent && export.purposes.first?.requiresDoubleOptIn == true)
    }

    @Test("each ledger entry records its actor (sealed); reads and rotations keep it; an edited entry fails to read", arguments: TestBackend.all)
    func actorRecorded(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        try declare(Self.newsletter, .consent, doubleOptIn: true, in: test.store)
        let id = try test.store.create(sampleSubject("ac"), context: TestStore.admin)
        let grant = try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "form", initiator: .staff, context: Self.alice)
        _ = try test.store.confirmConsent(id, token: try #require(grant.confirmationToken),
                                          context: AccessContext(actor: "web-confirm", purpose: .admin))
        #expect(try test.store.consentLedger(of: id, context: TestStore.admin).map(\.actor) == ["alice", "web-confirm"])
        // The actor is sealed in the ledger (the audit log names actors in clear, as it always has).
        let raw = try test.database(.data)
        let sealed = try raw.rows("SELECT actor_ct FROM consent_ledger ORDER BY id") { $0.blob(0) }
        #expect(sealed.count == 2 && sealed.allSatisfy { $0 != nil && !PlaintextScan.contains($0!, Array("web-confirm".utf8)) })

        // Second act: after a data-key rotation and from another process, the actors read back.
        _ = try test.store.rotateAllDataKeys(context: TestStore.admin)
        let reopened = try test.reopen()
        #expect(try reopened.consentLedger(of: id, context: TestStore.admin).map(\.actor) == ["alice", "web-confirm"])

        // The sealed actor changes only under a newer key (re-encryption): removing it is refused.
        #expect(throws: (any Error).self) { try raw.run("UPDATE consent_ledger SET actor_ct = NULL") }
        // An entry whose clear facts were edited (pending turned into granted) no longer matches its sealed actor.
        try raw.execute(backend == .sqlite ? "DROP TRIGGER consent_ledger_append_only"
                                           : "ALTER TABLE consent_ledger DISABLE TRIGGER consent_ledger_append_only")
        try raw.run("UPDATE consent_ledger SET state = 'granted' WHERE state = 'pending'")
        #expect(throws: StoreError.self) { try reopened.consentLedger(of: id, context: TestStore.admin) }
    }

    @Test("a store made before the ledger recorded actors (data schema 6) opens; its entries read as unknown and still count",
          arguments: TestBackend.all)
    func previousVersionOpens(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        try declare(Self.marketing, .consent, in: test.store)
        let id = try test.store.create(sampleSubject("pv"), context: TestStore.admin)
        _ = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "form", initiator: .subject, clientAddress: "203.0.113.7",
                                        context: Self.alice)
        test.store.close()
        let raw = try test.database(.data)
        try PreviousSchema.rewindData(raw, to: 6, backend)

        let reopened = try test.reopen()
        #expect(try raw.schemaVersion() == PreviousSchema.latestData(backend))
        let ledger = try reopened.consentLedger(of: id, context: TestStore.admin)
        #expect(ledger.map(\.actor) == [ConsentActorSeal.unknownActor] && ledger.first?.clientAddress == "203.0.113.7")
        #expect(try reopened.read(id, context: Self.mailer).personal.name != nil)
        _ = try reopened.withdrawConsent(id, purpose: Self.marketing, initiator: .subject, context: Self.alice)
        // Second act: a rotation re-seals old and new entries alike; another process reads both.
        _ = try reopened.rotateAllDataKeys(context: TestStore.admin)
        let again = try test.reopen()
        #expect(try again.consentLedger(of: id, context: TestStore.admin).map(\.actor) == [ConsentActorSeal.unknownActor, "alice"])
        #expect { try again.read(id, context: Self.mailer) } throws: { isRefusal($0, "no consent") }
    }
}
