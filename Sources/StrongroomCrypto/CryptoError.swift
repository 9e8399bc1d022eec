internal import COpenSSL

/// Why a cryptographic operation failed. Never carries key bytes or plaintext.
public enum CryptoError: Error, Equatable, Sendable {
    /// A key of the wrong size for the algorithm.
    case invalidKeyLength(expected: Int, actual: Int)
    /// An AES-GCM nonce that is not exactly 12 bytes (96 bits, NIST SP 800-38D §8.2.2).
    case invalidNonceLength(Int)
    /// An AES-GCM tag that is not exactly 16 bytes: shorter tags are refused (SP 800-38D Appendix C).
    case invalidTagLength(Int)
    /// The tag did not verify: tampered ciphertext, wrong key, or wrong associated data.
    case authenticationFailed
    /// An HKDF output length outside 1...8160 bytes (RFC 5869 §2.3: at most 255 hash lengths).
    case invalidOutputLength(Int)
    /// The random generator failed.
    case randomGenerationFailed
    /// Memory for keys (this many bytes) could not be reserved.
    case outOfMemory(bytes: Int)
    /// OpenSSL reported a failure (the code from `ERR_get_error`).
    case openSSLFailure(operation: String, code: UInt)
}

extension CryptoError {
    /// The OpenSSL failure of `operation`, taking (and clearing) the thread's error queue.
    static func openSSL(_ operation: String) -> CryptoError {
        let code = ERR_get_error()
        // The queue is per thread and sticky: leave nothing behind for the next call on this thread.
        ERR_clear_error()
        return .openSSLFailure(operation: operation, code: UInt(code))
    }
}
