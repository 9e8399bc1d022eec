internal import COpenSSL
import Synchronization

/// HMAC-SHA256 (RFC 2104, FIPS 198-1) over OpenSSL's `EVP_MAC`.
///
/// The key is processed once (its inner and outer pads hashed) when the instance is made; each
/// message re-initialises the context without a key, which reuses them.
///
/// Thread safety: safe from any thread; operations on one instance are serialised by a lock.
public final class HMACSHA256: Sendable {
    /// 32-byte codes.
    public static let codeByteCount = 32

    private let context: Mutex<MACContext>

    /// Prepares `key` (any length; RFC 2104 hashes keys longer than the block size).
    public init(key: SecretKey) throws(CryptoError) {
        context = Mutex(try MACContext(key: key))
    }

    /// The code of `message`.
    public func authenticationCode(for message: [UInt8]) throws(CryptoError) -> [UInt8] {
        try context.withLock { (context: inout MACContext) throws(CryptoError) -> [UInt8] in
            try context.code(message)
        }
    }

    /// The code of the concatenation of `parts`, without concatenating them.
    public func authenticationCode(for parts: [[UInt8]]) throws(CryptoError) -> [UInt8] {
        try context.withLock { (context: inout MACContext) throws(CryptoError) -> [UInt8] in
            try context.code(parts)
        }
    }

    /// Whether `code` is the full 32-byte code of `message` (constant-time; truncated codes are refused).
    public func isValidAuthenticationCode(_ code: [UInt8], for message: [UInt8]) -> Bool {
        guard code.count == HMACSHA256.codeByteCount, let expected = try? authenticationCode(for: message) else { return false }
        return constantTimeEquals(code, expected)
    }

    /// Whether `code` (16 to 32 bytes) is the code of `message` cut to its first `code.count` bytes,
    /// compared in constant time without the full code ever leaving this call. 128 bits or more keep a
    /// forgery at 2^-128 or less (NIST SP 800-107 §5.3.4 allows truncation to 64 bits).
    public func isValidTruncatedAuthenticationCode(_ code: [UInt8], for message: [UInt8]) -> Bool {
        guard (16...HMACSHA256.codeByteCount).contains(code.count) else { return false }
        return context.withLock { (context: inout MACContext) -> Bool in
            (try? context.matches(prefix: code, of: message)) ?? false
        }
    }
}

/// One keyed `EVP_MAC_CTX`, freed on drop.
private struct MACContext: ~Copyable {
    private let handle: OpaquePointer

    init(key: SecretKey) throws(CryptoError) {
        guard let handle = EVP_MAC_CTX_new(FetchedAlgorithms.shared.hmac) else { throw CryptoError.openSSL("EVP_MAC_CTX_new") }
        // OSSL_PARAM keeps the pointers it is given: both strings must outlive EVP_MAC_init.
        let status = unsafe OSSL_MAC_PARAM_DIGEST.withCString { name in unsafe "SHA256".withCString { digest in
            var parameters = unsafe [
                OSSL_PARAM_construct_utf8_string(name, UnsafeMutablePointer(mutating: digest), 0),
                OSSL_PARAM_construct_end(),
            ]
            return unsafe key.withUnsafeBytes { bytes in
                // A zero-length key still needs a non-null pointer, or OpenSSL treats it as "keep the old key".
                var empty: UInt8 = 0
                return unsafe withUnsafeMutablePointer(to: &empty) { emptyPointer in
                    let keyPointer = unsafe bytes.count == 0 ? UnsafePointer(emptyPointer)
                                                             : bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    return unsafe EVP_MAC_init(handle, keyPointer, bytes.count, &parameters)
                }
            }
        } }
        guard status == 1 else {
            EVP_MAC_CTX_free(handle)
            throw CryptoError.openSSL("EVP_MAC_init")
        }
        self.handle = handle
    }

    deinit { EVP_MAC_CTX_free(handle) }

    mutating func code(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        try start()
        try feed(message)
        return try finish()
    }

    mutating func code(_ parts: [[UInt8]]) throws(CryptoError) -> [UInt8] {
        try start()
        for part in parts { try feed(part) }
        return try finish()
    }

    /// Whether `prefix` starts the code of `message`; the code is computed into a stack buffer that is
    /// wiped before returning, so checking a stored tag allocates nothing.
    mutating func matches(prefix: [UInt8], of message: [UInt8]) throws(CryptoError) -> Bool {
        try start()
        try feed(message)
        let handle = handle
        return try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: HMACSHA256.codeByteCount) { (code) throws(CryptoError) -> Bool in
            defer { unsafe OPENSSL_cleanse(code.baseAddress, code.count) }
            var length = 0
            guard unsafe EVP_MAC_final(handle, code.baseAddress, &length, code.count) == 1, length == code.count else {
                throw CryptoError.openSSL("EVP_MAC_final")
            }
            return unsafe prefix.withUnsafeBytes { unsafe CRYPTO_memcmp($0.baseAddress, code.baseAddress, $0.count) == 0 }
        }
    }

    private func start() throws(CryptoError) {
        // A null key re-initialises with the key already set (its pads are precomputed).
        guard unsafe EVP_MAC_init(handle, nil, 0, nil) == 1 else { throw CryptoError.openSSL("EVP_MAC_init") }
    }

    private func feed(_ bytes: [UInt8]) throws(CryptoError) {
        guard !bytes.isEmpty else { return }
        let status = unsafe bytes.withUnsafeBufferPointer { unsafe EVP_MAC_update(handle, $0.baseAddress, $0.count) }
        guard status == 1 else { throw CryptoError.openSSL("EVP_MAC_update") }
    }

    private func finish() throws(CryptoError) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: HMACSHA256.codeByteCount)
        var length = 0
        let status = unsafe output.withUnsafeMutableBufferPointer {
            unsafe EVP_MAC_final(handle, $0.baseAddress, &length, $0.count)
        }
        guard status == 1, length == HMACSHA256.codeByteCount else { throw CryptoError.openSSL("EVP_MAC_final") }
        return output
    }
}
