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
        try storeErrors {
            try data.withLock { connection in
                try connection.scalarText("SELECT state FROM consent_ledger WHERE subject_id = ? AND purpose = ? ORDER BY id DESC LIMIT 1",
                                          [.integer(subject.rawValue), .text(purpose.rawValue)]).flatMap(ConsentState.init(rawValue:))
            }
        }
    }

    /// Records consent of `subject` to `purpose`, with the evidence of how it was given (a consent cannot
    /// be pre-ticked: no evidence, no consent). For a double opt-in purpose the entry is `pending` and a
    /// confirmation token is returned. The client address and evidence are encrypted under the subject's key.
    public func grantConsent(_ subject: SubjectID, purpose: Purpose, evidence: String, initiator: ConsentInitiator,
                             clientAddress: String? = nil, context: AccessContext) throws(StoreError) -> ConsentChange {
        guard let declaration = purposeDeclaration(purpose) else { throw .invalidInput("purpose \(purpose) is not declared") }
        guard declaration.lawfulBasis == .consent else {
            throw .invalidInput("purpose \(purpose) rests on \(declaration.lawfulBasis.rawValue), not on consent")
        }
        guard !evidence.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw .invalidInput("a consent needs evidence of how it was given (form, text shown): none was given")
        }
        var token: String?
        var expiry: Date?
        if declaration.requiresDoubleOptIn {
            token = try storeErrors { try SecureRandom.bytes(count: 24) }.map { String(format: "%02x", $0) }.joined()
            expiry = Date().addingTimeInterval(Store.confirmationTokenLifetime)
        }
        let entry = try appendConsent(subject, purpose: purpose, state: declaration.requiresDoubleOptIn ? .pending : .granted,
                                      initiator: initiator, clientAddress: clientAddress, evidence: evidence,
                                      tokenHash: token.map { SHA256.hash(Array($0.utf8)) }, tokenExpiry: expiry, confirms: nil,
                                      context: context)
        return ConsentChange(entryID: entry, state: declaration.requiresDoubleOptIn ? .pending : .granted,
                             confirmationToken: token, tokenExpiresAt: expiry)
    }

    /// Records withdrawal of `subject`'s consent to `purpose`: reads for it are refused from now on.
    public func withdrawConsent(_ subject: SubjectID, purpose: Purpose, evidence: String? = nil, initiator: ConsentInitiator,
                                clientAddress: String? = nil, context: AccessContext) throws(StoreError) -> ConsentChange {
        guard purposeDeclaration(purpose) != nil else { throw .invalidInput("purpose \(purpose) is not declared") }
        let entry = try appendConsent(subject, purpose: purpose, state: .withdrawn, initiator: initiator, clientAddress: clientAddress,
                                      evidence: evidence, tokenHash: nil, tokenExpiry: nil, confirms: nil, context: context)
        return ConsentChange(entryID: entry, state: .withdrawn, confirmationToken: nil, tokenExpiresAt: nil)
    }

    /// Confirms a pending double opt-in grant with its token: single use, until it expires, and only
    /// while the grant is still the latest change for its purpose.
    public func confirmConsent(_ subject: SubjectID, token: String, clientAddress: String? = nil,
                               context: AccessContext) throws(StoreError) -> ConsentChange {
        let hash = SHA256.hash(Array(token.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        let pending = try storeErrors {
            try data.withLock { connection in
                try connection.firstRow("""
                    SELECT id, purpose, token_expires_at FROM consent_ledger
                    WHERE subject_id = ? AND state = 'pending' AND token_hash = ?
                    """, [.integer(subject.rawValue), .blob(hash)]) { (Int64($0.int64(0)), $0.text(1) ?? "", $0.int64(2)) }
            }
        }
        guard let (pendingID, purposeName, expires) = pending else { throw .consentTokenRejected(reason: "no pending consent has this token") }
        guard Store.milliseconds(Date()) <= expires else { throw .consentTokenRejected(reason: "the token has expired") }
        let purpose = Purpose(rawValue: purposeName)
        let latest = try storeErrors {
            try data.withLock { connection in
                try connection.scalarInteger("SELECT max(id) FROM consent_ledger WHERE subject_id = ? AND purpose = ?",
                                             [.integer(subject.rawValue), .text(purposeName)])
            }
        }
        guard latest == pendingID else { throw .consentTokenRejected(reason: "the token was used, or the consent changed since") }
        let entry = try appendConsent(subject, purpose: purpose, state: .confirmed, initiator: .subject, clientAddress: clientAddress,
                                      evidence: nil, tokenHash: nil, tokenExpiry: nil, confirms: pendingID, context: context)
        return ConsentChange(entryID: entry, state: .confirmed, confirmationToken: nil, tokenExpiresAt: nil)
    }

    /// Appends a ledger entry (sealing its personal parts under the subject's current key) and audits it.
    private func appendConsent(_ subject: SubjectID, purpose: Purpose, state: ConsentState, initiator: ConsentInitiator,
                               clientAddress: String?, evidence: String?, tokenHash: [UInt8]?, tokenExpiry: Date?,
                               confirms: Int64?, context: AccessContext) throws(StoreError) -> Int64 {
        try storeErrors {
            try data.withLock { connection in
                try connection.transaction {
                    guard let keyVersion = try connection.scalarInteger("SELECT key_version FROM subjects WHERE id = ?", [.integer(subject.rawValue)])
                    else { throw try notFoundOrErased(subject) }
                    let key = try keyring.subjectKey(for: subject, version: UInt32(keyVersion))
                    // The entry's id is bound into its ciphertexts' AAD, so it is chosen before they are sealed
                    // (the write lock held by this transaction keeps it free).
                    let id = (try connection.scalarInteger("SELECT seq FROM sqlite_sequence WHERE name = 'consent_ledger'") ?? 0) + 1
                    func seal(_ text: String?, _ slot: EnvelopeSlot) throws -> SQLValue {
                        guard let text else { return .null }
                        return .blob(try Envelope.seal(Array(text.utf8), at: EnvelopeLocation(slot: slot, recordID: id), under: key,
                                                       storeID: keyring.storeID))
                    }
                    try connection.run("""
                        INSERT INTO consent_ledger (id, subject_id, purpose, state, at, initiator, key_version, client_ct, evidence_ct,
                                                    token_hash, token_expires_at, confirms)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """, [.integer(id), .integer(subject.rawValue), .text(purpose.rawValue), .text(state.rawValue),
                              .integer(Store.milliseconds(Date())), .text(initiator.rawValue), .integer(keyVersion),
                              try seal(clientAddress, .consentClientAddress), try seal(evidence, .consentEvidence),
                              .blob(tokenHash), .integer(tokenExpiry.map(Store.milliseconds)), .integer(confirms)])
                    try audit([AuditEvent(.consent, context, subject: subject, detail: "\(purpose): \(state.rawValue) (\(initiator.rawValue))")])
                    return id
                }
            }
        }
    }

    /// The ledger rows of `subjects`, with their sealed parts, for decryption or re-encryption.
    func consentRows(of subjects: [SubjectID], in connection: Connection) throws -> [SubjectID: [ConsentRow]] {
        var rows: [SubjectID: [ConsentRow]] = [:]
        for subject in subjects {
            try connection.forEachRow("""
                SELECT id, purpose, state, at, initiator, client_ct, evidence_ct, confirms FROM consent_ledger
                WHERE subject_id = ? ORDER BY id
                """, [.integer(subject.rawValue)]) { row in
                rows[subject, default: []].append(ConsentRow(
                    id: row.int64(0), purpose: row.text(1) ?? "", state: ConsentState(rawValue: row.text(2) ?? "") ?? .withdrawn,
                    at: row.int64(3), initiator: ConsentInitiator(rawValue: row.text(4) ?? "") ?? .staff,
                    client: row.blob(5), evidence: row.blob(6), confirms: row.isNull(7) ? nil : row.int64(7)))
            }
        }
        return rows
    }

    /// A subject's consent ledger, oldest first, with client addresses and evidence decrypted through the
    /// audited path.
    public func consentLedger(of subject: SubjectID, context: AccessContext) throws(StoreError) -> [ConsentEntry] {
        let (encrypted, rows) = try storeErrors {
            try data.withLock { connection -> (EncryptedSubject?, [ConsentRow]) in
                (try connection.firstRow("SELECT \(Store.summaryColumns) FROM subjects WHERE id = ?", [.integer(subject.rawValue)]) {
                    Store.encryptedSubject(from: $0, fields: [])
                }, try consentRows(of: [subject], in: connection)[subject] ?? [])
            }
        }
        guard let encrypted else { throw try notFoundOrErased(subject) }
        let opened = try decrypt([encrypted], fields: [], extra: [subject: rows.flatMap(\.sealedValues)], detail: "consent ledger",
                                 context: context).extra[subject] ?? []
        var plaintexts = opened.makeIterator()
        return rows.map { row in
            let client = row.client.flatMap { _ in plaintexts.next() }.map { String(decoding: $0, as: UTF8.self) }
            let evidence = row.evidence.flatMap { _ in plaintexts.next() }.map { String(decoding: $0, as: UTF8.self) }
            return ConsentEntry(id: row.id, purpose: row.purpose, state: row.state, time: Timestamp.format(Store.date(milliseconds: row.at)),
                                initiator: row.initiator, clientAddress: client, evidence: evidence, confirms: row.confirms)
        }
    }
}

/// A consent ledger row as stored.
struct ConsentRow {
    let id: Int64
    let purpose: String
    let state: ConsentState
    let at: Int64
    let initiator: ConsentInitiator
    let client: [UInt8]?
    let evidence: [UInt8]?
    let confirms: Int64?

    /// Its sealed parts, in order (client address, then evidence).
    var sealedValues: [SealedValue] {
        [client.map { SealedValue(location: EnvelopeLocation(slot: .consentClientAddress, recordID: id), ciphertext: $0) },
         evidence.map { SealedValue(location: EnvelopeLocation(slot: .consentEvidence, recordID: id), ciphertext: $0) }].compactMap { $0 }
    }
}
