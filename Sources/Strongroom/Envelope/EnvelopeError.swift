/// Why a stored ciphertext could not be opened. Never carries key bytes or plaintext.
public enum EnvelopeError: Error, Equatable, Sendable {
    /// Shorter than the fixed header plus the 16-byte tag: cut off, or not an envelope at all.
    case truncated(byteCount: Int)
    /// A format version this build cannot read.
    case unsupportedVersion(UInt8)
    /// The envelope belongs to another place (table, column or record): it was copied or moved here.
    case misplaced(expected: EnvelopeLocation, found: EnvelopeLocation)
    /// The envelope was sealed under a key version this store does not hold (any more).
    case keyVersionUnavailable(UInt32)
    /// The envelope names a different key than the one the store holds for its place and version.
    case wrongKey
    /// The tag did not verify: the ciphertext, its header or its nonce were altered.
    case authenticationFailed
}
