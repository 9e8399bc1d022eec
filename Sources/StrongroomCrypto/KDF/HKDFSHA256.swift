/// HKDF with SHA-256 (RFC 5869): extract-then-expand over HMAC-SHA256.
///
/// Built directly on `HMACSHA256` as RFC 5869 §2.2–2.3 defines it; the pseudorandom key and the
/// intermediate blocks are wiped after use.
public enum HKDFSHA256 {
    /// The largest output: 255 hash lengths (RFC 5869 §2.3).
    public static let maximumOutputByteCount = 255 * HMACSHA256.codeByteCount

    /// Derives `outputByteCount` bytes (1...8160) from `inputKeyMaterial`, `salt` and `info`.
    /// An empty salt stands for 32 zero bytes (RFC 5869 §2.2: HMAC pads its key with zeros either way).
    public static func deriveKey(inputKeyMaterial: SecretKey, salt: [UInt8], info: [UInt8],
                                 outputByteCount: Int) throws(CryptoError) -> SecretKey {
        guard (1...maximumOutputByteCount).contains(outputByteCount) else { throw .invalidOutputLength(outputByteCount) }
        // Extract: PRK = HMAC-Hash(salt, IKM).
        var inputBytes = unsafe inputKeyMaterial.withUnsafeBytes { unsafe Array($0) }
        defer { cleanse(&inputBytes) }
        var pseudorandomKey = try HMACSHA256(key: SecretKey(copying: salt)).authenticationCode(for: inputBytes)
        let expander = try HMACSHA256(key: SecretKey(wiping: &pseudorandomKey))
        // Expand: T(i) = HMAC-Hash(PRK, T(i-1) | info | i), output = T(1) | T(2) | … truncated.
        var output: [UInt8] = []
        output.reserveCapacity(outputByteCount + HMACSHA256.codeByteCount)
        var block: [UInt8] = []
        var counter: UInt8 = 1
        while output.count < outputByteCount {
            let next = try expander.authenticationCode(for: [block, info, [counter]])
            cleanse(&block)
            block = next
            output.append(contentsOf: block)
            counter &+= 1
        }
        cleanse(&block)
        var result = Array(output[..<outputByteCount])
        cleanse(&output)
        return SecretKey(wiping: &result)
    }
}
