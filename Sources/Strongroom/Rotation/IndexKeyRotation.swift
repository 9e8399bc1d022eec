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
            let subjects = try stageIndexRows(under: building, after: cursor, limit: batchSize, batch: batch, context: rotation)
            if let last = subjects.last { try reindexEmails(after: cursor, through: last, into: target, batchSize: batchSize, context: rotation) }
            return subjects.last.map { ($0, subjects.count) }
        }
        // Lookups still answer from the old version alone: the new one's rows go in now, in one
        // transaction, so a rotation stopped before or during the copy copies again when resumed.
        try copyStagedIndexRows(into: building)
        // Switch: the new version answers alone; then the old rows and key go. The rotation stays in
        // progress until they are gone, so a run stopped in between is finished by the next (the switch
        // is idempotent).
        try storeErrors {
            try keyring.database.transaction { try $0.activateIndexKey(target) }
        }
        try storeErrors { try faultInjection?("rotate-index.switch", batches) }
        try storeErrors { try keyring.reload() }
        let leftBehind = try reindexLeftBehind(into: building, batchSize: batchSize, context: rotation)
        try finishEmailIndexRotation(into: target, context: rotation)
        try storeErrors {
            try keyring.database.transaction { tables in
                try tables.deleteRetiredIndexKeys()
                try tables.finishRotation(.index)
            }
            _ = try keyring.database.read { try $0.discardDeletedContent() }
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

    /// Stages under `index` the blind-index rows of the `limit` subjects after `cursor` (their numbers
    /// decrypted through the audited path): the walk's one step per batch. The rows are appended to
    /// `phone_index_building`, not written into `phone_index`, where they would land at random places
    /// of the growing new version (see `Schema.stagedIndexRows`); `copyStagedIndexRows` moves them
    /// once the walk is through. Each row carries its subject's `updated_at` as read, so a subject
    /// changed meanwhile is not copied: no retry here. Returns the subjects read.
    private func stageIndexRows(under index: PhoneBlindIndex, after cursor: Int64, limit: Int, batch: Int,
                                context: AccessContext) throws(StoreError) -> [SubjectID] {
        let rows = try storeErrors {
            try data.withLock { connection in
                try connection.rows("SELECT \(Store.summaryColumns), phones_ct FROM subjects WHERE id > ? ORDER BY id LIMIT ?",
                                    [.integer(cursor), .int(limit)]) { Store.encryptedSubject(from: $0, fields: [.phones]) }
            }
        }
        guard let first = rows.first, let last = rows.last else { return [] }
        let phones = try decrypt(rows, fields: [.phones], context: context).personal
        var values: [SQLValue] = []
        for (row, personal) in zip(rows, phones) {
            let id = row.summary.id, updatedAt = SQLValue.integer(Store.milliseconds(row.summary.updatedAt))
            for entry in try storeErrors({
                try blindIndexEntries(personal.phones ?? [], of: id, normalizer: phoneNormalizer, into: [index]).entries
            }) {
                values += [.integer(id.rawValue), updatedAt, .integer(entry.tag), .blob(entry.check)]
            }
        }
        try storeErrors {
            try data.withLock { connection in
                try connection.transaction {
                    try connection.run(RotationStatements.dropStagedIndexRows, [.integer(first.summary.id.rawValue),
                                                                                .integer(last.summary.id.rawValue)])
                    try connection.runInRows(values, valuesPerRow: 4, statement: RotationStatements.stageIndexRows)
                    try faultInjection?("rotate-index.in-batch", batch)
                }
            }
        }
        return rows.map(\.summary.id)
    }

    /// Copies the staged rows into `phone_index` as rows of `index`, but those of subjects changed
    /// since they were staged, and drops them, in one transaction. A subject changed meanwhile was
    /// indexed by its writer, or is left behind with old rows only and indexed by `reindexLeftBehind`.
    private func copyStagedIndexRows(into index: PhoneBlindIndex) throws(StoreError) {
        try storeErrors {
            try data.withLock { connection in
                try connection.transaction {
                    try connection.run(RotationStatements.dropStagedRowsOfIndexedSubjects, [.int(Int(index.version))])
                    try withTagIndexRebuilt(on: connection) {
                        try connection.run(RotationStatements.copyStagedIndexRows, [.int(Int(index.version))])
                    }
                    try connection.run(RotationStatements.dropAllStagedIndexRows, [])
                }
            }
        }
    }

    /// Runs `change`, a bulk change of the blind index, with `phone_index_by_tag` dropped before and
    /// built again after where the backend chooses to (`StoreBackend.rebuildsTagIndexForBulkChanges`).
    /// Inside the caller's transaction.
    private func withTagIndexRebuilt(on connection: any Database, _ change: () throws -> Void) throws {
        let rebuilds = type(of: backend).rebuildsTagIndexForBulkChanges
        if rebuilds { try connection.run(RotationStatements.dropTagIndex, []) }
        try change()
        if rebuilds { try connection.run(Schema.phoneIndexByTag, []) }
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
                                        [.int(target), .int(batchSize + leftBehind.count)], skipping: leftBehind)
            guard !reindexed.isEmpty else { return leftBehind.count }
            leftBehind.formUnion(reindexed)
        }
    }

    /// Indexes under `index`, straight into `phone_index`, the phone numbers of the subjects the query
    /// `select` reads (their `summaryColumns` and `phones_ct`), but for those in `skipping`; when that
    /// leaves none, the other versions' rows are dropped in the same transaction (the index holds
    /// `index` alone from then on). For the few subjects left behind by the walk. Numbers are
    /// decrypted outside the transaction that writes the index rows, so a subject changed meanwhile
    /// (its `updated_at` moved) makes the batch roll back and run again, at most five times; one
    /// deleted meanwhile is skipped. Returns the subjects indexed.
    private func reindex(into index: PhoneBlindIndex, batch: Int, context: AccessContext, select: String, _ values: [SQLValue],
                         skipping: Set<SubjectID>) throws(StoreError) -> [SubjectID] {
        var attempt = 0
        while true {
            let rows = try storeErrors {
                try data.withLock { connection in
                    func read() throws -> [EncryptedSubject] {
                        try connection.rows(select, values) { Store.encryptedSubject(from: $0, fields: [.phones]) }
                            .filter { !skipping.contains($0.summary.id) }
                    }
                    return try connection.transaction {
                        let rows = try read()
                        if rows.isEmpty {
                            try withTagIndexRebuilt(on: connection) {
                                try connection.run(RotationStatements.dropOldIndexRows, [.int(Int(index.version))])
                            }
                        }
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
                            for (row, personal) in zip(rows, phones) {
                                let id = row.summary.id.rawValue
                                guard let updated = try connection.firstRow(RotationStatements.subjectUpdatedAt, [.integer(id)], { $0.int64(0) })
                                else { continue }
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

extension Store {
    /// The e-mail index's part of the walk: indexes under version `target` the addresses of the subjects
    /// the phone walk's batch covered (ids in (`after`, `through`]), so both indexes are rebuilt by the
    /// same resumable walk.
    private func reindexEmails(after: Int64, through: SubjectID, into target: UInt32, batchSize: Int,
                               context: AccessContext) throws(StoreError) {
        guard let building = keyring.keys.emailIndexes.first(where: { $0.version == target }) else {
            throw .unreadableKey("the new e-mail index key", .keyVersionUnavailable(target))
        }
        try indexEmailsOfSubjects(EmailIndexStatements.subjectsWithAddresses, [.integer(after), .integer(through.rawValue), .int(batchSize)],
                                  into: [building], context: context)
    }

    /// After the switch: indexes under `target` the addresses of subjects written meanwhile under the old
    /// version only, then drops the old versions' rows.
    private func finishEmailIndexRotation(into target: UInt32, context: AccessContext) throws(StoreError) {
        guard let active = keyring.keys.emailIndexes.first(where: { $0.version == target }) else {
            throw .unreadableKey("the new e-mail index key", .keyVersionUnavailable(target))
        }
        try indexEmailsOfSubjects(EmailIndexStatements.leftBehind, [.int(Int(target))], into: [active], context: context)
        try storeErrors { try data.withLock { try $0.run(EmailIndexStatements.dropOldVersions, [.int(Int(target))]) } }
    }
}
