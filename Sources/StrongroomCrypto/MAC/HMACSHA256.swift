internal import COpenSSL

/// HMAC-SHA256 (RFC 2104, FIPS 198-1).
///
/// The key is processed once, when the instance is made: the SHA-256 states after the inner and outer
/// padded key blocks are kept (the precomputation RFC 2104 §4 describes), so a message costs only its
/// own blocks plus one for the outer hash — two SHA-256 compressions for the blind index's short
/// messages. The states are OpenSSL's `SHA256_CTX`, copied onto the stack for each message; OpenSSL 3
/// deprecates those functions in favour of `EVP_MAC`, whose re-initialisation copies an `EVP_MD_CTX`
/// through the provider and allocates every time: about 310 ns for a 40-byte message against 115 ns
/// here (measured with OpenSSL 3.0 on this project's machines). The Wycheproof and RFC 4231 vectors
/// check this construction.
///
/// Thread safety: safe from any thread without a lock: the kept states are only read.
public final class HMACSHA256: @unchecked Sendable {
    /// 32-byte codes.
    public static let codeByteCount = 32
    /// SHA-256's block: keys longer than this are hashed first (RFC 2104 §3).
    private static let blockByteCount = 64

    /// The states after the inner (`[0]`) and outer (`[1]`) padded key blocks; written only in `init`,
    /// wiped in `deinit` (they are as good as the key).
    private let pads: UnsafeMutablePointer<SHA256_CTX>

    /// Prepares `key` (any length; RFC 2104 hashes keys longer than the block size).
    public init(key: SecretKey) throws(CryptoError) {
        var block = [UInt8].zeroed(count: HMACSHA256.blockByteCount)
        defer { cleanse(&block) }
        let keyFits = unsafe key.withUnsafeBytes { bytes -> Bool in
            guard bytes.count > HMACSHA256.blockByteCount else {
                unsafe block.withUnsafeMutableBytes { unsafe $0.copyMemory(from: bytes) }
                return true
            }
            return unsafe block.withUnsafeMutableBufferPointer { unsafe COpenSSL.SHA256(bytes.baseAddress, bytes.count, $0.baseAddress) != nil }
        }
        guard keyFits else { throw CryptoError.openSSL("SHA256") }
        let states = UnsafeMutablePointer<SHA256_CTX>.allocate(capacity: 2)
        var padded = block
        defer { cleanse(&padded) }
        for (index, padByte) in [(0, UInt8(0x36)), (1, UInt8(0x5C))] {
            for offset in padded.indices { padded[offset] = block[offset] ^ padByte }
            guard unsafe SHA256_Init(states + index) == 1, unsafe SHA256_Update(states + index, padded, padded.count) == 1 else {
                unsafe OPENSSL_cleanse(states, 2 * MemoryLayout<SHA256_CTX>.stride)
                unsafe states.deallocate()
                throw CryptoError.openSSL("SHA256_Update")
            }
        }
        // Set last: an instance that failed above was never whole, so `deinit` cannot free them twice.
        unsafe pads = states
    }

    deinit {
        unsafe OPENSSL_cleanse(pads, 2 * MemoryLayout<SHA256_CTX>.stride)
        unsafe pads.deallocate()
    }

    /// The code of `message`.
    public func authenticationCode(for message: [UInt8]) throws(CryptoError) -> [UInt8] {
        try authenticationCode(for: CollectionOfOne(message))
    }

    /// The code of the concatenation of `parts`, without concatenating them.
    public func authenticationCode(for parts: [[UInt8]]) throws(CryptoError) -> [UInt8] {
        try authenticationCode(for: parts[...])
    }

    /// The code of `message`, read in place (a string's UTF-8 without copying it into an array).
    public func authenticationCode(for message: Span<UInt8>) throws(CryptoError) -> [UInt8] {
        try authenticationCode(feeding: { HMACSHA256.feed(message, &$0) })
    }

    /// The code of `first` followed by `second`, read in place.
    public func authenticationCode(forConcatenationOf first: Span<UInt8>, _ second: Span<UInt8>) throws(CryptoError) -> [UInt8] {
        try authenticationCode(feeding: { HMACSHA256.feed(first, &$0) && HMACSHA256.feed(second, &$0) })
    }

    /// Whether `code` is the full 32-byte code of `message` (constant-time; truncated codes are refused).
    public func isValidAuthenticationCode(_ code: [UInt8], for message: [UInt8]) -> Bool {
        code.count == HMACSHA256.codeByteCount && isValidTruncatedAuthenticationCode(code, for: message)
    }

    /// Whether `code` (16 to 32 bytes) is the code of `message` cut to its first `code.count` bytes,
    /// compared in constant time without the full code ever leaving this call. 128 bits or more keep a
    /// forgery at 2^-128 or less (NIST SP 800-107 §5.3.4 allows truncation to 64 bits).
    public func isValidTruncatedAuthenticationCode(_ code: [UInt8], for message: [UInt8]) -> Bool {
        isValidTruncatedAuthenticationCode(code.span, forConcatenationOf: message.span, [UInt8]().span)
    }

    /// Whether `code` (16 to 32 bytes) is the truncated code of `first` followed by `second`, as
    /// above, reading all three in place: checking a stored code allocates nothing.
    public func isValidTruncatedAuthenticationCode(_ code: Span<UInt8>, forConcatenationOf first: Span<UInt8>, _ second: Span<UInt8>) -> Bool {
        guard (16...HMACSHA256.codeByteCount).contains(code.count) else { return false }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: HMACSHA256.codeByteCount) { computed in
            defer { unsafe OPENSSL_cleanse(computed.baseAddress, computed.count) }
            let fed = unsafe compute(into: computed.baseAddress!) { HMACSHA256.feed(first, &$0) && HMACSHA256.feed(second, &$0) }
            return fed && code.withUnsafeBytes { unsafe CRYPTO_memcmp($0.baseAddress, computed.baseAddress, $0.count) == 0 }
        }
    }

    private func authenticationCode<Parts: Collection<[UInt8]>>(for parts: Parts) throws(CryptoError) -> [UInt8] {
        try authenticationCode(feeding: { context in parts.allSatisfy { HMACSHA256.feed($0.span, &context) } })
    }

    /// The code of the message `feed` hashes into the inner state, as a new array.
    private func authenticationCode(feeding feed: (inout SHA256_CTX) -> Bool) throws(CryptoError) -> [UInt8] {
        var code = [UInt8].zeroed(count: HMACSHA256.codeByteCount)
        let fed = unsafe code.withUnsafeMutableBufferPointer { buffer in unsafe compute(into: buffer.baseAddress!, feed: feed) }
        guard fed else { throw CryptoError.openSSL("SHA256_Update") }
        return code
    }

    /// Hashes `bytes` into `context`; false when OpenSSL reports a failure.
    private static func feed(_ bytes: Span<UInt8>, _ context: inout SHA256_CTX) -> Bool {
        unsafe bytes.withUnsafeBytes { unsafe SHA256_Update(&context, $0.baseAddress, $0.count) == 1 }
    }

    /// H(K ⊕ opad ‖ H(K ⊕ ipad ‖ message)) into the 32 bytes at `output`, where `feed` hashes the
    /// message into the inner state it is given; false when a step failed. Works on copies of the kept
    /// states, which are wiped, with the inner hash, before returning.
    private func compute(into output: UnsafeMutablePointer<UInt8>, feed: (inout SHA256_CTX) -> Bool) -> Bool {
        var context = unsafe pads[0]
        var inner: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        defer {
            unsafe withUnsafeMutableBytes(of: &context) { unsafe OPENSSL_cleanse($0.baseAddress, $0.count) }
            unsafe withUnsafeMutableBytes(of: &inner) { unsafe OPENSSL_cleanse($0.baseAddress, $0.count) }
        }
        guard feed(&context) else { return false }
        return unsafe withUnsafeMutableBytes(of: &inner) { innerBytes in
            let innerHash = unsafe innerBytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
            guard unsafe SHA256_Final(innerHash, &context) == 1 else { return false }
            context = unsafe pads[1]
            return unsafe SHA256_Update(&context, innerHash, HMACSHA256.codeByteCount) == 1 && SHA256_Final(output, &context) == 1
        }
    }
}
