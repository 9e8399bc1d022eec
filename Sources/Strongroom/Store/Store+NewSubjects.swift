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
    /// are reserved; their keys made and wrapped (one fresh key each) and their fields sealed under them
    /// on other threads, while this one inserts their rows (ciphertexts included) as they are sealed;
    /// then their keys committed in the key database while this thread inserts their blind-index rows
    /// (`StoreBackend.insert`). With `cachingKeys` false the fresh keys stay out of the key cache
    /// (`Keyring.storeSubjectKeys`). Returns each one's id and count of numbers that could not be indexed.
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
        // Each subject's key made and wrapped, and its fields sealed under it: pure CPU, done on other
        // threads a chunk at a time while this one inserts the rows of the chunks sealed before. The
        // keys commit once every row is inserted, on another thread while this one inserts the
        // blind-index rows, and before the commit: a row is still never committed without its key (a
        // rollback after the keys leaves orphan keys, as before).
        let made = try backend.inserting(into: "subjects", columns: Store.newSubjectColumns, on: connection) { (insertRows) throws(StoreError) in
            try Store.pipelinedMap(subjects.count, chunk: Store.sealingChunk) { (position) throws(StoreError) in
                let key = try keyring.makeSubjectKey(for: ids[position], version: 1, wrappedUnder: kek)
                return (key: key, sealed: try newSubjectRows(subjects[position], id: ids[position], key: key.handle, numbers: numbers[position],
                                                             normalizer: normalizer, now: now, phoneIndexes: phoneIndexes, emailIndexes: emailIndexes))
            } consume: { (chunk) throws(StoreError) in
                try insertRows(chunk.map(\.sealed.row))
            }
        }
        try injectFault("write.rows", subjects.count)
        let keys = made.map(\.key)
        let storeKeys = { @Sendable [keyring] () throws(StoreError) in try keyring.storeSubjectKeys(keys, caching: cachingKeys) }
        let insertIndexRows = { [backend] () throws(StoreError) in
            do throws(DatabaseError) {
                try backend.insert(made.flatMap(\.sealed.phoneIndexRows), into: "phone_index", columns: Store.blindIndexColumns, conflict: "",
                                   on: connection)
                try backend.insert(made.flatMap(\.sealed.emailIndexRows), into: "email_index", columns: Store.blindIndexColumns, conflict: "",
                                   on: connection)
            } catch {
                throw .database(error)
            }
        }
        // A few subjects (a create) are not worth a thread.
        if subjects.count < Store.sealingChunk {
            try storeKeys()
            try insertIndexRows()
        } else {
            try Store.alongside(storeKeys, insertIndexRows)
        }
        try injectFault("write.keys", subjects.count)
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

    /// Runs `body`, a bulk write (an import, a blind-index rotation), with the data connection readied
    /// for one (`StoreBackend.beginBulkWrites`), and ends that after it, whether it succeeds or throws.
    /// What it throws is thrown; a failure to end is not, as it loses nothing: on SQLite, the next
    /// commit's automatic checkpoint does what the final one could not, and the longer spacing lasts at
    /// worst until the connection closes.
    func bulkWriting<Result>(_ body: () throws(StoreError) -> Result) throws(StoreError) -> Result {
        try withData { (connection) throws(DatabaseError) in try backend.beginBulkWrites(on: connection) }
        defer { _ = try? withData { (connection) throws(DatabaseError) in try backend.endBulkWrites(on: connection) } }
        return try body()
    }

    /// New subjects sealed per chunk of `pipelinedMap` in `insertNew`: a multiple of the 32 rows of
    /// SQLite's multi-row statements, and small enough that the writing thread soon has rows to insert.
    static let sealingChunk = 64

    /// `transform` of each position in `0..<count`, in order, computed a chunk of `chunk` positions at a
    /// time on other threads (each chunk with `concurrentMap`), while this thread gives each finished
    /// chunk, in order, to `consume`: a batch's rows inserted while the rest of it is still being sealed.
    /// A single chunk is computed on this thread, without handing over. The first failure, of a chunk
    /// or of `consume`, is thrown once the other threads have stopped.
    static func pipelinedMap<T: Sendable>(_ count: Int, chunk: Int, _ transform: @Sendable (Int) throws(StoreError) -> T,
                                          consume: ([T]) throws(StoreError) -> Void) throws(StoreError) -> [T] {
        let chunks = stride(from: 0, to: count, by: chunk).map { $0..<min($0 + chunk, count) }
        guard chunks.count > 1 else {
            let mapped = try concurrentMap(count, transform)
            try consume(mapped)
            return mapped
        }
        let handoff = ChunkHandoff<T>()
        var mapped: [T] = []
        mapped.reserveCapacity(count)
        let consumed = withoutActuallyEscaping(transform) { (transform) -> Result<Void, StoreError> in
            handoff.produce(chunks) { (range) throws(StoreError) in
                try concurrentMap(range.count) { (position) throws(StoreError) in try transform(range.lowerBound + position) }
            }
            defer { handoff.stop() }
            return Result { () throws(StoreError) in
                for index in chunks.indices {
                    let values = try handoff.chunk(index)
                    try consume(values)
                    mapped += values
                }
            }
        }
        try consumed.get()
        return mapped
    }

    /// Runs `background` on another thread while this one runs `foreground`, and returns once both
    /// are done: the foreground's failure is thrown if it failed, else the background's.
    static func alongside(_ background: @Sendable () throws(StoreError) -> Void, _ foreground: () throws(StoreError) -> Void) throws(StoreError) {
        let outcome = BackgroundOutcome()
        let foregroundOutcome = withoutActuallyEscaping(background) { (background) -> Result<Void, StoreError> in
            DispatchQueue.global().async(group: outcome.running) { outcome.record(Result { () throws(StoreError) in try background() }) }
            defer { outcome.running.wait() }
            return Result { () throws(StoreError) in try foreground() }
        }
        try foregroundOutcome.get()
        try outcome.result.get()
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

/// The chunks `Store.pipelinedMap` computes on another thread, handed over one by one as each is done.
private final class ChunkHandoff<T: Sendable>: Sendable {
    /// The chunks done so far, in order, and whether the consumer has stopped wanting more.
    private let state = Mutex<(done: [Result<[T], StoreError>], stopped: Bool)>(([], false))
    /// Signalled once per chunk done.
    private let ready = DispatchSemaphore(value: 0)
    private let producing = DispatchGroup()

    /// Starts computing `chunks` in order on another thread, stopping after a failure or `stop`.
    func produce(_ chunks: [Range<Int>], _ compute: @escaping @Sendable (Range<Int>) throws(StoreError) -> [T]) {
        DispatchQueue.global().async(group: producing) { [self] in
            for range in chunks {
                guard !state.withLock({ $0.stopped }) else { return }
                let result = Result { () throws(StoreError) in try compute(range) }
                state.withLock { $0.done.append(result) }
                ready.signal()
                if case .failure = result { return }
            }
        }
    }

    /// The chunk at `index` (chunks are asked for in order), once it is done; its failure if it failed.
    func chunk(_ index: Int) throws(StoreError) -> [T] {
        ready.wait()
        let result = state.withLock { $0.done[index] }
        return try result.get()
    }

    /// Tells the other thread to compute no more chunks, and waits until it has stopped.
    func stop() {
        state.withLock { $0.stopped = true }
        producing.wait()
    }
}

/// What `Store.alongside` ran on another thread: its group, and its outcome once it is done.
private final class BackgroundOutcome: Sendable {
    let running = DispatchGroup()
    private let outcome = Mutex<Result<Void, StoreError>>(.success(()))

    /// Records how the work ended.
    func record(_ result: Result<Void, StoreError>) {
        outcome.withLock { $0 = result }
    }

    /// How the work ended (success until it has).
    var result: Result<Void, StoreError> { outcome.withLock { $0 } }
}
