import Foundation
import StrongroomPhone
import StrongroomStorage

/// Everything a store holds on one subject, in the stable export layout (version 1): the answer to a
/// right-of-access or portability request (GDPR Art. 15 and 20).
///
/// JSON keys: `format` ("strongroom.subject-export"), `version` (1), `exported_at`, `subject` (clear
/// fields), `personal` (every personal field decrypted; phone numbers with their E.164 form),
/// `calls`, `consents` (the consent ledger, oldest first, client addresses and evidence decrypted),
/// `access_log` (every audit entry about the subject: who accessed what, when and why).
public struct SubjectExport: Sendable, Codable, Equatable {
    /// The subject's clear fields.
    public struct Record: Sendable, Codable, Equatable {
        public let id: String
        public let externalID: String?
        public let kind: String
        public let owner: String?
        public let status: String?
        public let source: String?
        public let createdAt: String
        public let updatedAt: String
        public let lastContactedAt: String?
        public let restricted: Bool
    }

    /// A phone number as stored, with its normalised form when it has one.
    public struct Phone: Sendable, Codable, Equatable {
        public let label: String
        public let number: String
        public let e164: String?
    }

    /// The decrypted personal fields.
    public struct Personal: Sendable, Codable, Equatable {
        public let name: String?
        public let company: String?
        public let emails: [String]
        public let phones: [Phone]
        public let address: String?
        public let notes: String?
        public let photoBase64: String?
        public let customFields: [String: String]
    }

    /// A logged call.
    public struct Call: Sendable, Codable, Equatable {
        public let at: String
        public let direction: String
    }

    /// "strongroom.subject-export".
    public let format: String
    /// The layout's version: 1.
    public let version: Int
    /// When the export was made.
    public let exportedAt: String
    /// Clear fields.
    public let subject: Record
    /// Personal fields.
    public let personal: Personal
    /// Logged calls, oldest first.
    public let calls: [Call]
    /// The consent ledger, oldest first.
    public let consents: [ConsentEntry]
    /// Audit entries about the subject, oldest first.
    public let accessLog: [AuditEntry]

    /// The export as JSON, keys sorted and snake_case, pretty-printed.
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

extension Store {
    /// Exports everything held on `id` (decrypted through the audited path, so the export itself is
    /// in the access log it returns).
    public func export(_ id: SubjectID, context: AccessContext) throws(StoreError) -> SubjectExport {
        let subject = try read(id, fields: .all, context: context)
        let calls = try withData { (connection) throws(DatabaseError) in
            try connection.rows("SELECT at, direction FROM calls WHERE subject_id = ? ORDER BY at", [.integer(id.rawValue)]) {
                SubjectExport.Call(at: Timestamp.format(Store.date(milliseconds: $0.int64(0))), direction: $0.text(1) ?? "")
            }
        }
        let consents = try consentLedger(of: id, context: context)
        var accessLog: [AuditEntry] = []
        try storeErrors { try auditEntries(AuditFilter(subject: id)) { entry, _ in accessLog.append(entry) } }
        let personal = subject.personal
        let metadata = subject.metadata
        return SubjectExport(
            format: "strongroom.subject-export", version: 1, exportedAt: Timestamp.format(Date()),
            subject: .init(id: String(id.rawValue), externalID: metadata.externalID, kind: metadata.kind.rawValue,
                           owner: metadata.owner, status: metadata.status, source: metadata.source,
                           createdAt: Timestamp.format(subject.createdAt), updatedAt: Timestamp.format(subject.updatedAt),
                           lastContactedAt: metadata.lastContactedAt.map(Timestamp.format), restricted: subject.isRestricted),
            personal: .init(name: personal.name, company: personal.company, emails: personal.emails ?? [],
                            phones: (personal.phones ?? []).map {
                                .init(label: $0.label, number: $0.number, e164: try? phoneNormalizer.normalize($0.number).e164)
                            },
                            address: personal.address, notes: personal.notes,
                            photoBase64: personal.photo.map { Data($0).base64EncodedString() },
                            customFields: personal.customFields ?? [:]),
            calls: calls, consents: consents, accessLog: accessLog)
    }
}
