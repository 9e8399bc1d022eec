import Foundation
@testable import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Testing

/// Erasure receipts: every field, kept and found again, and verified against their MAC and audit entry.
@Suite("Erasure receipts: kept, found by id or external id, verified")
struct ErasureReceiptTests {
    static let reason = "Art. 17 request R1"

    /// A subject with a phone number, a consent entry and a logged call, erased: the store and its receipt.
    static func erasedSubject(_ backend: TestBackend) throws -> (test: TestStore, receipt: ErasureReceipt) {
        let test = try TestStore(backend)
        let marketing: Purpose = "marketing-email"
        try test.store.declarePurpose(PurposeDeclaration(name: marketing, description: "Offers", lawfulBasis: .consent),
                                      context: TestStore.admin)
        let id = try test.store.create(sampleSubject("r1"), context: TestStore.admin)
        _ = try test.store.create(sampleSubject("r2", phones: ["+44 20 7946 0777"]), context: TestStore.admin)
        _ = try test.store.grantConsent(id, purpose: marketing, evidence: "web form", initiator: .subject, context: TestStore.admin)
        _ = try test.store.recordCall(number: "+44 20 7946 0958", context: TestStore.caller)
        return (test, try test.store.erase(id, reason: reason, context: TestStore.admin).receipt)
    }

    @Test("erase returns a receipt with every field; it is stored and found by store id and by external id", arguments: TestBackend.all)
    func fields(backend: TestBackend) throws {
        let (test, receipt) = try Self.erasedSubject(backend)
        defer { test.cleanUp() }
        #expect(receipt.receipt.count == 32 && receipt.receipt.allSatisfy(\.isHexDigit))
        #expect(receipt.externalID == "ext-r1" && receipt.actor == "test-admin" && receipt.reason == Self.reason)
        #expect(receipt.destroyed == ErasureReceipt.Destroyed(subjectKeys: 1, rows: 1, indexEntries: 1, consentEntries: 1, calls: 1))
        #expect(abs(receipt.erasedAt.timeIntervalSinceNow) < 60)
        #expect(receipt.mac.count == 32)
        var erasures: [AuditEntry] = []
        try test.store.auditEntries(AuditFilter(subject: receipt.id)) { entry, _ in if entry.action == "erase" { erasures.append(entry) } }
        #expect(erasures.map(\.seq) == [try #require(receipt.auditSequence)])

        let byID = try test.store.erasureReceipt(for: String(receipt.id.rawValue))
        #expect(byID.externalID == nil && byID == receipt.with(externalID: nil))
        let byExternalID = try test.store.erasureReceipt(for: "ext-r1")
        #expect(byExternalID == receipt)
        #expect(try test.store.verifyErasureReceipt(byID).isVerified)
        #expect(try test.store.verifyErasureReceipt(byExternalID).isVerified)
        // Not erased, or never there: no receipt.
        for reference in ["ext-r2", "999", "ext-unknown"] {
            #expect { try test.store.erasureReceipt(for: reference) } throws: { ($0 as? StoreError).map { "\($0)" }?.hasPrefix("no erasure receipt") ?? false }
        }
        // Second act: from another opening, found and verified again.
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.verifyErasureReceipt(try reopened.erasureReceipt(for: "ext-r1")).isVerified)
    }

    @Test("the library call beside `audit receipt` audits each lookup: verified, not verified, or nothing found (naming nothing)",
          arguments: TestBackend.all)
    func lookupsAreAudited(backend: TestBackend) throws {
        let (test, receipt) = try Self.erasedSubject(backend)
        defer { test.cleanUp() }
        let dpo = AccessContext(actor: "test-dpo", purpose: .subjectRequest)
        #expect(try test.store.checkErasureReceipt("ext-r1", context: dpo).isVerified)
        #expect { try test.store.checkErasureReceipt("ext-unknown", context: dpo) } throws: {
            ($0 as? StoreError).map { "\($0)" }?.hasPrefix("no erasure receipt") ?? false
        }
        var lookups: [AuditEntry] = []
        try test.store.auditEntries(AuditFilter(action: .receipt)) { entry, _ in lookups.append(entry) }
        #expect(lookups.map(\.outcome) == ["ok", "failed"] && lookups.allSatisfy { $0.actor == "test-dpo" })
        #expect(lookups[0].subject == String(receipt.id.rawValue) && lookups[0].detail == "verified")
        #expect(lookups[1].subject == nil && !(lookups[1].detail ?? "").contains("ext-unknown"))
        // Second act: another opening's lookup is audited too, and the log still verifies.
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.checkErasureReceipt(String(receipt.id.rawValue), context: dpo).isVerified)
        var again = 0
        try reopened.auditEntries(AuditFilter(action: .receipt)) { _, _ in again += 1 }
        #expect(again == 3)
        #expect(try reopened.verifyAuditLog().isIntact)
    }

    @Test("a receipt whose stored field or MAC was edited fails its MAC check; restored, it verifies again", arguments: TestBackend.all)
    func editedReceipt(backend: TestBackend) throws {
        let (test, receipt) = try Self.erasedSubject(backend)
        defer { test.cleanUp() }
        let keys = try test.database(.keys)
        let edits = [
            ("UPDATE tombstones SET reason = 'Art. 17 request R9' WHERE subject_id = ?", "UPDATE tombstones SET reason = '\(Self.reason)' WHERE subject_id = ?"),
            ("UPDATE tombstones SET destroyed_calls = 0 WHERE subject_id = ?", "UPDATE tombstones SET destroyed_calls = 1 WHERE subject_id = ?"),
            ("UPDATE tombstones SET audit_sequence = audit_sequence - 1 WHERE subject_id = ?",
             "UPDATE tombstones SET audit_sequence = audit_sequence + 1 WHERE subject_id = ?"),
        ]
        for (edit, undo) in edits {
            try keys.run(edit, [.integer(receipt.id.rawValue)])
            let verification = try test.store.verifyErasureReceipt(try test.store.erasureReceipt(for: "ext-r1"))
            #expect(verification.problem?.contains("MAC does not verify") == true, "\(edit)")
            try keys.run(undo, [.integer(receipt.id.rawValue)])
            #expect(try test.store.verifyErasureReceipt(try test.store.erasureReceipt(for: "ext-r1")).isVerified)
        }
        // A MAC changed in the receipt given.
        var mac = receipt.mac
        mac[0] ^= 1
        #expect(try test.store.verifyErasureReceipt(receipt.with(mac: mac)).isVerified == false)
    }

    @Test("a receipt whose audit entry was edited or removed is not verified", arguments: TestBackend.all, ["edit", "remove"])
    func editedEntry(backend: TestBackend, change: String) throws {
        let (test, receipt) = try Self.erasedSubject(backend)
        defer { test.cleanUp() }
        let sequence = try #require(receipt.auditSequence)
        test.store.close()
        switch backend {
        case .sqlite:
            let path = test.directory + "/audit/00000001.jsonl"
            var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let index = Int(sequence) - 1
            #expect(lines[index].contains(Self.reason))
            if change == "edit" { lines[index] = lines[index].replacingOccurrences(of: "R1", with: "R2") } else { lines.remove(at: index) }
            try lines.joined(separator: "\n").write(toFile: path, atomically: false, encoding: .utf8)
        case .postgres:
            let raw = try test.database(.data)
            if change == "edit" {
                let line = try #require(try raw.firstRow("SELECT line FROM audit_log WHERE sequence = ?", [.integer(Int64(sequence))]) {
                    $0.blob(0)
                } ?? nil)
                let edited = String(decoding: line, as: UTF8.self).replacingOccurrences(of: "R1", with: "R2")
                try raw.run("UPDATE audit_log SET line = ? WHERE sequence = ?", [.blob(Array(edited.utf8)), .integer(Int64(sequence))])
            } else {
                try raw.run("DELETE FROM audit_log WHERE sequence = ?", [.integer(Int64(sequence))])
            }
            #expect(raw.changes == 1)
        }
        let reopened = try test.reopen()
        defer { reopened.close() }
        let verification = try reopened.verifyErasureReceipt(try reopened.erasureReceipt(for: "ext-r1"))
        #expect(verification.problem?.contains("audit log does not verify") == true, "\(String(describing: verification.problem))")
        // Second act: the receipt itself is intact (its MAC), only its evidence is gone.
        #expect(try reopened.keyring.erasureKeys.mac(verification.receipt.canonicalEncoding) == verification.receipt.mac)
    }

    @Test("a receipt still verifies after every rotation kind, and from a store opened with the new master key", arguments: TestBackend.all)
    func survivesRotations(backend: TestBackend) throws {
        let (test, receipt) = try Self.erasedSubject(backend)
        defer { test.cleanUp() }
        let newMaster = try SecretKey.random()
        _ = try test.store.rotateMasterKey(to: newMaster, context: TestStore.admin)
        #expect(try test.store.verifyErasureReceipt(receipt).isVerified)
        _ = try test.store.rotateKeyEncryptionKey(context: TestStore.admin)
        #expect(try test.store.verifyErasureReceipt(receipt).isVerified)
        _ = try test.store.rotateAllDataKeys(context: TestStore.admin)
        #expect(try test.store.verifyErasureReceipt(receipt).isVerified)
        _ = try test.store.rotateIndexKey(context: TestStore.admin)
        #expect(try test.store.verifyErasureReceipt(try test.store.erasureReceipt(for: "ext-r1")).isVerified)
        test.store.close()
        let reopened = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: newMaster))
        defer { reopened.close() }
        #expect(try reopened.verifyErasureReceipt(try reopened.erasureReceipt(for: "ext-r1")) == ErasureReceiptVerification(receipt: receipt, problem: nil))
    }

    @Test("an erasure stopped after the key's destruction keeps its receipt; run again, it deletes the rows and returns that receipt",
          arguments: TestBackend.all)
    func erasureRunAgain(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("c1"), context: TestStore.admin)
        var configuration = StoreConfiguration()
        configuration.faultInjection = { point, _ in if point == "erase.key-destroyed" { throw CancellationError() } }
        let failing = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
        #expect(throws: (any Error).self) { try failing.erase(id, reason: Self.reason, context: TestStore.admin) }
        failing.close()
        let kept = try test.store.erasureReceipt(for: "ext-c1")
        #expect(try test.store.verifyErasureReceipt(kept).isVerified)
        let again = try test.store.erase(id, reason: "Art. 17 request R1, finished", context: TestStore.admin).receipt
        #expect(again == kept)
        #expect(try test.store.count() == 0)
        // Second act: from another opening, the one receipt verifies and the id stays erased.
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.verifyErasureReceipt(try reopened.erasureReceipt(for: String(id.rawValue))).isVerified)
        #expect(throws: StoreError.self) { try reopened.create(sampleSubject("c1"), context: TestStore.admin) }
    }

    @Test("a subject without an external id gets a receipt found by its store id")
    func withoutExternalID() throws {
        let test = try TestStore()
        defer { test.cleanUp() }
        var subject = sampleSubject("n1")
        subject.metadata.externalID = nil
        let id = try test.store.create(subject, context: TestStore.admin)
        let receipt = try test.store.erase(id, reason: Self.reason, context: TestStore.admin).receipt
        #expect(receipt.externalID == nil)
        #expect(try test.store.erasureReceipt(for: String(id.rawValue)) == receipt)
        #expect(try test.store.verifyErasureReceipt(receipt).isVerified)
        // A second subject without an external id is created and erased as well (the hash column is not unique for none).
        let other = try test.store.create(subject, context: TestStore.admin)
        #expect(try test.store.verifyErasureReceipt(try test.store.erase(other, reason: Self.reason, context: TestStore.admin).receipt).isVerified)
    }
}
