import StrongroomCrypto

/// The blind index of phone numbers: a truncated keyed tag to find candidates, and a sealed full tag
/// to keep only the exact matches.
///
/// Both subkeys come from the index key through HKDF-SHA256 (RFC 5869) with distinct labels, so the
/// MAC key and the encryption key are never the same bytes.
struct PhoneBlindIndex: Sendable {
    /// The index key's version (rotation builds a new version beside the old).
    let version: UInt32
    /// How many leading bits of the tag are stored in clear.
    let bits: Int
    private let tagMAC: HMACSHA256
    private let checkKey: KeyHandle

    /// The durable count of the check key's encryptions.
    var usage: KeyUsage { checkKey.usage! }
    private let storeID: [UInt8]

    /// A number's tags.
    struct Tags {
        /// The leading `bits` bits of the full tag: stored in clear, shared by several numbers.
        let truncated: Int64
        /// HMAC-SHA256 of the E.164 number: never stored in clear.
        let full: [UInt8]
    }

    init(indexKey: SecretKey, version: UInt32, bits: Int, storeID: [UInt8], usage: KeyUsage) throws(CryptoError) {
        self.version = version
        self.bits = bits
        self.storeID = storeID
        tagMAC = try HMACSHA256(key: try HKDFSHA256.deriveKey(inputKeyMaterial: indexKey, salt: storeID,
                                                              info: Array("strongroom.phone-index.tag.v1".utf8),
                                                              outputByteCount: 32))
        let check = try HKDFSHA256.deriveKey(inputKeyMaterial: indexKey, salt: storeID,
                                             info: Array("strongroom.phone-index.check.v1".utf8), outputByteCount: 32)
        checkKey = KeyHandle(cipher: try AES256GCM(key: check), version: version, identifier: 0, usage: usage)
    }

    /// The tags of an E.164 number.
    func tags(for e164: String) throws(CryptoError) -> Tags {
        let full = try tagMAC.authenticationCode(for: Array(e164.utf8))
        let leading = readUInt64(full, at: 0) >> UInt64(64 - bits)
        return Tags(truncated: Int64(leading), full: full)
    }

    /// The full tag sealed for `subject`'s index row (random nonce: equal numbers give unequal ciphertexts).
    func sealCheck(_ tags: Tags, subject: SubjectID) throws -> [UInt8] {
        try Envelope.seal(tags.full, at: EnvelopeLocation(slot: .phoneIndexCheck, recordID: subject.rawValue),
                          under: checkKey, storeID: storeID)
    }

    /// Whether `check`, from `subject`'s index row, seals exactly `tags.full`.
    func matches(_ check: [UInt8], subject: SubjectID, _ tags: Tags) -> Bool {
        guard let full = try? Envelope.openIndexCheck(check, subject: subject, under: checkKey, storeID: storeID) else {
            return false
        }
        return constantTimeEquals(full, tags.full)
    }
}
