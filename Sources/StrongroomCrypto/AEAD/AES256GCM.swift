internal import COpenSSL
import Synchronization

/// AES-256-GCM (NIST SP 800-38D) with 96-bit nonces and 128-bit tags only, over OpenSSL EVP.
///
/// The key schedule and GHASH key are computed once, when the instance is made, and kept in an
/// `EVP_CIPHER_CTX` that each operation re-initialises with only a new nonce: for a short field,
/// setting up a context costs more than encrypting it.
///
/// Thread safety: safe from any thread; operations on one instance are serialised by a lock.
public final class AES256GCM: Sendable {
    /// 256-bit keys.
    public static let keyByteCount = 32
    /// 96-bit nonces: the length SP 800-38D §8.2.2 recommends for random nonces.
    public static let nonceByteCount = 12
    /// 128-bit tags: the full tag. Shorter tags (allowed by SP 800-38D with caveats) are refused.
    public static let tagByteCount = 16

    private let context: Mutex<CipherContext>

    /// Prepares `key` (exactly 32 bytes) for sealing and opening.
    public init(key: SecretKey) throws(CryptoError) {
        guard key.byteCount == AES256GCM.keyByteCount else {
            throw .invalidKeyLength(expected: AES256GCM.keyByteCount, actual: key.byteCount)
        }
        context = Mutex(try CipherContext(key: key))
    }

    /// Prepares the 32 key bytes at `keyBytes` (a `KeyCache` slot), without copying them elsewhere.
    init(keyBytes: UnsafeRawBufferPointer) throws(CryptoError) {
        precondition(keyBytes.count == AES256GCM.keyByteCount, "an AES-256 key is 32 bytes")
        context = Mutex(try unsafe CipherContext(keyBytes: keyBytes))
    }

    /// Seals `plaintext` under `nonce` (12 bytes, never reused with this key), authenticating `aad`
    /// too, and appends the ciphertext and then the 16-byte tag to `output`.
    public func seal(_ plaintext: [UInt8], nonce: [UInt8], authenticating aad: [UInt8],
                     appendingTo output: inout [UInt8]) throws(CryptoError) {
        guard nonce.count == AES256GCM.nonceByteCount else { throw .invalidNonceLength(nonce.count) }
        try context.withLock { (context: inout CipherContext) throws(CryptoError) in
            try context.seal(plaintext[...], nonce: nonce[...], aad: aad, output: &output)
        }
    }

    /// Opens `ciphertext` with its explicit `tag` (exactly 16 bytes) and `nonce` (exactly 12 bytes).
    public func open(_ ciphertext: ArraySlice<UInt8>, tag: ArraySlice<UInt8>, nonce: ArraySlice<UInt8>,
                     authenticating aad: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard tag.count == AES256GCM.tagByteCount else { throw .invalidTagLength(tag.count) }
        guard nonce.count == AES256GCM.nonceByteCount else { throw .invalidNonceLength(nonce.count) }
        return try context.withLock { (context: inout CipherContext) throws(CryptoError) -> [UInt8] in
            try context.open(ciphertext, tag: tag, nonce: nonce, aad: aad)
        }
    }

    /// Opens `sealed`, whose last 16 bytes are the tag (fewer than 16 bytes: `invalidTagLength`).
    public func open(sealed: ArraySlice<UInt8>, nonce: ArraySlice<UInt8>,
                     authenticating aad: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard sealed.count >= AES256GCM.tagByteCount else { throw .invalidTagLength(sealed.count) }
        let split = sealed.endIndex - AES256GCM.tagByteCount
        return try open(sealed[..<split], tag: sealed[split...], nonce: nonce, authenticating: aad)
    }

    /// Seals a key (key wrapping): the key's bytes never surface as an array outside this module.
    public func seal(key: SecretKey, nonce: [UInt8], authenticating aad: [UInt8],
                     appendingTo output: inout [UInt8]) throws(CryptoError) {
        var bytes = unsafe key.withUnsafeBytes { unsafe Array($0) }
        defer { cleanse(&bytes) }
        try seal(bytes, nonce: nonce, authenticating: aad, appendingTo: &output)
    }

    /// Opens a wrapped key.
    public func openKey(sealed: ArraySlice<UInt8>, nonce: ArraySlice<UInt8>,
                        authenticating aad: [UInt8]) throws(CryptoError) -> SecretKey {
        var bytes = try open(sealed: sealed, nonce: nonce, authenticating: aad)
        return SecretKey(wiping: &bytes)
    }
}

/// One `EVP_CIPHER_CTX` holding an expanded AES-256-GCM key, freed (and its key cleansed) on drop.
///
/// `@unchecked Sendable` is safe: the context is noncopyable, so its handle has one owner, and that
/// owner (`AES256GCM`) only uses it under its lock. (Without it, a context keyed from borrowed bytes
/// could not be handed to the lock.)
private struct CipherContext: ~Copyable, @unchecked Sendable {
    private let handle: OpaquePointer

    init(key: SecretKey) throws(CryptoError) {
        guard let handle = EVP_CIPHER_CTX_new() else { throw CryptoError.openSSL("EVP_CIPHER_CTX_new") }
        try self.init(handle: handle, status: unsafe key.withUnsafeBytes { unsafe CipherContext.setKey($0, of: handle) })
    }

    init(keyBytes: UnsafeRawBufferPointer) throws(CryptoError) {
        guard let handle = EVP_CIPHER_CTX_new() else { throw CryptoError.openSSL("EVP_CIPHER_CTX_new") }
        try self.init(handle: handle, status: unsafe CipherContext.setKey(keyBytes, of: handle))
    }

    /// Sets the cipher and key once: this computes the key schedule that every later call reuses.
    private static func setKey(_ keyBytes: UnsafeRawBufferPointer, of handle: OpaquePointer) -> Int32 {
        unsafe EVP_EncryptInit_ex2(handle, FetchedAlgorithms.shared.aes256GCM,
                                   keyBytes.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, nil)
    }

    /// Takes `handle`, or frees it when setting its key failed.
    private init(handle: OpaquePointer, status: Int32) throws(CryptoError) {
        guard status == 1 else {
            EVP_CIPHER_CTX_free(handle)
            throw CryptoError.openSSL("EVP_EncryptInit_ex2")
        }
        self.handle = handle
    }

    deinit {
        // EVP_CIPHER_CTX_free cleanses the expanded key before releasing it.
        EVP_CIPHER_CTX_free(handle)
    }

    mutating func seal(_ plaintext: ArraySlice<UInt8>, nonce: ArraySlice<UInt8>, aad: [UInt8],
                       output: inout [UInt8]) throws(CryptoError) {
        try start(nonce: nonce, encrypt: true)
        try feed(aad: aad)
        let start = output.count
        output.append(contentsOf: repeatElement(0, count: plaintext.count + AES256GCM.tagByteCount))
        let handle = handle
        let succeeded = unsafe output.withUnsafeMutableBufferPointer { buffer -> Bool in
            let base = unsafe buffer.baseAddress! + start
            var length: Int32 = 0
            if !plaintext.isEmpty {
                let status = unsafe plaintext.withUnsafeBufferPointer { input in
                    unsafe EVP_EncryptUpdate(handle, base, &length, input.baseAddress, Int32(input.count))
                }
                guard status == 1 else { return false }
            }
            var finalLength: Int32 = 0
            guard unsafe EVP_EncryptFinal_ex(handle, base + Int(length), &finalLength) == 1 else { return false }
            return unsafe EVP_CIPHER_CTX_ctrl(handle, EVP_CTRL_GCM_GET_TAG, Int32(AES256GCM.tagByteCount),
                                              base + plaintext.count) == 1
        }
        guard succeeded else {
            output.removeSubrange(start...)
            throw CryptoError.openSSL("AES-256-GCM seal")
        }
    }

    mutating func open(_ ciphertext: ArraySlice<UInt8>, tag: ArraySlice<UInt8>, nonce: ArraySlice<UInt8>,
                       aad: [UInt8]) throws(CryptoError) -> [UInt8] {
        try start(nonce: nonce, encrypt: false)
        try feed(aad: aad)
        var output = [UInt8].zeroed(count: ciphertext.count)
        let handle = handle
        let verified = unsafe output.withUnsafeMutableBufferPointer { buffer -> Bool in
            var length: Int32 = 0
            if !ciphertext.isEmpty {
                let status = unsafe ciphertext.withUnsafeBufferPointer { input in
                    unsafe EVP_DecryptUpdate(handle, buffer.baseAddress, &length, input.baseAddress, Int32(input.count))
                }
                guard status == 1 else { return false }
            }
            // EVP_CIPHER_CTX_ctrl takes a `void *`; EVP_CTRL_GCM_SET_TAG only copies the tag from it.
            let tagSet = unsafe tag.withUnsafeBytes { tagBytes in
                unsafe EVP_CIPHER_CTX_ctrl(handle, EVP_CTRL_GCM_SET_TAG, Int32(AES256GCM.tagByteCount),
                                           UnsafeMutableRawPointer(mutating: tagBytes.baseAddress))
            }
            guard tagSet == 1 else { return false }
            var finalLength: Int32 = 0
            return unsafe EVP_DecryptFinal_ex(handle, buffer.baseAddress.map { unsafe $0 + Int(length) }, &finalLength) == 1
        }
        guard verified else {
            // Unauthenticated plaintext never leaves: wipe it, and leave no error behind on this thread.
            cleanse(&output)
            ERR_clear_error()
            throw CryptoError.authenticationFailed
        }
        return output
    }

    /// Re-initialises the context with a new nonce, keeping the expanded key.
    private func start(nonce: ArraySlice<UInt8>, encrypt: Bool) throws(CryptoError) {
        let status = unsafe nonce.withUnsafeBufferPointer { nonceBytes in
            unsafe EVP_CipherInit_ex2(handle, nil, nil, nonceBytes.baseAddress, encrypt ? 1 : 0, nil)
        }
        guard status == 1 else { throw CryptoError.openSSL("EVP_CipherInit_ex2") }
    }

    private func feed(aad: [UInt8]) throws(CryptoError) {
        guard !aad.isEmpty else { return }
        var length: Int32 = 0
        let status = unsafe aad.withUnsafeBufferPointer { bytes in
            unsafe EVP_CipherUpdate(handle, nil, &length, bytes.baseAddress, Int32(bytes.count))
        }
        guard status == 1 else { throw CryptoError.openSSL("AES-256-GCM AAD") }
    }
}
