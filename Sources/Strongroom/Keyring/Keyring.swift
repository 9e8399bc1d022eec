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
    /// every subject, replacing them cost more than making one per use. A fixed table, not a
    /// dictionary of key objects: at a million keys, allocating on every insert and freeing on every
    /// eviction cost a fifth of a caller-ID lookup.
    private let subjectKeys: Mutex<KeyCache>
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
    private let loadedDataVersion = Mutex<Int64>(0)
    /// What this process knows of erasures, so that no cached key of a subject erased by another
    /// process is used (`noticeErasures`).
    private let erasures: Mutex<ErasureWatch>
    /// How long an erasure waits for readers of older snapshots of the key database before it reports
    /// that old pages remain (`destroySubjectKeys`), in milliseconds.
    let erasureWait: Int32

    /// The latest erasure whose subject's keys this process dropped from its cache, and when that was
    /// last checked: at which data version (`SQLiteConnection.dataVersion` of the data connection), and
    /// at what time (PostgreSQL, between announcements).
    struct ErasureWatch: Sendable {
        var latestNumber: Int64
        var checkedAtDataVersion: UInt32?
        var checkedAt: ContinuousClock.Instant?
    }

    /// How long a PostgreSQL process relies on erasure announcements alone before it reads the key
    /// change counter anyway (an announcement is delivered asynchronously, after its commit).
    static let announcementTrust: Duration = .seconds(1)

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
                 cacheCapacity: Int, nonceBudget: UInt64, erasureWait: Duration, latestErasure: Int64) throws(CryptoError) {
        self.storeID = storeID
        self.nonceBudget = nonceBudget
        self.erasureWait = Int32(clamping: erasureWait.components.seconds * 1000 + erasureWait.components.attoseconds / 1_000_000_000_000_000)
        self.erasures = Mutex(ErasureWatch(latestNumber: latestErasure, checkedAtDataVersion: nil, checkedAt: nil))
        self.auditMAC = try HMACSHA256(key: auditKey)
        self.erasureKeys = try ErasureKeys(auditKey: auditKey, storeID: storeID)
        self.loaded = Mutex(keys)
        self.database = database
        self.subjectKeys = Mutex(try KeyCache(capacity: cacheCapacity))
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
                       nonceBudget: UInt64, erasureWait: Duration) throws -> Keyring {
        let database = try KeyDatabase(connection, backend: backend)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let masterHandle = try masterKeyHandle(master, generation: 1, storeID: storeID,
                                               usage: KeyUsage(name: "master:1", budget: nonceBudget, reserved: 0))
        let auditKey = try SecretKey.random()
        let keys = try database.transaction { tables in
            try tables.insertStoreRow(storeID: storeID, createdAt: now, auditDurability: auditDurability.rawValue)
            try tables.reserve(masterHandle.usage!, count: 1)
            var kek = try insertKEK(version: 1, current: true, under: masterHandle, storeID: storeID, in: tables)
            kek.usage = KeyUsage(name: "kek:1", budget: nonceBudget, reserved: 0)
            try tables.reserve(kek.usage!, count: 2)
            try tables.insertAuditKey(version: 1, identifier: try randomKeyIdentifier(), kekVersion: 1,
                                      wrapped: try Envelope.seal(key: auditKey, at: EnvelopeLocation(slot: .auditKey, recordID: 1),
                                                                 under: kek, storeID: storeID),
                                      createdAt: now)
            let indexKey = try insertIndexKey(version: 1, bits: indexBits, plannedPopulation: plannedPopulation, state: "active",
                                              under: kek, storeID: storeID, in: tables)
            return LoadedKeys(master: masterHandle, keyEncryptionKeys: [1: kek], currentVersion: 1,
                              phoneIndexes: [try PhoneBlindIndex(indexKey: indexKey, version: 1, bits: indexBits, storeID: storeID)],
                              emailIndexes: [try EmailBlindIndex(indexKey: indexKey, version: 1, bits: indexBits, storeID: storeID)])
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
                     nonceBudget: UInt64, erasureWait: Duration) throws -> Keyring {
        let database = try KeyDatabase(connection, backend: backend)
        guard let (storeID, generation) = try database.read({ try $0.storeIdentity() }) else { throw StoreError.storeMismatch }
        let masterUsage = KeyUsage(name: "master:\(generation)", budget: nonceBudget,
                                   reserved: try database.read { try $0.reserved("master:\(generation)") })
        let masterHandle = try masterKeyHandle(master, generation: generation, storeID: storeID, usage: masterUsage)
        try migrateLegacyMasterKeyIdentifier(master, to: masterHandle, storeID: storeID, in: database)
        let keys = try database.read { try load(from: $0, master: masterHandle, storeID: storeID, known: nil, budget: nonceBudget) }
        guard let (version, kekVersion, wrapped) = try database.read({ try $0.latestAuditKey() })
        else { throw StoreError.unreadableKey("the audit key", .truncated(byteCount: 0)) }
        let auditKey: SecretKey
        do throws(EnvelopeError) {
            auditKey = try Envelope.openKey(wrapped, at: EnvelopeLocation(slot: .auditKey, recordID: version),
                                            under: try kek(kekVersion, in: keys), storeID: storeID)
        } catch {
            throw StoreError.unreadableKey("the audit key", error)
        }
        let latestErasure = try database.read { try $0.latestErasureNumber() }
        let keyring = try Keyring(storeID: storeID, auditKey: auditKey, keys: keys, database: database,
                                  cacheCapacity: cacheCapacity, nonceBudget: nonceBudget, erasureWait: erasureWait,
                                  latestErasure: latestErasure)
        _ = try keyring.reloadIfChanged()
        // Best effort: a store must open even where this cannot finish (a reader still there, a
        // read-only key database); the record stays for `keys status` and `keys compact` to name.
        _ = try? keyring.finishErasures(waitingUpTo: 0)
        return keyring
    }

    /// Reads and unwraps the KEKs and the answering index keys; versions in `known` are reused as they are.
    static func load(from tables: KeyTables, master: KeyHandle, storeID: [UInt8], known: LoadedKeys?,
                     budget: UInt64) throws -> LoadedKeys {
        let reserved = try tables.reservations()
        func usage(_ name: String) -> KeyUsage { KeyUsage(name: name, budget: budget, reserved: reserved[name] ?? 0) }
        var keks: [UInt32: KeyHandle] = [:]
        var current: UInt32?
        for row in try tables.wrappedKEKs() {
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
            keks[version] = KeyHandle(cipher: try AES256GCM(key: key), version: version,
                                      identifier: row.identifier, usage: usage("kek:\(version)"))
        }
        guard let current else { throw StoreError.unreadableKey("the key-encryption key", .truncated(byteCount: 0)) }
        var indexes: [PhoneBlindIndex] = []
        var emailIndexes: [EmailBlindIndex] = []
        for row in try tables.answeringIndexKeys() {
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
            indexes.append(try PhoneBlindIndex(indexKey: key, version: version, bits: row.bits, storeID: storeID))
            emailIndexes.append(try EmailBlindIndex(indexKey: key, version: version, bits: row.bits, storeID: storeID))
        }
        guard !indexes.isEmpty else { throw StoreError.unreadableKey("the phone index key", .truncated(byteCount: 0)) }
        return LoadedKeys(master: master, keyEncryptionKeys: keks, currentVersion: current, phoneIndexes: indexes,
                          emailIndexes: emailIndexes)
    }

    /// Re-reads the upper keys from the key database (after a rotation by this or another process).
    func reload() throws {
        let known = keys
        let fresh = try database.read {
            try Keyring.load(from: $0, master: known.master, storeID: storeID, known: known, budget: nonceBudget)
        }
        loaded.withLock { $0 = fresh }
    }

    /// Reloads the keys, and drops the cached keys of subjects erased by another process, if another
    /// connection committed to the key database since they were loaded; returns whether it did.
    func reloadIfChanged() throws -> Bool {
        try reloadIfChanged(trustingAnnouncementsFor: nil)
    }

    /// `reloadIfChanged`, but with `trust`, on PostgreSQL, nothing is read while no erasure was
    /// announced and the last check is younger than `trust` (`noticeErasures`).
    private func reloadIfChanged(trustingAnnouncementsFor trust: Duration?) throws -> Bool {
        // One check at a time: a caller that finds nothing changed must not go on to use a cached key
        // while another, which saw a change, is still dropping the erased subjects' keys. The counter
        // is recorded only once the reload succeeded, so a failed one is tried again.
        try loadedDataVersion.withLock { seen in
            let now = ContinuousClock.now
            if let trust, database.takeErasureAnnouncements() == false,
               erasures.withLock({ $0.checkedAt.map { now - $0 < trust } ?? false }) {
                return false
            }
            do {
                let version = try database.read { try $0.changeCounter() }
                let changed = seen != 0 && seen != version
                if changed {
                    try reload()
                    try forgetErasedSubjects()
                }
                seen = version
                erasures.withLock { $0.checkedAt = now }
                return changed
            } catch {
                // An announcement taken above is spent: the next call must read the counter.
                erasures.withLock { $0.checkedAt = nil }
                throw error
            }
        }
    }

    /// Makes sure no cached key of a subject erased by any process is used to open rows read from the
    /// data at `dataVersion` (the data connection's `dataVersion`, nil when the backend has none).
    ///
    /// A cached key is the one thing an erasure in another process cannot reach, and an erased
    /// subject's rows come back only with a write to the data (a restored backup): its own erasure
    /// deleted them. So while the data is as it was at the last check, the cache is as current as that
    /// check made it, and the common path costs a comparison. PostgreSQL has no data version: there an
    /// erasure is announced when it commits (`Schema.erasureChannel`), and while none has arrived the
    /// common path reads what the server already sent, without a round trip; as the announcement comes
    /// asynchronously, the check is made anyway once `announcementTrust` has passed since the last.
    /// The check reads the key database's change counter, and if it moved, the erasures numbered since
    /// the last check have their subjects' keys dropped (`reloadIfChanged`).
    func noticeErasures(dataVersion: UInt32?) throws {
        if let dataVersion, erasures.withLock({ $0.checkedAtDataVersion == dataVersion }) { return }
        _ = try reloadIfChanged(trustingAnnouncementsFor: dataVersion == nil ? Keyring.announcementTrust : nil)
        // Set only after the check, which began after `dataVersion` was read: rows read at that
        // version whose subject's key was destroyed before were seen to be erased.
        erasures.withLock { $0.checkedAtDataVersion = dataVersion }
    }

    /// Drops from the cache every key of the subjects erased (by any process) since the last check.
    private func forgetErasedSubjects() throws {
        let known = erasures.withLock { $0.latestNumber }
        let erased = try database.read { try $0.erasures(after: known) }
        guard let latest = erased.map(\.1).max() else { return }
        subjectKeys.withLock { $0.removeAll(owners: Set(erased.map(\.0.rawValue))) }
        erasures.withLock { $0.latestNumber = max($0.latestNumber, latest) }
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
    func kek(_ version: UInt32) throws -> KeyHandle {
        if let handle = keys.keyEncryptionKeys[version] { return handle }
        try reload()
        return try Keyring.kek(version, in: keys)
    }

    /// Inserts a fresh KEK wrapped under `master`; returns it.
    static func insertKEK(version: UInt32, current: Bool, under master: KeyHandle, storeID: [UInt8],
                          in tables: KeyTables) throws -> KeyHandle {
        let key = try SecretKey.random()
        let handle = KeyHandle(cipher: try AES256GCM(key: key), version: version, identifier: try randomKeyIdentifier())
        try tables.insertKEK(version: version, identifier: handle.identifier,
                             wrapped: try Envelope.seal(key: key, at: EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(version)),
                                                        under: master, storeID: storeID),
                             createdAt: Int64(Date().timeIntervalSince1970 * 1000), current: current)
        return handle
    }

    /// Inserts a fresh phone index key wrapped under `kek`; returns it.
    @discardableResult
    static func insertIndexKey(version: UInt32, bits: Int, plannedPopulation: Int, state: String, under kek: KeyHandle,
                               storeID: [UInt8], in tables: KeyTables) throws -> SecretKey {
        let key = try SecretKey.random()
        try tables.insertIndexKey(version: version, identifier: try randomKeyIdentifier(), kekVersion: kek.version,
                                  wrapped: try Envelope.seal(key: key, at: EnvelopeLocation(slot: .indexKey, recordID: Int64(version)),
                                                             under: kek, storeID: storeID),
                                  bits: bits, plannedPopulation: plannedPopulation, state: state,
                                  createdAt: Int64(Date().timeIntervalSince1970 * 1000))
        return key
    }

    /// The HKDF label (RFC 5869 `info`) of the key the master key's identifier is computed under.
    static let masterKeyIdentifierLabel = Array("strongroom.master.key-id.v1".utf8)

    /// The master key as an envelope key. Its identifier, written into the header of each wrapped KEK so
    /// that a wrong master key is recognised before any decryption is tried, is the first 32 bits of
    /// HMAC-SHA256(K, label) where K = HKDF-SHA256(master, salt: store id, info: label): the master key
    /// itself is used only to wrap (AES-256-GCM) and as HKDF input, never as a MAC key.
    static func masterKeyHandle(_ master: SecretKey, generation: UInt32, storeID: [UInt8], usage: KeyUsage) throws -> KeyHandle {
        let identifierKey = try HKDFSHA256.deriveKey(inputKeyMaterial: master, salt: storeID, info: masterKeyIdentifierLabel,
                                                     outputByteCount: 32)
        let fingerprint = try HMACSHA256(key: identifierKey).authenticationCode(for: masterKeyIdentifierLabel)
        return KeyHandle(cipher: try AES256GCM(key: master), version: generation, identifier: readUInt32(fingerprint, at: 0),
                         usage: usage)
    }

    /// Stores made before the master key's identifier had a key of its own wrapped their KEKs under an
    /// identifier computed with the master key itself (HMAC-SHA256(master, "strongroom.master-key-id.v1")).
    /// Each such KEK is opened once under that identifier — AES-GCM checks the master key — and wrapped
    /// again under `master` with its current identifier, in one key-database transaction. The legacy
    /// identifier is computed only when a KEK's header does not name the current one (an unmigrated
    /// store, or a wrong key); once migrated, an open neither computes it nor writes.
    private static func migrateLegacyMasterKeyIdentifier(_ master: SecretKey, to handle: KeyHandle, storeID: [UInt8],
                                                         in database: KeyDatabase) throws {
        func identifiers(_ tables: KeyTables) throws -> [(version: UInt32, wrapped: [UInt8], identifier: UInt32?)] {
            try tables.wrappedKEKs().map { ($0.version, $0.wrapped, try? Envelope.header(of: $0.wrapped).keyIdentifier) }
        }
        guard try database.read({ try identifiers($0) }).contains(where: { $0.identifier != handle.identifier }) else { return }
        let legacy = try HMACSHA256(key: master).authenticationCode(for: Array("strongroom.master-key-id.v1".utf8))
        let legacyHandle = KeyHandle(cipher: handle.cipher, version: handle.version, identifier: readUInt32(legacy, at: 0))
        func legacyRows(_ tables: KeyTables) throws -> [(UInt32, [UInt8])] {
            try identifiers(tables).filter { $0.identifier == legacyHandle.identifier }.map { ($0.version, $0.wrapped) }
        }
        guard try !database.read({ try legacyRows($0) }).isEmpty else { return }
        try database.transaction { tables in
            let rows = try legacyRows(tables)
            try tables.reserve(handle.usage!, count: rows.count)
            for (version, wrapped) in rows {
                let location = EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(version))
                let kek: SecretKey
                do throws(EnvelopeError) {
                    kek = try Envelope.openKey(wrapped, at: location, under: legacyHandle, storeID: storeID)
                } catch {
                    throw StoreError.unreadableKey("the key-encryption key", error)
                }
                try tables.updateKEK(version: version, wrapped: try Envelope.seal(key: kek, at: location, under: handle, storeID: storeID))
            }
        }
    }

    /// Reserves `count` encryptions under `usage`'s key in a transaction of its own, committed before
    /// the encryptions are made. Never call while holding the database lock.
    func reserve(_ usage: KeyUsage?, count: Int) throws {
        guard let usage, try usage.reservationNeeded(for: UInt64(count), block: Keyring.reservationBlock(budget: usage.budget)) != nil
        else { return }
        try database.read { try $0.reserve(usage, count: count) }
    }

    static func randomKeyIdentifier() throws -> UInt32 {
        readUInt32(try SecureRandom.bytes(count: 4), at: 0)
    }

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

    /// Destroys every version of `subject`'s key (crypto-shredding) and, with `tombstone`, records the
    /// erasure under the next erasure number (other processes drop the subject's cached keys when they
    /// see it); with `receipt`, also writes the tombstone with the receipt it makes (given the number of
    /// key versions destroyed and the time), in the same key-database transaction, so that no key is
    /// destroyed without its receipt, and returns it (or the one an earlier run wrote). Then has the
    /// key database drop the deleted row from its files (`finishErasures`, waiting up to `erasureWait`
    /// for readers of older snapshots); `complete` is false when a reader held old pages back, which
    /// the store row then records for the next open or `keys compact` to finish.
    @discardableResult
    func destroySubjectKeys(of subject: SubjectID, tombstone: Bool,
                            receipt: ((_ destroyedKeys: Int, _ now: Int64) throws -> ErasureReceipt)? = nil)
        throws -> (complete: Bool, receipt: ErasureReceipt?) {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let (versions, made) = try database.transaction { tables in
            let versions = try tables.subjectKeyVersions(subject)
            try tables.deleteSubjectKeys(subject)
            if tombstone { try tables.recordErasure(of: subject, at: now) }
            var made: ErasureReceipt?
            if let receipt {
                // An erasure run again (it crashed after this commit, or the rows came back from a data
                // backup) keeps the receipt made the first time.
                made = try tables.tombstone(of: subject)
                if made == nil {
                    let issued = try receipt(versions.count, now)
                    try tables.insertTombstone(issued)
                    made = issued
                }
            }
            // Recorded with the deletion, so that a crash before the old pages are overwritten leaves
            // the job to the next open.
            try tables.markErasedPages(at: now)
            return (versions, made)
        }
        forget(subject, versions: versions)
        return (try finishErasures(waitingUpTo: erasureWait), made)
    }

    /// Overwrites the old pages of destroyed keys if an erasure left them (`erasedPagesSince`), waiting
    /// up to `milliseconds` for readers of older snapshots; returns true when none remain. SQLite: the
    /// WAL is checkpointed into the main file, whose deleted rows `secure_delete` overwrote, and cut
    /// to zero bytes; PostgreSQL keeps what it keeps (SECURITY.md) and this is always true.
    func finishErasures(waitingUpTo milliseconds: Int32) throws -> Bool {
        try database.read { tables in
            guard try tables.erasedPagesSince() != nil else { return true }
            let latest = try tables.latestErasureNumber()
            guard try tables.discardDeletedContent(waitingUpTo: milliseconds) else { return false }
            // Cleared only if no other process erased since `latest` was read: that erasure's pages may
            // have missed this checkpoint, and its own clears the record once they are gone. (This small
            // write leaves the store row's page in the WAL again: it holds no key.)
            try tables.clearErasedPages(ifLatestErasureIs: latest)
            return true
        }
    }

    /// Since when old pages of a destroyed key have waited for a reader of an older snapshot of the
    /// key database to end (nil when none wait).
    func erasedPagesSince() throws -> Date? {
        try database.read { try $0.erasedPagesSince() }
            .map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    /// Drops `subject`'s cached keys of `versions` (after erasure or data-key rotation).
    func forget(_ subject: SubjectID, versions: [UInt32]) {
        subjectKeys.withLock { cache in
            for version in versions { cache.remove(owner: subject.rawValue, version: version) }
        }
    }

    /// The audit durability recorded for the store.
    func auditDurability() -> AuditDurability {
        let text: String? = (try? database.read { try $0.auditDurability() }) ?? nil
        return text.flatMap { AuditDurability(rawValue: $0) } ?? .written
    }

    /// Whether `subject` was erased (its key destroyed).
    func isErased(_ subject: SubjectID) throws(StoreError) -> Bool {
        try storeErrors {
            try database.read { try $0.isErased(subject) }
        }
    }

    /// The signed audit chain head, if one was saved.
    func auditHead() throws -> (head: AuditHead, code: [UInt8])? {
        try database.read { try $0.auditHead() }
    }

    /// Saves the audit chain head as `mode` says (`AuditHeadSaveMode`): a writer's head only moves
    /// forward (another process may share the log and have saved a newer one) and is created only for
    /// the log's first entries, never again once deleted; an acknowledged gap replaces it.
    func saveAuditHead(_ head: AuditHead, mode: AuditHeadSaveMode) -> AuditHeadSave {
        guard let code = try? head.authenticationCode(auditMAC) else { return .failed }
        let saved: AuditHeadSave? = try? database.read { tables in
            if mode != .advance {
                try tables.upsertAuditHead(head, code: code, onlyForward: mode != .replace)
                return .saved
            }
            guard try !tables.advanceAuditHead(head, code: code) else { return .saved }
            return try tables.hasAuditHead() ? .saved : .missing
        }
        return saved ?? .failed
    }
}

extension Keyring: AuditHeadStore {}
