import Foundation
import StrongroomCrypto
import StrongroomStorage

extension Store {
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
        var walk = try beginWalk(.data, targetVersion: 0)
        try audit([AuditEvent(.keys, context, subject: nil, detail: "rotate-data: \(walk.resumed ? "resumed" : "started") for all subjects")])
        try run(&walk, progress: progress) { (cursor, batch) throws(StoreError) in
            let ids = try withData { (connection) throws(DatabaseError) in
                try connection.rows("SELECT id FROM subjects WHERE id > ? ORDER BY id LIMIT ?", [.integer(cursor), .int(batchSize)]) {
                    SubjectID(rawValue: $0.int64(0))
                }
            }
            guard let last = ids.last else { return nil }
            // A subject changed by another writer meanwhile makes the batch roll back: read it again and retry.
            var attempt = 0
            while true {
                do throws(StoreError) {
                    return (last, try reencrypt(ids, batch: batch, context: context))
                } catch .concurrentChange where attempt < 5 {
                    attempt += 1
                }
            }
        }
        try storeErrors { try keyring.database.read { try $0.finishRotation(.data) } }
        try audit([AuditEvent(.keys, context, subject: nil, detail: "rotate-data: finished, \(walk.done) subjects re-encrypted under fresh keys")])
        return RotationReport(kind: .data, fromVersion: 0, toVersion: 0, items: walk.done, resumed: walk.resumed)
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
                try writeReencryptedFields(of: row, personal, under: key, in: connection)
                try resealConsents(consents[row.summary.id] ?? [], opened: consentPlaintexts[row.summary.id] ?? [], under: key,
                                   in: connection)
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

    /// Writes `row`'s fields sealed again under `key` (and a fresh seal count), only if nobody changed
    /// the subject since it was read: else the old values would overwrite a rectification made
    /// meanwhile, so that throws `concurrentChange` and the batch is rolled back and retried.
    private func writeReencryptedFields(of row: EncryptedSubject, _ personal: PersonalData, under key: KeyHandle,
                                        in connection: any Database) throws {
        // A fresh key starts a fresh count of its encryptions.
        var assignments = ["key_version = ?", "seal_count = ?"]
        var values: [SQLValue] = [.int(Int(key.version)), .int(row.ciphertexts.count)]
        for field in PersonalField.allCases where row.ciphertexts[field] != nil {
            guard let plaintext = FieldCodec.encode(field, of: personal) else { continue }
            assignments.append("\(field.column) = ?")
            values.append(.blob(try Envelope.seal(plaintext, at: EnvelopeLocation(slot: .field(field), recordID: row.summary.id.rawValue),
                                                  under: key, storeID: keyring.storeID)))
        }
        try connection.run("""
            UPDATE subjects SET \(assignments.joined(separator: ", "))
            WHERE id = ? AND key_version = ? AND updated_at = ?
            """, values + [.integer(row.summary.id.rawValue), .int(Int(row.keyVersion)),
                           .integer(Store.milliseconds(row.summary.updatedAt))])
        guard connection.changes == 1 else { throw StoreError.concurrentChange(row.summary.id) }
    }

    /// Seals the consent ledger `entries`' sealed parts (their `opened` plaintexts, in order) again under `key`.
    private func resealConsents(_ entries: [ConsentRow], opened: [[UInt8]], under key: KeyHandle, in connection: any Database) throws {
        var opened = opened.makeIterator()
        for entry in entries {
            func reseal(_ sealed: [UInt8]?, _ slot: EnvelopeSlot) throws -> SQLValue {
                guard sealed != nil, let plaintext = opened.next() else { return .null }
                return .blob(try Envelope.seal(plaintext, at: EnvelopeLocation(slot: slot, recordID: entry.id), under: key,
                                               storeID: keyring.storeID))
            }
            let client = try reseal(entry.client, .consentClientAddress)
            let evidence = try reseal(entry.evidence, .consentEvidence)
            let actor = try reseal(entry.actor, .consentActor)
            try connection.run("UPDATE consent_ledger SET client_ct = ?, evidence_ct = ?, actor_ct = ?, key_version = ? WHERE id = ?",
                               [client, evidence, actor, .int(Int(key.version)), .integer(entry.id)])
        }
    }
}
