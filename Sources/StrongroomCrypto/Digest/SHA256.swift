internal import COpenSSL

/// SHA-256 (FIPS 180-4) over OpenSSL's `EVP_Digest`.
public enum SHA256 {
    /// 32-byte digests.
    public static let digestByteCount = 32

    /// The digest of `data`.
    public static func hash(_ data: [UInt8]) -> [UInt8] {
        var output = [UInt8].zeroed(count: digestByteCount)
        var length: UInt32 = 0
        let status = unsafe data.withUnsafeBytes { input in
            unsafe output.withUnsafeMutableBufferPointer { buffer in
                unsafe EVP_Digest(input.baseAddress, input.count, buffer.baseAddress, &length, FetchedAlgorithms.shared.sha256, nil)
            }
        }
        // EVP_Digest with a fetched SHA-256 fails only when memory runs out.
        precondition(status == 1, "EVP_Digest(SHA-256) failed")
        return output
    }
}
