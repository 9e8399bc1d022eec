import Foundation

extension Store {
    /// Erases a subject by crypto-shredding (GDPR Art. 17): its key is destroyed, then its rows, index
    /// entries, consent ledger and call history are deleted (the ledger and calls go with the subject's
    /// row, `ON DELETE CASCADE`). Copies of its ciphertext (backups of the data file) can no longer be
    /// decrypted: a restored copy is reported as `StoreError.subjectErased`. The audit log keeps an erasure entry naming the subject id and `reason`
    /// (a ticket or legal basis, such as "Art. 17 request 2026-114": it must not hold personal data).
    public func erase(_ id: SubjectID, reason: String, context: AccessContext) throws(StoreError) {
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty, reason.count <= 200 else { throw .invalidInput("an erasure needs a reason of 1 to 200 characters") }
        try remove(id, .erase, detail: reason, context: context)
    }

    /// Sets or lifts restriction of processing (GDPR Art. 18). While restricted, decrypting for any
    /// purpose but those in `Purpose.allowedUnderRestriction` is refused and audited as refused, and so
    /// are the writes `SubjectWriteKind` names as processing (a call record, a consent grant, …).
    public func setRestricted(_ restricted: Bool, _ id: SubjectID, context: AccessContext) throws(StoreError) {
        try writeSubjects(context: context) { write in
            try write.require(id, .restriction)
            try write.connection.run("UPDATE subjects SET restricted = ?, updated_at = ? WHERE id = ?",
                                     [.int(restricted ? 1 : 0), .integer(Store.milliseconds(Date())), .integer(id.rawValue)])
            guard write.connection.changes == 1 else { throw try notFoundOrErased(id) }
            write.record(id, .restriction, detail: restricted ? "restricted" : "unrestricted")
        }
    }
}
