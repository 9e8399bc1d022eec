internal import COpenSSL

/// Algorithms fetched once per process from OpenSSL's default provider (OpenSSL 3 "explicit
/// fetching"): fetching on every use costs about a microsecond (openssl/openssl#17064).
///
/// The use of `@unchecked Sendable` is safe because fetched algorithm objects are immutable and
/// reference-counted by OpenSSL, which documents them as safe to share between threads; this type
/// only reads its pointers and never frees them (they live as long as the process).
final class FetchedAlgorithms: @unchecked Sendable {
    /// AES-256-GCM (`EVP_CIPHER *`).
    let aes256GCM: OpaquePointer
    /// HMAC (`EVP_MAC *`).
    let hmac: OpaquePointer
    /// SHA-256 (`EVP_MD *`).
    let sha256: OpaquePointer

    private init() {
        // A default provider without these algorithms is a broken OpenSSL installation: nothing can run.
        guard let aes = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil), let hmac = EVP_MAC_fetch(nil, "HMAC", nil),
              let sha256 = EVP_MD_fetch(nil, "SHA256", nil) else {
            fatalError("OpenSSL's default provider lacks AES-256-GCM, HMAC or SHA-256")
        }
        aes256GCM = aes
        self.hmac = hmac
        self.sha256 = sha256
    }

    /// The process's fetched algorithms (immutable after the first use).
    static let shared = FetchedAlgorithms()
}
