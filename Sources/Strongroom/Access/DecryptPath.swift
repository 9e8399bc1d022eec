import Foundation
import StrongroomCrypto
import StrongroomStorage

/// Proof that the caller is the audited decrypt path: only this file can make one, and
/// `Envelope.openPersonalData` requires one, so no other code can turn a personal value into plaintext.
struct DecryptPermit {
    fileprivate init() {}
}

/// What the decrypt path reads of a stored subject: who it is, whether its processing is restricted,
/// and the requested fields' ciphertexts with the version of the subject key that sealed them.
protocol SealedSubject {
    /// The subject's id.
    var id: SubjectID { get }
    /// Whether processing is restricted (GDPR Art. 18).
    var isRestricted: Bool { get }
    /// The version of the subject key that sealed the fields.
    var keyVersion: UInt32 { get }
    /// The stored ciphertext of `field`, if it was read and the subject has one.
    func ciphertext(of field: PersonalField) -> [UInt8]?
}

/// A subject's stored row as read for decryption: clear fields and the requested ciphertexts.
struct EncryptedSubject: SealedSubject {
    let summary: SubjectSummary
    let keyVersion: UInt32
    let ciphertexts: [PersonalField: [UInt8]]

    var id: SubjectID { summary.id }
    var isRestricted: Bool { summary.isRestricted }
    func ciphertext(of field: PersonalField) -> [UInt8]? { ciphertexts[field] }
}

/// A sealed value other than a subject field (a consent entry's client address or evidence), to open
/// under the subject's key with the fields.
struct SealedValue {
    let location: EnvelopeLocation
    let ciphertext: [UInt8]
}

extension Store {
    /// The one function that turns stored ciphertext into plaintext.
    ///
    /// In order: checks the purpose (declared; consent given when its lawful basis is consent) and
    /// each subject's restriction; opens each requested field, and the `extra` sealed values, under
    /// the subject's key; reports one audit event per subject (refused, failed or ok) to every audit
    /// hook; and only then returns the plaintext. If any step fails, nothing is returned.
    ///
    /// `okEntriesCommitted`: the caller has already committed, to every audit hook, the `ok` entry of each
    /// subject for exactly these fields, in the round trip that read the rows (the caller-ID hint,
    /// `Store.callerIDThroughHint`); only refusals and failures are recorded here then.
    func decrypt(_ subjects: [some SealedSubject], fields: [PersonalField], extra: [SubjectID: [SealedValue]] = [:],
                 detail: String? = nil, okEntriesCommitted: Bool = false,
                 context: AccessContext) throws(StoreError) -> (personal: [PersonalData], extra: [SubjectID: [[UInt8]]]) {
        let permit = DecryptPermit()
        // Sorted for the audit entry; most callers already pass them sorted, and keep their array.
        let fields = zip(fields, fields.dropFirst()).allSatisfy({ $0 < $1 }) ? fields : fields.sorted()
        for subject in subjects {
            if let refusal = try refusal(of: subject, for: context.purpose) {
                try audit([AuditEvent(.decrypt, context, subject: subject.id, fields: fields, outcome: .refused, detail: refusal)])
                throw .accessRefused(subject.id, purpose: context.purpose, reason: refusal)
            }
        }
        // A key cached before another process erased its subject must not open a restored copy of its rows.
        // The data version is read only if the data connection is free (never wait, never deadlock on a
        // caller holding it): without it, `noticeErasures` asks the key database.
        let dataVersion = data.withLockIfAvailable { backend.dataVersion(of: $0) } ?? nil
        try keyring.noticeErasures(dataVersion: dataVersion)
        var results: [PersonalData] = []
        results.reserveCapacity(subjects.count)
        var opened: [SubjectID: [[UInt8]]] = [:]
        var events: [AuditEvent] = []
        if !okEntriesCommitted { events.reserveCapacity(subjects.count) }
        let now = Date()
        for subject in subjects {
            var personal = PersonalData()
            // Most decrypts open no extra values: no hashing of the subject id into an empty dictionary then.
            let sealedValues = extra.isEmpty ? nil : extra[subject.id]
            do throws(StoreError) {
                let key = try keyring.subjectKey(for: subject.id, version: subject.keyVersion)
                for field in fields {
                    guard let ciphertext = subject.ciphertext(of: field) else { continue }
                    let plaintext: [UInt8]
                    do {
                        plaintext = try Envelope.openPersonalData(
                            ciphertext, at: EnvelopeLocation(slot: .field(field), recordID: subject.id.rawValue),
                            under: key, storeID: keyring.storeID, permit: permit)
                    } catch {
                        throw StoreError.unreadableField(subject.id, field: field.rawValue, error)
                    }
                    do { try FieldCodec.decode(field, from: plaintext, into: &personal) } catch {
                        throw StoreError.unreadableField(subject.id, field: field.rawValue, .authenticationFailed)
                    }
                }
                for value in sealedValues ?? [] {
                    do {
                        opened[subject.id, default: []].append(
                            try Envelope.openPersonalData(value.ciphertext, at: value.location, under: key, storeID: keyring.storeID,
                                                          permit: permit))
                    } catch {
                        throw StoreError.unreadableField(subject.id, field: value.location.slot.description, error)
                    }
                }
            } catch {
                try audit([AuditEvent(.decrypt, context, subject: subject.id, fields: fields, outcome: .failed,
                                      detail: Store.auditDetail(for: error), time: now)])
                throw error
            }
            results.append(personal)
            // Entries committed already need not be made again.
            guard !okEntriesCommitted else { continue }
            events.append(AuditEvent(.decrypt, context, subject: subject.id, fields: fields,
                                     detail: sealedValues.map { "\(detail ?? "sealed values"): \($0.count)" } ?? detail,
                                     time: now))
        }
        if !okEntriesCommitted { try audit(events) }
        return (results, opened)
    }

    /// The key version a subject's row names now (`rereadingAfterKeyRotation`).
    static let currentKeyVersion = "SELECT key_version FROM subjects WHERE id = ?"

    /// Runs `read` (rows read, then decrypted) once more when it failed because a key its rows named was
    /// destroyed meanwhile by a data-key rotation, in this process or another: the rotation committed the
    /// subject's row re-encrypted under a new key, then destroyed the old key, between `read`'s row read
    /// and its key read (`keyUnavailable` while the subject's row now names a newer key). The second run
    /// reads the new row. The failed attempt stays in the audit log as a failed decrypt (nothing was
    /// opened); anything else, or a second such failure, is thrown as it is.
    func rereadingAfterKeyRotation<Result>(_ read: () throws(StoreError) -> Result) throws(StoreError) -> Result {
        do throws(StoreError) {
            return try read()
        } catch {
            guard case .keyUnavailable(let subject, let version) = error else { throw error }
            let current = try withData { (connection) throws(DatabaseError) in
                try connection.scalarInteger(Store.currentKeyVersion, [.integer(subject.rawValue)])
            }
            guard let current, current > Int64(version) else { throw error }
            return try read()
        }
    }

    /// Why `purpose` may not process `subject`'s data, or nil when it may.
    private func refusal(of subject: some SealedSubject, for purpose: Purpose) throws(StoreError) -> String? {
        // The set is consulted only for a restricted subject: it matters only then, and hashing the purpose costs every decrypt.
        try processingRefusal(restricted: subject.isRestricted,
                              allowedUnderRestriction: subject.isRestricted && Purpose.allowedUnderRestriction.contains(purpose),
                              for: purpose) { () throws(StoreError) in try consentState(of: subject.id, for: purpose) }
    }

    /// Why `purpose` may not process a subject's data, or nil when it may: an undeclared purpose,
    /// restriction of processing (GDPR Art. 18) unless `allowedUnderRestriction`, or a consent-based
    /// purpose without consent (Art. 6(1)(a)); `consent` reads the subject's consent to `purpose`.
    /// Shared by the decrypt path and the write path.
    func processingRefusal(restricted: Bool, allowedUnderRestriction: Bool, for purpose: Purpose,
                           consent: () throws(StoreError) -> ConsentState?) throws(StoreError) -> String? {
        guard let declaration = purposeDeclaration(purpose) else { return "purpose \(purpose) is not declared" }
        if restricted && !allowedUnderRestriction { return "processing is restricted" }
        if declaration.lawfulBasis == .consent, try consent()?.allowsProcessing != true {
            return "no consent for \(purpose)"
        }
        return nil
    }

    /// A short, non-personal description of why a decrypt failed, for the audit log.
    private static func auditDetail(for error: StoreError) -> String {
        switch error {
        case .subjectErased: return "erased"
        case .keyUnavailable: return "key unavailable"
        case .unreadableKey: return "subject key did not unwrap"
        case .unreadableField(_, let field, let envelopeError): return "\(field): \(envelopeError)"
        default: return "failed"
        }
    }
}
