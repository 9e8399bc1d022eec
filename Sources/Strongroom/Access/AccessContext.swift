/// Who is reading, why, and from where: required by every operation that decrypts.
///
/// There is no way to read personal data without one: every decrypting method takes it as a
/// non-optional parameter, and it is written to the audit log with each decrypt.
public struct AccessContext: Sendable, Hashable {
    /// The person or service acting, e.g. "alice" or "crm-api".
    public let actor: String
    /// Why the data is read; checked against the subject's restriction and consents.
    public let purpose: Purpose
    /// The client's network address, when the request came over a network.
    public let clientAddress: String?

    /// Creates a context.
    public init(actor: String, purpose: Purpose, clientAddress: String? = nil) {
        self.actor = actor
        self.purpose = purpose
        self.clientAddress = clientAddress
    }
}

/// A purpose of processing (GDPR Art. 5(1)(b), purpose limitation), named by the store's users.
public struct Purpose: RawRepresentable, Hashable, Sendable, Codable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The purpose's name, e.g. "caller-id".
    public let rawValue: String
    /// Names a purpose.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// Names a purpose.
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    /// Identifying an incoming caller (legitimate interest).
    public static let callerID: Purpose = "caller-id"
    /// Administration of the store: imports, exports on request, key rotation (legitimate interest).
    public static let admin: Purpose = "admin"
    /// Answering the data subject's own request (access, portability, rectification); allowed under restriction.
    public static let subjectRequest: Purpose = "subject-request"
    /// Establishing, exercising or defending legal claims (GDPR Art. 18(2)); allowed under restriction.
    public static let legalClaims: Purpose = "legal-claims"

    /// Re-encrypting or re-indexing data under new keys: storage, which restriction still allows.
    public static let keyRotation: Purpose = "key-rotation"

    /// The purposes GDPR Art. 18(2) still allows while processing of a subject is restricted: storage
    /// (here: re-encryption under new keys), legal claims, and the subject's own requests.
    public static let allowedUnderRestriction: Set<Purpose> = [.subjectRequest, .legalClaims, .keyRotation]
}
