import Foundation
import StrongroomCrypto
import StrongroomStorage

extension Store {
    /// Rotates the key-encryption key: a new KEK version, then every subject, index and audit key
    /// re-wrapped under it in batches (each committed with its progress), then the old KEK destroyed.
    /// Cost grows with the number of subjects, not with the data. Resumes an interrupted rotation.
    public func rotateKeyEncryptionKey(batchSize: Int = 1000, context: AccessContext,
                                       progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RotationReport {
        try storeErrors { try keyring.reserve(keyring.keys.master.usage, count: 1) }
        let start = try beginKEKRotation()
        try storeErrors { try keyring.reload() }
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "rotate-kek: \(start.resumed ? "resumed" : "started"), version \(start.from) -> \(start.target)")])
        let total = try rotationTotal(.kek)
        try rewrapSharedKeys(to: start.target)
        // The subject keys in primary-key order, from the committed cursor: each batch starts where the
        // last ended instead of passing over the keys already done (that made the rotation quadratic).
        // A key another process wrote under the old KEK behind the cursor (it had not yet seen the new
        // one) is found by one more pass from the start once the walk is through.
        var (position, done, batches, sweptFromStart) = (start.cursor, start.done, 0, false)
        while true {
            let (count, last) = try rewrapSubjectKeys(after: position, to: start.target, limit: batchSize, batch: batches + 1)
            position = last
            guard count > 0 || !sweptFromStart else {
                (position, sweptFromStart) = (0, true)
                continue
            }
            guard count > 0 else { break }
            done += count
            batches += 1
            progress(done, total)
            try storeErrors { try faultInjection?("rotate-kek.batch", batches) }
        }
        try finishKEKRotation(at: start.target)
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "rotate-kek: finished, version \(start.target) current, \(done) subject keys re-wrapped, old KEK destroyed")])
        return RotationReport(kind: .kek, fromVersion: Int(start.from), toVersion: Int(start.target), items: done, resumed: start.resumed)
    }

    /// Finds the KEK rotation in progress, or starts one: a new KEK version, made current at once (new
    /// keys are wrapped under it from now on), and the rotation's row.
    private func beginKEKRotation() throws(StoreError) -> (target: UInt32, from: UInt32, resumed: Bool, done: Int, cursor: Int64) {
        try storeErrors {
            try keyring.database.transaction { tables in
                if let rotation = try tables.rotation(.kek) {
                    let from = try tables.kekVersionRange()?.oldest ?? rotation.targetVersion
                    return (rotation.targetVersion, from, true, rotation.done, rotation.cursor)
                }
                let from = keyring.keys.currentVersion
                let target = (try tables.kekVersionRange()?.newest ?? 0) + 1
                _ = try Keyring.insertKEK(version: target, current: false, under: keyring.keys.master,
                                          storeID: keyring.storeID, in: tables)
                try tables.makeKEKCurrent(target)
                try tables.startRotation(.kek, targetVersion: target, total: try tables.subjectKeyCount(),
                                         startedAt: Store.milliseconds(Date()))
                return (target, from, false, 0, 0)
            }
        }
    }

    /// Re-wraps the few shared keys (index and audit keys) under KEK `target`, in one transaction.
    private func rewrapSharedKeys(to target: UInt32) throws(StoreError) {
        try storeErrors {
            let few = try keyring.database.read { try $0.sharedKeys(notUnder: target).count }
            try keyring.reserve(try keyring.kek(target).usage, count: few)
            try keyring.database.transaction { tables in
                // Both tables are keyed by version within their field ("phones" for index keys).
                for key in try tables.sharedKeys(notUnder: target) {
                    let slot: EnvelopeSlot = key.table == .indexKeys ? .indexKey : .auditKey
                    let rewrapped = try rewrap(key.wrapped, at: EnvelopeLocation(slot: slot, recordID: key.version),
                                               from: key.kekVersion, to: target)
                    try tables.rewrapSharedKey(key, wrapped: rewrapped, kekVersion: target)
                }
            }
        }
    }

    /// Re-wraps under KEK `target` up to `limit` subject keys after subject `cursor`, committing the
    /// rotation's new cursor in the same transaction; returns how many and the new cursor.
    private func rewrapSubjectKeys(after cursor: Int64, to target: UInt32, limit: Int,
                                   batch: Int) throws(StoreError) -> (count: Int, cursor: Int64) {
        try storeErrors {
            try keyring.database.transaction { tables in
                let rows = try tables.subjectKeysToRewrap(after: cursor, notUnder: target, limit: limit)
                // Reserved in this transaction: if it rolls back, no key sealed under it is stored.
                if let usage = try keyring.kek(target).usage { try tables.reserve(usage, count: rows.count) }
                try tables.rewrapSubjectKeys(try rows.map { row in
                    (row.subject, row.version, try rewrap(row.wrapped, at: EnvelopeLocation(slot: .subjectKey, recordID: row.subject),
                                                          from: row.kekVersion, to: target))
                }, kekVersion: target)
                let last = rows.last?.subject ?? cursor
                try tables.advanceKEKRotation(by: rows.count, cursor: last)
                try faultInjection?("rotate-kek.in-batch", batch)
                return (rows.count, last)
            }
        }
    }

    /// Destroys the old KEKs and ends the rotation, in one transaction, so a key another process
    /// wrapped under the old KEK meanwhile keeps it alive until the next run (which this asks for).
    private func finishKEKRotation(at target: UInt32) throws(StoreError) {
        let finished: Bool = try storeErrors {
            let finished = try keyring.database.transaction { tables in
                guard try tables.subjectKeysLeftBehind(notUnder: target) == 0 else { return false }
                try tables.deleteKEKs(except: target)
                try tables.finishRotation(.kek)
                return true
            }
            _ = try keyring.database.read { try $0.discardDeletedContent() }
            return finished
        }
        guard finished else { throw .keyEncryptionKeyRotationOvertaken }
        try storeErrors { try keyring.reload() }
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

    /// A wrapped key opened under KEK `from` and sealed again under KEK `to`.
    private func rewrap(_ wrapped: [UInt8], at location: EnvelopeLocation, from: UInt32, to: UInt32) throws -> [UInt8] {
        let key = try Envelope.openKey(wrapped, at: location, under: try keyring.kek(from), storeID: keyring.storeID)
        return try Envelope.seal(key: key, at: location, under: try keyring.kek(to), storeID: keyring.storeID)
    }
}
