import StrongroomCrypto
import StrongroomStorage

/// The master key: its envelope handle and identifier, and the migration of stores whose KEKs name the
/// master key's legacy identifier.
extension Keyring {
    /// The HKDF label (RFC 5869 `info`) of the key the master key's identifier is computed under.
    static let masterKeyIdentifierLabel = Array("strongroom.master.key-id.v1".utf8)

    /// The master key as an envelope key. Its identifier, written into the header of each wrapped KEK so
    /// that a wrong master key is recognised before any decryption is tried, is the first 32 bits of
    /// HMAC-SHA256(K, label) where K = HKDF-SHA256(master, salt: store id, info: label): the master key
    /// itself is used only to wrap (AES-256-GCM) and as HKDF input, never as a MAC key.
    static func masterKeyHandle(_ master: SecretKey, generation: UInt32, storeID: [UInt8], usage: KeyUsage) throws(StoreError) -> KeyHandle {
        do throws(CryptoError) {
            let identifierKey = try HKDFSHA256.deriveKey(inputKeyMaterial: master, salt: storeID, info: masterKeyIdentifierLabel,
                                                         outputByteCount: 32)
            let fingerprint = try HMACSHA256(key: identifierKey).authenticationCode(for: masterKeyIdentifierLabel)
            return KeyHandle(cipher: try AES256GCM(key: master), version: generation, identifier: readUInt32(fingerprint, at: 0),
                             usage: usage)
        } catch {
            throw .crypto(error)
        }
    }

    /// Stores made before the master key's identifier had a key of its own wrapped their KEKs under an
    /// identifier computed with the master key itself (HMAC-SHA256(master, "strongroom.master-key-id.v1")).
    /// Each such KEK is opened once under that identifier — AES-GCM checks the master key — and wrapped
    /// again under `master` with its current identifier, in one key-database transaction. The legacy
    /// identifier is computed only when a KEK's header does not name the current one (an unmigrated
    /// store, or a wrong key); once migrated, an open neither computes it nor writes.
    static func migrateLegacyMasterKeyIdentifier(_ master: SecretKey, to handle: KeyHandle, storeID: [UInt8],
                                                 in database: KeyDatabase) throws(StoreError) {
        func identifiers(_ tables: KeyTables) throws(DatabaseError) -> [(version: UInt32, wrapped: [UInt8], identifier: UInt32?)] {
            try tables.wrappedKEKs().map { ($0.version, $0.wrapped, try? Envelope.header(of: $0.wrapped).keyIdentifier) }
        }
        guard try database.read({ (tables) throws(DatabaseError) in try identifiers(tables) })
            .contains(where: { $0.identifier != handle.identifier }) else { return }
        let legacyHandle: KeyHandle
        do throws(CryptoError) {
            let legacy = try HMACSHA256(key: master).authenticationCode(for: Array("strongroom.master-key-id.v1".utf8))
            legacyHandle = KeyHandle(cipher: handle.cipher, version: handle.version, identifier: readUInt32(legacy, at: 0))
        } catch {
            throw .crypto(error)
        }
        func legacyRows(_ tables: KeyTables) throws(DatabaseError) -> [(UInt32, [UInt8])] {
            try identifiers(tables).filter { $0.identifier == legacyHandle.identifier }.map { ($0.version, $0.wrapped) }
        }
        guard try !database.read({ (tables) throws(DatabaseError) in try legacyRows(tables) }).isEmpty else { return }
        try database.transaction { (tables) throws(StoreError) in
            let rows: [(UInt32, [UInt8])]
            do throws(DatabaseError) { rows = try legacyRows(tables) } catch { throw .database(error) }
            try tables.reserve(handle.usage!, count: rows.count)
            for (version, wrapped) in rows {
                let location = EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(version))
                let kek: SecretKey
                do throws(EnvelopeError) {
                    kek = try Envelope.openKey(wrapped, at: location, under: legacyHandle, storeID: storeID)
                } catch {
                    throw .unreadableKey("the key-encryption key", error)
                }
                let rewrapped = try Envelope.seal(key: kek, at: location, under: handle, storeID: storeID)
                do throws(DatabaseError) { try tables.updateKEK(version: version, wrapped: rewrapped) } catch { throw .database(error) }
            }
        }
    }
}
