import Foundation

/// The store's identifier of a lead or contact: stable for the subject's life, kept when a lead converts.
public struct SubjectID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The row id in the data database.
    public let rawValue: Int64
    /// Wraps a row id.
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public var description: String { String(rawValue) }
    public static func < (lhs: SubjectID, rhs: SubjectID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Whether a subject is a lead (a prospect) or a contact (an established relation).
public enum SubjectKind: String, Sendable, CaseIterable, Codable {
    /// A prospect, e.g. an unknown caller or a web-form sign-up.
    case lead
    /// An established customer or partner.
    case contact
}

/// A phone number as a person typed it, with its label ("mobile", "work", …).
public struct LabeledPhone: Hashable, Sendable, Codable {
    /// What the number is for, e.g. "mobile".
    public var label: String
    /// The number as typed; normalised to E.164 only for the blind index.
    public var number: String
    /// Creates a labelled number.
    public init(label: String, number: String) {
        self.label = label
        self.number = number
    }
}

/// The personal fields of a lead or contact: each is stored only as AES-256-GCM ciphertext.
///
/// In a partial read, a field that was not asked for is `nil`; one that was asked for but is empty is
/// the empty value.
public struct PersonalData: Hashable, Sendable {
    /// Full name.
    public var name: String?
    /// Company or organisation.
    public var company: String?
    /// E-mail addresses.
    public var emails: [String]?
    /// Phone numbers with labels.
    public var phones: [LabeledPhone]?
    /// Postal address, free text.
    public var address: String?
    /// Free-text notes.
    public var notes: String?
    /// Photo bytes (any image format).
    public var photo: [UInt8]?
    /// Custom fields, by name.
    public var customFields: [String: String]?

    /// Creates personal data; every field defaults to absent.
    public init(name: String? = nil, company: String? = nil, emails: [String]? = nil,
                phones: [LabeledPhone]? = nil, address: String? = nil, notes: String? = nil,
                photo: [UInt8]? = nil, customFields: [String: String]? = nil) {
        self.name = name
        self.company = company
        self.emails = emails
        self.phones = phones
        self.address = address
        self.notes = notes
        self.photo = photo
        self.customFields = customFields
    }
}

/// The fields of a subject that carry no personal content and stay in clear, so a CRM can sort and filter.
public struct SubjectMetadata: Hashable, Sendable {
    /// Lead or contact.
    public var kind: SubjectKind
    /// The CRM's own identifier (e.g. from an import), unique in the store.
    public var externalID: String?
    /// The owning user or team.
    public var owner: String?
    /// Pipeline status, e.g. "new", "qualified".
    public var status: String?
    /// Where the subject came from, e.g. "Website form", "Call log".
    public var source: String?
    /// When the subject was last spoken to.
    public var lastContactedAt: Date?

    /// Creates metadata.
    public init(kind: SubjectKind, externalID: String? = nil, owner: String? = nil, status: String? = nil,
                source: String? = nil, lastContactedAt: Date? = nil) {
        self.kind = kind
        self.externalID = externalID
        self.owner = owner
        self.status = status
        self.source = source
        self.lastContactedAt = lastContactedAt
    }

    /// Refuses a clear text holding a NUL character (U+0000): PostgreSQL's text cannot hold one, and
    /// SQLite would compare it whole in one statement and cut at it in another, so an external id
    /// "a<NUL>b" could be stored, then never found again, or found as "a". Checked for every subject
    /// a write creates or updates (`Store.createOrUpdate`, `Store.update`), before anything is written.
    /// - Throws: `StoreError.textHoldsNUL` naming the first such field, never its content.
    func checkTexts() throws(StoreError) {
        for (text, field) in [(externalID, "external_id"), (owner, "owner"), (status, "status"), (source, "source")] {
            if let text, text.holdsNUL { throw .textHoldsNUL(field: field) }
        }
    }
}

extension String {
    /// Whether the text holds a NUL character (U+0000): its UTF-8 bytes read in place where they are
    /// contiguous (every string the engine makes), which an import checking every cell needs (through
    /// the generic `utf8.contains` the check cost it about a twentieth of its CPU a row).
    var holdsNUL: Bool {
        guard isContiguousUTF8 else { return utf8.contains(0) }
        let bytes = utf8Span.span
        for index in bytes.indices where bytes[index] == 0 { return true }
        return false
    }
}

/// A lead or contact: its clear metadata and (the requested part of) its decrypted personal data.
public struct Subject: Hashable, Sendable {
    /// The store's identifier.
    public let id: SubjectID
    /// Clear operational fields.
    public var metadata: SubjectMetadata
    /// When the subject was created.
    public let createdAt: Date
    /// When the subject was last changed.
    public let updatedAt: Date
    /// Whether processing is restricted (GDPR Art. 18).
    public let isRestricted: Bool
    /// Decrypted personal fields; only those that were asked for.
    public var personal: PersonalData
}

/// A subject's clear fields only, as listed without decrypting anything.
public struct SubjectSummary: Hashable, Sendable {
    /// The store's identifier.
    public let id: SubjectID
    /// Clear operational fields.
    public let metadata: SubjectMetadata
    /// When the subject was created.
    public let createdAt: Date
    /// When the subject was last changed.
    public let updatedAt: Date
    /// Whether processing is restricted.
    public let isRestricted: Bool
}
