import Foundation
import StrongroomStorage

/// How far an erasure reached into the key database's files.
public enum ErasureCompletion: Sendable, Hashable {
    /// The key is destroyed and no copy of its wrapped form is left in the key database's files
    /// (SQLite: main file, free pages, WAL; see SECURITY.md for PostgreSQL).
    case complete
    /// The key is destroyed (no process can use it any more), but when the wait
    /// (`StoreConfiguration.erasureWait`) ran out, a reader of an older snapshot of `keys.sqlite` (an
    /// online backup, another process's long read) still needed pages holding its wrapped form, waiting
    /// since `since`. They are overwritten once that reader has ended: at the next open of the store,
    /// the next erasure, or by `compactKeyDatabase()` (`strongroom keys compact`).
    case oldPagesRemain(since: Date)
}

/// What an erasure did: its receipt, and how far it reached into the key database's files.
public struct Erasure: Sendable, Hashable {
    /// The erasure's receipt, kept with the subject's tombstone (`Store.erasureReceipt(for:)`).
    public let receipt: ErasureReceipt
    /// Whether old pages of the key database still hold the wrapped key (`ErasureCompletion`).
    public let completion: ErasureCompletion
}

extension Store {
    /// Erases a subject by crypto-shredding (GDPR Art. 17): its key is destroyed, then its rows, index
    /// entries, consent ledger and call history are deleted (the ledger and calls go with the subject's
    /// row, `ON DELETE CASCADE`). Copies of its ciphertext (backups of the data file) can no longer be
    /// decrypted: a restored copy is reported as `StoreError.subjectErased`, by this process and by
    /// every other one (their cached keys are dropped when they next read changed data). The audit log
    /// keeps an erasure entry naming the subject id and `reason` (a ticket or legal basis, such as
    /// "Art. 17 request 2026-114": it must not hold personal data).
    ///
    /// The erasure leaves a tombstone in the key database, written with the key's destruction: the
    /// external id's keyed hash, so that no import, `create` or call record brings that id back
    /// (`externalIDErased`), and the erasure's receipt (`ErasureReceipt`), returned here and kept to be
    /// shown and verified later (`erasureReceipt(for:)`, `verifyErasureReceipt`).
    ///
    /// The result also says whether old pages of the key database still hold the wrapped key because
    /// a reader kept them (`ErasureCompletion`). The data file's WAL is checkpointed and cut too if no
    /// reader holds it: one attempt, no wait, so a long reader of the data (an online backup) never
    /// stalls this process's reads (best effort: what is left there is ciphertext without its key).
    @discardableResult
    public func erase(_ id: SubjectID, reason: String, context: AccessContext) throws(StoreError) -> Erasure {
        // Without a cutoff `remove` returns a receipt for every erasure (nil only for a deletion).
        try erase(id, reason: reason, untouchedBefore: nil, context: context)!
    }

    /// `erase`, for a retention rule: nil, and nothing changed, when the subject's last contact (or
    /// creation) is no longer before `cutoff`.
    func erase(_ id: SubjectID, reason: String, untouchedBefore cutoff: Date?, context: AccessContext) throws(StoreError) -> Erasure? {
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty, reason.count <= 200 else { throw .invalidReason(.erasure, maxCharacters: 200) }
        guard let receipt = try remove(id, .erase, detail: reason, onlyIfUntouchedBefore: cutoff, context: context) else { return nil }
        _ = try withData { (connection) throws(DatabaseError) in try connection.discardDeletedContent(waitingUpTo: 0) }
        return Erasure(receipt: receipt, completion: try keyring.erasedPagesSince().map { .oldPagesRemain(since: $0) } ?? .complete)
    }

    /// Since when old pages of the key database hold a destroyed key because a reader of an older
    /// snapshot kept them (nil when none do): `compactKeyDatabase()` overwrites them once it has ended.
    public func oldKeyPagesSince() throws(StoreError) -> Date? {
        try keyring.erasedPagesSince()
    }

    /// Overwrites the old pages of destroyed keys that an erasure had to leave to a reader of an older
    /// snapshot (`ErasureCompletion.oldPagesRemain`), waiting up to `StoreConfiguration.erasureWait`
    /// for such readers to end; `.complete` when none remain.
    public func compactKeyDatabase() throws(StoreError) -> ErasureCompletion {
        guard try !keyring.finishErasures(waitingUpTo: keyring.erasureWait), let since = try keyring.erasedPagesSince() else {
            return .complete
        }
        return .oldPagesRemain(since: since)
    }

    /// Sets or lifts restriction of processing (GDPR Art. 18). While restricted, decrypting for any
    /// purpose but those in `Purpose.allowedUnderRestriction` is refused and audited as refused, and so
    /// are the writes `SubjectWriteKind` names as processing (a call record, a consent grant, …).
    public func setRestricted(_ restricted: Bool, _ id: SubjectID, context: AccessContext) throws(StoreError) {
        try writeSubjects(context: context) { (write) throws(StoreError) in
            try write.require(id, .restriction)
            do throws(DatabaseError) {
                try write.connection.run("UPDATE subjects SET restricted = ?, updated_at = ? WHERE id = ?",
                                         [.int(restricted ? 1 : 0), .integer(Store.milliseconds(Date())), .integer(id.rawValue)])
            } catch {
                throw .database(error)
            }
            guard write.connection.changes == 1 else { throw try notFoundOrErased(id) }
            write.record(id, .restriction, detail: restricted ? "restricted" : "unrestricted")
        }
    }
}
