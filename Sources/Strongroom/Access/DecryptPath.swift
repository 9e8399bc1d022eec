import Foundation
import StrongroomCrypto

/// Proof that the caller is the audited decrypt path: only this file can make one, and
/// `Envelope.openPersonalData` requires one, so no other code can turn a personal field into plaintext.
struct DecryptPermit {
    fileprivate init() {}
}

/// A subject's stored row as read for decryption: clear fields and the requested ciphertexts.
struct EncryptedSubject {
    let summary: SubjectSummary
    let keyVersion: UInt32
    let ciphertexts: [PersonalField: [UInt8]]
}

extension Store {
    /// The one function that turns stored ciphertext into plaintext.
    ///
    /// In order: checks the purpose against each subject's restriction; opens each requested field
    /// under the subject's key; reports one audit event per subject (refused, failed or ok) to every
    /// audit hook; and only then returns the plaintext. If any step fails, nothing is returned.
    func decrypt(_ subjects: [EncryptedSubject], fields: [PersonalField],
                 context: AccessContext) throws(StoreError) -> [PersonalData] {
        let permit = DecryptPermit()
        let fields = fields.sorted()
        for subject in subjects where subject.summary.isRestricted && !Purpose.allowedUnderRestriction.contains(context.purpose) {
            try audit([AuditEvent(.decrypt, context, subject: subject.summary.id, fields: fields, outcome: .refused,
                                  detail: "restricted")])
            throw .accessRefused(subject.summary.id, purpose: context.purpose, reason: "processing is restricted")
        }
        var results: [PersonalData] = []
        results.reserveCapacity(subjects.count)
        var events: [AuditEvent] = []
        events.reserveCapacity(subjects.count)
        let now = Date()
        for subject in subjects {
            var personal = PersonalData()
            do throws(StoreError) {
                let key = try keyring.subjectKey(for: subject.summary.id, version: subject.keyVersion)
                for field in fields {
                    guard let ciphertext = subject.ciphertexts[field] else { continue }
                    let plaintext: [UInt8]
                    do {
                        plaintext = try Envelope.openPersonalData(
                            ciphertext, at: EnvelopeLocation(slot: .field(field), recordID: subject.summary.id.rawValue),
                            under: key, storeID: keyring.storeID, permit: permit)
                    } catch {
                        throw StoreError.unreadableField(subject.summary.id, field: field.rawValue, error)
                    }
                    do { try FieldCodec.decode(field, from: plaintext, into: &personal) } catch {
                        throw StoreError.unreadableField(subject.summary.id, field: field.rawValue, .authenticationFailed)
                    }
                }
            } catch {
                try audit([AuditEvent(.decrypt, context, subject: subject.summary.id, fields: fields, outcome: .failed,
                                      detail: Store.auditDetail(for: error), time: now)])
                throw error
            }
            results.append(personal)
            events.append(AuditEvent(.decrypt, context, subject: subject.summary.id, fields: fields, time: now))
        }
        try audit(events)
        return results
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
