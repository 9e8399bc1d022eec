import StrongroomCrypto

/// The two keys of erasure records, each derived for its one use from the audit key (HKDF-SHA256,
/// RFC 5869, salt: the store id, info: a label of its own):
///
/// - the tombstone key (`strongroom.erasure.tombstone.v1`) turns an erased subject's external id into
///   the keyed hash its tombstone keeps (`tag`), so that the id itself is not kept in clear;
/// - the receipt key (`strongroom.erasure.receipt.v1`) MACs each erasure receipt (`ErasureReceipt`).
///
/// Why the audit key: it is the one key of the hierarchy no rotation replaces. A master or KEK rotation
/// re-wraps it (its bytes stay), a data rotation replaces subject keys and an index rotation the phone
/// index key, neither of which it depends on; and it has to last as long as the log it signs, which is
/// as long as a receipt must verify and a tombstone must block a re-import. A tombstone keyed under the
/// phone index key would need re-hashing at every index rotation, which is impossible without keeping
/// the external id in clear. Separate labels keep the three uses (audit chain, tombstones, receipts)
/// apart: a value made under one key never verifies under another.
struct ErasureKeys: Sendable {
    /// The HKDF label (`info`) of the tombstone key.
    static let tombstoneLabel = Array("strongroom.erasure.tombstone.v1".utf8)
    /// The HKDF label (`info`) of the receipt key.
    static let receiptLabel = Array("strongroom.erasure.receipt.v1".utf8)

    private let tombstone: HMACSHA256
    private let receipt: HMACSHA256

    /// Derives both keys from `auditKey` for the store `storeID`.
    init(auditKey: SecretKey, storeID: [UInt8]) throws(CryptoError) {
        tombstone = try HMACSHA256(key: try HKDFSHA256.deriveKey(inputKeyMaterial: auditKey, salt: storeID,
                                                                  info: ErasureKeys.tombstoneLabel, outputByteCount: 32))
        receipt = try HMACSHA256(key: try HKDFSHA256.deriveKey(inputKeyMaterial: auditKey, salt: storeID,
                                                                info: ErasureKeys.receiptLabel, outputByteCount: 32))
    }

    /// The tombstone's keyed hash of an external id: HMAC-SHA256 under the tombstone key over its UTF-8
    /// bytes, exactly as given (a CRM's ids are compared as they are, as the `external_id` column does).
    /// All 256 bits are kept: the tag is a unique key, and a collision would block a stranger's id.
    func tag(externalID: String) throws(CryptoError) -> [UInt8] {
        try tombstone.authenticationCode(for: Array(externalID.utf8))
    }

    /// The MAC of a receipt's canonical encoding (`ErasureReceipt.canonicalEncoding`).
    func mac(_ canonicalEncoding: [UInt8]) throws(CryptoError) -> [UInt8] {
        try receipt.authenticationCode(for: canonicalEncoding)
    }
}
