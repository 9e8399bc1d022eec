import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// The store's key hierarchy (DESIGN.md): the master key wraps the key-encryption key (KEK); the KEK
/// wraps one random 256-bit key per subject, the blind-index keys and the audit key. All wrapped keys
/// live in `keys.sqlite`, apart from the data, so that destroying a subject key reaches every copy of
/// its ciphertext, backups of the data file included.
///
/// Thread safety: safe from any thread. The key database connection and the cache each sit behind a
/// lock; never call the audit hook while holding the database lock.
final class Keyring: Sendable {
    /// The store's random 16-byte id, bound into every envelope's AAD.
    let storeID: [UInt8]
    /// The current KEK.
    let keyEncryptionKey: KeyHandle
    /// The audit key's MAC context.
    let auditMAC: HMACSHA256
    /// The blind index of phone numbers under the active index key.
    let phoneIndex: PhoneBlindIndex
    let database: Mutex<Connection>
    private let cache: Mutex<SubjectKeyCache>

    private init(storeID: [UInt8], keyEncryptionKey: KeyHandle, auditMAC: HMACSHA256, phoneIndex: PhoneBlindIndex,
                 database: consuming sending Connection, cacheCapacity: Int) {
        self.storeID = storeID
        self.keyEncryptionKey = keyEncryptionKey
        self.auditMAC = auditMAC
        self.phoneIndex = phoneIndex
        self.database = Mutex(database)
        self.cache = Mutex(SubjectKeyCache(capacity: cacheCapacity))
    }

    /// Opens `keys.sqlite` with the settings every key database connection uses.
    ///
    /// `secure_delete` overwrites deleted key rows with zeros; WAL keeps readers off writers' backs,
    /// and erasure truncates the WAL afterwards (see `destroySubjectKeys`).
    /// Related SQLite documentation: <https://www.sqlite.org/pragma.html#pragma_secure_delete>
    static func connect(path: String, create: Bool) throws -> Connection {
        let connection = try Connection(path: path, create: create)
        try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA mmap_size = 1073741824")
        return connection
    }

    /// Creates the key database: a fresh KEK wrapped under `master`, an audit key and a phone index key.
    static func create(path: String, master: SecretKey, storeID: [UInt8], indexBits: Int,
                       plannedPopulation: Int, cacheCapacity: Int) throws -> Keyring {
        let connection = try connect(path: path, create: true)
        try connection.migrate(Schema.keys)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let masterHandle = try masterKeyHandle(master, generation: 1)
        let kekKey = try SecretKey.random()
        let kek = KeyHandle(cipher: try AES256GCM(key: kekKey), version: 1, identifier: try randomKeyIdentifier())
        let auditKey = try SecretKey.random()
        let indexKey = try SecretKey.random()
        let indexIdentifier = try randomKeyIdentifier()
        let auditIdentifier = try randomKeyIdentifier()
        try connection.transaction {
            try connection.run("INSERT INTO store (id, store_id, master_generation, created_at) VALUES (1, ?, 1, ?)",
                               [.blob(storeID), .integer(now)])
            try connection.run("INSERT INTO kek (version, key_id, wrapped, created_at, current) VALUES (1, ?, ?, ?, 1)", [
                .int(Int(kek.identifier)),
                .blob(try Envelope.seal(key: kekKey, at: EnvelopeLocation(slot: .keyEncryptionKey, recordID: 1),
                                        under: masterHandle, storeID: storeID)),
                .integer(now),
            ])
            try connection.run("INSERT INTO audit_keys (version, key_id, kek_version, wrapped, created_at) VALUES (1, ?, 1, ?, ?)", [
                .int(Int(auditIdentifier)),
                .blob(try Envelope.seal(key: auditKey, at: EnvelopeLocation(slot: .auditKey, recordID: 1), under: kek, storeID: storeID)),
                .integer(now),
            ])
            try connection.run("""
                INSERT INTO index_keys (field, version, key_id, kek_version, wrapped, bits, planned_population, state, created_at)
                VALUES ('phones', 1, ?, 1, ?, ?, ?, 'active', ?)
                """, [
                    .int(Int(indexIdentifier)),
                    .blob(try Envelope.seal(key: indexKey, at: EnvelopeLocation(slot: .indexKey, recordID: 1), under: kek, storeID: storeID)),
                    .int(indexBits), .int(plannedPopulation), .integer(now),
                ])
        }
        return Keyring(storeID: storeID, keyEncryptionKey: kek, auditMAC: try HMACSHA256(key: auditKey),
                       phoneIndex: try PhoneBlindIndex(indexKey: indexKey, version: 1, bits: indexBits, storeID: storeID),
                       database: connection, cacheCapacity: cacheCapacity)
    }

    /// Opens the key database and unwraps the KEK with `master`, touching nothing else.
    static func open(path: String, master: SecretKey, cacheCapacity: Int) throws -> Keyring {
        let connection = try connect(path: path, create: false)
        try connection.migrate(Schema.keys)
        guard let (storeID, generation) = try connection.firstRow("SELECT store_id, master_generation FROM store WHERE id = 1", [], {
            ($0.blob(0) ?? [], UInt32(truncatingIfNeeded: $0.int64(1)))
        }) else { throw StoreError.storeMismatch }
        let masterHandle = try masterKeyHandle(master, generation: generation)
        guard let (version, identifier, wrapped) = try connection.firstRow(
            "SELECT version, key_id, wrapped FROM kek WHERE current = 1", [], {
                (UInt32(truncatingIfNeeded: $0.int64(0)), UInt32(truncatingIfNeeded: $0.int64(1)), $0.blob(2) ?? [])
            }) else { throw StoreError.unreadableKey("the key-encryption key", .truncated(byteCount: 0)) }
        let kekKey: SecretKey
        do {
            kekKey = try Envelope.openKey(wrapped, at: EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(version)),
                                          under: masterHandle, storeID: storeID)
        } catch .wrongKey {
            throw StoreError.wrongMasterKey
        } catch .keyVersionUnavailable {
            throw StoreError.wrongMasterKey
        } catch {
            throw StoreError.unreadableKey("the key-encryption key", error)
        }
        let kek = KeyHandle(cipher: try AES256GCM(key: kekKey), version: version, identifier: identifier)
        let auditKey = try unwrapLatest(from: "audit_keys", slot: .auditKey, what: "the audit key", kek: kek,
                                        storeID: storeID, connection: connection)
        let (indexKey, indexVersion, bits) = try unwrapIndexKey(kek: kek, storeID: storeID, connection: connection)
        return Keyring(storeID: storeID, keyEncryptionKey: kek, auditMAC: try HMACSHA256(key: auditKey),
                       phoneIndex: try PhoneBlindIndex(indexKey: indexKey, version: indexVersion, bits: bits, storeID: storeID),
                       database: connection, cacheCapacity: cacheCapacity)
    }

    /// The master key as an envelope key: its identifier is the first 32 bits of
    /// HMAC-SHA256(master, label), so a wrong master key is recognised before any decryption is tried.
    private static func masterKeyHandle(_ master: SecretKey, generation: UInt32) throws -> KeyHandle {
        let fingerprint = try HMACSHA256(key: master).authenticationCode(for: Array("strongroom.master-key-id.v1".utf8))
        return KeyHandle(cipher: try AES256GCM(key: master), version: generation, identifier: readUInt32(fingerprint, at: 0))
    }

    private static func randomKeyIdentifier() throws -> UInt32 {
        readUInt32(try SecureRandom.bytes(count: 4), at: 0)
    }

    private static func unwrapLatest(from table: String, slot: EnvelopeSlot, what: String, kek: KeyHandle,
                                     storeID: [UInt8], connection: Connection) throws -> SecretKey {
        guard let (version, wrapped) = try connection.firstRow(
            "SELECT version, wrapped FROM \(table) ORDER BY version DESC LIMIT 1", [], { ($0.int64(0), $0.blob(1) ?? []) })
        else { throw StoreError.unreadableKey(what, .truncated(byteCount: 0)) }
        do {
            return try Envelope.openKey(wrapped, at: EnvelopeLocation(slot: slot, recordID: version), under: kek, storeID: storeID)
        } catch {
            throw StoreError.unreadableKey(what, error)
        }
    }

    private static func unwrapIndexKey(kek: KeyHandle, storeID: [UInt8], connection: Connection) throws -> (SecretKey, UInt32, Int) {
        guard let (version, wrapped, bits) = try connection.firstRow(
            "SELECT version, wrapped, bits FROM index_keys WHERE field = 'phones' AND state = 'active' ORDER BY version DESC LIMIT 1",
            [], { ($0.int64(0), $0.blob(1) ?? [], Int($0.int64(2))) })
        else { throw StoreError.unreadableKey("the phone index key", .truncated(byteCount: 0)) }
        do {
            let key = try Envelope.openKey(wrapped, at: EnvelopeLocation(slot: .indexKey, recordID: version), under: kek, storeID: storeID)
            return (key, UInt32(truncatingIfNeeded: version), bits)
        } catch {
            throw StoreError.unreadableKey("the phone index key", error)
        }
    }

    /// Makes, wraps and stores a fresh random key for each of `subjects` (one key-database transaction).
    func createSubjectKeys(for subjects: [SubjectID]) throws -> [KeyHandle] {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var handles: [KeyHandle] = []
        var rows: [(SubjectID, UInt32, [UInt8])] = []
        for subject in subjects {
            let key = try SecretKey.random()
            let handle = KeyHandle(cipher: try AES256GCM(key: key), version: 1, identifier: try Keyring.randomKeyIdentifier())
            let wrapped = try Envelope.seal(key: key, at: EnvelopeLocation(slot: .subjectKey, recordID: subject.rawValue),
                                            under: keyEncryptionKey, storeID: storeID)
            handles.append(handle)
            rows.append((subject, handle.identifier, wrapped))
        }
        try database.withLock { connection in
            try connection.transaction {
                for (subject, identifier, wrapped) in rows {
                    try connection.run("""
                        INSERT INTO subject_keys (subject_id, version, key_id, kek_version, wrapped, created_at)
                        VALUES (?, 1, ?, ?, ?, ?)
                        """, [.integer(subject.rawValue), .int(Int(identifier)), .int(Int(keyEncryptionKey.version)),
                              .blob(wrapped), .integer(now)])
                }
            }
        }
        cache.withLock { cache in
            for (subject, handle) in zip(subjects, handles) { cache.insert(handle, for: .init(subject: subject, version: 1)) }
        }
        return handles
    }

    /// The key of `subject` at `version`: from the cache, or unwrapped from the key database.
    func subjectKey(for subject: SubjectID, version: UInt32) throws(StoreError) -> KeyHandle {
        let reference = SubjectKeyCache.Reference(subject: subject, version: version)
        if let cached = cache.withLock({ $0.key(for: reference) }) { return cached }
        let row = try storeErrors {
            try database.withLock { connection in
                try connection.firstRow("SELECT key_id, wrapped FROM subject_keys WHERE subject_id = ? AND version = ?",
                                        [.integer(subject.rawValue), .int(Int(version))]) {
                    (UInt32(truncatingIfNeeded: $0.int64(0)), $0.blob(1) ?? [])
                }
            }
        }
        guard let (identifier, wrapped) = row else {
            if try isErased(subject) { throw .subjectErased(subject) }
            throw .keyUnavailable(subject, version: version)
        }
        let key: SecretKey
        do {
            key = try Envelope.openKey(wrapped, at: EnvelopeLocation(slot: .subjectKey, recordID: subject.rawValue),
                                       under: keyEncryptionKey, storeID: storeID)
        } catch {
            throw .unreadableKey("the key of subject \(subject)", error)
        }
        let handle = KeyHandle(cipher: try storeErrors { try AES256GCM(key: key) }, version: version, identifier: identifier)
        cache.withLock { $0.insert(handle, for: reference) }
        return handle
    }

    /// Destroys every version of `subject`'s key (crypto-shredding) and, with `tombstone`, records the
    /// erasure. Then truncates the key database's WAL so no copy of the wrapped key stays in it
    /// (`secure_delete` has already overwritten the row in the page).
    /// Related SQLite documentation: <https://www.sqlite.org/pragma.html#pragma_wal_checkpoint>
    func destroySubjectKeys(of subject: SubjectID, tombstone: Bool) throws {
        try database.withLock { connection in
            try connection.transaction {
                try connection.run("DELETE FROM subject_keys WHERE subject_id = ?", [.integer(subject.rawValue)])
                if tombstone {
                    try connection.run("INSERT OR IGNORE INTO erased_subjects (subject_id, erased_at) VALUES (?, ?)",
                                       [.integer(subject.rawValue), .integer(Int64(Date().timeIntervalSince1970 * 1000))])
                }
            }
            try connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        }
        cache.withLock { $0.remove(subject: subject) }
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

    /// Saves the audit chain head unless a newer one is already saved (another process may share the
    /// log); false when the key database could not take it now.
    func saveAuditHead(_ head: AuditHead) -> Bool {
        guard let code = try? head.authenticationCode(auditMAC) else { return false }
        return (try? database.withLock { connection in
            try connection.run("""
                INSERT INTO audit_head (id, sequence, entry_mac, time, head_mac) VALUES (1, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET sequence = excluded.sequence, entry_mac = excluded.entry_mac,
                    time = excluded.time, head_mac = excluded.head_mac
                WHERE excluded.sequence > audit_head.sequence
                """, [.integer(Int64(head.sequence)), .blob(head.entryMAC), .integer(head.microseconds), .blob(code)])
        }) != nil
    }
}
