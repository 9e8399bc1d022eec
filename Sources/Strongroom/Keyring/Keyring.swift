import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// The store's key hierarchy (SECURITY.md, "Design"): the master key wraps the key-encryption key (KEK); the KEK
/// wraps one random 256-bit key per subject, the blind-index keys and the audit key. All wrapped keys
/// live in `keys.sqlite`, apart from the data, so that destroying a subject key reaches every copy of
/// its ciphertext, backups of the data file included.
///
/// Thread safety: safe from any thread. The key database (`KeyDatabase`) and the key cache each sit
/// behind a lock; never call the audit hook while holding the database lock.
final class Keyring: Sendable {
    /// The store's random 16-byte id, bound into every envelope's AAD.
    let storeID: [UInt8]
    /// The audit key's MAC context.
    let auditMAC: HMACSHA256
    /// The keys of tombstones and erasure receipts, derived from the audit key.
    let erasureKeys: ErasureKeys
    /// The wrapped keys, and every statement on their tables.
    let database: KeyDatabase
    /// Unwrapped subject keys (key bytes, not key schedules): a hit costs a key schedule, about a
    /// quarter of a microsecond, instead of a key-database read and an unwrap. Schedules are not kept:
    /// at 1.5 KB each only a small hot set would fit, and with the lookups of a large store spread over
    /// every subject, replacing them cost more than making one per use. A table of slots in one
    /// mapping (`KeyCache`), not a dictionary of key objects: at a million keys, allocating on every
    /// insert and freeing on every eviction cost a fifth of a caller-ID lookup.
    let subjectKeys: Mutex<KeyCache>
    /// The version of the subject key last asked for: the one to prefetch for a subject whose row, and
    /// so whose key version, is not read yet (all subjects share one outside a data-key rotation).
    let lastSubjectKeyVersion = Atomic<UInt32>(1)
    private let loaded: Mutex<LoadedKeys>
    /// Encryptions each shared key may make (2^28 by default).
    let nonceBudget: UInt64
    /// Encryptions reserved at a time: one key-database write per block. 256 for the default budget,
    /// so that the unused rest of a block, which every process leaves behind when it ends, costs a
    /// 2^28 budget nothing noticeable even over a million short tool runs; smaller for small budgets.
    static func reservationBlock(budget: UInt64) -> UInt64 { min(256, max(1, budget / 1_048_576)) }
    /// The key database's change counter (`StoreBackend.keyChangeCounterSQL`) when the keys were last loaded: it
    /// changes when another connection commits, so a rotation by another process is noticed without
    /// re-reading every time.
    let loadedDataVersion = Mutex<Int64>(0)
    /// What this process knows of erasures, so that no cached key of a subject erased by another
    /// process is used (`noticeErasures`).
    let erasures: Mutex<ErasureWatch>
    /// How long an erasure waits for readers of older snapshots of the key database before it reports
    /// that old pages remain (`destroySubjectKeys`), in milliseconds.
    let erasureWait: Int32

    /// The unwrapped upper keys, as read from the key database: replaced as a whole when rotation
    /// (in this process or another) changes them.
    struct LoadedKeys: Sendable {
        /// The master key as an envelope key (it wraps the KEKs).
        let master: KeyHandle
        /// Every KEK version present (two while a KEK rotation runs).
        let keyEncryptionKeys: [UInt32: KeyHandle]
        /// The version new keys are wrapped under.
        let currentVersion: UInt32
        /// The phone index versions that answer lookups and take new entries: the active one first,
        /// then one being built by an index rotation.
        let phoneIndexes: [PhoneBlindIndex]
        /// The e-mail indexes of the same index key versions, in the same order (`EmailBlindIndex`).
        let emailIndexes: [EmailBlindIndex]

        /// The current KEK.
        var current: KeyHandle { keyEncryptionKeys[currentVersion]! }
    }

    private init(storeID: [UInt8], auditKey: SecretKey, keys: LoadedKeys, database: KeyDatabase,
                 cacheCapacity: Int, nonceBudget: UInt64, erasureWait: Duration, latestErasure: Int64) throws(StoreError) {
        self.storeID = storeID
        self.nonceBudget = nonceBudget
        self.erasureWait = Int32(clamping: erasureWait.components.seconds * 1000 + erasureWait.components.attoseconds / 1_000_000_000_000_000)
        self.erasures = Mutex(ErasureWatch(latestNumber: latestErasure, checkedAtDataVersion: nil, checkedAt: nil))
        do throws(CryptoError) {
            self.auditMAC = try HMACSHA256(key: auditKey)
            self.erasureKeys = try ErasureKeys(auditKey: auditKey, storeID: storeID)
            self.subjectKeys = Mutex(try KeyCache(capacity: cacheCapacity))
        } catch {
            throw .crypto(error)
        }
        self.loaded = Mutex(keys)
        self.database = database
    }

    /// The keys as last loaded.
    var keys: LoadedKeys { loaded.withLock { $0 } }

    /// The current KEK.
    var keyEncryptionKey: KeyHandle { keys.current }

    /// The active phone index (the one `keys status` describes).
    var phoneIndex: PhoneBlindIndex { keys.phoneIndexes[0] }

    /// The phone index of `version`, if it answers lookups (without copying the other keys).
    func phoneIndex(version: UInt32) -> PhoneBlindIndex? {
        loaded.withLock { $0.phoneIndexes.first { $0.version == version } }
    }

    /// Creates the key database: a fresh KEK wrapped under `master`, an audit key and a phone index key.
    static func create(database connection: consuming sending any Database, backend: any StoreBackend, master: SecretKey, storeID: [UInt8],
                       auditDurability: AuditDurability, indexBits: Int, plannedPopulation: Int, cacheCapacity: Int,
                       nonceBudget: UInt64, erasureWait: Duration) throws(StoreError) -> Keyring {
        let database = try KeyDatabase(connection, backend: backend)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let masterHandle = try masterKeyHandle(master, generation: 1, storeID: storeID,
                                               usage: KeyUsage(name: "master:1", budget: nonceBudget, reserved: 0))
        let (auditKey, auditKeyIdentifier) = try newKey()
        let keys = try database.transaction { (tables) throws(StoreError) in
            do throws(DatabaseError) {
                try tables.insertStoreRow(storeID: storeID, createdAt: now, auditDurability: auditDurability.rawValue)
            } catch {
                throw .database(error)
            }
            try tables.reserve(masterHandle.usage!, count: 1)
            var kek = try insertKEK(version: 1, current: true, under: masterHandle, storeID: storeID, in: tables)
            kek.usage = KeyUsage(name: "kek:1", budget: nonceBudget, reserved: 0)
            try tables.reserve(kek.usage!, count: 2)
            let wrappedAuditKey = try Envelope.seal(key: auditKey, at: EnvelopeLocation(slot: .auditKey, recordID: 1),
                                                    under: kek, storeID: storeID)
            do throws(DatabaseError) {
                try tables.insertAuditKey(version: 1, identifier: auditKeyIdentifier, kekVersion: 1,
                                          wrapped: wrappedAuditKey, createdAt: now)
            } catch {
                throw .database(error)
            }
            let indexKey = try insertIndexKey(version: 1, bits: indexBits, plannedPopulation: plannedPopulation, state: "active",
                                              under: kek, storeID: storeID, in: tables)
            do throws(CryptoError) {
                return LoadedKeys(master: masterHandle, keyEncryptionKeys: [1: kek], currentVersion: 1,
                                  phoneIndexes: [try PhoneBlindIndex(indexKey: indexKey, version: 1, bits: indexBits, storeID: storeID)],
                                  emailIndexes: [try EmailBlindIndex(indexKey: indexKey, version: 1, bits: indexBits, storeID: storeID)])
            } catch {
                throw .crypto(error)
            }
        }
        let keyring = try Keyring(storeID: storeID, auditKey: auditKey, keys: keys, database: database,
                                  cacheCapacity: cacheCapacity, nonceBudget: nonceBudget, erasureWait: erasureWait, latestErasure: 0)
        _ = try keyring.reloadIfChanged()
        return keyring
    }

    /// Opens the key database and unwraps the upper keys with `master`, touching no data.
    /// An erasure whose old pages a reader held back is finished here when the reader has gone (no
    /// wait: a reader still there leaves it for later).
    static func open(database connection: consuming sending any Database, backend: any StoreBackend, master: SecretKey, cacheCapacity: Int,
                     nonceBudget: UInt64, erasureWait: Duration) throws(StoreError) -> Keyring {
        let database = try KeyDatabase(connection, backend: backend)
        guard let (storeID, generation) = try database.read({ (tables) throws(DatabaseError) in try tables.storeIdentity() })
        else { throw StoreError.storeMismatch }
        let masterUsage = KeyUsage(name: "master:\(generation)", budget: nonceBudget,
                                   reserved: try database.read { (tables) throws(DatabaseError) in try tables.reserved("master:\(generation)") })
        let masterHandle = try masterKeyHandle(master, generation: generation, storeID: storeID, usage: masterUsage)
        try migrateLegacyMasterKeyIdentifier(master, to: masterHandle, storeID: storeID, in: database)
        let (wrappedKeys, auditKeyRow, latestErasure) = try database.read { (tables) throws(DatabaseError) in
            (try WrappedUpperKeys(from: tables), try tables.latestAuditKey(), try tables.latestErasureNumber())
        }
        let keys = try load(wrappedKeys, master: masterHandle, storeID: storeID, known: nil, budget: nonceBudget)
        guard let (version, kekVersion, wrapped) = auditKeyRow
        else { throw StoreError.unreadableKey("the audit key", .truncated(byteCount: 0)) }
        let auditKey: SecretKey
        do throws(EnvelopeError) {
            auditKey = try Envelope.openKey(wrapped, at: EnvelopeLocation(slot: .auditKey, recordID: version),
                                            under: try kek(kekVersion, in: keys), storeID: storeID)
        } catch {
            throw StoreError.unreadableKey("the audit key", error)
        }
        let keyring = try Keyring(storeID: storeID, auditKey: auditKey, keys: keys, database: database,
                                  cacheCapacity: cacheCapacity, nonceBudget: nonceBudget, erasureWait: erasureWait,
                                  latestErasure: latestErasure)
        _ = try keyring.reloadIfChanged()
        // Best effort: a store must open even where this cannot finish (a reader still there, a
        // read-only key database); the record stays for `keys status` and `keys compact` to name.
        _ = try? keyring.finishErasures(waitingUpTo: 0)
        return keyring
    }

    /// The upper keys' rows as the key database holds them (wrapped), read in one go so that they are
    /// unwrapped outside the database lock (`load`).
    struct WrappedUpperKeys {
        let reservations: [String: UInt64]
        let keyEncryptionKeys: [WrappedKEK]
        let indexKeys: [(version: UInt32, kekVersion: UInt32, wrapped: [UInt8], bits: Int)]

        /// Reads them from `tables`.
        init(from tables: KeyTables) throws(DatabaseError) {
            reservations = try tables.reservations()
            keyEncryptionKeys = try tables.wrappedKEKs()
            indexKeys = try tables.answeringIndexKeys()
        }
    }

    /// Reads and unwraps the KEKs and the answering index keys; versions in `known` are reused as they are.
    static func load(_ wrappedKeys: WrappedUpperKeys, master: KeyHandle, storeID: [UInt8], known: LoadedKeys?,
                     budget: UInt64) throws(StoreError) -> LoadedKeys {
        let reserved = wrappedKeys.reservations
        func usage(_ name: String) -> KeyUsage { KeyUsage(name: name, budget: budget, reserved: reserved[name] ?? 0) }
        var keks: [UInt32: KeyHandle] = [:]
        var current: UInt32?
        for row in wrappedKeys.keyEncryptionKeys {
            let version = row.version
            if row.current { current = version }
            if let handle = known?.keyEncryptionKeys[version] {
                keks[version] = handle
                continue
            }
            let key: SecretKey
            do throws(EnvelopeError) {
                key = try Envelope.openKey(row.wrapped, at: EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(version)),
                                           under: master, storeID: storeID)
            } catch .wrongKey {
                throw StoreError.wrongMasterKey
            } catch .keyVersionUnavailable {
                throw StoreError.wrongMasterKey
            } catch {
                throw StoreError.unreadableKey("the key-encryption key", error)
            }
            do throws(CryptoError) {
                keks[version] = KeyHandle(cipher: try AES256GCM(key: key), version: version,
                                          identifier: row.identifier, usage: usage("kek:\(version)"))
            } catch {
                throw .crypto(error)
            }
        }
        guard let current else { throw StoreError.unreadableKey("the key-encryption key", .truncated(byteCount: 0)) }
        var indexes: [PhoneBlindIndex] = []
        var emailIndexes: [EmailBlindIndex] = []
        for row in wrappedKeys.indexKeys {
            let version = row.version
            if let index = known?.phoneIndexes.first(where: { $0.version == version }),
               let emailIndex = known?.emailIndexes.first(where: { $0.version == version }) {
                indexes.append(index)
                emailIndexes.append(emailIndex)
                continue
            }
            let key: SecretKey
            do throws(EnvelopeError) {
                key = try Envelope.openKey(row.wrapped, at: EnvelopeLocation(slot: .indexKey, recordID: Int64(version)),
                                           under: try kek(row.kekVersion, in: keks), storeID: storeID)
            } catch {
                throw StoreError.unreadableKey("the phone index key", error)
            }
            do throws(CryptoError) {
                indexes.append(try PhoneBlindIndex(indexKey: key, version: version, bits: row.bits, storeID: storeID))
                emailIndexes.append(try EmailBlindIndex(indexKey: key, version: version, bits: row.bits, storeID: storeID))
            } catch {
                throw .crypto(error)
            }
        }
        guard !indexes.isEmpty else { throw StoreError.unreadableKey("the phone index key", .truncated(byteCount: 0)) }
        return LoadedKeys(master: master, keyEncryptionKeys: keks, currentVersion: current, phoneIndexes: indexes,
                          emailIndexes: emailIndexes)
    }

    /// Re-reads the upper keys from the key database (after a rotation by this or another process).
    func reload() throws(StoreError) {
        let known = keys
        let wrappedKeys = try database.read { (tables) throws(DatabaseError) in try WrappedUpperKeys(from: tables) }
        let fresh = try Keyring.load(wrappedKeys, master: known.master, storeID: storeID, known: known, budget: nonceBudget)
        loaded.withLock { $0 = fresh }
    }

    /// Replaces the loaded keys (after this process changed them in the key database).
    func replaceKeys(_ keys: LoadedKeys) {
        loaded.withLock { $0 = keys }
    }

    /// The KEK of `version` in `keys`, or `keyVersionUnavailable`.
    static func kek(_ version: UInt32, in keys: LoadedKeys) throws(EnvelopeError) -> KeyHandle {
        try kek(version, in: keys.keyEncryptionKeys)
    }

    private static func kek(_ version: UInt32, in keks: [UInt32: KeyHandle]) throws(EnvelopeError) -> KeyHandle {
        guard let handle = keks[version] else { throw .keyVersionUnavailable(version) }
        return handle
    }

    /// The KEK of `version`, reloading once if another process rotated it in since this one loaded.
    func kek(_ version: UInt32) throws(StoreError) -> KeyHandle {
        if let handle = keys.keyEncryptionKeys[version] { return handle }
        try reload()
        do throws(EnvelopeError) { return try Keyring.kek(version, in: keys) } catch {
            throw .unreadableKey("the key-encryption key", error)
        }
    }

    /// Inserts a fresh KEK wrapped under `master`; returns it.
    static func insertKEK(version: UInt32, current: Bool, under master: KeyHandle, storeID: [UInt8],
                          in tables: KeyTables) throws(StoreError) -> KeyHandle {
        let (key, identifier) = try newKey()
        let handle: KeyHandle
        do throws(CryptoError) { handle = KeyHandle(cipher: try AES256GCM(key: key), version: version, identifier: identifier) } catch {
            throw .crypto(error)
        }
        let wrapped = try Envelope.seal(key: key, at: EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(version)),
                                        under: master, storeID: storeID)
        do throws(DatabaseError) {
            try tables.insertKEK(version: version, identifier: handle.identifier, wrapped: wrapped,
                                 createdAt: Int64(Date().timeIntervalSince1970 * 1000), current: current)
        } catch {
            throw .database(error)
        }
        return handle
    }

    /// Inserts a fresh phone index key wrapped under `kek`; returns it.
    @discardableResult
    static func insertIndexKey(version: UInt32, bits: Int, plannedPopulation: Int, state: String, under kek: KeyHandle,
                               storeID: [UInt8], in tables: KeyTables) throws(StoreError) -> SecretKey {
        let (key, identifier) = try newKey()
        let wrapped = try Envelope.seal(key: key, at: EnvelopeLocation(slot: .indexKey, recordID: Int64(version)), under: kek, storeID: storeID)
        do throws(DatabaseError) {
            try tables.insertIndexKey(version: version, identifier: identifier, kekVersion: kek.version, wrapped: wrapped,
                                      bits: bits, plannedPopulation: plannedPopulation, state: state,
                                      createdAt: Int64(Date().timeIntervalSince1970 * 1000))
        } catch {
            throw .database(error)
        }
        return key
    }

    /// Reserves `count` encryptions under `usage`'s key in a transaction of its own, committed before
    /// the encryptions are made. Never call while holding the database lock.
    func reserve(_ usage: KeyUsage?, count: Int) throws(StoreError) {
        guard let usage, let total = try usage.reservationNeeded(for: UInt64(count), block: Keyring.reservationBlock(budget: usage.budget))
        else { return }
        try database.read { (tables) throws(DatabaseError) in try tables.reserve(usage, through: total) }
    }

    /// A fresh random 256-bit key and its random identifier.
    static func newKey() throws(StoreError) -> (key: SecretKey, identifier: UInt32) {
        var draw = try Envelope.randomDraw(byteCount: keyIdentifierByteCount)
        do throws(CryptoError) { return (try SecretKey.random(), try randomKeyIdentifier(from: &draw)) } catch { throw .crypto(error) }
    }

    /// The bytes of a key identifier.
    static let keyIdentifierByteCount = 4

    /// A random key identifier (the 32 bits an envelope's header names its key by), taken from `draw`.
    static func randomKeyIdentifier(from draw: inout RandomDraw) throws(CryptoError) -> UInt32 {
        readUInt32(try draw.take(keyIdentifierByteCount), at: 0)
    }
}
