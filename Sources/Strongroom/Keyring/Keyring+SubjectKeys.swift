import Foundation
import StrongroomCrypto
import Synchronization

/// The subject keys: making, wrapping and storing fresh ones, reading and unwrapping them through the
/// key cache (one at a time or a batch's range at once), and dropping them from the cache.
extension Keyring {
    /// Makes, wraps and stores a fresh random key of `version` for each of `subjects`, in one key-database
    /// transaction that first checks it wraps under the current KEK (another process may have rotated it).
    func createSubjectKeys(for subjects: [SubjectID], version: UInt32 = 1) throws -> [KeyHandle] {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var keys: [(SubjectID, SecretKey, KeyHandle)] = []
        for subject in subjects {
            let key = try SecretKey.random()
            keys.append((subject, key, KeyHandle(cipher: try AES256GCM(key: key), version: version,
                                                 identifier: try Keyring.randomKeyIdentifier())))
        }
        for attempt in 0..<2 {
            let kek = keyEncryptionKey
            try reserve(kek.usage, count: keys.count)
            let written: Bool = try database.transaction { tables in
                guard try tables.currentKEKVersion() == kek.version else { return false }
                // Replacing: a row already at (subject, version) is an orphan of a write whose data
                // transaction rolled back after its keys committed (the rollback also gives the
                // subject id back to the next insert): its key never protected any stored data.
                try tables.upsertSubjectKeys(try keys.map { subject, key, handle in
                    KeyTables.NewSubjectKey(subject: subject, version: version, identifier: handle.identifier, kekVersion: kek.version,
                                            wrapped: try Envelope.seal(key: key, at: EnvelopeLocation(slot: .subjectKey, recordID: subject.rawValue),
                                                                       under: kek, storeID: storeID))
                }, createdAt: now)
                return true
            }
            if written { break }
            guard attempt == 0 else { throw StoreError.unreadableKey("the current key-encryption key", .keyVersionUnavailable(kek.version)) }
            try reload()
        }
        try storeErrors {
            try subjectKeys.withLock { (cache) throws(CryptoError) in
                for (subject, key, handle) in keys {
                    try cache.insert(key, identifier: handle.identifier, owner: subject.rawValue, version: version)
                }
            }
        }
        return keys.map(\.2)
    }

    /// The key of `subject` at `version`: from the cache, or unwrapped from the key database. Before
    /// opening stored rows with it, have `noticeErasures` check for erasures by other processes.
    func subjectKey(for subject: SubjectID, version: UInt32) throws(StoreError) -> KeyHandle {
        let cached = try storeErrors {
            try subjectKeys.withLock { (cache) throws(CryptoError) in try cache.cipher(owner: subject.rawValue, version: version) }
        }
        if let (cipher, identifier) = cached { return KeyHandle(cipher: cipher, version: version, identifier: identifier) }
        let row = try storeErrors {
            try database.read { try $0.subjectKey(subject, version: version) }
        }
        guard let (identifier, wrapped, kekVersion) = row else {
            if try isErased(subject) { throw .subjectErased(subject) }
            throw .keyUnavailable(subject, version: version)
        }
        let key = try unwrapIntoCache(subject, version: version, identifier: identifier, wrapped: wrapped, kekVersion: kekVersion)
        return KeyHandle(cipher: try storeErrors { try AES256GCM(key: key) }, version: version, identifier: identifier)
    }

    /// Puts the keys `wanted` (each subject's key version) that the cache lacks into it, read from the
    /// key database in one query over the subjects' id range: a batch of a bulk read pays one key-database
    /// round trip, not one per subject. A key that is missing is left to `subjectKey` to report.
    func cacheSubjectKeys(_ wanted: [SubjectID: UInt32]) throws(StoreError) {
        guard let first = wanted.keys.min(), let last = wanted.keys.max() else { return }
        let missing = try storeErrors {
            try subjectKeys.withLock { (cache) throws(CryptoError) in
                var missing: [SubjectID: UInt32] = [:]
                for (subject, version) in wanted where try cache.cipher(owner: subject.rawValue, version: version) == nil {
                    missing[subject] = version
                }
                return missing
            }
        }
        guard !missing.isEmpty else { return }
        let rows = try storeErrors { try database.read { try $0.subjectKeys(from: first, through: last) } }
        for row in rows where missing[row.subject] == row.version {
            _ = try unwrapIntoCache(row.subject, version: row.version, identifier: row.identifier, wrapped: row.wrapped,
                                    kekVersion: row.kekVersion)
        }
    }

    /// Unwraps a subject key read from the key database and caches it.
    private func unwrapIntoCache(_ subject: SubjectID, version: UInt32, identifier: UInt32, wrapped: [UInt8],
                                 kekVersion: UInt32) throws(StoreError) -> SecretKey {
        let wrappingKey = try storeErrors { try kek(kekVersion) }
        let key: SecretKey
        do {
            key = try Envelope.openKey(wrapped, at: EnvelopeLocation(slot: .subjectKey, recordID: subject.rawValue),
                                       under: wrappingKey, storeID: storeID)
        } catch {
            throw .unreadableKey("the key of subject \(subject)", error)
        }
        try storeErrors {
            try subjectKeys.withLock { (cache) throws(CryptoError) in
                try cache.insert(key, identifier: identifier, owner: subject.rawValue, version: version)
            }
        }
        return key
    }

    /// Drops `subject`'s cached keys of `versions` (after erasure or data-key rotation).
    func forget(_ subject: SubjectID, versions: [UInt32]) {
        subjectKeys.withLock { cache in
            for version in versions { cache.remove(owner: subject.rawValue, version: version) }
        }
    }
}
