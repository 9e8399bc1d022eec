import Foundation
import StrongroomCrypto
import StrongroomStorage

/// A data rotation's batch sealed again under its new keys, as its multi-row statements take it.
struct ResealedBatch: Sendable {
    /// The subjects, in id order.
    var ids: [SubjectID] = []
    /// Per subject (`RotationStatements.reencryptSubjects`): id, key version and `updated_at` as read,
    /// new key version, new seal count, then each field's new ciphertext (NULL where it has none).
    var subjects: [[SQLValue]] = []
    /// Per consent ledger entry (`RotationStatements.resealLedgerEntries`): id, client address,
    /// evidence and actor sealed again (NULL where it has none), new key version.
    var ledger: [[SQLValue]] = []
}

extension DataKeyRotation {
    /// Seals `rows`' fields (`plaintexts`) and their ledger entries' sealed parts (`opened`, in the order
    /// of `ConsentRow.sealedValues`) again, each subject's under its key in `keys`. Done before the write
    /// transaction, so the data stays locked for the writes alone.
    func seal(_ rows: [EncryptedSubject], _ plaintexts: [PersonalData], consents: [SubjectID: [ConsentRow]],
              opened: [SubjectID: [[UInt8]]], under keys: [SubjectID: KeyHandle]) throws(StoreError) -> ResealedBatch {
        let storeID = store.keyring.storeID
        func sealValue(_ plaintext: [UInt8], _ slot: EnvelopeSlot, _ record: Int64, _ key: KeyHandle) throws(StoreError) -> SQLValue {
            .blob(try Envelope.seal(plaintext, at: EnvelopeLocation(slot: slot, recordID: record), under: key, storeID: storeID))
        }
        var batch = ResealedBatch()
        for (row, personal) in zip(rows, plaintexts) {
            let key = keys[row.id]!
            let values: [SQLValue] = [.integer(row.id.rawValue), .int(Int(row.keyVersion)), .integer(Store.milliseconds(row.summary.updatedAt)),
                                      .int(Int(key.version))]
            // A fresh key starts a fresh count of its encryptions.
            var sealCount = row.ciphertexts.count
            var fields: [SQLValue] = []
            for field in PersonalField.allCases {
                guard row.ciphertexts[field] != nil, let plaintext = FieldCodec.encode(field, of: personal) else {
                    fields.append(.null)
                    continue
                }
                fields.append(try sealValue(plaintext, .field(field), row.id.rawValue, key))
            }
            var parts = (opened[row.id] ?? []).makeIterator()
            for entry in consents[row.id] ?? [] {
                func reseal(_ sealed: [UInt8]?, _ slot: EnvelopeSlot) throws(StoreError) -> SQLValue {
                    guard sealed != nil, let plaintext = parts.next() else { return .null }
                    sealCount += 1
                    return try sealValue(plaintext, slot, entry.id, key)
                }
                let client = try reseal(entry.client, .consentClientAddress)
                let evidence = try reseal(entry.evidence, .consentEvidence)
                let actor = try reseal(entry.actor, .consentActor)
                batch.ledger.append([.integer(entry.id), client, evidence, actor, .int(Int(key.version))])
            }
            batch.ids.append(row.id)
            batch.subjects.append(values + [.int(sealCount)] + fields)
        }
        return batch
    }

    /// Writes `batch` through the write path (one entry per subject re-encrypted, audited before the
    /// commit), each subject only if nobody changed it since it was read: else the old values would
    /// overwrite a rectification made meanwhile, so that throws `concurrentChange` and the batch is
    /// rolled back and retried. So does a ledger entry appended meanwhile (still under the old key,
    /// destroyed next): refused rather than lost. `newVersions`: each subject's new key version.
    func write(_ batch: ResealedBatch, newVersions: [SubjectID: UInt32], number: Int) throws(StoreError) {
        let bytes = type(of: store.backend).bytesParameter
        let store = store
        guard let first = batch.ids.first, let last = batch.ids.last else { return }
        let range: [SQLValue] = [.integer(first.rawValue), .integer(last.rawValue)]
        try store.writeSubjects(context: context.forKeyRotation) { (write) throws(StoreError) in
            let connection = write.connection
            // A subject changed since it was read (nil: none), by its key version, then by its ledger's.
            let changed: SubjectID?
            do throws(DatabaseError) {
                let written = try MultiRowStatements.rotation.run(batch.subjects, on: connection) {
                    RotationStatements.reencryptSubjects($0, bytes: bytes)
                }
                if written != batch.ids.count {
                    let now = try connection.rows(RotationStatements.subjectKeyVersions, range) { (SubjectID(rawValue: $0.int64(0)), UInt32($0.int64(1))) }
                    let current = Dictionary(now, uniquingKeysWith: { $1 })
                    changed = batch.ids.first { current[$0] != newVersions[$0] } ?? first
                } else {
                    try MultiRowStatements.rotation.run(batch.ledger, on: connection) { RotationStatements.resealLedgerEntries($0, bytes: bytes) }
                    // Read after the subjects' rows were written (and, on PostgreSQL, locked): an entry appended
                    // since the ledger was read is still under the old key.
                    let entries = try connection.rows(RotationStatements.ledgerKeyVersions, range) {
                        (SubjectID(rawValue: $0.int64(0)), UInt32($0.int64(1)))
                    }
                    changed = entries.first { subject, version in newVersions[subject].map { $0 != version } ?? false }?.0
                }
            } catch {
                throw .database(error)
            }
            if let changed { throw .concurrentChange(changed) }
            for id in batch.ids { write.record(id, .reencryption, detail: "rotate-data: re-encrypted under key version \(newVersions[id]!)") }
            try store.injectFault("rotate-data.in-batch", number)
        }
    }
}
