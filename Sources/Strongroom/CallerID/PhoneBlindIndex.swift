import StrongroomCrypto

/// The blind index of phone numbers: a truncated keyed tag to find candidates, and a keyed check per
/// row to keep only the exact matches.
///
/// Its keys come from the index key through HKDF-SHA256 (RFC 5869), each with its own label: the tag
/// key, the check key and the call-record key (which names a logged call, `callKey`). The check is
/// HMAC-SHA256(check key, subject id ‖ full tag) cut to 128 bits: it confirms a candidate exactly, and,
/// because it mixes in the subject id, the same number held by two subjects gives two unrelated checks,
/// so the stored checks reveal no equality the truncated tags do not.
struct PhoneBlindIndex: Sendable {
    /// The index key's version (rotation builds a new version beside the old).
    let version: UInt32
    /// How many leading bits of the tag are stored in clear.
    let bits: Int
    private let tagMAC: HMACSHA256
    private let checkMAC: HMACSHA256
    private let callMAC: HMACSHA256

    /// The length of a row's check: 128 bits, so a false match needs a 2^-128 accident.
    static let checkByteCount = 16

    /// A number's tags.
    struct Tags {
        /// The leading `bits` bits of the full tag: stored in clear, shared by several numbers.
        let truncated: Int64
        /// HMAC-SHA256 of the E.164 number: never stored.
        let full: [UInt8]
    }

    init(indexKey: SecretKey, version: UInt32, bits: Int, storeID: [UInt8]) throws(CryptoError) {
        self.version = version
        self.bits = bits
        tagMAC = try HMACSHA256(key: try HKDFSHA256.deriveKey(inputKeyMaterial: indexKey, salt: storeID,
                                                              info: Array("strongroom.phone-index.tag.v1".utf8),
                                                              outputByteCount: 32))
        checkMAC = try HMACSHA256(key: try HKDFSHA256.deriveKey(inputKeyMaterial: indexKey, salt: storeID,
                                                                info: Array("strongroom.phone-index.check.v2".utf8),
                                                                outputByteCount: 32))
        callMAC = try HMACSHA256(key: try HKDFSHA256.deriveKey(inputKeyMaterial: indexKey, salt: storeID,
                                                               info: PhoneBlindIndex.callKeyLabel, outputByteCount: 32))
    }

    /// The HKDF label of the call-record key. Before it had one, a call's key was the tag of
    /// "call|number|time|direction" under the tag key; those rows are left as they are (see `callKey`).
    static let callKeyLabel = Array("strongroom.phone-index.call.v1".utf8)

    /// The key of a logged call (`calls.call_key`): HMAC-SHA256 under the call-record key of the E.164
    /// number, the time in milliseconds and the direction, so the same call logged twice is recognised
    /// without the number being recoverable from the row.
    func callKey(e164: String, milliseconds: Int64, direction: String) throws(CryptoError) -> [UInt8] {
        try callMAC.authenticationCode(for: Array("\(e164)|\(milliseconds)|\(direction)".utf8))
    }

    /// The tags of an E.164 number.
    func tags(for e164: String) throws(CryptoError) -> Tags {
        let full = try tagMAC.authenticationCode(for: e164.utf8.span)
        let leading = readUInt64(full, at: 0) >> UInt64(64 - bits)
        return Tags(truncated: Int64(leading), full: full)
    }

    /// The check stored in `subject`'s index row for a number with these tags.
    func check(_ tags: Tags, subject: SubjectID) throws(CryptoError) -> [UInt8] {
        let subjectBytes = PhoneBlindIndex.checkPrefix(subject)
        var code = try checkMAC.authenticationCode(forConcatenationOf: subjectBytes.span, tags.full.span)
        code.removeLast(code.count - PhoneBlindIndex.checkByteCount)
        return code
    }

    /// Whether `stored`, from `subject`'s index row, is the check of exactly the number whose full tag
    /// is `fullTag` (constant time, reading both in place).
    func matches(_ stored: Span<UInt8>, subject: SubjectID, fullTag: Span<UInt8>) -> Bool {
        let subjectBytes = PhoneBlindIndex.checkPrefix(subject)
        return stored.count == PhoneBlindIndex.checkByteCount
            && checkMAC.isValidTruncatedAuthenticationCode(stored, forConcatenationOf: subjectBytes.span, fullTag)
    }

    /// What the check MACs before the full tag: the subject id, 8 bytes big-endian (on the stack).
    static func checkPrefix(_ subject: SubjectID) -> InlineArray<8, UInt8> {
        var bytes = InlineArray<8, UInt8>(repeating: 0)
        for index in 0..<8 { bytes[index] = UInt8(truncatingIfNeeded: UInt64(bitPattern: subject.rawValue) >> (56 - 8 * index)) }
        return bytes
    }
}

/// One row of the blind index for one subject: its number's truncated tag under an index version and
/// the check that tells the subject's row from a truncation collision.
struct BlindIndexEntry: Sendable {
    /// The index version the tag was made under.
    let version: UInt32
    /// The truncated tag (`PhoneBlindIndex.Tags.truncated`).
    let tag: Int64
    /// The check (`PhoneBlindIndex.check`).
    let check: [UInt8]
}
