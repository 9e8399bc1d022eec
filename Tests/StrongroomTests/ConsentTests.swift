import Foundation
import Strongroom
import StrongroomCrypto
import Testing

@Suite("Consent ledger and purpose-bound access")
struct ConsentTests {
    static let marketing: Purpose = "marketing-email"
    static let newsletter: Purpose = "newsletter"

    /// A store with a consent purpose (single opt-in), a double opt-in purpose and one subject.
    func prepared(hooks: [any AuditHook] = []) throws -> (TestStore, SubjectID) {
        let test = try TestStore(hooks: hooks)
        try test.store.declarePurpose(PurposeDeclaration(name: Self.marketing, description: "Offers by e-mail", lawfulBasis: .consent),
                                      context: TestStore.admin)
        try test.store.declarePurpose(PurposeDeclaration(name: Self.newsletter, description: "Monthly newsletter", lawfulBasis: .consent,
                                                         requiresDoubleOptIn: true), context: TestStore.admin)
        return (test, try test.store.create(sampleSubject("cs"), context: TestStore.admin))
    }

    func context(_ purpose: Purpose) -> AccessContext { AccessContext(actor: "mailer", purpose: purpose) }

    @Test("a consent-based purpose reads only after a grant, and not after a withdrawal; refusals are audited")
    func grantAndWithdraw() throws {
        let hook = RecordingHook()
        let (test, id) = try prepared(hooks: [hook])
        defer { test.cleanUp() }
        #expect(throws: StoreError.self) { try test.store.read(id, fields: [.emails], context: context(Self.marketing)) }
        #expect(hook.events.last?.outcome == .refused && hook.events.last?.detail == "no consent for marketing-email")
        let grant = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "signup form v3, box ticked by the subject",
                                                initiator: .subject, clientAddress: "203.0.113.7", context: TestStore.admin)
        #expect(grant.state == .granted && grant.confirmationToken == nil)
        #expect(try test.store.read(id, fields: [.emails], context: context(Self.marketing)).personal.emails == ["zebedee.cs@example.org"])
        _ = try test.store.withdrawConsent(id, purpose: Self.marketing, initiator: .subject, context: TestStore.admin)
        #expect(throws: StoreError.self) { try test.store.read(id, fields: [.emails], context: context(Self.marketing)) }
        // Legitimate-interest purposes need no consent entry.
        #expect(try test.store.read(id, fields: [.name], context: TestStore.admin).personal.name != nil)
        #expect(try test.store.callerID(number: "+442079460958", context: TestStore.caller).count == 1)
    }

    @Test("no evidence, no consent; undeclared purposes are refused")
    func preTickedAndUndeclared() throws {
        let (test, id) = try prepared()
        defer { test.cleanUp() }
        #expect(throws: StoreError.self) {
            try test.store.grantConsent(id, purpose: Self.marketing, evidence: "  ", initiator: .import, context: TestStore.admin)
        }
        #expect(throws: StoreError.self) {
            try test.store.grantConsent(id, purpose: .callerID, evidence: "x", initiator: .staff, context: TestStore.admin)
        }
        #expect(throws: StoreError.self) { try test.store.read(id, context: AccessContext(actor: "x", purpose: "profiling")) }
    }

    @Test("double opt-in: pending until confirmed with the single-use token; wrong, reused and stale tokens are refused")
    func doubleOptIn() throws {
        let (test, id) = try prepared()
        defer { test.cleanUp() }
        let pending = try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "newsletter form", initiator: .subject,
                                                  context: TestStore.admin)
        let token = try #require(pending.confirmationToken)
        #expect(pending.state == .pending)
        #expect(throws: StoreError.self) { try test.store.read(id, fields: [.emails], context: context(Self.newsletter)) }
        #expect(throws: StoreError.self) { try test.store.confirmConsent(id, token: "not-the-token", context: TestStore.admin) }
        let confirmed = try test.store.confirmConsent(id, token: token, clientAddress: "203.0.113.9", context: TestStore.admin)
        #expect(confirmed.state == .confirmed)
        #expect(try test.store.read(id, fields: [.emails], context: context(Self.newsletter)).personal.emails?.count == 1)
        #expect {
            try test.store.confirmConsent(id, token: token, context: TestStore.admin)
        } throws: { error in
            if case StoreError.consentTokenRejected = error { return true }
            return false
        }
        // A token whose grant was withdrawn before confirmation no longer works.
        let second = try test.store.grantConsent(id, purpose: Self.newsletter, evidence: "again", initiator: .subject, context: TestStore.admin)
        _ = try test.store.withdrawConsent(id, purpose: Self.newsletter, initiator: .subject, context: TestStore.admin)
        #expect(throws: StoreError.self) { try test.store.confirmConsent(id, token: second.confirmationToken!, context: TestStore.admin) }
    }

    @Test("the ledger is append-only, in order, decrypted through the audited path, and in the export")
    func ledger() throws {
        let (test, id) = try prepared()
        defer { test.cleanUp() }
        _ = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "form A", initiator: .subject, clientAddress: "198.51.100.4",
                                        context: TestStore.admin)
        _ = try test.store.withdrawConsent(id, purpose: Self.marketing, evidence: "unsubscribe link", initiator: .subject,
                                           context: TestStore.admin)
        let entries = try test.store.consentLedger(of: id, context: TestStore.admin)
        #expect(entries.map(\.state) == [.granted, .withdrawn])
        #expect(entries[0].clientAddress == "198.51.100.4" && entries[0].evidence == "form A" && entries[1].evidence == "unsubscribe link")
        #expect(throws: (any Error).self) { try test.database("data.sqlite").run("UPDATE consent_ledger SET state = 'granted'") }
        let export = try test.store.export(id, context: AccessContext(actor: "dpo", purpose: .subjectRequest))
        #expect(export.consents == entries)
        // The address and evidence are not on disk in clear.
        test.store.close()
        for file in test.files() {
            let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: file)), as: UTF8.self)
            #expect(!text.contains("198.51.100.4") && !text.contains("unsubscribe link"), "\(file)")
        }
    }

    @Test("restriction wins over consent; data-key rotation re-encrypts the ledger; erasure removes it")
    func restrictionRotationErasure() throws {
        let (test, id) = try prepared()
        defer { test.cleanUp() }
        _ = try test.store.grantConsent(id, purpose: Self.marketing, evidence: "form B", initiator: .subject, clientAddress: "192.0.2.1",
                                        context: TestStore.admin)
        try test.store.setRestricted(true, id, context: TestStore.admin)
        #expect(throws: StoreError.self) { try test.store.read(id, context: context(Self.marketing)) }
        try test.store.setRestricted(false, id, context: TestStore.admin)
        try test.store.rotateDataKey(of: id, context: TestStore.admin)
        #expect(try test.store.consentLedger(of: id, context: TestStore.admin).first?.clientAddress == "192.0.2.1")
        try test.store.erase(id, reason: "Art. 17", context: TestStore.admin)
        #expect(try test.database("data.sqlite").scalarInteger("SELECT count(*) FROM consent_ledger") == 0)
        #expect(try test.store.verifyAuditLog().isIntact)
    }
}
