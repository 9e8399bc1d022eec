internal import COpenSSL

/// Constant-time equality of two byte strings (`CRYPTO_memcmp`); false when the lengths differ.
/// Use it for every comparison of MACs and tags, so timing reveals nothing about where they differ.
public func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    guard !lhs.isEmpty else { return true }
    return unsafe lhs.withUnsafeBytes { left in
        unsafe rhs.withUnsafeBytes { right in
            unsafe CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0
        }
    }
}

/// Overwrites `bytes` with zeros in a way the optimiser keeps (`OPENSSL_cleanse`).
func cleanse(_ bytes: inout [UInt8]) {
    unsafe bytes.withUnsafeMutableBytes { buffer in
        if let base = buffer.baseAddress { unsafe OPENSSL_cleanse(base, buffer.count) }
    }
}
