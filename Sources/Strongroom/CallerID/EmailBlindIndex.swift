import StrongroomCrypto

/// The blind index of e-mail addresses (`subject find --email`): a truncated keyed tag of the
/// normalised address (`EmailAddress`) to find candidates, and a keyed check per row to keep only the
/// exact matches, built as the phone index is (`PhoneBlindIndex`).
///
/// Its keys come from the same index key version as the phone index's, through HKDF-SHA256 (RFC 5869)
/// with labels of their own ("strongroom.email-index.tag.v1", "…check.v1"): HKDF's `info` separates
/// the domains, so an e-mail tag and a phone tag are outputs of unrelated keys, and a phone number and
/// an address that happened to share bytes would not share a tag. One index key per version means one
/// `keys rotate-index` rotates both indexes, and the e-mail index has the tag length the index key row
/// plans (`BlindIndexPlan`; a subject holds about as many addresses as numbers).
///
/// The check is HMAC-SHA256(check key, subject id ‖ full tag) cut to 128 bits, as for phone numbers: it
/// confirms a candidate exactly, and differs between subjects holding the same address.
struct EmailBlindIndex: Sendable {
    /// The index key's version.
    let version: UInt32
    /// How many leading bits of the tag are stored in clear.
    let bits: Int
    private let tagMAC: HMACSHA256
    private let checkMAC: HMACSHA256

    /// The HKDF labels of the tag and check keys.
    private static let tagLabel = Array("strongroom.email-index.tag.v1".utf8)
    private static let checkLabel = Array("strongroom.email-index.check.v1".utf8)

    init(indexKey: SecretKey, version: UInt32, bits: Int, storeID: [UInt8]) throws(CryptoError) {
        self.version = version
        self.bits = bits
        tagMAC = try HMACSHA256(key: try HKDFSHA256.deriveKey(inputKeyMaterial: indexKey, salt: storeID,
                                                              info: EmailBlindIndex.tagLabel, outputByteCount: 32))
        checkMAC = try HMACSHA256(key: try HKDFSHA256.deriveKey(inputKeyMaterial: indexKey, salt: storeID,
                                                                info: EmailBlindIndex.checkLabel, outputByteCount: 32))
    }

    /// The tags of a normalised address: the leading `bits` bits (stored) and the full HMAC (never stored).
    func tags(for address: EmailAddress) throws(CryptoError) -> PhoneBlindIndex.Tags {
        let full = try tagMAC.authenticationCode(for: Array(address.normalized.utf8))
        return PhoneBlindIndex.Tags(truncated: Int64(readUInt64(full, at: 0) >> UInt64(64 - bits)), full: full)
    }

    /// The check stored in `subject`'s index row for an address with these tags.
    func check(_ tags: PhoneBlindIndex.Tags, subject: SubjectID) throws(CryptoError) -> [UInt8] {
        let subjectBytes = PhoneBlindIndex.checkPrefix(subject)
        return Array(try checkMAC.authenticationCode(forConcatenationOf: subjectBytes.span, tags.full.span)
            .prefix(PhoneBlindIndex.checkByteCount))
    }

    /// Whether `stored`, from `subject`'s index row, is the check of exactly the address with `tags`
    /// (constant time).
    func matches(_ stored: [UInt8], subject: SubjectID, tags: PhoneBlindIndex.Tags) -> Bool {
        let subjectBytes = PhoneBlindIndex.checkPrefix(subject)
        return stored.count == PhoneBlindIndex.checkByteCount
            && checkMAC.isValidTruncatedAuthenticationCode(stored.span, forConcatenationOf: subjectBytes.span, tags.full.span)
    }
}
