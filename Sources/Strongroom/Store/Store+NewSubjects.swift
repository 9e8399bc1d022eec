import Dispatch
import StrongroomCrypto
import StrongroomPhone
import StrongroomStorage
import Synchronization

/// A batch's new subjects written in sets of rows, sealed on two cores.
extension Store {
    /// The columns of a new subject's row, in the order `insertNew` gives their values.
    static let newSubjectColumns = [BulkColumn("id", .integer), BulkColumn("kind", .text), BulkColumn("external_id", .text),
                                            BulkColumn("owner", .text), BulkColumn("status", .text), BulkColumn("source", .text),
                                            BulkColumn("created_at", .integer), BulkColumn("updated_at", .integer),
                                            BulkColumn("last_contacted_at", .integer), BulkColumn("key_version", .integer),
                                            BulkColumn("unindexed_phones", .integer), BulkColumn("seal_count", .integer)]
        + PersonalField.allCases.map { BulkColumn($0.column, .blob) }

    /// Writes new subjects together, in sets of rows rather than a statement per subject: their ids
    /// are reserved, their keys made and wrapped (one fresh key each) and their fields sealed under them
    /// on two threads, the keys committed in the key database, then their rows (ciphertexts included)
    /// and blind-index rows inserted (`StoreBackend.insert`). With `cachingKeys` false the fresh keys
    /// stay out of the key cache (`Keyring.storeSubjectKeys`). Returns each one's id and count of
    /// numbers that could not be indexed.
    func insertNew(_ subjects: [NewSubject], numbers: [[String?]?], normalizer: PhoneNormalizer, now: Int64, cachingKeys: Bool = true,
                   in write: SubjectWriteTransaction) throws(StoreError) -> [(id: SubjectID, unindexed: Int)] {
        let connection = write.connection
        let ids: [SubjectID]
        do throws(DatabaseError) { ids = try backend.reserveSubjectIDs(subjects.count, on: connection).map(SubjectID.init(rawValue:)) } catch {
            throw .database(error)
        }
        let phoneIndexes = keyring.keys.phoneIndexes, emailIndexes = keyring.keys.emailIndexes
        let kek = keyring.keyEncryptionKey
        try keyring.reserve(kek.usage, count: subjects.count)
        // Pure CPU, no database: each subject's key made and wrapped, and its fields sealed under it,
        // on this thread and a second one, half the batch each. Nothing of it is stored before the keys
        // commit below, and the rows after them, as when the keys were made first.
        let made = try Store.concurrentMap(subjects.count) { (position) throws(StoreError) in
            let key = try keyring.makeSubjectKey(for: ids[position], version: 1, wrappedUnder: kek)
            return (key: key, sealed: try newSubjectRows(subjects[position], id: ids[position], key: key.handle, numbers: numbers[position],
                                            normalizer: normalizer, now: now, phoneIndexes: phoneIndexes, emailIndexes: emailIndexes))
        }
        try keyring.storeSubjectKeys(made.map(\.key), caching: cachingKeys)
        try injectFault("write.keys", subjects.count)
        do throws(DatabaseError) {
            try backend.insert(made.map(\.sealed.row), into: "subjects", columns: Store.newSubjectColumns, conflict: "", on: connection)
        } catch {
            throw .database(error)
        }
        try injectFault("write.rows", subjects.count)
        do throws(DatabaseError) {
            try backend.insert(made.flatMap(\.sealed.phoneIndexRows), into: "phone_index", columns: Store.blindIndexColumns, conflict: "", on: connection)
            try backend.insert(made.flatMap(\.sealed.emailIndexRows), into: "email_index", columns: Store.blindIndexColumns, conflict: "", on: connection)
        } catch {
            throw .database(error)
        }
        try injectFault("write.sealed", subjects.count)
        for (id, subject) in zip(ids, made) { write.record(id, .create, fields: subject.sealed.fields) }
        return zip(ids, made).map { ($0, $1.sealed.unindexed) }
    }

    /// A new subject's row (its fields sealed under `key`), its blind-index rows, how many of its numbers
    /// could not be indexed, and the fields written: what `insertNew` inserts for it.
    func newSubjectRows(_ subject: NewSubject, id: SubjectID, key: KeyHandle, numbers: [String?]?, normalizer: PhoneNormalizer,
                                now: Int64, phoneIndexes: [PhoneBlindIndex], emailIndexes: [EmailBlindIndex]) throws(StoreError)
        -> (row: [SQLValue], phoneIndexRows: [[SQLValue]], emailIndexRows: [[SQLValue]], unindexed: Int, fields: [PersonalField]) {
        let sealed = try sealedFields(subject.personal, of: id, under: key)
        // The key is new: only a budget smaller than one subject's fields can be exhausted.
        guard UInt64(sealed.count) <= keyring.nonceBudget else {
            throw .keyBudgetExhausted(key: "subject:\(id.rawValue):\(key.version)", used: 0, budget: keyring.nonceBudget)
        }
        let index: (entries: [BlindIndexEntry], unindexed: Int), emailIndexRows: [[SQLValue]]
        do throws(CryptoError) {
            index = try blindIndexEntries(subject.personal.phones ?? [], numbers: numbers, of: id, normalizer: normalizer, into: phoneIndexes)
            emailIndexRows = try self.emailIndexRows(subject.personal.emails ?? [], of: id, into: emailIndexes)
        } catch {
            throw .crypto(error)
        }
        var row: [SQLValue] = [.integer(id.rawValue)]
        row.reserveCapacity(Store.newSubjectColumns.count)
        row += Store.metadataValues(subject.metadata)
        row += [.integer(now), .integer(now), .integer(subject.metadata.lastContactedAt.map(Store.milliseconds)),
                .int(Int(key.version)), .int(index.unindexed), .int(sealed.count)]
        // `sealed` is in `PersonalField` order: one pass puts each ciphertext in its column.
        var next = sealed.startIndex
        for field in PersonalField.allCases {
            if next < sealed.endIndex, sealed[next].field == field {
                row.append(.blob(sealed[next].ciphertext))
                next += 1
            } else {
                row.append(.null)
            }
        }
        return (row, index.entries.map { Store.phoneIndexRow($0, of: id) }, emailIndexRows, index.unindexed, sealed.map(\.field))
    }

    /// `transform` of each position in `0..<count`, in order, computed on this thread and one more (the
    /// machine's second core) when there are enough positions to be worth a thread: for pure CPU work,
    /// such as sealing a batch. If positions fail, the error thrown is the first one's, as in a loop.
    static func concurrentMap<T: Sendable, Failure: Error>(_ count: Int, _ transform: @Sendable (Int) throws(Failure) -> T) throws(Failure) -> [T] {
        let parts = count >= 16 ? 2 : 1
        let done = Mutex<[Int: Result<[T], Failure>]>([:])
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let outcome = Result { () throws(Failure) in try (count * part / parts..<count * (part + 1) / parts).map(transform) }
            done.withLock { $0[part] = outcome }
        }
        let outcomes = done.withLock { $0 }
        var mapped: [T] = []
        mapped.reserveCapacity(count)
        for part in 0..<parts { mapped += try outcomes[part]?.get() ?? [] }
        return mapped
    }
}
