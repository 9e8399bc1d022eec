import Foundation
import StrongroomCrypto
import StrongroomStorage

/// The blind-index key's rotation: a new index version (with `bits`, default the current length) of
/// the phone and e-mail indexes built beside the old one from every subject's numbers and addresses
/// (decrypted together through the audited path, purpose `key-rotation`) by one walk; lookups answer
/// from both versions until the switch; then the old index rows and key are dropped.
struct IndexKeyRotation {
    let store: Store
    let context: AccessContext
    private var keyring: Keyring { store.keyring }

    /// Runs the rotation, or resumes the one in progress, `batchSize` subjects to a batch: a bulk write
    /// (`Store.bulkWriting`; on SQLite a larger page cache), since it appends a
    /// row per number and address to the staging tables, copies them all into both indexes and drops
    /// every old row.
    func run(bits: Int?, batchSize: Int, progress: (Int, Int) -> Void) throws(StoreError) -> RotationReport {
        try store.bulkWriting { () throws(StoreError) in try rotate(bits: bits, batchSize: batchSize, progress: progress) }
    }

    private func rotate(bits: Int?, batchSize: Int, progress: (Int, Int) -> Void) throws(StoreError) -> RotationReport {
        if let bits, !(8...32).contains(bits) { throw .blindIndexBitsOutOfRange(bits: bits, supported: 8...32) }
        let from = keyring.phoneIndex
        try keyring.reserve(keyring.keyEncryptionKey.usage, count: 1)
        let total = try store.count()
        var walk = try RotationWalk.begin(.index, of: store, context: context) { (tables) throws(StoreError) in
            (try newIndexKey(bits: bits, from: from, in: tables), total)
        }
        let target = walk.targetVersion
        try keyring.reload()
        guard let building = keyring.keys.phoneIndexes.first(where: { $0.version == target }) else {
            throw .unreadableKey("the new phone index key", .keyVersionUnavailable(target))
        }
        guard let buildingEmails = keyring.keys.emailIndexes.first(where: { $0.version == target }) else {
            throw .unreadableKey("the new e-mail index key", .keyVersionUnavailable(target))
        }
        try walk.announce(", version \(from.version) -> \(target), \(building.bits) bits")
        try walk.run(progress: progress) { cursor, _, batch throws(StoreError) in
            let subjects = try stageIndexRows(under: building, buildingEmails, after: cursor, limit: batchSize, batch: batch)
            guard let last = subjects.last else { return nil }
            return RotationWalk.Batch(last: last.rawValue, count: subjects.count)
        }
        // Lookups still answer from the old version alone: the new one's rows go in now, in one
        // transaction, so a rotation stopped before or during the copy copies again when resumed.
        try copyStagedIndexRows(into: target)
        // Switch: the new version answers alone; then the old rows and key go. The rotation stays in
        // progress until they are gone, so a run stopped in between is finished by the next (the switch
        // is idempotent).
        try keyring.database.transaction { (tables) throws(DatabaseError) in try tables.activateIndexKey(target) }
        try store.injectFault("rotate-index.switch", walk.batches)
        try keyring.reload()
        let leftBehind = try reindexLeftBehind(into: building, batchSize: batchSize)
        try finishEmailIndexRotation(into: target)
        try walk.finish("version \(target) active with \(building.bits) bits, \(walk.done + leftBehind) subjects re-indexed, old index dropped") { (tables) throws(DatabaseError) in
            try tables.deleteRetiredIndexKeys()
            return true
        }
        _ = try keyring.database.read { (tables) throws(DatabaseError) in try tables.discardDeletedContent() }
        return RotationReport(kind: .index, fromVersion: Int(from.version), toVersion: Int(target), items: walk.done, resumed: walk.resumed)
    }

    /// A new index key in state "building" (with `bits`, else those of `from`), for a new rotation;
    /// returns its version.
    private func newIndexKey(bits: Int?, from: PhoneBlindIndex, in tables: KeyTables) throws(StoreError) -> UInt32 {
        let target: UInt32, planned: Int
        do throws(DatabaseError) {
            (target, planned) = (try tables.newestIndexKeyVersion() + 1, try tables.plannedPopulation(ofIndexVersion: nil))
        } catch { throw .database(error) }
        let chosen = bits ?? from.bits
        // Re-planning with more bits plans for the population those bits suit (CipherSweet's rule).
        let population = bits == nil ? planned : 2 << chosen
        try Keyring.insertIndexKey(version: target, bits: chosen, plannedPopulation: population, state: "building",
                                   under: keyring.keyEncryptionKey, storeID: keyring.storeID, in: tables)
        return target
    }

    /// Stages under `index` and `emailIndex` the blind-index rows of the `limit` subjects after
    /// `cursor` (their numbers and addresses decrypted through the audited path, one entry per
    /// subject): the walk's one step per batch. The rows are appended to `phone_index_building` and
    /// `email_index_building`, not written into the indexes, where they would land at random places of
    /// the growing new version (see `Schema.stagedIndexRows`); `copyStagedIndexRows` moves them once the
    /// walk is through. Each row carries its subject's `updated_at` as read, so a subject changed
    /// meanwhile is not copied: no retry here. A subject erased since it was read has no rows staged
    /// (its transaction finds it gone, and no erasure runs until it commits): nothing of it is left in
    /// the staging tables, whose rows name no missing subject (on PostgreSQL no foreign key checks that:
    /// `PostgresSchema.blindIndexRowsGoWithTheirSubjects`). Returns the subjects read.
    private func stageIndexRows(under index: PhoneBlindIndex, _ emailIndex: EmailBlindIndex, after cursor: Int64, limit: Int,
                                batch: Int) throws(StoreError) -> [SubjectID] {
        let rows = try store.withData { (connection) throws(DatabaseError) in
            try connection.rows("SELECT \(Store.summaryColumns), phones_ct, emails_ct FROM subjects WHERE id > ? ORDER BY id LIMIT ?",
                                [.integer(cursor), .int(limit)]) { Store.encryptedSubject(from: $0, fields: [.phones, .emails]) }
        }
        guard let first = rows.first, let last = rows.last else { return [] }
        try keyring.cacheSubjectKeys(Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0.keyVersion) }))
        let personal = try store.decrypt(rows, fields: [.phones, .emails], context: context.forKeyRotation).personal
        try store.injectFault("rotate-index.decrypted", batch)
        var phoneValues: [(id: SubjectID, values: [SQLValue])] = [], emailValues: [(id: SubjectID, values: [SQLValue])] = []
        for (row, opened) in zip(rows, personal) {
            let id = row.summary.id, updatedAt = SQLValue.integer(Store.milliseconds(row.summary.updatedAt))
            let staged = { (entry: BlindIndexEntry) -> [SQLValue] in [.integer(id.rawValue), updatedAt, .integer(entry.tag), .blob(entry.check)] }
            do throws(CryptoError) {
                phoneValues.append((id, try store.blindIndexEntries(opened.phones ?? [], of: id, normalizer: store.phoneNormalizer, into: [index])
                    .entries.flatMap(staged)))
                emailValues.append((id, try store.emailIndexEntries(opened.emails ?? [], of: id, into: [emailIndex]).flatMap(staged)))
            } catch {
                throw .crypto(error)
            }
        }
        try store.withDataTransaction { (connection) throws(StoreError) in
            do throws(DatabaseError) {
                let range: [SQLValue] = [.integer(first.summary.id.rawValue), .integer(last.summary.id.rawValue)]
                let present = Set(try connection.rows(RotationStatements.subjectKeyVersions, range) { SubjectID(rawValue: $0.int64(0)) })
                for (staging, values) in [(IndexStaging.phones, phoneValues), (.emails, emailValues)] {
                    try connection.run(staging.dropStagedRows, range)
                    try connection.runInRows(values.filter { present.contains($0.id) }.flatMap(\.values), valuesPerRow: 4, statement: staging.stageRows)
                }
            } catch { throw .database(error) }
            try store.injectFault("rotate-index.in-batch", batch)
        }
        return rows.map(\.summary.id)
    }

    /// Copies the staged rows of both indexes into `phone_index` and `email_index` as rows of index
    /// version `target`, but those of subjects changed since they were staged, and drops them, in one
    /// transaction (fault point "rotate-index.copy" before it commits). A subject changed meanwhile was
    /// indexed by its writer, or is left behind with old rows only and indexed after the switch
    /// (`reindexLeftBehind`, `finishEmailIndexRotation`).
    private func copyStagedIndexRows(into target: UInt32) throws(StoreError) {
        try store.withDataTransaction { (connection) throws(StoreError) in
            do throws(DatabaseError) {
                for staging in [IndexStaging.phones, .emails] {
                    try connection.run(staging.dropStagedRowsOfIndexedSubjects, [.int(Int(target))])
                    try withTagIndexRebuilt(staging, on: connection) { () throws(DatabaseError) in
                        try connection.run(staging.copyStagedRows, [.int(Int(target))])
                    }
                    try connection.run(staging.dropAllStagedRows, [])
                }
            } catch { throw .database(error) }
            try store.injectFault("rotate-index.copy", 0)
        }
    }

    /// Runs `change`, a bulk change of blind index `index`, with its tag index dropped before and built
    /// again after where the backend chooses to (`StoreBackend.rebuildsTagIndexForBulkChanges`). Inside
    /// the caller's transaction.
    private func withTagIndexRebuilt(_ index: IndexStaging, on connection: any Database,
                                     _ change: () throws(DatabaseError) -> Void) throws(DatabaseError) {
        let rebuilds = type(of: store.backend).rebuildsTagIndexForBulkChanges
        if rebuilds { try connection.run(index.dropTagIndex, []) }
        try change()
        if rebuilds { try connection.run(index.createTagIndex, []) }
    }

    /// Indexes under `building` the subjects left behind, then drops the old index rows; returns how
    /// many were re-indexed. Another process that had not yet seen the new key when it wrote (its
    /// transaction began before the key existed) indexed its subjects under the old key only: those are
    /// indexed under the new key before the old rows go, in the transaction that drops them. Writers
    /// after the switch see it inside their own transactions (`write`, `update`). A subject tried once is
    /// not tried again: its numbers do not normalise in the store's region (written with another
    /// region), as in the walk.
    private func reindexLeftBehind(into building: PhoneBlindIndex, batchSize: Int) throws(StoreError) -> Int {
        let target = Int(building.version)
        var leftBehind = Set<SubjectID>()
        while true {
            let reindexed = try reindex(into: building, batch: 0, select: RotationStatements.subjectsLeftBehind,
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
    private func reindex(into index: PhoneBlindIndex, batch: Int, select: String, _ values: [SQLValue],
                         skipping: Set<SubjectID>) throws(StoreError) -> [SubjectID] {
        var attempt = 0
        while true {
            let rows = try store.withData { (connection) throws(DatabaseError) in
                try connection.transaction { () throws(DatabaseError) in
                    let rows = try connection.rows(select, values) { Store.encryptedSubject(from: $0, fields: [.phones]) }
                        .filter { !skipping.contains($0.summary.id) }
                    if rows.isEmpty {
                        try withTagIndexRebuilt(.phones, on: connection) { () throws(DatabaseError) in
                            try connection.run(RotationStatements.dropOldIndexRows, [.int(Int(index.version))])
                        }
                    }
                    return rows
                }
            }
            guard !rows.isEmpty else { return [] }
            try keyring.cacheSubjectKeys(Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0.keyVersion) }))
            let phones = try store.decrypt(rows, fields: [.phones], context: context.forKeyRotation).personal
            do throws(StoreError) {
                try store.withDataTransaction { (connection) throws(StoreError) in
                    for (row, personal) in zip(rows, phones) {
                        let id = row.summary.id.rawValue
                        let updated: Int64?
                        do throws(DatabaseError) {
                            updated = try connection.firstRow(RotationStatements.subjectUpdatedAt, [.integer(id)], { $0.int64(0) })
                        } catch {
                            throw .database(error)
                        }
                        guard let updated else { continue }
                        guard updated == Store.milliseconds(row.summary.updatedAt) else { throw .concurrentChange(row.summary.id) }
                        do throws(DatabaseError) {
                            try connection.run(RotationStatements.dropSubjectIndexRows, [.integer(id), .int(Int(index.version))])
                        } catch {
                            throw .database(error)
                        }
                        _ = try store.index(personal.phones ?? [], of: row.summary.id, normalizer: store.phoneNormalizer,
                                           in: connection, into: [index])
                    }
                    try store.injectFault("rotate-index.in-batch", batch)
                }
                return rows.map(\.summary.id)
            } catch .concurrentChange where attempt < 5 {
                attempt += 1
            }
        }
    }

    /// After the switch: indexes under `target` the addresses of subjects written meanwhile under the old
    /// version only, then drops the old versions' rows.
    private func finishEmailIndexRotation(into target: UInt32) throws(StoreError) {
        guard let active = keyring.keys.emailIndexes.first(where: { $0.version == target }) else {
            throw .unreadableKey("the new e-mail index key", .keyVersionUnavailable(target))
        }
        try store.indexEmailsOfSubjects(Store.EmailIndexStatements.leftBehind, [.int(Int(target))], into: [active], context: context.forKeyRotation)
        // A million old rows leave `email_index_by_tag` at random places: on SQLite the index is built
        // again instead, one sort (as the phone index's old rows go in `reindexLeftBehind`).
        try store.withData { (connection) throws(DatabaseError) in
            try connection.transaction { () throws(DatabaseError) in
                try withTagIndexRebuilt(.emails, on: connection) { () throws(DatabaseError) in
                    try connection.run(Store.EmailIndexStatements.dropOldVersions, [.int(Int(target))])
                }
            }
        }
    }
}

extension Store {
    /// Rotates the phone blind-index key: a new index version (with `bits`, default the current length)
    /// is built beside the old one from every subject's numbers (decrypted through the audited path,
    /// purpose `key-rotation`); lookups answer from both until the switch; then the old index rows and
    /// key are dropped. Resumes an interrupted rotation.
    public func rotateIndexKey(bits: Int? = nil, batchSize: Int = 500, context: AccessContext,
                               progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RotationReport {
        try IndexKeyRotation(store: self, context: context).run(bits: bits, batchSize: batchSize, progress: progress)
    }
}
