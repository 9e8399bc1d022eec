import Foundation
import StrongroomCrypto
import StrongroomStorage

/// The key-encryption key's rotation: a new KEK version, made current at once (new keys are wrapped
/// under it from then on), then every subject, index and audit key re-wrapped under it in batches (each
/// committed with the walk's position in one key-database transaction), then the old KEK destroyed.
/// Cost grows with the number of subjects, not with the data.
struct KeyEncryptionKeyRotation {
    let store: Store
    let context: AccessContext
    private var keyring: Keyring { store.keyring }

    /// Runs the rotation, or resumes the one in progress, `batchSize` subject keys to a batch.
    func run(batchSize: Int, progress: (Int, Int) -> Void) throws(StoreError) -> RotationReport {
        try keyring.reserve(keyring.keys.master.usage, count: 1)
        // The oldest KEK is the one rotated from: only the current one exists when no rotation is in progress.
        let from = try keyring.database.read { (tables) throws(DatabaseError) in try tables.kekVersionRange()?.oldest }
            ?? keyring.keys.currentVersion
        var walk = try RotationWalk.begin(.kek, of: store, context: context) { (tables) throws(StoreError) in
            let target: UInt32
            do throws(DatabaseError) { target = (try tables.kekVersionRange()?.newest ?? 0) + 1 } catch { throw .database(error) }
            _ = try Keyring.insertKEK(version: target, current: false, under: keyring.keys.master, storeID: keyring.storeID, in: tables)
            do throws(DatabaseError) {
                try tables.makeKEKCurrent(target)
                return (target, try tables.subjectKeyCount())
            } catch { throw .database(error) }
        }
        let target = walk.targetVersion
        try keyring.reload()
        try walk.announce(", version \(from) -> \(target)")
        try rewrapSharedKeys(to: target)
        // The subject keys in primary-key order, from the committed cursor: each batch starts where the
        // last ended instead of passing over the keys already done (that made the rotation quadratic).
        // A key another process wrote under the old KEK behind the cursor (it had not yet seen the new
        // one) is found by one more pass from the start once the walk is through.
        try walk.run(positionCommittedByBatch: true, sweepingAgain: true, progress: progress) { cursor, done, batch throws(StoreError) in
            try rewrapSubjectKeys(after: cursor, done: done, to: target, limit: batchSize, batch: batch)
        }
        let ended = try walk.finish("version \(target) current, \(walk.done) subject keys re-wrapped, old KEK destroyed") { (tables) throws(DatabaseError) in
            // A key another process wrapped under the old KEK meanwhile keeps it alive until the next run.
            guard try tables.subjectKeysLeftBehind(notUnder: target) == 0 else { return false }
            try tables.deleteKEKs(except: target)
            return true
        }
        _ = try keyring.database.read { (tables) throws(DatabaseError) in try tables.discardDeletedContent() }
        guard ended else { throw .keyEncryptionKeyRotationOvertaken }
        try keyring.reload()
        return RotationReport(kind: .kek, fromVersion: Int(from), toVersion: Int(target), items: walk.done, resumed: walk.resumed)
    }

    /// Re-wraps the few shared keys (index and audit keys) under KEK `target`, in one transaction.
    private func rewrapSharedKeys(to target: UInt32) throws(StoreError) {
        let few = try keyring.database.read { (tables) throws(DatabaseError) in try tables.sharedKeys(notUnder: target).count }
        try keyring.reserve(try keyring.kek(target).usage, count: few)
        try keyring.database.transaction { (tables) throws(StoreError) in
            // Both tables are keyed by version within their field ("phones" for index keys).
            let keys: [WrappedSharedKey]
            do throws(DatabaseError) { keys = try tables.sharedKeys(notUnder: target) } catch { throw .database(error) }
            for key in keys {
                let slot: EnvelopeSlot = key.table == .indexKeys ? .indexKey : .auditKey
                let rewrapped = try rewrap(key.wrapped, at: EnvelopeLocation(slot: slot, recordID: key.version),
                                           from: key.kekVersion, to: target)
                do throws(DatabaseError) { try tables.rewrapSharedKey(key, wrapped: rewrapped, kekVersion: target) } catch { throw .database(error) }
            }
        }
    }

    /// Re-wraps under KEK `target` up to `limit` subject keys after subject `cursor`, committing the
    /// walk's new position (`done` before) in the same transaction; nil when none are left.
    private func rewrapSubjectKeys(after cursor: Int64, done: Int, to target: UInt32, limit: Int,
                                   batch: Int) throws(StoreError) -> RotationWalk.Batch? {
        try keyring.database.transaction { (tables) throws(StoreError) -> RotationWalk.Batch? in
            let rows: [(subject: Int64, version: Int64, kekVersion: UInt32, wrapped: [UInt8])]
            do throws(DatabaseError) { rows = try tables.subjectKeysToRewrap(after: cursor, notUnder: target, limit: limit) } catch { throw .database(error) }
            guard let last = rows.last?.subject else { return nil }
            // Reserved in this transaction: if it rolls back, no key sealed under it is stored.
            if let usage = try keyring.kek(target).usage { try tables.reserve(usage, count: rows.count) }
            let rewrapped = try rows.map { (row) throws(StoreError) in
                (row.subject, row.version, try rewrap(row.wrapped, at: EnvelopeLocation(slot: .subjectKey, recordID: row.subject),
                                                      from: row.kekVersion, to: target))
            }
            do throws(DatabaseError) {
                try tables.rewrapSubjectKeys(rewrapped, kekVersion: target)
                try tables.advanceRotation(.kek, cursor: last, done: done + rows.count)
            } catch { throw .database(error) }
            try store.injectFault("rotate-kek.in-batch", batch)
            return RotationWalk.Batch(last: last, count: rows.count)
        }
    }

    /// A wrapped key opened under KEK `from` and sealed again under KEK `to`.
    private func rewrap(_ wrapped: [UInt8], at location: EnvelopeLocation, from: UInt32, to: UInt32) throws(StoreError) -> [UInt8] {
        let (old, new) = (try keyring.kek(from), try keyring.kek(to))
        let key: SecretKey
        do throws(EnvelopeError) {
            key = try Envelope.openKey(wrapped, at: location, under: old, storeID: keyring.storeID)
        } catch { throw .unreadableKey("a key wrapped under KEK version \(from)", error) }
        return try Envelope.seal(key: key, at: location, under: new, storeID: keyring.storeID)
    }
}

extension Store {
    /// Rotates the key-encryption key: a new KEK version, then every subject, index and audit key
    /// re-wrapped under it in batches (each committed with its progress), then the old KEK destroyed.
    /// Cost grows with the number of subjects, not with the data. Resumes an interrupted rotation.
    public func rotateKeyEncryptionKey(batchSize: Int = 1000, context: AccessContext,
                                       progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RotationReport {
        try KeyEncryptionKeyRotation(store: self, context: context).run(batchSize: batchSize, progress: progress)
    }

    /// Seals erasures against backups of the key database: rotates the KEK (every key re-wrapped, the
    /// old KEK destroyed), then the master key. Afterwards no key-database backup older than the seal
    /// yields an erased subject's key with today's master key: the backup's KEK is wrapped under a
    /// master key that is no longer used, and today's KEK never wrapped the erased key. Each step is
    /// crash-safe; running it again after an interruption finishes it. Destroy the old master key.
    public func sealErasures(newMaster: SecretKey, context: AccessContext,
                             progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RotationReport {
        let kek = try rotateKeyEncryptionKey(context: context, progress: progress)
        let master = try rotateMasterKey(to: newMaster, context: context)
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "seal-erasures: KEK version \(kek.toVersion), master generation \(master.toVersion); older key-database backups no longer open")])
        return RotationReport(kind: .sealErasures, fromVersion: master.fromVersion, toVersion: master.toVersion,
                              items: kek.items, resumed: kek.resumed)
    }
}
