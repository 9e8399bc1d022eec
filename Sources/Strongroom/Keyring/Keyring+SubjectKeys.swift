import StrongroomStorage
import Foundation
import StrongroomCrypto
import Synchronization

/// The subject keys: making, wrapping and storing fresh ones, reading and unwrapping them through the
/// key cache (one at a time or a batch's range at once), and dropping them from the cache.
extension Keyring {
    /// A subject key made and wrapped but not yet stored: what `makeSubjectKey` returns and
    /// `storeSubjectKeys` writes.
    struct FreshSubjectKey: Sendable {
        /// The subject it is for.
        let subject: SubjectID
        /// The key itself, kept to wrap it again should the KEK change before it is stored, and to cache it.
        let key: SecretKey
        /// The key ready to seal the subject's fields.
        let handle: KeyHandle
        /// The key wrapped under the KEK of `kekVersion`.
        var wrapped: [UInt8]
        /// The version of the KEK it is wrapped under.
        var kekVersion: UInt32
    }

    /// Makes, wraps and stores a fresh random key of `version` for each of `subjects`, in one key-database
    /// transaction that first checks it wraps under the current KEK (another process may have rotated it).
    func createSubjectKeys(for subjects: [SubjectID], version: UInt32 = 1) throws(StoreError) -> [KeyHandle] {
        let kek = keyEncryptionKey
        try reserve(kek.usage, count: subjects.count)
        var keys: [FreshSubjectKey] = []
        keys.reserveCapacity(subjects.count)
        var draws = try NewKeyDraws(count: subjects.count)
        for subject in subjects { keys.append(try makeSubjectKey(for: subject, version: version, wrappedUnder: kek, drawingFrom: &draws)) }
        try storeSubjectKeys(keys, caching: true)
        return keys.map(\.handle)
    }

    /// The public random bytes `makeSubjectKey` takes from its draw: the key's identifier and the
    /// nonce that wraps it.
    static let subjectKeyDrawByteCount = keyIdentifierByteCount + AES256GCM.nonceByteCount

    /// A fresh random key of `version` for `subject`, wrapped under `kek`, whose encryptions the caller
    /// has reserved (`reserve`); the key is taken from `draws.keys` (the private DRBG), its identifier
    /// and wrapping nonce from `draws.values`. Pure CPU, no database: safe on any thread, so that a
    /// batch's keys are made on the threads that seal its fields, and stored afterwards by
    /// `storeSubjectKeys`.
    func makeSubjectKey(for subject: SubjectID, version: UInt32, wrappedUnder kek: KeyHandle,
                        drawingFrom draws: inout NewKeyDraws) throws(StoreError) -> FreshSubjectKey {
        let key: SecretKey, handle: KeyHandle
        do throws(CryptoError) {
            key = try draws.keys.take()
            handle = KeyHandle(cipher: try AES256GCM(key: key), version: version, identifier: try Keyring.randomKeyIdentifier(from: &draws.values))
        } catch {
            throw .crypto(error)
        }
        return FreshSubjectKey(subject: subject, key: key, handle: handle,
                               wrapped: try wrap(key, of: subject, under: kek, nonces: &draws.values), kekVersion: kek.version)
    }

    /// The random values of new subject keys, drawn for several at once (a request to OpenSSL's
    /// generator costs far more than its bytes): the keys from the private DRBG, and the public
    /// values — each key's identifier and wrapping nonce, and `extraPerKey` more bytes (the nonces
    /// of the fields sealed under it) — from the public one.
    struct NewKeyDraws: ~Copyable {
        /// The keys.
        var keys: SecretKeyDraw
        /// The public values.
        var values: RandomDraw

        /// Draws for `count` keys, each with `extraPerKey` public bytes beside its own.
        init(count: Int, extraPerKey: Int = 0) throws(StoreError) {
            // Both drawn before either is stored: a noncopyable value is not left half made.
            let keys = try NewKeyDraws.secretKeys(count)
            let values = try Envelope.randomDraw(byteCount: count * (Keyring.subjectKeyDrawByteCount + extraPerKey))
            self.keys = keys
            self.values = values
        }

        /// `count` keys drawn at once (`SecretKeyDraw`).
        private static func secretKeys(_ count: Int) throws(StoreError) -> SecretKeyDraw {
            do throws(CryptoError) { return try SecretKeyDraw(keys: count) } catch { throw .crypto(error) }
        }
    }

    /// Stores keys made by `makeSubjectKey` in one key-database transaction that first checks they are
    /// wrapped under the current KEK: when another process rotated it meanwhile, the keyring is reloaded
    /// and the keys wrapped again under the new one, once. With `caching`, the keys then go into the key
    /// cache; without, a later read unwraps them from the key database, as after a restart (an import's
    /// fresh keys are not read back by it, and caching them cost its writing thread a page fault per
    /// new page of the cache's mapping).
    func storeSubjectKeys(_ fresh: [FreshSubjectKey], caching: Bool) throws(StoreError) {
        guard let first = fresh.first else { return }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var keys = fresh
        var kekVersion = first.kekVersion
        for attempt in 0..<2 {
            if attempt > 0 {
                try reload()
                let kek = keyEncryptionKey
                try reserve(kek.usage, count: keys.count)
                var nonces = try Envelope.randomDraw(byteCount: keys.count * AES256GCM.nonceByteCount)
                for index in keys.indices {
                    keys[index].wrapped = try wrap(keys[index].key, of: keys[index].subject, under: kek, nonces: &nonces)
                    keys[index].kekVersion = kek.version
                }
                kekVersion = kek.version
            }
            let wrapped = keys.map {
                KeyTables.NewSubjectKey(subject: $0.subject, version: $0.handle.version, identifier: $0.handle.identifier,
                                        kekVersion: $0.kekVersion, wrapped: $0.wrapped)
            }
            let written: Bool = try database.transaction { (tables) throws(DatabaseError) in
                guard try tables.currentKEKVersion() == kekVersion else { return false }
                // Replacing: a row already at (subject, version) is an orphan of a write whose data
                // transaction rolled back after its keys committed (the rollback also gives the
                // subject id back to the next insert): its key never protected any stored data.
                try tables.upsertSubjectKeys(wrapped, createdAt: now)
                return true
            }
            if written { break }
            guard attempt == 0 else { throw StoreError.unreadableKey("the current key-encryption key", .keyVersionUnavailable(kekVersion)) }
        }
        guard caching else { return }
        try withKeyCache { (cache) throws(CryptoError) in
            for key in keys {
                try cache.insert(key.key, identifier: key.handle.identifier, owner: key.subject.rawValue, version: key.handle.version)
            }
        }
    }

    /// `key` wrapped as `subject`'s key under `kek` (one of its reserved encryptions), its nonce taken from `nonces`.
    private func wrap(_ key: SecretKey, of subject: SubjectID, under kek: KeyHandle, nonces: inout RandomDraw) throws(StoreError) -> [UInt8] {
        try Envelope.seal(key: key, at: EnvelopeLocation(slot: .subjectKey, recordID: subject.rawValue), under: kek, storeID: storeID,
                          nonces: &nonces)
    }

    /// Has the key cache start loading what a lookup of `subject`'s key will read (`KeyCache.prefetch`),
    /// for the key version last asked for.
    func prefetchSubjectKey(_ subject: SubjectID) {
        let version = lastSubjectKeyVersion.load(ordering: .relaxed)
        subjectKeys.withLock { $0.prefetch(owner: subject.rawValue, version: version) }
    }

    /// The key of `subject` at `version`: from the cache, or unwrapped from the key database. Before
    /// opening stored rows with it, have `noticeErasures` check for erasures by other processes.
    func subjectKey(for subject: SubjectID, version: UInt32) throws(StoreError) -> KeyHandle {
        lastSubjectKeyVersion.store(version, ordering: .relaxed)
        let cached = try withKeyCache { (cache) throws(CryptoError) in try cache.cipher(owner: subject.rawValue, version: version) }
        if let (cipher, identifier) = cached { return KeyHandle(cipher: cipher, version: version, identifier: identifier) }
        let row = try database.read { (tables) throws(DatabaseError) in try tables.subjectKey(subject, version: version) }
        guard let (identifier, wrapped, kekVersion) = row else {
            if try isErased(subject) { throw .subjectErased(subject) }
            throw .keyUnavailable(subject, version: version)
        }
        let key = try unwrapIntoCache(subject, version: version, identifier: identifier, wrapped: wrapped, kekVersion: kekVersion)
        do throws(CryptoError) { return KeyHandle(cipher: try AES256GCM(key: key), version: version, identifier: identifier) } catch {
            throw .crypto(error)
        }
    }

    /// Puts the keys `wanted` (each subject's key version) that the cache lacks into it, read from the
    /// key database in one query over the subjects' id range: a batch of a bulk read pays one key-database
    /// round trip, not one per subject. A key that is missing is left to `subjectKey` to report.
    func cacheSubjectKeys(_ wanted: [SubjectID: UInt32]) throws(StoreError) {
        guard let first = wanted.keys.min(), let last = wanted.keys.max() else { return }
        let missing = try withKeyCache { (cache) throws(CryptoError) in
            var missing: [SubjectID: UInt32] = [:]
            for (subject, version) in wanted where try cache.cipher(owner: subject.rawValue, version: version) == nil {
                missing[subject] = version
            }
            return missing
        }
        guard !missing.isEmpty else { return }
        let rows = try database.read { (tables) throws(DatabaseError) in try tables.subjectKeys(from: first, through: last) }
        for row in rows where missing[row.subject] == row.version {
            _ = try unwrapIntoCache(row.subject, version: row.version, identifier: row.identifier, wrapped: row.wrapped,
                                    kekVersion: row.kekVersion)
        }
    }

    /// Unwraps a subject key read from the key database and caches it.
    private func unwrapIntoCache(_ subject: SubjectID, version: UInt32, identifier: UInt32, wrapped: [UInt8],
                                 kekVersion: UInt32) throws(StoreError) -> SecretKey {
        let wrappingKey = try kek(kekVersion)
        let key: SecretKey
        do {
            key = try Envelope.openKey(wrapped, at: EnvelopeLocation(slot: .subjectKey, recordID: subject.rawValue),
                                       under: wrappingKey, storeID: storeID)
        } catch {
            throw .unreadableKey("the key of subject \(subject)", error)
        }
        try withKeyCache { (cache) throws(CryptoError) in
            try cache.insert(key, identifier: identifier, owner: subject.rawValue, version: version)
        }
        return key
    }

    /// Runs `body` on the key cache, under its lock; a failure of the cache (its cipher setup) is
    /// `StoreError.crypto`, converted here once for every caller.
    private func withKeyCache<Result: Sendable>(_ body: (inout KeyCache) throws(CryptoError) -> Result) throws(StoreError) -> Result {
        do {
            return try subjectKeys.withLock { (cache) throws(CryptoError) -> Result in try body(&cache) }
        } catch {
            throw .crypto(error)
        }
    }

    /// Drops `subject`'s cached keys of `versions` (after erasure or data-key rotation).
    func forget(_ subject: SubjectID, versions: [UInt32]) {
        subjectKeys.withLock { cache in
            for version in versions { cache.remove(owner: subject.rawValue, version: version) }
        }
    }
}
