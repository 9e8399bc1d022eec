/// The place a ciphertext belongs to: which table and column (its slot) and which record.
///
/// Bound into every envelope's header and AAD, so that a ciphertext copied into another row or column
/// is refused as `misplaced` rather than opened.
public struct EnvelopeLocation: Hashable, Sendable, CustomStringConvertible {
    /// Which table and column.
    public let slot: EnvelopeSlot
    /// The record (subject id, or key id for key rows).
    public let recordID: Int64

    /// Creates a location.
    public init(slot: EnvelopeSlot, recordID: Int64) {
        self.slot = slot
        self.recordID = recordID
    }

    public var description: String { "\(slot) of record \(recordID)" }
}

/// The table and column an envelope lives in, as one byte of its header.
public struct EnvelopeSlot: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The byte written to the header.
    public let rawValue: UInt8
    /// Wraps a header byte.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// A personal field of the `subjects` table (1 to 8).
    static func field(_ field: PersonalField) -> EnvelopeSlot {
        EnvelopeSlot(rawValue: UInt8(PersonalField.allCases.firstIndex(of: field)! + 1))
    }
    /// The client address of a consent ledger entry.
    static let consentClientAddress = EnvelopeSlot(rawValue: 16)
    /// The evidence of a consent ledger entry.
    static let consentEvidence = EnvelopeSlot(rawValue: 17)
    /// The actor of a consent ledger entry, sealed with the entry's clear facts (`ConsentActorSeal`).
    static let consentActor = EnvelopeSlot(rawValue: 18)
    /// A subject key, wrapped under the KEK.
    static let subjectKey = EnvelopeSlot(rawValue: 32)
    /// A blind-index key, wrapped under the KEK.
    static let indexKey = EnvelopeSlot(rawValue: 33)
    /// The audit key, wrapped under the KEK.
    static let auditKey = EnvelopeSlot(rawValue: 34)

    /// The key-encryption key, wrapped under the master key.
    static let keyEncryptionKey = EnvelopeSlot(rawValue: 48)

    public var description: String {
        if (1...8).contains(rawValue) { return "subjects.\(PersonalField.allCases[Int(rawValue) - 1].column)" }
        switch rawValue {
        case 16: return "consent.client_address"
        case 17: return "consent.evidence"
        case 18: return "consent.actor"
        case 32: return "subject_keys.wrapped"
        case 33: return "index_keys.wrapped"
        case 34: return "audit_keys.wrapped"
        case 48: return "kek.wrapped"
        default: return "slot \(rawValue)"
        }
    }
}
