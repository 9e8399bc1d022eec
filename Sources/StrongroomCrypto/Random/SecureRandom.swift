internal import COpenSSL

/// Bytes from OpenSSL's CSPRNG (`RAND_bytes`, a NIST SP 800-90A DRBG seeded by the OS).
public enum SecureRandom {
    /// `count` random bytes.
    public static func bytes(count: Int) throws(CryptoError) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return output }
        let status = unsafe output.withUnsafeMutableBufferPointer { unsafe RAND_bytes($0.baseAddress, Int32($0.count)) }
        guard status == 1 else {
            ERR_clear_error()
            throw .randomGenerationFailed
        }
        return output
    }
}
