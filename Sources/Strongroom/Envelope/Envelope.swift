import StrongroomCrypto

/// A key ready to seal and open envelopes: its expanded AES-256-GCM context, version and identifier.
struct KeyHandle: Sendable {
    /// The expanded key (schedule computed once, NIST SP 800-38D).
    let cipher: AES256GCM
    /// The key's version (data and key rotation increment it).
    let version: UInt32
    /// A random 32-bit identifier given to the key when it was made, written into each envelope header,
    /// so that a ciphertext made under another key is reported as `wrongKey`, not as tampering.
    let identifier: UInt32
    /// The durable encryption count of a shared key; nil for subject keys, which seal only their own
    /// subject's fields (counted with the subject's row).
    var usage: KeyUsage? = nil
}

/// The versioned, self-describing ciphertext format of every encrypted value in a store.
///
/// Layout of format version 1 (all integers big-endian):
///
/// | offset | bytes | content |
/// | --- | --- | --- |
/// | 0 | 1 | format version (1) |
/// | 1 | 1 | slot: table and column |
/// | 2 | 8 | record id |
/// | 10 | 4 | key version |
/// | 14 | 4 | key identifier |
/// | 18 | 12 | nonce: 96 random bits (NIST SP 800-38D §8.2.2) |
/// | 30 | n | ciphertext |
/// | 30+n | 16 | tag: 128 bits, the full GCM tag (SP 800-38D §5.2.1.2) |
///
/// The AAD is a domain label, the store's 16-byte id and the whole 18-byte header, so the store,
/// table, column, record and key version are all authenticated along with the ciphertext.
enum Envelope {
    /// The current format version.
    static let formatVersion: UInt8 = 1
    /// Bytes before the ciphertext.
    static let headerByteCount = 18
    /// Header, nonce and tag: the fixed cost of an envelope.
    static let overheadByteCount = headerByteCount + AES256GCM.nonceByteCount + AES256GCM.tagByteCount
    /// Separates this format's AAD from any other use of the same key.
    private static let domain = Array("strongroom.envelope.v1".utf8)

    /// The clear header of an envelope.
    struct Header: Equatable {
        let location: EnvelopeLocation
        let keyVersion: UInt32
        let keyIdentifier: UInt32
    }

    /// Seals `plaintext` for `location` under `key`, with a fresh random nonce.
    static func seal(_ plaintext: [UInt8], at location: EnvelopeLocation, under key: KeyHandle,
                     storeID: [UInt8]) throws(StoreError) -> [UInt8] {
        var nonces = try randomDraw(byteCount: AES256GCM.nonceByteCount)
        return try seal(plaintext, at: location, under: key, storeID: storeID, nonces: &nonces)
    }

    /// Seals `plaintext` for `location` under `key`, with a fresh random nonce taken from `nonces`
    /// (96 bits never used before: SP 800-38D §8.2.2's random construction, as a nonce of its own).
    static func seal(_ plaintext: [UInt8], at location: EnvelopeLocation, under key: KeyHandle,
                     storeID: [UInt8], nonces: inout RandomDraw) throws(StoreError) -> [UInt8] {
        try key.usage?.take()
        var output = header(location: location, key: key, capacity: overheadByteCount + plaintext.count)
        let aad = authenticatedData(header: output[...], storeID: storeID)
        do throws(CryptoError) {
            let nonce = try nonces.take(AES256GCM.nonceByteCount)
            output.append(contentsOf: nonce)
            try key.cipher.seal(plaintext, nonce: nonce, authenticating: aad, appendingTo: &output)
        } catch {
            throw .crypto(error)
        }
        return output
    }

    /// Seals a key (a wrapped key) for `location` under `key`.
    static func seal(key wrapped: SecretKey, at location: EnvelopeLocation, under key: KeyHandle,
                     storeID: [UInt8]) throws(StoreError) -> [UInt8] {
        var nonces = try randomDraw(byteCount: AES256GCM.nonceByteCount)
        return try seal(key: wrapped, at: location, under: key, storeID: storeID, nonces: &nonces)
    }

    /// Seals a key (a wrapped key) for `location` under `key`, its nonce taken from `nonces`.
    static func seal(key wrapped: SecretKey, at location: EnvelopeLocation, under key: KeyHandle,
                     storeID: [UInt8], nonces: inout RandomDraw) throws(StoreError) -> [UInt8] {
        try key.usage?.take()
        var output = header(location: location, key: key, capacity: overheadByteCount + wrapped.byteCount)
        let aad = authenticatedData(header: output[...], storeID: storeID)
        do throws(CryptoError) {
            let nonce = try nonces.take(AES256GCM.nonceByteCount)
            output.append(contentsOf: nonce)
            try key.cipher.seal(key: wrapped, nonce: nonce, authenticating: aad, appendingTo: &output)
        } catch {
            throw .crypto(error)
        }
        return output
    }

    /// `byteCount` random bytes drawn at once, for nonces and key identifiers (`RandomDraw`).
    static func randomDraw(byteCount: Int) throws(StoreError) -> RandomDraw {
        do throws(CryptoError) { return try RandomDraw(byteCount: byteCount) } catch { throw .crypto(error) }
    }

    /// Reads the header of `bytes`, checking length and format version only.
    static func header(of bytes: [UInt8]) throws(EnvelopeError) -> Header {
        guard bytes.count >= overheadByteCount else { throw .truncated(byteCount: bytes.count) }
        guard bytes[0] == formatVersion else { throw .unsupportedVersion(bytes[0]) }
        return Header(location: EnvelopeLocation(slot: EnvelopeSlot(rawValue: bytes[1]),
                                                 recordID: Int64(bitPattern: readUInt64(bytes, at: 2))),
                      keyVersion: readUInt32(bytes, at: 10),
                      keyIdentifier: readUInt32(bytes, at: 14))
    }

    /// Opens a personal field. Only the audited decrypt path can call this: it alone can make a `DecryptPermit`.
    static func openPersonalData(_ bytes: [UInt8], at location: EnvelopeLocation, under key: KeyHandle,
                                 storeID: [UInt8], permit: DecryptPermit) throws(EnvelopeError) -> [UInt8] {
        try open(bytes, at: location, under: key, storeID: storeID)
    }

    private static func open(_ bytes: [UInt8], at location: EnvelopeLocation, under key: KeyHandle,
                             storeID: [UInt8]) throws(EnvelopeError) -> [UInt8] {
        try check(bytes, at: location, under: key)
        do {
            return try key.cipher.open(sealed: bytes[(headerByteCount + AES256GCM.nonceByteCount)...],
                                       nonce: bytes[headerByteCount..<(headerByteCount + AES256GCM.nonceByteCount)],
                                       authenticating: authenticatedData(header: bytes[..<headerByteCount], storeID: storeID))
        } catch {
            throw .authenticationFailed
        }
    }

    /// Opens a wrapped key.
    static func openKey(_ bytes: [UInt8], at location: EnvelopeLocation, under key: KeyHandle,
                        storeID: [UInt8]) throws(EnvelopeError) -> SecretKey {
        try check(bytes, at: location, under: key)
        do {
            return try key.cipher.openKey(sealed: bytes[(headerByteCount + AES256GCM.nonceByteCount)...],
                                          nonce: bytes[headerByteCount..<(headerByteCount + AES256GCM.nonceByteCount)],
                                          authenticating: authenticatedData(header: bytes[..<headerByteCount], storeID: storeID))
        } catch {
            throw .authenticationFailed
        }
    }

    /// Checks the clear header against where the envelope was found and the key about to open it.
    private static func check(_ bytes: [UInt8], at location: EnvelopeLocation, under key: KeyHandle) throws(EnvelopeError) {
        let found = try header(of: bytes)
        guard found.location == location else { throw .misplaced(expected: location, found: found.location) }
        guard found.keyVersion == key.version else { throw .keyVersionUnavailable(found.keyVersion) }
        guard found.keyIdentifier == key.identifier else { throw .wrongKey }
    }

    /// The header of an envelope for `location` under `key`, in an array with room for `capacity` bytes
    /// (the whole envelope: one allocation, where growing it took three).
    private static func header(location: EnvelopeLocation, key: KeyHandle, capacity: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(capacity)
        bytes.append(formatVersion)
        bytes.append(location.slot.rawValue)
        appendUInt64(UInt64(bitPattern: location.recordID), to: &bytes)
        appendUInt32(key.version, to: &bytes)
        appendUInt32(key.identifier, to: &bytes)
        return bytes
    }

    private static func authenticatedData(header: ArraySlice<UInt8>, storeID: [UInt8]) -> [UInt8] {
        var aad = domain
        aad.reserveCapacity(domain.count + storeID.count + headerByteCount)
        aad.append(contentsOf: storeID)
        aad.append(contentsOf: header)
        return aad
    }
}

func appendUInt32(_ value: UInt32, to bytes: inout [UInt8]) {
    for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
}

func appendUInt64(_ value: UInt64, to bytes: inout [UInt8]) {
    for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
}

func readUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
    (0..<4).reduce(0) { $0 << 8 | UInt32(bytes[offset + $1]) }
}

func readUInt64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
    (0..<8).reduce(0) { $0 << 8 | UInt64(bytes[offset + $1]) }
}
