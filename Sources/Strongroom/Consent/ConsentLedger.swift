import Foundation
import StrongroomCrypto
import StrongroomStorage

/// A state a subject's consent to a purpose can be in.
public enum ConsentState: String, Sendable, Codable {
    /// Given (single opt-in).
    case granted
    /// Taken back.
    case withdrawn
    /// Asked for with double opt-in, awaiting the subject's confirmation.
    case pending
    /// Confirmed by the subject with the token of a pending grant.
    case confirmed

    /// Whether processing for the purpose may go on in this state.
    public var allowsProcessing: Bool { self == .granted || self == .confirmed }
}

/// Who brought about a consent change.
public enum ConsentInitiator: String, Sendable, Codable, CaseIterable {
    /// The data subject.
    case subject
    /// A member of staff.
    case staff
    /// An import of records.
    case `import`
}

/// One entry of a subject's consent ledger, decrypted.
public struct ConsentEntry: Sendable, Codable, Equatable {
    /// The entry's id (ledger order).
    public let id: Int64
    /// The purpose.
    public let purpose: String
    /// The state the change brought.
    public let state: ConsentState
    /// When (RFC 3339).
    public let time: String
    /// Who brought it about.
    public let initiator: ConsentInitiator
    /// Which staff member or service made the change (the access context's actor), or "unknown" for
    /// an entry written before the ledger recorded it (schema version 7). Stored encrypted, sealed
    /// with the entry's clear facts.
    public let actor: String
    /// The client's network address, when given (stored encrypted).
    public let clientAddress: String?
    /// What the subject was shown or did: form, text, version (stored encrypted).
    public let evidence: String?
    /// For a confirmation: the id of the pending entry it confirms.
    public let confirms: Int64?
}

/// What a consent change did.
public struct ConsentChange: Sendable, Equatable {
    /// The new ledger entry.
    public let entryID: Int64
    /// The purpose it concerns.
    public let purpose: Purpose
    /// The state it recorded.
    public let state: ConsentState
    /// For a double opt-in grant: the single-use confirmation token, to send to the subject. It is
    /// returned once and stored only as its SHA-256 hash.
    public let confirmationToken: String?
    /// When the token stops working.
    public let tokenExpiresAt: Date?
}

extension Store {
    /// How long a double opt-in token stays valid.
    public static let confirmationTokenLifetime: TimeInterval = 72 * 3600

    /// The latest consent state of `subject` for `purpose`, nil when the ledger has none.
    func consentState(of subject: SubjectID, for purpose: Purpose) throws(StoreError) -> ConsentState? {
        try withData { (connection) throws(DatabaseError) in try Store.consentState(of: subject, for: purpose, in: connection) }
    }

    /// The latest consent state of `subject` for `purpose` read through `connection` (inside a transaction).
    static func consentState(of subject: SubjectID, for purpose: Purpose, in connection: any Database) throws(DatabaseError) -> ConsentState? {
        try connection.scalarText("SELECT state FROM consent_ledger WHERE subject_id = ? AND purpose = ? ORDER BY id DESC LIMIT 1",
                                  [.integer(subject.rawValue), .text(purpose.rawValue)]).flatMap(ConsentState.init(rawValue:))
    }

    /// Records consent of `subject` to `purpose`, with the evidence of how it was given (a consent cannot
    /// be pre-ticked: no evidence, no consent). For a double opt-in purpose the entry is `pending` and a
    /// confirmation token is returned, valid for `tokenLifetime` seconds. The client address and evidence
    /// are encrypted under the subject's key.
    ///
    /// `clientAddress` is the subject's address, kept in the ledger only; `context.clientAddress` is the
    /// caller's (a staff workstation, a service), which the audit log records in clear: do not put the
    /// subject's address there.
    public func grantConsent(_ subject: SubjectID, purpose: Purpose, evidence: String, initiator: ConsentInitiator,
                             clientAddress: String? = nil, tokenLifetime: TimeInterval = Store.confirmationTokenLifetime,
                             context: AccessContext) throws(StoreError) -> ConsentChange {
        guard let declaration = purposeDeclaration(purpose) else { throw .undeclaredPurpose(purpose) }
        guard declaration.lawfulBasis == .consent else {
            throw .purposeNotOnConsent(purpose, lawfulBasis: declaration.lawfulBasis)
        }
        guard !evidence.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw .consentEvidenceMissing
        }
        guard tokenLifetime > 0, tokenLifetime <= 30 * 24 * 3600 else {
            throw .invalidTokenLifetime(seconds: tokenLifetime, maxSeconds: 30 * 24 * 3600)
        }
        var token: String?
        var expiry: Date?
        if declaration.requiresDoubleOptIn {
            do throws(CryptoError) {
                token = try SecureRandom.bytes(count: 24).map { String(format: "%02x", $0) }.joined()
            } catch {
                throw .crypto(error)
            }
            expiry = Date().addingTimeInterval(tokenLifetime)
        }
        let state: ConsentState = declaration.requiresDoubleOptIn ? .pending : .granted
        let facts = LedgerFacts(purpose: purpose, state: state, tokenHash: token.map { SHA256.hash(Array($0.utf8)) },
                                tokenExpiry: expiry.map(Store.milliseconds), confirms: nil)
        let (entry, _) = try appendConsent(subject, .facts(facts), initiator: initiator, clientAddress: clientAddress,
                                           evidence: evidence, context: context)
        return ConsentChange(entryID: entry, purpose: purpose, state: state, confirmationToken: token, tokenExpiresAt: expiry)
    }

    /// Records withdrawal of `subject`'s consent to `purpose`: reads for it are refused from now on, and
    /// a pending double opt-in grant can no longer be confirmed. Evidence is optional (withdrawing must be
    /// as easy as consenting); the client address and evidence, when given, are encrypted.
    public func withdrawConsent(_ subject: SubjectID, purpose: Purpose, evidence: String? = nil, initiator: ConsentInitiator,
                                clientAddress: String? = nil, context: AccessContext) throws(StoreError) -> ConsentChange {
        guard let declaration = purposeDeclaration(purpose) else { throw .undeclaredPurpose(purpose) }
        guard declaration.lawfulBasis == .consent else {
            throw .purposeNotOnConsent(purpose, lawfulBasis: declaration.lawfulBasis)
        }
        let facts = LedgerFacts(purpose: purpose, state: .withdrawn, tokenHash: nil, tokenExpiry: nil, confirms: nil)
        let (entry, _) = try appendConsent(subject, .facts(facts), initiator: initiator, clientAddress: clientAddress,
                                           evidence: evidence, context: context)
        return ConsentChange(entryID: entry, purpose: purpose, state: .withdrawn, confirmationToken: nil, tokenExpiresAt: nil)
    }

    /// Confirms a pending double opt-in grant with its token: single use, until it expires, and only
    /// while the grant is still the latest change for its purpose. The token is checked in the same
    /// transaction that appends the confirmation, so two concurrent confirmations cannot both succeed.
    /// A wrong, used, expired or overtaken token is `StoreError.consentTokenRejected`.
    public func confirmConsent(_ subject: SubjectID, token: String, clientAddress: String? = nil,
                               context: AccessContext) throws(StoreError) -> ConsentChange {
        let hash = SHA256.hash(Array(token.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        let (entry, facts) = try appendConsent(subject, .confirmation(tokenHash: hash), initiator: .subject,
                                               clientAddress: clientAddress, evidence: nil, context: context)
        return ConsentChange(entryID: entry, purpose: facts.purpose, state: .confirmed, confirmationToken: nil, tokenExpiresAt: nil)
    }

    /// The facts of the confirmation of the pending grant whose token hashes to `tokenHash`, checked in the
    /// transaction that appends it: the token must be known, unexpired and its grant still the latest change.
    private func confirmationFacts(_ subject: SubjectID, tokenHash: [UInt8], in connection: any Database) throws(StoreError) -> LedgerFacts {
        let pending: (id: Int64, purpose: String, expires: Int64)?
        let latest: Int64?
        do throws(DatabaseError) {
            pending = try connection.firstRow("""
                SELECT id, purpose, token_expires_at FROM consent_ledger
                WHERE subject_id = ? AND state = 'pending' AND token_hash = ?
                """, [.integer(subject.rawValue), .blob(tokenHash)], { ($0.int64(0), $0.text(1) ?? "", $0.int64(2)) })
            latest = try pending.map { (pending) throws(DatabaseError) in
                try connection.scalarInteger("SELECT max(id) FROM consent_ledger WHERE subject_id = ? AND purpose = ?",
                                             [.integer(subject.rawValue), .text(pending.purpose)])
            } ?? nil
        } catch {
            throw .database(error)
        }
        guard let (pendingID, purposeName, expires) = pending
        else { throw .consentTokenRejected(reason: "no pending consent of this subject has this token") }
        guard Store.milliseconds(Date()) <= expires else { throw .consentTokenRejected(reason: "the token has expired") }
        guard latest == pendingID else {
            throw .consentTokenRejected(reason: "the token was used, or the consent changed since it was issued")
        }
        return LedgerFacts(purpose: Purpose(rawValue: purposeName), state: .confirmed, tokenHash: nil, tokenExpiry: nil,
                           confirms: pendingID)
    }

    /// Appends a ledger entry (sealing its personal parts under the subject's current key) and audits it,
    /// in one write-path transaction; a confirmation's token is checked inside it. A grant or confirmation
    /// for a restricted subject is refused; a withdrawal is not (`SubjectWriteKind`). Returns the entry's id and facts.
    private func appendConsent(_ subject: SubjectID, _ change: LedgerChange, initiator: ConsentInitiator, clientAddress: String?,
                               evidence: String?, context: AccessContext) throws(StoreError) -> (Int64, LedgerFacts) {
        try writeSubjects(context: context) { (write) throws(StoreError) in
            let connection = write.connection
            let stored: Int64?
            do throws(DatabaseError) {
                stored = try connection.scalarInteger("SELECT key_version FROM subjects WHERE id = ?", [.integer(subject.rawValue)])
            } catch {
                throw .database(error)
            }
            guard let keyVersion = stored else { throw try notFoundOrErased(subject) }
            let entry: LedgerFacts
            switch change {
            case .facts(let facts): entry = facts
            case .confirmation(let tokenHash): entry = try confirmationFacts(subject, tokenHash: tokenHash, in: connection)
            }
            let kind: SubjectWriteKind = entry.state == .withdrawn ? .consentWithdrawal : .consentGrant
            try write.require(subject, kind)
            let key = try keyring.subjectKey(for: subject, version: UInt32(keyVersion))
            // The entry's id is bound into its ciphertexts' AAD, so it is chosen before they are sealed
            // (the write lock held by this transaction keeps it free).
            let id: Int64
            do throws(DatabaseError) { id = try connection.scalarInteger(type(of: backend).nextConsentEntryIDSQL) ?? 1 } catch {
                throw .database(error)
            }
            func seal(_ plaintext: [UInt8]?, _ slot: EnvelopeSlot) throws(StoreError) -> SQLValue {
                guard let plaintext else { return .null }
                return .blob(try Envelope.seal(plaintext, at: EnvelopeLocation(slot: slot, recordID: id), under: key,
                                               storeID: keyring.storeID))
            }
            let at = Store.milliseconds(Date())
            let actor = ConsentActorSeal(actor: context.actor, purpose: entry.purpose.rawValue, state: entry.state, at: at,
                                         initiator: initiator, confirms: entry.confirms)
            let ciphertexts = [try seal(clientAddress.map { Array($0.utf8) }, .consentClientAddress),
                               try seal(evidence.map { Array($0.utf8) }, .consentEvidence), try seal(actor.plaintext, .consentActor)]
            // The sealed parts (the actor always) count against the subject key's nonce budget like its fields do.
            let sealed = 1 + [clientAddress, evidence].compactMap { $0 }.count
            let used: Int64?
            do throws(DatabaseError) {
                try connection.run("""
                    INSERT INTO consent_ledger (id, subject_id, purpose, state, at, initiator, key_version, client_ct, evidence_ct,
                                                actor_ct, token_hash, token_expires_at, confirms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, [.integer(id), .integer(subject.rawValue), .text(entry.purpose.rawValue), .text(entry.state.rawValue),
                          .integer(at), .text(initiator.rawValue), .integer(keyVersion)]
                        + ciphertexts + [.blob(entry.tokenHash), .integer(entry.tokenExpiry), .integer(entry.confirms)])
                try connection.run("UPDATE subjects SET seal_count = seal_count + ?1 WHERE id = ?2 AND seal_count + ?1 <= ?3",
                                   [.int(sealed), .integer(subject.rawValue), .integer(Int64(keyring.nonceBudget))])
                used = connection.changes == 1 ? nil
                    : try connection.scalarInteger("SELECT seal_count FROM subjects WHERE id = ?", [.integer(subject.rawValue)]) ?? 0
            } catch {
                throw .database(error)
            }
            if let used {
                throw .keyBudgetExhausted(key: "subject:\(subject.rawValue):\(keyVersion)", used: UInt64(used), budget: keyring.nonceBudget)
            }
            write.record(subject, kind, detail: "\(entry.purpose): \(entry.state.rawValue) (\(initiator.rawValue))")
            return (id, entry)
        }
    }

    /// The ledger rows of `subjects`, with their sealed parts, for decryption or re-encryption: one
    /// query over the subjects' id range (a batch is a run of ids), not one per subject.
    func consentRows(of subjects: [SubjectID], in connection: any Database) throws(DatabaseError) -> [SubjectID: [ConsentRow]] {
        guard let first = subjects.min(), let last = subjects.max() else { return [:] }
        let wanted = Set(subjects)
        var rows: [SubjectID: [ConsentRow]] = [:]
        try connection.forEachRow("""
            SELECT id, purpose, state, at, initiator, client_ct, evidence_ct, confirms, subject_id, actor_ct FROM consent_ledger
            WHERE subject_id >= ? AND subject_id <= ? ORDER BY subject_id, id
            """, [.integer(first.rawValue), .integer(last.rawValue)]) { row in
            let subject = SubjectID(rawValue: row.int64(8))
            guard wanted.contains(subject) else { return }
            rows[subject, default: []].append(ConsentRow(
                id: row.int64(0), purpose: row.text(1) ?? "", state: ConsentState(rawValue: row.text(2) ?? "") ?? .withdrawn,
                at: row.int64(3), initiator: ConsentInitiator(rawValue: row.text(4) ?? "") ?? .staff,
                client: row.blob(5), evidence: row.blob(6), confirms: row.isNull(7) ? nil : row.int64(7), actor: row.blob(9)))
        }
        return rows
    }

    /// A subject's consent ledger, oldest first, with client addresses and evidence decrypted through the
    /// audited path.
    public func consentLedger(of subject: SubjectID, context: AccessContext) throws(StoreError) -> [ConsentEntry] {
        let (encrypted, rows) = try withData { (connection) throws(DatabaseError) -> (EncryptedSubject?, [ConsentRow]) in
            (try connection.firstRow("SELECT \(Store.summaryColumns) FROM subjects WHERE id = ?", [.integer(subject.rawValue)]) {
                Store.encryptedSubject(from: $0, fields: [])
            }, try consentRows(of: [subject], in: connection)[subject] ?? [])
        }
        guard let encrypted else { throw try notFoundOrErased(subject) }
        let opened = try decrypt([encrypted], fields: [], extra: [subject: rows.flatMap(\.sealedValues)], detail: "consent ledger",
                                 context: context).extra[subject] ?? []
        return try Store.consentEntries(of: subject, rows, opened: opened)
    }

    /// A subject's ledger entries, given its rows and their sealed values opened in order
    /// (`ConsentRow.sealedValues`); an actor sealed with other facts than its row's is refused.
    static func consentEntries(of subject: SubjectID, _ rows: [ConsentRow], opened: [[UInt8]]) throws(StoreError) -> [ConsentEntry] {
        var plaintexts = opened.makeIterator()
        return try rows.map { row throws(StoreError) in
            let client = row.client.flatMap { _ in plaintexts.next() }.map { String(decoding: $0, as: UTF8.self) }
            let evidence = row.evidence.flatMap { _ in plaintexts.next() }.map { String(decoding: $0, as: UTF8.self) }
            var actor = ConsentActorSeal.unknownActor
            if row.actor != nil {
                // The actor opened, so it is the one sealed; the facts sealed with it must be the row's.
                guard let sealed = plaintexts.next().flatMap(ConsentActorSeal.init(plaintext:)), sealed.matches(row) else {
                    throw .unreadableField(subject, field: "consent.actor of entry \(row.id)", .authenticationFailed)
                }
                actor = sealed.actor
            }
            return ConsentEntry(id: row.id, purpose: row.purpose, state: row.state, time: Timestamp.format(Store.date(milliseconds: row.at)),
                                initiator: row.initiator, actor: actor, clientAddress: client, evidence: evidence, confirms: row.confirms)
        }
    }
}

/// What a new ledger entry records besides who, when and the sealed parts.
private struct LedgerFacts {
    let purpose: Purpose
    let state: ConsentState
    let tokenHash: [UInt8]?
    let tokenExpiry: Int64?
    let confirms: Int64?
}

/// A ledger entry to append: known facts, or the confirmation of the pending grant a token names.
private enum LedgerChange {
    case facts(LedgerFacts)
    case confirmation(tokenHash: [UInt8])
}
