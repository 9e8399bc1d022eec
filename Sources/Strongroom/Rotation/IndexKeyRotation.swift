import Foundation
import StrongroomCrypto
import StrongroomStorage

/// The phone blind-index key's rotation: a new index version (with `bits`, default the current
/// length) built beside the old one from every subject's numbers (decrypted through the audited path,
/// purpose `key-rotation`), the e-mail index rebuilt by the same walk; lookups answer from both
/// versions until the switch; then the old index rows and key are dropped.
struct IndexKeyRotation {
    let store: Store
    let context: AccessContext
    private var keyring: Keyring { store.keyring }

    /// Runs the rotation, or resumes the one in progress, `batchSize` subjects to a batch: a bulk write
    /// (`Store.bulkWriting`), since every batch adds its e-mail index rows at random places of
    /// `email_index_by_tag` (on SQLite, with the default cache and checkpoints, a page read and written
    /// again per row once the index outgrows them: 1.86 times the CPU per subject at a million subjects
    /// as at 10,000, `strongroom-bench scaling`).
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
        try walk.announce(", version \(from.version) -> \(target), \(building.bits) bits")
        try walk.run(progress: progress) { cursor, _, batch throws(StoreError) in
            let subjects = try stageIndexRows(under: building, after: cursor, limit: batchSize, batch: batch)
            guard let last = subjects.last else { return nil }
            try reindexEmails(after: cursor, through: last, into: target, batchSize: batchSize)
            return RotationWalk.Batch(last: last.rawValue, count: subjects.count)
        }
        // Lookups still answer from the old version alone: the new one's rows go in now, in one
        // transaction, so a rotation stopped before or during the copy copies again when resumed.
        try copyStagedIndexRows(into: building)
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

    /// Stages under `index` the blind-index rows of the `limit` subjects after `cursor` (their numbers
    /// decrypted through the audited path): the walk's one step per batch. The rows are appended to
    /// `phone_index_building`, not written into `phone_index`, where they would land at random places
    /// of the growing new version (see `Schema.stagedIndexRows`); `copyStagedIndexRows` moves them
    /// once the walk is through. Each row carries its subject's `updated_at` as read, so a subject
    /// changed meanwhile is not copied: no retry here. Returns the subjects read.
    private func stageIndexRows(under index: PhoneBlindIndex, after cursor: Int64, limit: Int,
                                batch: Int) throws(StoreError) -> [SubjectID] {
        let rows = try store.withData { (connection) throws(DatabaseError) in
            try connection.rows("SELECT \(Store.summaryColumns), phones_ct FROM subjects WHERE id > ? ORDER BY id LIMIT ?",
                                [.integer(cursor), .int(limit)]) { Store.encryptedSubject(from: $0, fields: [.phones]) }
        }
        guard let first = rows.first, let last = rows.last else { return [] }
        try keyring.cacheSubjectKeys(Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0.keyVersion) }))
        let phones = try store.decrypt(rows, fields: [.phones], context: context.forKeyRotation).personal
        var values: [SQLValue] = []
        for (row, personal) in zip(rows, phones) {
            let id = row.summary.id, updatedAt = SQLValue.integer(Store.milliseconds(row.summary.updatedAt))
            let entries: [BlindIndexEntry]
            do throws(CryptoError) {
                entries = try store.blindIndexEntries(personal.phones ?? [], of: id, normalizer: store.phoneNormalizer, into: [index]).entries
            } catch {
                throw .crypto(error)
            }
            for entry in entries {
                values += [.integer(id.rawValue), updatedAt, .integer(entry.tag), .blob(entry.check)]
            }
        }
        try store.withDataTransaction { (connection) throws(StoreError) in
            do throws(DatabaseError) {
                try connection.run(RotationStatements.dropStagedIndexRows, [.integer(first.summary.id.rawValue),
                                                                            .integer(last.summary.id.rawValue)])
                try connection.runInRows(values, valuesPerRow: 4, statement: RotationStatements.stageIndexRows)
            } catch { throw .database(error) }
            try store.injectFault("rotate-index.in-batch", batch)
        }
        return rows.map(\.summary.id)
    }

    /// Copies the staged rows into `phone_index` as rows of `index`, but those of subjects changed
    /// since they were staged, and drops them, in one transaction. A subject changed meanwhile was
    /// indexed by its writer, or is left behind with old rows only and indexed by `reindexLeftBehind`.
    private func copyStagedIndexRows(into index: PhoneBlindIndex) throws(StoreError) {
        try store.withData { (connection) throws(DatabaseError) in
            try connection.transaction { () throws(DatabaseError) in
                try connection.run(RotationStatements.dropStagedRowsOfIndexedSubjects, [.int(Int(index.version))])
                try withTagIndexRebuilt(on: connection) { () throws(DatabaseError) in
                    try connection.run(RotationStatements.copyStagedIndexRows, [.int(Int(index.version))])
                }
                try connection.run(RotationStatements.dropAllStagedIndexRows, [])
            }
        }
    }

    /// Runs `change`, a bulk change of a blind index, with its tag index (`phone_index_by_tag`, or
    /// `email_index_by_tag` for `emails`) dropped before and built again after where the backend chooses
    /// to (`StoreBackend.rebuildsTagIndexForBulkChanges`). Inside the caller's transaction.
    private func withTagIndexRebuilt(on connection: any Database, emails: Bool = false,
                                     _ change: () throws(DatabaseError) -> Void) throws(DatabaseError) {
        let rebuilds = type(of: store.backend).rebuildsTagIndexForBulkChanges
        if rebuilds { try connection.run(emails ? RotationStatements.dropEmailTagIndex : RotationStatements.dropTagIndex, []) }
        try change()
        if rebuilds { try connection.run(emails ? Schema.emailIndexByTag : Schema.phoneIndexByTag, []) }
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
                        try withTagIndexRebuilt(on: connection) { () throws(DatabaseError) in
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

    /// The e-mail index's part of the walk: indexes under version `target` the addresses of the subjects
    /// the phone walk's batch covered (ids in (`after`, `through`]), so both indexes are rebuilt by the
    /// same resumable walk.
    private func reindexEmails(after: Int64, through: SubjectID, into target: UInt32, batchSize: Int) throws(StoreError) {
        guard let building = keyring.keys.emailIndexes.first(where: { $0.version == target }) else {
            throw .unreadableKey("the new e-mail index key", .keyVersionUnavailable(target))
        }
        try store.indexEmailsOfSubjects(Store.EmailIndexStatements.subjectsWithAddresses, [.integer(after), .integer(through.rawValue), .int(batchSize)],
                                  into: [building], context: context.forKeyRotation)
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
                try withTagIndexRebuilt(on: connection, emails: true) { () throws(DatabaseError) in
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
