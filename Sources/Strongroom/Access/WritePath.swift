import StrongroomStorage

/// A kind of write to a subject, as the restriction rule (GDPR Art. 18) sees it.
///
/// While a subject's processing is restricted its data "shall, with the exception of storage, only be
/// processed with the data subject's consent or for the establishment, exercise or defence of legal
/// claims …" (Art. 18(2)). Strongroom applies that to writes as follows:
///
/// | write                                   | while restricted                                         |
/// | --------------------------------------- | -------------------------------------------------------- |
/// | create                                  | allowed (a new subject is not restricted)                |
/// | update (rectification)                  | allowed for `subject-request` and `legal-claims` only    |
/// | call record (last contacted, call row)  | refused: it is processing                                 |
/// | lead → contact                          | refused: it is processing                                 |
/// | consent grant or confirmation           | refused: lift the restriction first                       |
/// | consent withdrawal                      | allowed: it only narrows processing (Art. 7(3))           |
/// | restrict / unrestrict                   | allowed                                                    |
/// | erase (Art. 17)                         | allowed                                                    |
/// | delete (not an erasure)                 | refused: restriction may be kept for legal claims (Art. 18(1)(c)) |
/// | re-encryption by a key rotation         | allowed: storage (Art. 32)                                |
enum SubjectWriteKind: String, Sendable {
    case create
    case update
    case callRecord = "call record"
    case convert
    case consentGrant = "consent grant"
    case consentWithdrawal = "consent withdrawal"
    case restriction
    case erase
    case delete
    case reencryption

    /// Whether this write may change a restricted subject for `purpose` (the table above).
    func isAllowedUnderRestriction(for purpose: Purpose) -> Bool {
        switch self {
        case .create, .consentWithdrawal, .restriction, .erase, .reencryption: return true
        case .update: return purpose == .subjectRequest || purpose == .legalClaims
        case .callRecord, .convert, .consentGrant, .delete: return false
        }
    }
}

/// One transaction of the write path: the data connection to write through, and the audit entries of
/// the subjects admitted to it. Only `Store.writeSubjects` makes one, and only for the time of its body.
final class SubjectWriteTransaction {
    /// The data connection, inside the write transaction.
    let connection: any Database
    private let context: AccessContext
    private let store: Store
    /// Entries recorded and not yet audited.
    fileprivate var events: [AuditEvent] = []
    /// Entries already audited by `auditNow`.
    fileprivate var auditedCount = 0
    /// Subjects `admits` said no to, with their entries to audit as refused.
    fileprivate var refusals: [(subject: SubjectID, event: AuditEvent)] = []
    /// Whether `refuse` refused the whole transaction.
    fileprivate var refused = false

    fileprivate init(connection: any Database, context: AccessContext, store: Store) {
        self.connection = connection
        self.context = context
        self.store = store
    }

    /// Audits the entries recorded so far at once, still inside the transaction (it rolls back if this
    /// fails): for a write whose next step cannot be undone by the rollback (destroying a key).
    /// Returns the audit log's sequence number of the last of them (nil without a log of its own).
    @discardableResult
    func auditNow() throws(StoreError) -> UInt64? {
        let sequence = try store.audit(events)
        auditedCount += events.count
        events.removeAll()
        return sequence
    }

    /// Audits the entries recorded so far on another thread, after `background`, while this thread
    /// runs `foreground`; returns once all three are done, throwing the foreground's failure first,
    /// then the background's or the audit's (the transaction then rolls back, as when `auditNow`
    /// fails). Still inside the transaction and before its commit, as every entry is: for a bulk
    /// write whose entries are known before its rows are written (an import's batch), so that the
    /// audit log's round trip and its entries' MACs overlap the rows' insert instead of following it.
    /// Should the rows' insert then fail, the rolled-back rows' entries stay in the log, as they do
    /// when a commit fails after the entries were audited: the log may name a write that did not
    /// happen, never miss one that did.
    func auditAlongside(after background: @Sendable () throws(StoreError) -> Void,
                        _ foreground: () throws(StoreError) -> Void) throws(StoreError) {
        let entries = events
        auditedCount += entries.count
        events.removeAll()
        try Store.alongside({ [store] () throws(StoreError) in
            try background()
            _ = try store.audit(entries)
        }, foreground)
    }

    /// Whether `kind` may change `subject` now (read inside the transaction, so no restriction or consent
    /// change can come between the check and the write). A call record is processing for the context's
    /// purpose and is checked as the decrypt path checks a read (`Store.processingRefusal`); other writes
    /// against restriction only. A refusal is kept, to be audited as refused.
    func admits(_ subject: SubjectID, _ kind: SubjectWriteKind) throws(StoreError) -> Bool {
        let allowed = kind.isAllowedUnderRestriction(for: context.purpose)
        guard kind == .callRecord || !allowed else { return true }
        let restricted: Bool
        do throws(DatabaseError) {
            restricted = try connection.scalarInteger("SELECT restricted FROM subjects WHERE id = ?", [.integer(subject.rawValue)]) == 1
        } catch {
            throw .database(error)
        }
        let reason: String?
        if kind == .callRecord {
            reason = try store.processingRefusal(restricted: restricted, allowedUnderRestriction: allowed, for: context.purpose) {
                () throws(StoreError) in
                do throws(DatabaseError) { return try Store.consentState(of: subject, for: context.purpose, in: connection) } catch {
                    throw .database(error)
                }
            }
        } else {
            reason = restricted && !allowed ? "processing is restricted" : nil
        }
        guard let reason else { return true }
        refusals.append((subject, AuditEvent(action(of: kind), context, subject: subject, outcome: .refused,
                                             detail: "\(kind.rawValue): \(reason)")))
        return false
    }

    /// Checks that `kind` may change `subject`; when it may not, the whole transaction is refused (`refuse`).
    func require(_ subject: SubjectID, _ kind: SubjectWriteKind) throws(StoreError) {
        guard try admits(subject, kind) else { try refuse() }
    }

    /// Records that `kind` changed `subject` (its fields, a non-personal detail): one entry per subject
    /// and write, audited before the transaction commits.
    func record(_ subject: SubjectID, _ kind: SubjectWriteKind, fields: [PersonalField] = [], detail: String? = nil) {
        events.append(AuditEvent(action(of: kind), context, subject: subject, fields: fields, detail: detail))
    }

    /// Refuses the whole transaction with the refusals kept so far (at least one `admits` said no):
    /// `accessRefused` naming the first refused subject. `Store.writeSubjects` rolls the transaction
    /// back and audits the refusals after the rollback.
    func refuse() throws(StoreError) -> Never {
        refused = true
        let first = refusals[0]
        throw .accessRefused(first.subject, purpose: context.purpose, reason: first.event.detail ?? "refused")
    }

    /// The audit action of a write kind.
    private func action(of kind: SubjectWriteKind) -> AuditEvent.Action {
        switch kind {
        case .create: return .create
        case .update, .callRecord: return .update
        case .convert: return .convert
        case .consentGrant, .consentWithdrawal: return .consent
        case .restriction: return .restrict
        case .erase: return .erase
        case .delete: return .delete
        case .reencryption: return .keys
        }
    }
}

extension Store {
    /// The one function through which every write to a subject goes (create, update, call record,
    /// consent, restriction, erasure and deletion, re-encryption by a rotation).
    ///
    /// Runs `body` in a data transaction. `body` checks each subject it changes
    /// (`SubjectWriteTransaction.require`/`admits`: the restriction rule of `SubjectWriteKind`) and records what it
    /// changed; before the commit, the recorded entries and any refusals are audited, and if that fails the
    /// transaction rolls back (fail closed). If `body` refuses, the transaction rolls back — a refused
    /// write changes nothing — the refusals are audited, and `accessRefused` names the first refused subject.
    func writeSubjects<T: Sendable>(context: AccessContext,
                                    _ body: @Sendable (SubjectWriteTransaction) throws(StoreError) -> T) throws(StoreError) -> T {
        var refusals: [AuditEvent] = []
        do throws(StoreError) {
            return try withDataTransaction { (connection) throws(StoreError) -> T in
                let write = SubjectWriteTransaction(connection: connection, context: context, store: self)
                let result: T
                do throws(StoreError) { result = try body(write) } catch {
                    if write.refused { refusals = write.refusals.map(\.event) }
                    throw error
                }
                // Inside the transaction: if the log cannot take the entries, nothing is committed.
                let entries = write.refusals.map(\.event) + write.events
                if !entries.isEmpty { try audit(entries) }
                try injectFault("write.audited", write.auditedCount + write.events.count)
                return result
            }
        } catch {
            // Rolled back: a refusal is all there is to keep, audited before its `accessRefused` is thrown.
            if !refusals.isEmpty { try audit(refusals) }
            throw error
        }
    }
}
