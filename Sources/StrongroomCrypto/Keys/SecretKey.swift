internal import COpenSSL

/// Secret key bytes: zeroised (`OPENSSL_cleanse`) when the last reference goes, never printed.
///
/// `description`, `debugDescription` and `customMirror` show `SecretKey(redacted)`, so `print`,
/// `dump`, string interpolation and crash reports never show key bytes. Equality is constant-time.
///
/// The use of `@unchecked Sendable` is safe because:
/// - the bytes are written once, in `init`, before the instance is shared, and only read afterwards;
/// - `deinit` runs when no other reference exists.
public final class SecretKey: @unchecked Sendable {
    /// The key bytes, in memory owned by this instance.
    private let storage: UnsafeMutableRawBufferPointer

    /// A key holding a copy of `bytes` (any length: HMAC keys may be 0 or more bytes).
    public init(copying bytes: [UInt8]) {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        unsafe storage.copyBytes(from: bytes)
        byteCount = bytes.count
    }

    /// A key holding a copy of `bytes` (`SecretKeyDraw`'s, which it wipes itself).
    init(copying bytes: UnsafeRawBufferPointer) {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        unsafe storage.copyMemory(from: bytes)
        byteCount = bytes.count
    }

    /// A key holding `bytes`, which are then overwritten with zeros in the caller's array.
    public convenience init(wiping bytes: inout [UInt8]) {
        self.init(copying: bytes)
        cleanse(&bytes)
    }

    /// A key from base64 text (RFC 4648 §4; surrounding white space ignored); nil when malformed.
    public convenience init?(base64Encoded text: String) {
        guard var bytes = Base64.decode(Array(text.utf8)[...]) else { return nil }
        self.init(wiping: &bytes)
    }

    deinit {
        unsafe OPENSSL_cleanse(storage.baseAddress, storage.count)
        unsafe storage.deallocate()
    }

    /// A key of `byteCount` bytes from OpenSSL's CSPRNG (its private DRBG: `SecureRandom.privateBytes`).
    public static func random(byteCount: Int = 32) throws(CryptoError) -> SecretKey {
        var bytes = try SecureRandom.privateBytes(count: byteCount)
        return SecretKey(wiping: &bytes)
    }

    /// The key's length in bytes.
    public let byteCount: Int

    /// The key as base64 ASCII bytes (no newline), for writing a key file. Wipe the result after use.
    public func base64EncodedBytes() -> [UInt8] {
        unsafe withUnsafeBytes { Base64.encode(unsafe Array($0)) }
    }

    /// Calls `body` with the key bytes; they must not escape it.
    func withUnsafeBytes<T: ~Copyable, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> T) throws(E) -> T {
        try unsafe body(UnsafeRawBufferPointer(rebasing: storage[0..<byteCount]))
    }
}

extension SecretKey: Equatable {
    /// Constant-time comparison of the key bytes (`CRYPTO_memcmp`).
    public static func == (lhs: SecretKey, rhs: SecretKey) -> Bool {
        guard lhs.byteCount == rhs.byteCount else { return false }
        return unsafe lhs.withUnsafeBytes { left in
            unsafe rhs.withUnsafeBytes { right in
                unsafe CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0
            }
        }
    }
}

extension SecretKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "SecretKey(redacted)" }
    public var debugDescription: String { "SecretKey(redacted)" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .class) }
}

/// Base64 (RFC 4648 §4) for key text.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Encodes `bytes` with padding.
    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value: UInt32 = 0
            for (offset, byte) in chunk.enumerated() { value |= UInt32(byte) << UInt32(16 - 8 * offset) }
            for position in 0..<4 {
                if position <= chunk.count {
                    output.append(alphabet[Int((value >> UInt32(18 - 6 * position)) & 0x3F)])
                } else {
                    output.append(UInt8(ascii: "="))
                }
            }
            index += 3
        }
        return output
    }

    /// The decoded bytes, or nil when `text` is not padded base64 (white space around it is ignored).
    static func decode(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(text.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        var symbols = 0
        var padding = 0
        for byte in text {
            let value: UInt32
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = UInt32(byte - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = UInt32(byte - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = UInt32(byte - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): value = 62
            case UInt8(ascii: "/"): value = 63
            case UInt8(ascii: "="):
                padding += 1
                symbols += 1
                continue
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): continue
            default: return nil
            }
            guard padding == 0 else { return nil }
            symbols += 1
            accumulator = accumulator << 6 | value
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        guard padding <= 2, symbols.isMultiple(of: 4) else {
            cleanse(&output)
            return nil
        }
        return output
    }
}
