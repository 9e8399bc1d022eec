internal import COpenSSL

/// Bytes from OpenSSL's CSPRNG (NIST SP 800-90A CTR_DRBGs seeded by the OS).
public enum SecureRandom {
    /// `count` random bytes for values that are public or made public (nonces, identifiers, tokens),
    /// from OpenSSL's public DRBG (`RAND_bytes`).
    public static func bytes(count: Int) throws(CryptoError) -> [UInt8] {
        try draw(count: count) { unsafe RAND_bytes($0, $1) }
    }

    /// `count` random bytes for secrets (keys), from OpenSSL's private DRBG (`RAND_priv_bytes`): an
    /// instance of its own, which outputs seen by anyone (nonces, identifiers) never come from, as
    /// OpenSSL recommends for values that must stay private. Wipe them after use.
    public static func privateBytes(count: Int) throws(CryptoError) -> [UInt8] {
        try draw(count: count) { unsafe RAND_priv_bytes($0, $1) }
    }

    /// `count` bytes written by `generate` (`RAND_bytes` or `RAND_priv_bytes`).
    private static func draw(count: Int, _ generate: (UnsafeMutablePointer<UInt8>?, Int32) -> Int32) throws(CryptoError) -> [UInt8] {
        var output = [UInt8].zeroed(count: count)
        guard count > 0 else { return output }
        let status = unsafe output.withUnsafeMutableBufferPointer { unsafe generate($0.baseAddress, Int32($0.count)) }
        guard status == 1 else {
            ERR_clear_error()
            throw .randomGenerationFailed
        }
        return output
    }
}

/// Public random values (GCM nonces, key identifiers) drawn from `SecureRandom.bytes` in one request
/// and handed out a piece at a time, each byte once. A request's fixed cost dwarfs its bytes' (OpenSSL's
/// CTR_DRBG updates its own key after every request), so a subject's several nonces cost one request
/// instead of one each. Each piece is as fresh and unpredictable as a request of its own: a CTR_DRBG
/// request's output is one stream of AES-CTR blocks under the generator's key (NIST SP 800-90A
/// §10.2.1.5), no part of which tells anything of another. Noncopyable, so no byte can be handed out
/// twice through a copy. Never for secrets: keys come from `SecureRandom.privateBytes`.
public struct RandomDraw: ~Copyable {
    /// The bytes drawn; those before `next` have been handed out.
    private var drawn: [UInt8]
    private var next = 0

    /// Draws `byteCount` bytes now, the expected need: a `take` beyond them draws again.
    public init(byteCount: Int) throws(CryptoError) {
        drawn = try SecureRandom.bytes(count: byteCount)
    }

    /// The next `count` bytes, never handed out before; when fewer are left, a fresh request of at
    /// least `count` bytes replaces the rest.
    public mutating func take(_ count: Int) throws(CryptoError) -> [UInt8] {
        if drawn.count - next < count {
            drawn = try SecureRandom.bytes(count: count)
            next = 0
        }
        defer { next += count }
        return Array(drawn[next..<(next + count)])
    }
}

/// Secret keys from the private DRBG (`RAND_priv_bytes`, as `SecureRandom.privateBytes`) drawn in one
/// request for several and handed out a key at a time, each byte once, as `RandomDraw` does public
/// values: one request's fixed cost for a run of new subjects' keys instead of one each (a request
/// cost about 0.9 µs, a third of making a subject key, 2026-12-07). Each key is as fresh and
/// unpredictable as a request of its own (NIST SP 800-90A §10.2.1.5, as for `RandomDraw`), and comes
/// from the private instance only. The drawn bytes live in memory of the draw's own, wiped
/// (`OPENSSL_cleanse`) when the draw ends or is drawn again; each key's copy is a `SecretKey`, wiped
/// when its last reference goes. Noncopyable: no key handed out twice.
public struct SecretKeyDraw: ~Copyable {
    /// The bytes drawn; those before `next` have been handed out.
    private var drawn: UnsafeMutableRawBufferPointer
    private var next = 0
    /// The length of each key.
    private let keyByteCount: Int

    /// Draws `count` keys of `byteCount` bytes now, the expected need: a `take` beyond them draws again.
    public init(keys count: Int, byteCount: Int = 32) throws(CryptoError) {
        keyByteCount = byteCount
        drawn = try SecretKeyDraw.draw(byteCount: max(count, 1) * byteCount)
    }

    /// The next key, never handed out before; when the draw is used up, one more is drawn for it.
    public mutating func take() throws(CryptoError) -> SecretKey {
        if drawn.count - next < keyByteCount {
            let fresh = try SecretKeyDraw.draw(byteCount: keyByteCount)
            SecretKeyDraw.wipe(drawn)
            drawn = fresh
            next = 0
        }
        defer { next += keyByteCount }
        return unsafe SecretKey(copying: UnsafeRawBufferPointer(rebasing: drawn[next..<(next + keyByteCount)]))
    }

    deinit {
        SecretKeyDraw.wipe(drawn)
    }

    /// `byteCount` bytes from the private DRBG, in memory of their own.
    private static func draw(byteCount: Int) throws(CryptoError) -> UnsafeMutableRawBufferPointer {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 16)
        guard unsafe RAND_priv_bytes(buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(byteCount)) == 1 else {
            ERR_clear_error()
            unsafe buffer.deallocate()
            throw .randomGenerationFailed
        }
        return buffer
    }

    /// Overwrites `buffer` with zeros and frees it.
    private static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        unsafe OPENSSL_cleanse(buffer.baseAddress, buffer.count)
        unsafe buffer.deallocate()
    }
}
