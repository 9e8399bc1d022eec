import Foundation
import StrongroomCrypto
import StrongroomStorage

extension Store {
    /// Rotates the phone blind-index key: a new index version (with `bits`, default the current length)
    /// is built beside the old one from every subject's numbers (decrypted through the audited path,
    /// purpose `key-rotation`); lookups answer from both until the switch; then the old index rows and
    /// key are dropped. Resumes an interrupted rotation.
    public func rotateIndexKey(bits: Int? = nil, batchSize: Int = 500, context: AccessContext,
                               progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RotationReport {
        if let bits, !(8...32).contains(bits) { throw .blindIndexBitsOutOfRange(bits: bits, supported: 8...32) }
        let from = keyring.phoneIndex
        try storeErrors { try keyring.reserve(keyring.keyEncryptionKey.usage, count: 1) }
        let (target, resumed) = try beginIndexRotation(bits: bits, from: from)
        let total = try count()
        try storeErrors { try keyring.database.read { try $0.setRotationTotal(.index, total) } }
        try storeErrors { try keyring.reload() }
        guard let building = keyring.keys.phoneIndexes.first(where: { $0.version == target }) else {
            throw .unreadableKey("the new phone index key", .keyVersionUnavailable(target))
        }
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "rotate-index: \(resumed ? "resumed" : "started"), version \(from.version) -> \(target), \(building.bits) bits")])
        let rotation = AccessContext(actor: context.actor, purpose: .keyRotation, clientAddress: context.clientAddress)
        var walk = try beginWalk(.index, targetVersion: target)
        let batches = try run(&walk, progress: progress) { (cursor, batch) throws(StoreError) in
            let subjects = try reindex(into: building, batch: batch, context: rotation,
                                       select: "SELECT \(Store.summaryColumns), phones_ct FROM subjects WHERE id > ? ORDER BY id LIMIT ?",
                                       [.integer(cursor), .int(batchSize)])
            return subjects.last.map { ($0, subjects.count) }
        }
        // Switch: the new version answers alone; then the old rows and key go. The rotation stays in
        // progress until they are gone, so a run stopped in between is finished by the next (the switch
        // is idempotent).
        try storeErrors {
            try keyring.database.transaction { try $0.activateIndexKey(target) }
        }
        try storeErrors { try faultInjection?("rotate-index.switch", batches) }
        try storeErrors { try keyring.reload() }
        let leftBehind = try reindexLeftBehind(into: building, batchSize: batchSize, context: rotation)
        try storeErrors {
            try keyring.database.transaction { tables in
                try tables.deleteRetiredIndexKeys()
                try tables.finishRotation(.index)
            }
            try keyring.database.read { try $0.discardDeletedContent() }
        }
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "rotate-index: finished, version \(target) active with \(building.bits) bits, \(walk.done + leftBehind) subjects re-indexed, old index dropped")])
        return RotationReport(kind: .index, fromVersion: Int(from.version), toVersion: Int(target), items: walk.done, resumed: resumed)
    }

    /// Finds the index rotation in progress, or starts one: a new index key (with `bits`, else those of
    /// `from`) in state "building", and the rotation's row. Returns the version being built.
    private func beginIndexRotation(bits: Int?, from: PhoneBlindIndex) throws(StoreError) -> (target: UInt32, resumed: Bool) {
        try storeErrors {
            try keyring.database.transaction { tables in
                if let rotation = try tables.rotation(.index) { return (rotation.targetVersion, true) }
                let target = try tables.newestIndexKeyVersion() + 1
                let planned = try tables.plannedPopulation(ofIndexVersion: nil)
                let chosen = bits ?? from.bits
                // Re-planning with more bits plans for the population those bits suit (CipherSweet's rule).
                let population = bits == nil ? planned : 2 << chosen
                try Keyring.insertIndexKey(version: target, bits: chosen, plannedPopulation: population, state: "building",
                                           under: keyring.keyEncryptionKey, storeID: keyring.storeID, in: tables)
                try tables.startRotation(.index, targetVersion: target, total: 0, startedAt: Store.milliseconds(Date()))
                return (target, false)
            }
        }
    }

    /// Indexes under `building` the subjects left behind, then drops the old index rows; returns how
    /// many were re-indexed. Another process that had not yet seen the new key when it wrote (its
    /// transaction began before the key existed) indexed its subjects under the old key only: those are
    /// indexed under the new key before the old rows go, in the transaction that drops them. Writers
    /// after the switch see it inside their own transactions (`write`, `update`). A subject tried once is
    /// not tried again: its numbers do not normalise in the store's region (written with another
    /// region), as in the walk.
    private func reindexLeftBehind(into building: PhoneBlindIndex, batchSize: Int,
                                   context: AccessContext) throws(StoreError) -> Int {
        let target = Int(building.version)
        var leftBehind = Set<SubjectID>()
        while true {
            let reindexed = try reindex(into: building, batch: 0, context: context, select: RotationStatements.subjectsLeftBehind,
                                        [.int(target), .int(batchSize + leftBehind.count)], skipping: leftBehind,
                                        whenNone: (RotationStatements.dropOldIndexRows, [.int(target)]))
            guard !reindexed.isEmpty else { return leftBehind.count }
            leftBehind.formUnion(reindexed)
        }
    }

    /// Indexes under `index` the phone numbers of the subjects the query `select` reads (their
    /// `summaryColumns` and `phones_ct`), but for those in `skipping`; when that leaves none, `whenNone`
    /// runs in the same transaction. Numbers are decrypted outside the transaction that writes the index
    /// rows, so a subject changed meanwhile (its `updated_at` moved) makes the batch roll back and run
    /// again, at most five times; one deleted meanwhile is skipped. Returns the subjects indexed.
    private func reindex(into index: PhoneBlindIndex, batch: Int, context: AccessContext, select: String, _ values: [SQLValue],
                         skipping: Set<SubjectID> = [], whenNone: (sql: String, values: [SQLValue])? = nil) throws(StoreError) -> [SubjectID] {
        var attempt = 0
        while true {
            let rows = try storeErrors {
                try data.withLock { connection in
                    func read() throws -> [EncryptedSubject] {
                        try connection.rows(select, values) { Store.encryptedSubject(from: $0, fields: [.phones]) }
                            .filter { !skipping.contains($0.summary.id) }
                    }
                    guard let whenNone else { return try read() }
                    return try connection.transaction {
                        let rows = try read()
                        if rows.isEmpty { try connection.run(whenNone.sql, whenNone.values) }
                        return rows
                    }
                }
            }
            guard !rows.isEmpty else { return [] }
            let phones = try decrypt(rows, fields: [.phones], context: context).personal
            do {
                try storeErrors {
                    try data.withLock { connection in
                        try connection.transaction {
                            // One read for the batch (rows come in id order): each subject's updated_at now. For the
                            // walk the range holds exactly the batch; for the catch-up, the few subjects left behind.
                            let updatedAt = Dictionary(uniqueKeysWithValues: try connection.rows(
                                "SELECT id, updated_at FROM subjects WHERE id BETWEEN ? AND ?",
                                [.integer(rows[0].summary.id.rawValue), .integer(rows[rows.count - 1].summary.id.rawValue)]) {
                                    ($0.int64(0), $0.int64(1))
                                })
                            for (row, personal) in zip(rows, phones) {
                                let id = row.summary.id.rawValue
                                guard let updated = updatedAt[id] else { continue }
                                guard updated == Store.milliseconds(row.summary.updatedAt) else { throw StoreError.concurrentChange(row.summary.id) }
                                try connection.run(RotationStatements.dropSubjectIndexRows, [.integer(id), .int(Int(index.version))])
                                _ = try self.index(personal.phones ?? [], of: row.summary.id, normalizer: phoneNormalizer,
                                                   in: connection, into: [index])
                            }
                            try faultInjection?("rotate-index.in-batch", batch)
                        }
                    }
                }
                return rows.map(\.summary.id)
            } catch .concurrentChange where attempt < 5 {
                attempt += 1
            }
        }
    }
}
