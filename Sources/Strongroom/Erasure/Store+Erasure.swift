import Foundation
import StrongroomCrypto
import StrongroomStorage

extension ErasureReceipt.Destroyed {
    /// These counts with `subjectKeys` destroyed.
    func with(subjectKeys: Int) -> ErasureReceipt.Destroyed {
        ErasureReceipt.Destroyed(subjectKeys: subjectKeys, rows: rows, indexEntries: indexEntries, consentEntries: consentEntries,
                                 calls: calls)
    }
}

extension Store {
    /// What erasing `id` deletes from the data database besides its key (counted inside the erasure's
    /// transaction, before it deletes): its row, blind-index entries, consent entries and calls.
    func erasedContent(of id: SubjectID, in connection: any Database) throws(DatabaseError) -> ErasureReceipt.Destroyed {
        try connection.firstRow("""
            SELECT (SELECT count(*) FROM phone_index WHERE subject_id = ?1), (SELECT count(*) FROM consent_ledger WHERE subject_id = ?1),
                (SELECT count(*) FROM calls WHERE subject_id = ?1)
            """, [.integer(id.rawValue)]) {
            ErasureReceipt.Destroyed(subjectKeys: 0, rows: 1, indexEntries: Int($0.int64(0)), consentEntries: Int($0.int64(1)),
                                     calls: Int($0.int64(2)))
        } ?? ErasureReceipt.Destroyed(subjectKeys: 0, rows: 1, indexEntries: 0, consentEntries: 0, calls: 0)
    }

    /// The tombstone (with its receipt) of the subject erased under `externalID`, if one was: one probe
    /// of the key database's unique index on the keyed hash (`KeyDatabase.tombstoneByExternalID`).
    func tombstone(ofExternalID externalID: String) throws(StoreError) -> ErasureReceipt? {
        let tag: [UInt8]
        do throws(CryptoError) { tag = try keyring.erasureKeys.tag(externalID: externalID) } catch { throw .crypto(error) }
        return try keyring.database.read { (tables) throws(DatabaseError) in try tables.tombstone(externalIDTag: tag) }?
            .with(externalID: externalID)
    }

    /// The receipt of an erasure, found by the erased subject's store id or by its external id (through
    /// its keyed hash: the store does not keep it in clear, so the receipt shows it only when found by
    /// it). A number is tried as a store id first, as `resolve` does. `noErasureReceipt` when none is
    /// kept under it. Decrypts nothing and audits nothing: `checkErasureReceipt` is the audited lookup.
    public func erasureReceipt(for reference: String) throws(StoreError) -> ErasureReceipt {
        if let number = Int64(reference),
           let receipt = try keyring.database.read({ (tables) throws(DatabaseError) in try tables.tombstone(of: SubjectID(rawValue: number)) }) {
            return receipt
        }
        guard let found = try tombstone(ofExternalID: reference) else { throw .noErasureReceipt }
        return found
    }

    /// The receipt of an erasure, found by store id or external id (`erasureReceipt(for:)`) and checked
    /// (`verifyErasureReceipt`), the lookup audited on behalf of `context` (action `receipt`, the erased
    /// subject's id, whether it verified; a lookup that finds nothing is audited as failed, naming nothing).
    /// The library call beside `strongroom audit receipt`.
    public func checkErasureReceipt(_ reference: String, context: AccessContext) throws(StoreError) -> ErasureReceiptVerification {
        let verification: ErasureReceiptVerification
        do {
            verification = try verifyErasureReceipt(try erasureReceipt(for: reference))
        } catch {
            if case .noErasureReceipt = error {
                try audit([AuditEvent(.receipt, context, subject: nil, outcome: .failed, detail: "no receipt under the id given")])
            }
            throw error
        }
        try audit([AuditEvent(.receipt, context, subject: verification.receipt.id, outcome: verification.isVerified ? .ok : .failed,
                              detail: verification.problem.map { "not verified: \($0)" } ?? "verified")])
        return verification
    }

    /// Checks `receipt`, in this order: its MAC under the receipt key (any field edited fails it), then
    /// its audit entry — present at `auditSequence` in a log that verifies as a whole (every entry's
    /// MAC, the chain, the signed head), and the successful erasure of this subject by this actor for
    /// this reason. The first check that fails is named in `problem`.
    public func verifyErasureReceipt(_ receipt: ErasureReceipt) throws(StoreError) -> ErasureReceiptVerification {
        func failed(_ problem: String) -> ErasureReceiptVerification {
            ErasureReceiptVerification(receipt: receipt, problem: problem)
        }
        let expected: [UInt8]
        do throws(CryptoError) { expected = try keyring.erasureKeys.mac(receipt.canonicalEncoding) } catch { throw .crypto(error) }
        guard constantTimeEquals(expected, receipt.mac) else { return failed("its MAC does not verify: the receipt was altered") }
        guard let sequence = receipt.auditSequence else {
            return failed("it names no audit entry: the store kept no audit log of its own when it was made")
        }
        var entry: AuditEntry?
        do throws(StoreError) {
            try auditEntries(AuditFilter(subject: receipt.id)) { found, _ in
                if found.seq == sequence { entry = found }
            }
        } catch .auditLogUnverified(let problem) {
            return failed("the audit log does not verify, so its entry \(sequence) cannot be trusted: \(problem)")
        } catch {
            throw error
        }
        guard let entry else { return failed("its audit entry \(sequence) is not in the log, or is not about subject \(receipt.id)") }
        guard entry.action == AuditEvent.Action.erase.rawValue, entry.outcome == AuditEvent.Outcome.ok.rawValue,
              entry.actor == receipt.actor, entry.detail == receipt.reason else {
            return failed("audit entry \(sequence) is not this erasure of subject \(receipt.id)")
        }
        return ErasureReceiptVerification(receipt: receipt, problem: nil)
    }
}
