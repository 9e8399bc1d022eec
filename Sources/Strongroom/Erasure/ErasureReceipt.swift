import Foundation
import StrongroomCrypto

/// The proof an erasure (GDPR Art. 17) was done: what was erased, when, by whom, why, what was destroyed,
/// and which audit entry records it, under a MAC. Kept with the subject's tombstone in the key database,
/// so that it can be shown and verified later (`Store.erasureReceipt(for:)`, `strongroom audit receipt`).
///
/// It holds no personal field. The external id is kept only as its keyed hash (`ErasureKeys.tag`):
/// `externalID` is the one given at the erasure, or to the lookup that found the receipt by it.
public struct ErasureReceipt: Sendable, Hashable {
    /// What an erasure destroyed.
    public struct Destroyed: Sendable, Hashable, Codable {
        /// Versions of the subject's key (crypto-shredding: every copy of its ciphertext is unreadable).
        public let subjectKeys: Int
        /// The subject's rows (its own row: 1).
        public let rows: Int
        /// Blind-index entries of its phone numbers (every index version).
        public let indexEntries: Int
        /// Entries of its consent ledger.
        public let consentEntries: Int
        /// Logged calls.
        public let calls: Int
    }

    /// The receipt's id: 128 random bits, in hexadecimal.
    public let receipt: String
    /// The erased subject's store id.
    public let id: SubjectID
    /// The subject's external id as given (at the erasure, or to the lookup by it); nil when it had none
    /// or the receipt was found by store id (the store keeps only its keyed hash).
    public let externalID: String?
    /// When the key was destroyed (millisecond precision).
    public let erasedAt: Date
    /// Who erased (`AccessContext.actor`).
    public let actor: String
    /// Why (a ticket or legal basis, as given to the erasure).
    public let reason: String
    /// What was destroyed.
    public let destroyed: Destroyed
    /// The sequence number of the erasure's entry in the store's audit log; nil when the store keeps no
    /// audit log of its own (only additional audit hooks).
    public let auditSequence: UInt64?
    /// HMAC-SHA256 under the receipt key (`ErasureKeys`) over `canonicalEncoding`.
    public let mac: [UInt8]
    /// The keyed hash of the external id (nil when none): what the MAC covers in its place.
    let externalIDTag: [UInt8]?
    /// `erasedAt` in milliseconds since 1970, as stored and MAC'd.
    let erasedAtMilliseconds: Int64

    init(receipt: String, id: SubjectID, externalID: String?, externalIDTag: [UInt8]?, erasedAtMilliseconds: Int64, actor: String,
         reason: String, destroyed: Destroyed, auditSequence: UInt64?, mac: [UInt8]) {
        self.receipt = receipt
        self.id = id
        self.externalID = externalID
        self.externalIDTag = externalIDTag
        self.erasedAtMilliseconds = erasedAtMilliseconds
        self.erasedAt = Store.date(milliseconds: erasedAtMilliseconds)
        self.actor = actor
        self.reason = reason
        self.destroyed = destroyed
        self.auditSequence = auditSequence
        self.mac = mac
    }

    /// What an erasure's receipt will say, but for what only the key-database transaction that destroys
    /// the keys knows (how many it destroyed, when): `Keyring.destroySubjectKeys` issues it there.
    struct Draft {
        let id: SubjectID
        let externalID: String?
        let actor: String
        let reason: String
        /// What the erasure deletes from the data database (the subject keys are counted later).
        let destroyed: Destroyed
        let auditSequence: UInt64?
        let keys: ErasureKeys

        /// The receipt, with `subjectKeys` keys destroyed at `now` (milliseconds).
        func issue(subjectKeys: Int, at now: Int64) throws(CryptoError) -> ErasureReceipt {
            try ErasureReceipt.issue(id: id, externalID: externalID, erasedAtMilliseconds: now, actor: actor, reason: reason,
                                     destroyed: destroyed.with(subjectKeys: subjectKeys), auditSequence: auditSequence, keys: keys)
        }
    }

    /// A new receipt with a random id, MAC'd under `keys`.
    static func issue(id: SubjectID, externalID: String?, erasedAtMilliseconds: Int64, actor: String, reason: String,
                      destroyed: Destroyed, auditSequence: UInt64?, keys: ErasureKeys) throws(CryptoError) -> ErasureReceipt {
        let receiptID = try SecureRandom.bytes(count: 16).map { String(format: "%02x", $0) }.joined()
        let unsigned = ErasureReceipt(receipt: receiptID, id: id, externalID: externalID,
                                      externalIDTag: try externalID.map { (externalID) throws(CryptoError) in try keys.tag(externalID: externalID) },
                                      erasedAtMilliseconds: erasedAtMilliseconds, actor: actor, reason: reason,
                                      destroyed: destroyed, auditSequence: auditSequence, mac: [])
        return unsigned.with(mac: try keys.mac(unsigned.canonicalEncoding))
    }

    /// This receipt with `mac`.
    func with(mac: [UInt8]) -> ErasureReceipt {
        ErasureReceipt(receipt: receipt, id: id, externalID: externalID, externalIDTag: externalIDTag,
                       erasedAtMilliseconds: erasedAtMilliseconds, actor: actor, reason: reason, destroyed: destroyed,
                       auditSequence: auditSequence, mac: mac)
    }

    /// This receipt as found by an external id the caller gave (its hash matched the tag).
    func with(externalID: String?) -> ErasureReceipt {
        ErasureReceipt(receipt: receipt, id: id, externalID: externalID, externalIDTag: externalIDTag,
                       erasedAtMilliseconds: erasedAtMilliseconds, actor: actor, reason: reason, destroyed: destroyed,
                       auditSequence: auditSequence, mac: mac)
    }

    /// The bytes the MAC covers: the label `strongroom.erasure-receipt.v1`, then each field in this
    /// order as a 4-byte big-endian length and its bytes — receipt id (UTF-8), store id (decimal),
    /// external id's keyed hash (32 bytes; empty when none), erased at (milliseconds since 1970, decimal),
    /// actor (UTF-8), reason (UTF-8), destroyed subject keys, rows, index entries, consent entries and
    /// calls (decimal each), audit sequence (decimal; empty when none). The lengths make the encoding
    /// unambiguous (no two receipts share one); the external id enters as its keyed hash, so a receipt
    /// found by store id verifies without the id in clear, and one found by external id binds it.
    var canonicalEncoding: [UInt8] {
        var bytes = Array("strongroom.erasure-receipt.v1".utf8)
        func field(_ value: [UInt8]) {
            let length = UInt32(value.count)
            bytes += [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
            bytes.append(contentsOf: value)
        }
        func field(_ text: String) { field(Array(text.utf8)) }
        field(receipt)
        field(String(id.rawValue))
        field(externalIDTag ?? [])
        field(String(erasedAtMilliseconds))
        field(actor)
        field(reason)
        for count in [destroyed.subjectKeys, destroyed.rows, destroyed.indexEntries, destroyed.consentEntries, destroyed.calls] {
            field(String(count))
        }
        field(auditSequence.map(String.init) ?? "")
        return bytes
    }
}

/// What checking an erasure receipt found (`Store.verifyErasureReceipt`).
public struct ErasureReceiptVerification: Sendable, Hashable {
    /// The receipt as stored.
    public let receipt: ErasureReceipt
    /// The first check that failed, nil when the receipt verified: its MAC, then its audit entry
    /// (present, genuine in a log that verifies, and the erasure of this subject).
    public let problem: String?

    /// Whether every check passed.
    public var isVerified: Bool { problem == nil }
}
