import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// The store's key hierarchy (SECURITY.md, "Design"): the master key wraps the key-encryption key (KEK); the KEK
/// wraps one random 256-bit key per subject, the blind-index keys and the audit key. All wrapped keys
/// live in `keys.sqlite`, apart from the data, so that destroying a subject key reaches every copy of
/// its ciphertext, backups of the data file included.
///
/// Thread safety: safe from any thread. The key database connection and the key cache each sit behind a
/// lock; never call the audit hook while holding the database lock.
final class Keyring: Sendable {
    /// The store's random 16-byte id, bound into every envelope's AAD.
    let storeID: [UInt8]
    /// The audit key's MAC context.
    let auditMAC: HMACSHA256
    let database: Mutex<any Database>
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
    /// The key database's change counter (`Schema.keyChangeCounter`) when the keys were last loaded: it
    /// changes when another connection commits, so a rotation by another process is noticed without
    /// re-reading every time.
    private let loadedDataVersion = Mutex<Int64>(0)

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

        /// The current KEK.
        var current: KeyHandle { keyEncryptionKeys[currentVersion]! }
    }

    private init(storeID: [UInt8], auditMAC: HMACSHA256, keys: LoadedKeys, database: consuming sending any Database,
                 cacheCapacity: Int, nonceBudget: UInt64) throws(CryptoError) {
        self.storeID = storeID
        self.nonceBudget = nonceBudget
        self.auditMAC = auditMAC
        self.loaded = Mutex(keys)
        self.database = Mutex(database)
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
    static func create(database connection: consuming sending any Database, master: SecretKey, storeID: [UInt8],
                       auditDurability: AuditDurability, indexBits: Int, plannedPopulation: Int, cacheCapacity: Int,
                       nonceBudget: UInt64) throws -> Keyring {
        try connection.migrate(Schema.keys(connection.dialect))
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let masterHandle = try masterKeyHandle(master, generation: 1, storeID: storeID,
                                               usage: KeyUsage(name: "master:1", budget: nonceBudget, reserved: 0))
        let auditKey = try SecretKey.random()
        let keys = try connection.transaction {
            try connection.run("INSERT INTO store (id, store_id, master_generation, created_at, audit_durability) VALUES (1, ?, 1, ?, ?)",
                               [.blob(storeID), .integer(now), .text(auditDurability.rawValue)])
            try reserve(masterHandle.usage!, count: 1, in: connection)
            var kek = try insertKEK(version: 1, current: true, under: masterHandle, storeID: storeID, in: connection)
            kek.usage = KeyUsage(name: "kek:1", budget: nonceBudget, reserved: 0)
            try reserve(kek.usage!, count: 2, in: connection)
            try connection.run("INSERT INTO audit_keys (version, key_id, kek_version, wrapped, created_at) VALUES (1, ?, 1, ?, ?)", [
                .int(Int(try randomKeyIdentifier())),
                .blob(try Envelope.seal(key: auditKey, at: EnvelopeLocation(slot: .auditKey, recordID: 1), under: kek, storeID: storeID)),
                .integer(now),
            ])
            let indexKey = try insertIndexKey(version: 1, bits: indexBits, plannedPopulation: plannedPopulation, state: "active",
                                              under: kek, storeID: storeID, in: connection)
            return LoadedKeys(master: masterHandle, keyEncryptionKeys: [1: kek], currentVersion: 1,
                              phoneIndexes: [try PhoneBlindIndex(indexKey: indexKey, version: 1, bits: indexBits, storeID: storeID)])
        }
        let keyring = try Keyring(storeID: storeID, auditMAC: try HMACSHA256(key: auditKey), keys: keys, database: connection,
                                  cacheCapacity: cacheCapacity, nonceBudget: nonceBudget)
        _ = try keyring.reloadIfChanged()
        return keyring
    }

    /// Opens the key database and unwraps the upper keys with `master`, touching no data.
    static func open(database connection: consuming sending any Database, master: SecretKey, cacheCapacity: Int,
                     nonceBudget: UInt64) throws -> Keyring {
        try connection.migrate(Schema.keys(connection.dialect))
        guard let (storeID, generation) = try connection.firstRow("SELECT store_id, master_generation FROM store WHERE id = 1", [], {
            ($0.blob(0) ?? [], UInt32(truncatingIfNeeded: $0.int64(1)))
        }) else { throw StoreError.storeMismatch }
        let masterUsage = KeyUsage(name: "master:\(generation)", budget: nonceBudget,
                                   reserved: UInt64(try connection.scalarInteger("SELECT reserved FROM key_usage WHERE key = ?",
                                                                                 [.text("master:\(generation)")]) ?? 0))
        let masterHandle = try masterKeyHandle(master, generation: generation, storeID: storeID, usage: masterUsage)
        try migrateLegacyMasterKeyIdentifier(master, to: masterHandle, storeID: storeID, in: connection)
        let keys = try load(from: connection, master: masterHandle, storeID: storeID, known: nil, budget: nonceBudget)
        guard let (version, kekVersion, wrapped) = try connection.firstRow(
            "SELECT version, kek_version, wrapped FROM audit_keys ORDER BY version DESC LIMIT 1", [], {
                ($0.int64(0), UInt32(truncatingIfNeeded: $0.int64(1)), $0.blob(2) ?? [])
            }) else { throw StoreError.unreadableKey("the audit key", .truncated(byteCount: 0)) }
        let auditKey: SecretKey
        do throws(EnvelopeError) {
            auditKey = try Envelope.openKey(wrapped, at: EnvelopeLocation(slot: .auditKey, recordID: version),
                                            under: try kek(kekVersion, in: keys), storeID: storeID)
        } catch {
            throw StoreError.unreadableKey("the audit key", error)
        }
        let keyring = try Keyring(storeID: storeID, auditMAC: try HMACSHA256(key: auditKey), keys: keys, database: connection,
                                  cacheCapacity: cacheCapacity, nonceBudget: nonceBudget)
        _ = try keyring.reloadIfChanged()
        return keyring
    }

    /// Reads and unwraps the KEKs and the answering index keys; versions in `known` are reused as they are.
    static func load(from connection: any Database, master: KeyHandle, storeID: [UInt8], known: LoadedKeys?,
                     budget: UInt64) throws -> LoadedKeys {
        let reserved = Dictionary(uniqueKeysWithValues: try connection.rows("SELECT key, reserved FROM key_usage") {
            ($0.text(0) ?? "", UInt64($0.int64(1)))
        })
        func usage(_ name: String) -> KeyUsage { KeyUsage(name: name, budget: budget, reserved: reserved[name] ?? 0) }
        var keks: [UInt32: KeyHandle] = [:]
        var current: UInt32?
        try connection.forEachRow("SELECT version, key_id, wrapped, current FROM kek") { row in
            let version = UInt32(truncatingIfNeeded: row.int64(0))
            if row.int64(3) != 0 { current = version }
            if let handle = known?.keyEncryptionKeys[version] {
                keks[version] = handle
                return
            }
            let key: SecretKey
            do throws(EnvelopeError) {
                key = try Envelope.openKey(row.blob(2) ?? [], at: EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(version)),
                                           under: master, storeID: storeID)
            } catch .wrongKey {
                throw StoreError.wrongMasterKey
            } catch .keyVersionUnavailable {
                throw StoreError.wrongMasterKey
            } catch {
                throw StoreError.unreadableKey("the key-encryption key", error)
            }
            keks[version] = KeyHandle(cipher: try AES256GCM(key: key), version: version,
                                      identifier: UInt32(truncatingIfNeeded: row.int64(1)), usage: usage("kek:\(version)"))
        }
        guard let current else { throw StoreError.unreadableKey("the key-encryption key", .truncated(byteCount: 0)) }
        var indexes: [PhoneBlindIndex] = []
        try connection.forEachRow("""
            SELECT version, kek_version, wrapped, bits FROM index_keys
            WHERE field = 'phones' AND state IN ('active', 'building') ORDER BY state = 'building', version
            """) { row in
            let version = UInt32(truncatingIfNeeded: row.int64(0))
            if let index = known?.phoneIndexes.first(where: { $0.version == version }) {
                indexes.append(index)
                return
            }
            let key: SecretKey
            do throws(EnvelopeError) {
                key = try Envelope.openKey(row.blob(2) ?? [], at: EnvelopeLocation(slot: .indexKey, recordID: Int64(version)),
                                           under: try kek(UInt32(truncatingIfNeeded: row.int64(1)), in: keks), storeID: storeID)
            } catch {
                throw StoreError.unreadableKey("the phone index key", error)
            }
            indexes.append(try PhoneBlindIndex(indexKey: key, version: version, bits: Int(row.int64(3)), storeID: storeID))
        }
        guard !indexes.isEmpty else { throw StoreError.unreadableKey("the phone index key", .truncated(byteCount: 0)) }
        return LoadedKeys(master: master, keyEncryptionKeys: keks, currentVersion: current, phoneIndexes: indexes)
    }

    /// Re-reads the upper keys from the key database (after a rotation by this or another process).
    func reload() throws {
        let known = keys
        let fresh = try database.withLock {
            try Keyring.load(from: $0, master: known.master, storeID: storeID, known: known, budget: nonceBudget)
        }
        loaded.withLock { $0 = fresh }
    }

    /// Reloads the keys if another connection committed to the key database since they were loaded;
    /// returns whether it did.
    func reloadIfChanged() throws -> Bool {
        let version = try database.withLock { try $0.scalarInteger(Schema.keyChangeCounter($0.dialect)) ?? 0 }
        let changed = loadedDataVersion.withLock { seen in
            defer { seen = version }
            return seen != 0 && seen != version
        }
        if changed { try reload() }
        return changed
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
                          in connection: any Database) throws -> KeyHandle {
        let key = try SecretKey.random()
        let handle = KeyHandle(cipher: try AES256GCM(key: key), version: version, identifier: try randomKeyIdentifier())
        try connection.run("INSERT INTO kek (version, key_id, wrapped, created_at, current) VALUES (?, ?, ?, ?, ?)", [
            .int(Int(version)), .int(Int(handle.identifier)),
            .blob(try Envelope.seal(key: key, at: EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(version)),
                                    under: master, storeID: storeID)),
            .integer(Int64(Date().timeIntervalSince1970 * 1000)), .int(current ? 1 : 0),
        ])
        return handle
    }

    /// Inserts a fresh phone index key wrapped under `kek`; returns it.
    @discardableResult
    static func insertIndexKey(version: UInt32, bits: Int, plannedPopulation: Int, state: String, under kek: KeyHandle,
                               storeID: [UInt8], in connection: any Database) throws -> SecretKey {
        let key = try SecretKey.random()
        try connection.run("""
            INSERT INTO index_keys (field, version, key_id, kek_version, wrapped, bits, planned_population, state, created_at)
            VALUES ('phones', ?, ?, ?, ?, ?, ?, ?, ?)
            """, [
                .int(Int(version)), .int(Int(try randomKeyIdentifier())), .int(Int(kek.version)),
                .blob(try Envelope.seal(key: key, at: EnvelopeLocation(slot: .indexKey, recordID: Int64(version)), under: kek, storeID: storeID)),
                .int(bits), .int(plannedPopulation), .text(state), .integer(Int64(Date().timeIntervalSince1970 * 1000)),
            ])
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
                                                         in connection: any Database) throws {
        func identifiers() throws -> [(version: Int64, wrapped: [UInt8], identifier: UInt32?)] {
            try connection.rows("SELECT version, wrapped FROM kek") { row in
                let wrapped = row.blob(1) ?? []
                return (row.int64(0), wrapped, try? Envelope.header(of: wrapped).keyIdentifier)
            }
        }
        guard try identifiers().contains(where: { $0.identifier != handle.identifier }) else { return }
        let legacy = try HMACSHA256(key: master).authenticationCode(for: Array("strongroom.master-key-id.v1".utf8))
        let legacyHandle = KeyHandle(cipher: handle.cipher, version: handle.version, identifier: readUInt32(legacy, at: 0))
        func legacyRows() throws -> [(Int64, [UInt8])] {
            try identifiers().filter { $0.identifier == legacyHandle.identifier }.map { ($0.version, $0.wrapped) }
        }
        guard try !legacyRows().isEmpty else { return }
        try connection.transaction {
            let rows = try legacyRows()
            try reserve(handle.usage!, count: rows.count, in: connection)
            for (version, wrapped) in rows {
                let location = EnvelopeLocation(slot: .keyEncryptionKey, recordID: version)
                let kek: SecretKey
                do throws(EnvelopeError) {
                    kek = try Envelope.openKey(wrapped, at: location, under: legacyHandle, storeID: storeID)
                } catch {
                    throw StoreError.unreadableKey("the key-encryption key", error)
                }
                try connection.run("UPDATE kek SET wrapped = ? WHERE version = ?",
                                   [.blob(try Envelope.seal(key: kek, at: location, under: handle, storeID: storeID)), .integer(version)])
            }
        }
    }

    /// Makes sure `count` more encryptions under `usage`'s key are reserved, writing a new block to
    /// `key_usage` through `connection` when needed (inside the caller's transaction, if any).
    static func reserve(_ usage: KeyUsage, count: Int, in connection: any Database) throws {
        guard let total = try usage.reservationNeeded(for: UInt64(count), block: reservationBlock(budget: usage.budget)) else { return }
        try connection.run("""
            INSERT INTO key_usage (key, reserved) VALUES (?, ?)
            ON CONFLICT (key) DO UPDATE SET reserved = CASE WHEN excluded.reserved > key_usage.reserved
                THEN excluded.reserved ELSE key_usage.reserved END
            """, [.text(usage.name), .integer(Int64(total))])
        usage.didReserve(total)
    }

    /// Reserves `count` encryptions under `usage`'s key in a transaction of its own, committed before
    /// the encryptions are made. Never call while holding the database lock.
    func reserve(_ usage: KeyUsage?, count: Int) throws {
        guard let usage, try usage.reservationNeeded(for: UInt64(count), block: Keyring.reservationBlock(budget: usage.budget)) != nil
        else { return }
        try database.withLock { try Keyring.reserve(usage, count: count, in: $0) }
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
            let written: Bool = try database.withLock { connection in
                try connection.transaction {
                    guard try connection.scalarInteger("SELECT version FROM kek WHERE current = 1") == Int64(kek.version) else { return false }
                    for (subject, key, handle) in keys {
                        // Replacing: a row already at (subject, version) is an orphan of a write whose data
                        // transaction rolled back after its keys committed (the rollback also gives the
                        // subject id back to the next insert): its key never protected any stored data.
                        try connection.run("""
                            INSERT INTO subject_keys (subject_id, version, key_id, kek_version, wrapped, created_at)
                            VALUES (?, ?, ?, ?, ?, ?)
                            ON CONFLICT (subject_id, version) DO UPDATE SET key_id = excluded.key_id,
                                kek_version = excluded.kek_version, wrapped = excluded.wrapped, created_at = excluded.created_at
                            """, [.integer(subject.rawValue), .int(Int(version)), .int(Int(handle.identifier)), .int(Int(kek.version)),
                                  .blob(try Envelope.seal(key: key, at: EnvelopeLocation(slot: .subjectKey, recordID: subject.rawValue),
                                                          under: kek, storeID: storeID)),
                                  .integer(now)])
                    }
                    return true
                }
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

    /// The key of `subject` at `version`: from the cache, or unwrapped from the key database.
    func subjectKey(for subject: SubjectID, version: UInt32) throws(StoreError) -> KeyHandle {
        let cached = try storeErrors {
            try subjectKeys.withLock { (cache) throws(CryptoError) in try cache.cipher(owner: subject.rawValue, version: version) }
        }
        if let (cipher, identifier) = cached { return KeyHandle(cipher: cipher, version: version, identifier: identifier) }
        let row = try storeErrors {
            try database.withLock { connection in
                try connection.firstRow("SELECT key_id, wrapped, kek_version FROM subject_keys WHERE subject_id = ? AND version = ?",
                                        [.integer(subject.rawValue), .int(Int(version))]) {
                    (UInt32(truncatingIfNeeded: $0.int64(0)), $0.blob(1) ?? [], UInt32(truncatingIfNeeded: $0.int64(2)))
                }
            }
        }
        guard let (identifier, wrapped, kekVersion) = row else {
            if try isErased(subject) { throw .subjectErased(subject) }
            throw .keyUnavailable(subject, version: version)
        }
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
        return KeyHandle(cipher: try storeErrors { try AES256GCM(key: key) }, version: version, identifier: identifier)
    }

    /// Destroys every version of `subject`'s key (crypto-shredding) and, with `tombstone`, records the
    /// erasure. Then has the key database drop the deleted row from its journal where it can (SQLite:
    /// the WAL is truncated, and `secure_delete` has already overwritten the row in the page).
    func destroySubjectKeys(of subject: SubjectID, tombstone: Bool) throws {
        let versions = try database.withLock { connection in
            let versions = try connection.rows("SELECT version FROM subject_keys WHERE subject_id = ?", [.integer(subject.rawValue)]) {
                UInt32(truncatingIfNeeded: $0.int64(0))
            }
            try connection.transaction {
                try connection.run("DELETE FROM subject_keys WHERE subject_id = ?", [.integer(subject.rawValue)])
                if tombstone {
                    try connection.run("INSERT INTO erased_subjects (subject_id, erased_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                       [.integer(subject.rawValue), .integer(Int64(Date().timeIntervalSince1970 * 1000))])
                }
            }
            try connection.discardDeletedContent()
            return versions
        }
        forget(subject, versions: versions)
    }

    /// Drops `subject`'s cached keys of `versions` (after erasure or data-key rotation).
    func forget(_ subject: SubjectID, versions: [UInt32]) {
        subjectKeys.withLock { cache in
            for version in versions { cache.remove(owner: subject.rawValue, version: version) }
        }
    }

    /// The audit durability recorded for the store.
    func auditDurability() -> AuditDurability {
        let text: String? = (try? database.withLock { try $0.scalarText("SELECT audit_durability FROM store WHERE id = 1") }) ?? nil
        return text.flatMap { AuditDurability(rawValue: $0) } ?? .written
    }

    /// Whether `subject` was erased (its key destroyed).
    func isErased(_ subject: SubjectID) throws(StoreError) -> Bool {
        try storeErrors {
            try database.withLock { try $0.scalarInteger("SELECT 1 FROM erased_subjects WHERE subject_id = ?", [.integer(subject.rawValue)]) } != nil
        }
    }

    /// The signed audit chain head, if one was saved.
    func auditHead() throws -> (head: AuditHead, code: [UInt8])? {
        try database.withLock { connection in
            try connection.firstRow("SELECT sequence, entry_mac, time, head_mac FROM audit_head WHERE id = 1") { row in
                (AuditHead(sequence: UInt64(row.int64(0)), entryMAC: row.blob(1) ?? [], microseconds: row.int64(2)),
                 row.blob(3) ?? [])
            }
        }
    }

    /// Saves the audit chain head as `mode` says (`AuditHeadSaveMode`): a writer's head only moves
    /// forward (another process may share the log and have saved a newer one) and is created only for
    /// the log's first entries, never again once deleted; an acknowledged gap replaces it.
    func saveAuditHead(_ head: AuditHead, mode: AuditHeadSaveMode) -> AuditHeadSave {
        guard let code = try? head.authenticationCode(auditMAC) else { return .failed }
        let values: [SQLValue] = [.integer(Int64(head.sequence)), .blob(head.entryMAC), .integer(head.microseconds), .blob(code)]
        let saved: AuditHeadSave? = try? database.withLock { connection in
            if mode != .advance {
                try connection.run("""
                    INSERT INTO audit_head (id, sequence, entry_mac, time, head_mac) VALUES (1, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET sequence = excluded.sequence, entry_mac = excluded.entry_mac,
                        time = excluded.time, head_mac = excluded.head_mac
                    \(mode == .replace ? "" : "WHERE excluded.sequence > audit_head.sequence")
                    """, values)
                return .saved
            }
            try connection.run("""
                UPDATE audit_head SET sequence = ?, entry_mac = ?, time = ?, head_mac = ? WHERE id = 1 AND sequence < ?
                """, values + [.integer(Int64(head.sequence))])
            guard connection.changes == 0 else { return .saved }
            return try connection.scalarInteger("SELECT 1 FROM audit_head WHERE id = 1") == nil ? .missing : .saved
        }
        return saved ?? .failed
    }
}

extension Keyring: AuditHeadStore {}
