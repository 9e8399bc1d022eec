import Foundation
import StrongroomCrypto
import StrongroomStorage

/// What a rotation did.
public struct RotationReport: Sendable, Codable, Equatable {
    /// What was rotated.
    public let kind: RotationKind
    /// The key version (or master generation) before.
    public let fromVersion: Int
    /// The key version (or master generation) after.
    public let toVersion: Int
    /// How many keys were re-wrapped, subjects re-encrypted or subjects re-indexed.
    public let items: Int
    /// Whether an interrupted rotation was resumed.
    public let resumed: Bool
}

/// A rotation in progress, as `keys status` shows it.
public struct RotationProgress: Sendable, Codable, Equatable {
    /// What is being rotated (`kek`, `data` or `index`: the kinds that walk subjects).
    public let kind: RotationKind
    /// The key version being rotated to.
    public let targetVersion: Int
    /// Items done so far.
    public let done: Int
    /// Items in all (as counted when the rotation started).
    public let total: Int
    /// When it started.
    public let startedAt: Date
}

extension Store {
    /// Rotates the master key: the KEK is re-wrapped under `newMaster` in one transaction of the key
    /// database, so the cost is the same at a thousand subjects or a billion. Afterwards the old master
    /// key is refused (`wrongMasterKey`). Write the new key where the store's users will find it
    /// *before* calling this (`KeyFile.create`), so that no crash leaves the store locked with a key
    /// that exists nowhere.
    public func rotateMasterKey(to newMaster: SecretKey, context: AccessContext) throws(StoreError) -> RotationReport {
        guard newMaster.byteCount == KeyFile.keyByteCount else { throw .invalidInput("a master key has 32 bytes") }
        let (report, rotated): (RotationReport, Keyring.LoadedKeys) = try storeErrors {
            try keyring.database.transaction { tables in
                let keys = keyring.keys
                let generation = try tables.masterGeneration() ?? 1
                let newHandle = try Keyring.masterKeyHandle(newMaster, generation: generation + 1, storeID: keyring.storeID,
                                                            usage: KeyUsage(name: "master:\(generation + 1)", budget: keyring.nonceBudget, reserved: 0))
                let rows = try tables.wrappedKEKs()
                // Reserved in this transaction: if it rolls back, the new master key is never used.
                try tables.reserve(newHandle.usage!, count: rows.count)
                for row in rows {
                    let location = EnvelopeLocation(slot: .keyEncryptionKey, recordID: Int64(row.version))
                    let kek = try Envelope.openKey(row.wrapped, at: location, under: keys.master, storeID: keyring.storeID)
                    try tables.updateKEK(version: row.version,
                                         wrapped: try Envelope.seal(key: kek, at: location, under: newHandle, storeID: keyring.storeID))
                }
                try tables.setMasterGeneration(generation + 1)
                try faultInjection?("rotate-master.in-transaction", 1)
                return (RotationReport(kind: .master, fromVersion: Int(generation), toVersion: Int(generation + 1),
                                       items: rows.count, resumed: false),
                        Keyring.LoadedKeys(master: newHandle, keyEncryptionKeys: keys.keyEncryptionKeys,
                                           currentVersion: keys.currentVersion, phoneIndexes: keys.phoneIndexes))
            }
        }
        // Only now, with the new wrapping committed: had the commit failed, this process would hold a
        // master key the store does not know, and its next KEK rotation would wrap under it.
        keyring.replaceKeys(rotated)
        try storeErrors { try keyring.database.read { try $0.discardDeletedContent() } }
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "rotate-master: generation \(report.fromVersion) -> \(report.toVersion), \(report.items) KEK re-wrapped")])
        return report
    }

    /// Rotates the key-encryption key: a new KEK version, then every subject, index and audit key
    /// re-wrapped under it in batches (each committed with its progress), then the old KEK destroyed.
    /// Cost grows with the number of subjects, not with the data. Resumes an interrupted rotation.
    public func rotateKeyEncryptionKey(batchSize: Int = 1000, context: AccessContext,
                                       progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RotationReport {
        try storeErrors { try keyring.reserve(keyring.keys.master.usage, count: 1) }
        let (target, from, resumed, alreadyDone, cursor) = try storeErrors { () throws -> (UInt32, UInt32, Bool, Int, Int64) in
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
        try storeErrors { try keyring.reload() }
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "rotate-kek: \(resumed ? "resumed" : "started"), version \(from) -> \(target)")])
        var done = alreadyDone
        let total = try rotationTotal(.kek)
        var batches = 0
        // The few keys first: index and audit keys.
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
        // The subject keys in primary-key order, from the committed cursor: each batch starts where the
        // last ended instead of passing over the keys already done (that made the rotation quadratic).
        // A key another process wrote under the old KEK behind the cursor (it had not yet seen the new
        // one) is found by one more pass from the start once the walk is through.
        var position = cursor
        var sweptFromStart = false
        while true {
            let count: Int = try storeErrors {
                let (count, last) = try keyring.database.transaction { tables in
                    let rows = try tables.subjectKeysToRewrap(after: position, notUnder: target, limit: batchSize)
                    // Reserved in this transaction: if it rolls back, no key sealed under it is stored.
                    if let usage = try keyring.kek(target).usage { try tables.reserve(usage, count: rows.count) }
                    for row in rows {
                        let rewrapped = try rewrap(row.wrapped, at: EnvelopeLocation(slot: .subjectKey, recordID: row.subject),
                                                   from: row.kekVersion, to: target)
                        try tables.rewrapSubjectKey(subject: row.subject, version: row.version, wrapped: rewrapped, kekVersion: target)
                    }
                    let last = rows.last?.subject ?? position
                    try tables.advanceKEKRotation(by: rows.count, cursor: last)
                    try faultInjection?("rotate-kek.in-batch", batches + 1)
                    return (rows.count, last)
                }
                position = last
                return count
            }
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
        // Finish: in one transaction, so a key another process wrapped under the old KEK meanwhile
        // keeps it alive until the next run.
        let finished: Bool = try storeErrors {
            let finished = try keyring.database.transaction { tables in
                guard try tables.subjectKeysLeftBehind(notUnder: target) == 0 else { return false }
                try tables.deleteKEKs(except: target)
                try tables.finishRotation(.kek)
                return true
            }
            try keyring.database.read { try $0.discardDeletedContent() }
            return finished
        }
        guard finished else { throw .invalidInput("keys were written under the old KEK during the rotation: run it again") }
        try storeErrors { try keyring.reload() }
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "rotate-kek: finished, version \(target) current, \(done) subject keys re-wrapped, old KEK destroyed")])
        return RotationReport(kind: .kek, fromVersion: Int(from), toVersion: Int(target), items: done, resumed: resumed)
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

    private func rotationTotal(_ kind: RotationKind) throws(StoreError) -> Int {
        try storeErrors {
            try keyring.database.read { try $0.rotation(kind)?.total ?? 0 }
        }
    }

    /// Rotates one subject's data key: a fresh key, every field re-encrypted under it (decrypted through
    /// the audited path, purpose `key-rotation`), the old key destroyed.
    @discardableResult
    public func rotateDataKey(of subject: SubjectID, context: AccessContext) throws(StoreError) -> RotationReport {
        guard try reencrypt([subject], batch: 1, context: context) == 1 else { throw try notFoundOrErased(subject) }
        return RotationReport(kind: .data, fromVersion: 0, toVersion: 0, items: 1, resumed: false)
    }

    /// Rotates every subject's data key, in batches walked by subject id with the position committed
    /// after each, so an interrupted run resumes where it stopped. Subjects created meanwhile get
    /// fresh keys anyway.
    public func rotateAllDataKeys(batchSize: Int = 200, context: AccessContext,
                                  progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RotationReport {
        let (cursor, done, resumed) = try beginWalk(.data, targetVersion: 0)
        try audit([AuditEvent(.keys, context, subject: nil, detail: "rotate-data: \(resumed ? "resumed" : "started") for all subjects")])
        var position = cursor
        var count = done
        let total = try rotationTotal(.data)
        var batches = 0
        while true {
            let ids = try storeErrors {
                try data.withLock { connection in
                    try connection.rows("SELECT id FROM subjects WHERE id > ? ORDER BY id LIMIT ?", [.integer(position), .int(batchSize)]) {
                        SubjectID(rawValue: $0.int64(0))
                    }
                }
            }
            guard let last = ids.last else { break }
            // A subject changed by another writer meanwhile makes the batch roll back: read it again and retry.
            var attempt = 0
            while true {
                do {
                    count += try reencrypt(ids, batch: batches + 1, context: context)
                    break
                } catch .concurrentChange where attempt < 5 {
                    attempt += 1
                }
            }
            position = last.rawValue
            try advanceWalk(.data, cursor: position, done: count)
            batches += 1
            progress(count, total)
            try storeErrors { try faultInjection?("rotate-data.batch", batches) }
        }
        try storeErrors { try keyring.database.read { try $0.finishRotation(.data) } }
        try audit([AuditEvent(.keys, context, subject: nil, detail: "rotate-data: finished, \(count) subjects re-encrypted under fresh keys")])
        return RotationReport(kind: .data, fromVersion: 0, toVersion: 0, items: count, resumed: resumed)
    }

    /// Re-encrypts `subjects` under fresh keys; returns how many existed. Safe to repeat after a crash
    /// at any point: a new key written before the crash is reused, an old one left behind is destroyed.
    private func reencrypt(_ subjects: [SubjectID], batch: Int, context: AccessContext) throws(StoreError) -> Int {
        let rotation = AccessContext(actor: context.actor, purpose: .keyRotation, clientAddress: context.clientAddress)
        let fields = PersonalField.allCases
        let (rows, consents) = try storeErrors {
            try data.withLock { connection in
                (try subjects.compactMap { id in
                    try connection.firstRow("SELECT \(Store.summaryColumns), \(fields.map(\.column).joined(separator: ", ")) FROM subjects WHERE id = ?",
                                            [.integer(id.rawValue)]) { Store.encryptedSubject(from: $0, fields: fields) }
                }, try consentRows(of: subjects, in: connection))
            }
        }
        guard !rows.isEmpty else { return 0 }
        // Keys first (committed in the key database), then the data that uses them, then the old keys go.
        // A key left by a run that crashed before its data committed is unused: it is replaced.
        try storeErrors {
            try keyring.database.transaction { tables in
                for row in rows { try tables.deleteSubjectKeys(row.summary.id, newerThan: row.keyVersion) }
            }
        }
        var madeKeys: [SubjectID: KeyHandle] = [:]
        for (version, group) in Dictionary(grouping: rows, by: { $0.keyVersion + 1 }) {
            let ids = group.map(\.summary.id)
            let keys = try storeErrors { try keyring.createSubjectKeys(for: ids, version: version) }
            for (id, key) in zip(ids, keys) { madeKeys[id] = key }
        }
        // The consent ledger's sealed parts are under the same key: they are re-encrypted with the fields.
        let (plaintexts, consentPlaintexts) = try decrypt(rows, fields: fields, extra: consents.mapValues { $0.flatMap(\.sealedValues) },
                                                          detail: "consent ledger", context: rotation)
        let newKeys = madeKeys
        // Through the write path: one write entry per subject re-encrypted, audited before the commit.
        try writeSubjects(context: rotation) { write in
            let connection = write.connection
            for (row, personal) in zip(rows, plaintexts) {
                let key = newKeys[row.summary.id]!
                // A fresh key starts a fresh count of its encryptions.
                var assignments = ["key_version = ?", "seal_count = ?"]
                var values: [SQLValue] = [.int(Int(key.version)), .int(row.ciphertexts.count)]
                for field in fields where row.ciphertexts[field] != nil {
                    guard let plaintext = FieldCodec.encode(field, of: personal) else { continue }
                    assignments.append("\(field.column) = ?")
                    values.append(.blob(try Envelope.seal(plaintext, at: EnvelopeLocation(slot: .field(field), recordID: row.summary.id.rawValue),
                                                          under: key, storeID: keyring.storeID)))
                }
                // Only if nobody changed the subject since it was read: else the old values would
                // overwrite a rectification made meanwhile; the batch is then rolled back and retried.
                try connection.run("""
                    UPDATE subjects SET \(assignments.joined(separator: ", "))
                    WHERE id = ? AND key_version = ? AND updated_at = ?
                    """, values + [.integer(row.summary.id.rawValue), .int(Int(row.keyVersion)),
                                   .integer(Store.milliseconds(row.summary.updatedAt))])
                guard connection.changes == 1 else { throw StoreError.concurrentChange(row.summary.id) }
                var opened = (consentPlaintexts[row.summary.id] ?? []).makeIterator()
                for entry in consents[row.summary.id] ?? [] {
                    func reseal(_ sealed: [UInt8]?, _ slot: EnvelopeSlot) throws -> SQLValue {
                        guard sealed != nil, let plaintext = opened.next() else { return .null }
                        return .blob(try Envelope.seal(plaintext, at: EnvelopeLocation(slot: slot, recordID: entry.id), under: key,
                                                       storeID: keyring.storeID))
                    }
                    let client = try reseal(entry.client, .consentClientAddress)
                    let evidence = try reseal(entry.evidence, .consentEvidence)
                    try connection.run("UPDATE consent_ledger SET client_ct = ?, evidence_ct = ?, key_version = ? WHERE id = ?",
                                       [client, evidence, .int(Int(key.version)), .integer(entry.id)])
                }
                // Counts the re-sealed parts; an entry appended since the ledger was read is still under
                // the old key, destroyed next: that refuses the batch (rolled back) rather than lose it.
                try finishLedgerReseal(row.summary.id, version: key.version, in: connection)
                write.record(row.summary.id, .reencryption, detail: "rotate-data: re-encrypted under key version \(key.version)")
            }
            try faultInjection?("rotate-data.in-batch", batch)
        }
        try storeErrors {
            try keyring.database.transaction { tables in
                for row in rows { try tables.deleteSubjectKeys(row.summary.id, except: newKeys[row.summary.id]!.version) }
            }
        }
        rows.forEach { keyring.forget($0.summary.id, versions: [$0.keyVersion]) }
        return rows.count
    }

    /// Rotates the phone blind-index key: a new index version (with `bits`, default the current length)
    /// is built beside the old one from every subject's numbers (decrypted through the audited path,
    /// purpose `key-rotation`); lookups answer from both until the switch; then the old index rows and
    /// key are dropped. Resumes an interrupted rotation.
    public func rotateIndexKey(bits: Int? = nil, batchSize: Int = 500, context: AccessContext,
                               progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RotationReport {
        if let bits, !(8...32).contains(bits) { throw .invalidInput("--bits takes 8 to 32") }
        let from = keyring.phoneIndex
        try storeErrors { try keyring.reserve(keyring.keyEncryptionKey.usage, count: 1) }
        let (target, resumed) = try storeErrors { () throws -> (UInt32, Bool) in
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
        let total = try count()
        try storeErrors { try keyring.database.read { try $0.setRotationTotal(.index, total) } }
        try storeErrors { try keyring.reload() }
        guard let building = keyring.keys.phoneIndexes.first(where: { $0.version == target }) else {
            throw .unreadableKey("the new phone index key", .keyVersionUnavailable(target))
        }
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "rotate-index: \(resumed ? "resumed" : "started"), version \(from.version) -> \(target), \(building.bits) bits")])
        let rotation = AccessContext(actor: context.actor, purpose: .keyRotation, clientAddress: context.clientAddress)
        var (position, done, _) = try beginWalk(.index, targetVersion: Int(target))
        var batches = 0
        while true {
            let subjects = try reindex(into: building, batch: batches + 1, context: rotation,
                                       select: "SELECT \(Store.summaryColumns), phones_ct FROM subjects WHERE id > ? ORDER BY id LIMIT ?",
                                       [.integer(position), .int(batchSize)])
            guard let last = subjects.last else { break }
            position = last.rawValue
            done += subjects.count
            try advanceWalk(.index, cursor: position, done: done)
            batches += 1
            progress(done, total)
            try storeErrors { try faultInjection?("rotate-index.batch", batches) }
        }
        // Switch: the new version answers alone; then the old rows and key go. The rotation stays in
        // progress until they are gone, so a run stopped in between is finished by the next (the switch
        // is idempotent).
        try storeErrors {
            try keyring.database.transaction { try $0.activateIndexKey(target) }
        }
        try storeErrors { try faultInjection?("rotate-index.switch", batches) }
        try storeErrors { try keyring.reload() }
        // Another process that had not yet seen the new key when it wrote (its transaction began before
        // the key existed) indexed its subjects under the old key only: those are indexed under the new
        // key before the old rows go, in the transaction that drops them. Writers after the switch see it
        // inside their own transactions (`write`, `update`). A subject tried once is not tried again: its
        // numbers do not normalise in the store's region (written with another region), as in the walk.
        var leftBehind = Set<SubjectID>()
        while true {
            let reindexed = try reindex(into: building, batch: 0, context: rotation, select: RotationStatements.subjectsLeftBehind,
                                        [.int(Int(target)), .int(batchSize + leftBehind.count)], skipping: leftBehind,
                                        whenNone: (RotationStatements.dropOldIndexRows, [.int(Int(target))]))
            guard !reindexed.isEmpty else { break }
            leftBehind.formUnion(reindexed)
        }
        try storeErrors {
            try keyring.database.transaction { tables in
                try tables.deleteRetiredIndexKeys()
                try tables.finishRotation(.index)
            }
            try keyring.database.read { try $0.discardDeletedContent() }
        }
        try audit([AuditEvent(.keys, context, subject: nil,
                              detail: "rotate-index: finished, version \(target) active with \(building.bits) bits, \(done + leftBehind.count) subjects re-indexed, old index dropped")])
        return RotationReport(kind: .index, fromVersion: Int(from.version), toVersion: Int(target), items: done, resumed: resumed)
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

    /// Starts (or finds) the walk of a rotation over subjects; returns its cursor, count and whether it resumed.
    private func beginWalk(_ kind: RotationKind, targetVersion: Int) throws(StoreError) -> (Int64, Int, Bool) {
        let total = try count()
        return try storeErrors {
            try keyring.database.read { tables in
                if let rotation = try tables.rotation(kind), rotation.cursor > 0 || rotation.done > 0 {
                    return (rotation.cursor, rotation.done, true)
                }
                try tables.startRotation(kind, targetVersion: UInt32(targetVersion), total: total, startedAt: Store.milliseconds(Date()))
                return (0, 0, false)
            }
        }
    }

    private func advanceWalk(_ kind: RotationKind, cursor: Int64, done: Int) throws(StoreError) {
        try storeErrors {
            try keyring.database.read { try $0.advanceRotation(kind, cursor: cursor, done: done) }
        }
    }

    /// Rotations in progress (interrupted, or running in another process).
    public func rotationsInProgress() throws(StoreError) -> [RotationProgress] {
        try storeErrors {
            try keyring.database.read { try $0.rotationsInProgress() }
        }
    }
}

/// The statements a rotation runs once per subject or per batch, shared with the tests that pin their
/// query plans (QueryPlanTests): each must find its rows through an index, whatever the store's size.
enum RotationStatements {
    /// A subject's rows of the index version being built, dropped before they are written again (a
    /// batch run twice): through `phone_index_by_subject (subject_id, key_version)`.
    static let dropSubjectIndexRows = "DELETE FROM phone_index WHERE subject_id = ? AND key_version = ?"

    /// Subjects indexed under an old index version but not the new (?1), once the walk is through: a few
    /// passes over the blind index at the end of an index rotation.
    static let subjectsLeftBehind = """
        SELECT \(Store.summaryColumns), phones_ct FROM subjects WHERE id IN (
            SELECT o.subject_id FROM phone_index o WHERE o.key_version <> ?1 AND NOT EXISTS
                (SELECT 1 FROM phone_index n WHERE n.subject_id = o.subject_id AND n.key_version = ?1))
        ORDER BY id LIMIT ?2
        """
    /// The old index versions' rows, dropped once when the new version answers alone.
    static let dropOldIndexRows = "DELETE FROM phone_index WHERE key_version <> ?"
    /// The statements that read or change a whole table on purpose: each runs once (or a few times) per
    /// rotation, never per subject, so the rotation stays linear.
    static let onceOverTheWholeTable = [KeyDatabase.subjectKeysLeftBehind, subjectsLeftBehind, dropOldIndexRows]
}
