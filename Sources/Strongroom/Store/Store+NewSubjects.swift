import Dispatch
import StrongroomCrypto
import StrongroomPhone
import StrongroomStorage
import Synchronization

/// A new subject sealed and made ready for its insert: its id, its fresh key, its row's values and its
/// blind-index rows. `insertNew` makes them inside the write transaction; an import makes them for its
/// next batch ahead of that batch's transaction (`Store.sealAhead`), while the batch before is written.
/// A class: handed from the sealing threads to the writing one through several arrays, it is retained
/// once per hand-over rather than once per key, array and string it holds.
final class SealedNewSubject: Sendable {
    /// Its id (bound into every ciphertext's and index check's location).
    let id: SubjectID
    /// Its key, made and wrapped, to be stored with its row.
    let key: Keyring.FreshSubjectKey
    /// The subject it was sealed from (`insertNew` takes it for no other).
    let subject: NewSubject
    /// Each `PersonalField`'s ciphertext, in `PersonalField.allCases` order (null where the field is absent).
    let ciphertexts: [SQLValue]
    /// Its rows of `phone_index` and of `email_index`, for `Store.blindIndexColumns`.
    let phoneIndexRows: [[SQLValue]], emailIndexRows: [[SQLValue]]
    /// How many of its numbers could not be indexed.
    let unindexed: Int
    /// The fields sealed (what its audit entry names).
    let fields: [PersonalField]
    /// The blind-index versions its index rows were made for (`Keyring.LoadedKeys.phoneIndexes`'s).
    let indexVersions: [UInt32]
    /// The keyed hash its external id's tombstone would be found by (`ErasureKeys.tag`), made ahead
    /// with it (`sealAhead`); nil without an external id, or when sealed in its transaction.
    let externalIDTag: [UInt8]?

    init(id: SubjectID, key: Keyring.FreshSubjectKey, subject: NewSubject, ciphertexts: [SQLValue], phoneIndexRows: [[SQLValue]],
         emailIndexRows: [[SQLValue]], unindexed: Int, fields: [PersonalField], indexVersions: [UInt32], externalIDTag: [UInt8]?) {
        self.id = id
        self.key = key
        self.subject = subject
        self.ciphertexts = ciphertexts
        self.phoneIndexRows = phoneIndexRows
        self.emailIndexRows = emailIndexRows
        self.unindexed = unindexed
        self.fields = fields
        self.indexVersions = indexVersions
        self.externalIDTag = externalIDTag
    }

    /// Its row of `subjects`, for `Store.newSubjectColumns`, created and updated at `now`.
    func row(now: Int64) -> [SQLValue] {
        var row: [SQLValue] = []
        row.reserveCapacity(Store.newSubjectColumns.count)
        appendRow(now: now, to: &row)
        return row
    }

    /// Appends its row of `subjects` (`row(now:)`) to `values`, in place: on the writing thread, no
    /// array made and copied per part, or per row where the backend binds rows as appended.
    func appendRow(now: Int64, to values: inout [SQLValue]) {
        values.append(.integer(id.rawValue))
        values.append(contentsOf: Store.metadataValues(subject.metadata))
        values.append(.integer(now))
        values.append(.integer(now))
        values.append(.integer(subject.metadata.lastContactedAt.map(Store.milliseconds)))
        values.append(.int(Int(key.handle.version)))
        values.append(.int(unindexed))
        values.append(.int(fields.count))
        values.append(contentsOf: ciphertexts)
    }
}

/// A batch's new subjects written in sets of rows, sealed on two cores.
extension Store {
    /// The columns of a new subject's row, in the order `SealedNewSubject.row` gives their values.
    static let newSubjectColumns = [BulkColumn("id", .integer), BulkColumn("kind", .text), BulkColumn("external_id", .text),
                                            BulkColumn("owner", .text), BulkColumn("status", .text), BulkColumn("source", .text),
                                            BulkColumn("created_at", .integer), BulkColumn("updated_at", .integer),
                                            BulkColumn("last_contacted_at", .integer), BulkColumn("key_version", .integer),
                                            BulkColumn("unindexed_phones", .integer), BulkColumn("seal_count", .integer)]
        + PersonalField.allCases.map { BulkColumn($0.column, .blob) }

    /// Writes new subjects together, in sets of rows rather than a statement per subject. When
    /// `sealedAhead` holds every one of them sealed (`sealAhead`) under the blind-index versions that
    /// answer now, their rows are inserted as they are; otherwise (a batch not sealed ahead, a subject
    /// whose sealing ahead failed, an index rotation begun or ended meanwhile) their ids are reserved,
    /// their keys made and wrapped (one fresh key each) and their fields sealed under them on other
    /// threads, while this one inserts their rows as they are sealed. Their keys are committed in the
    /// key database on another thread while this one inserts rows (`StoreBackend.insert`): all of them
    /// when sealed ahead, else the blind-index rows; a batch of `sealingChunk` subjects or more also has
    /// the transaction's audit entries appended there, after the keys. With `cachingKeys` false the
    /// fresh keys stay out of the key cache (`Keyring.storeSubjectKeys`).
    /// Returns each one's id and count of numbers that could not be indexed.
    func insertNew(_ subjects: [NewSubject], numbers: [[String?]?], sealedAhead: [SealedNewSubject?] = [], normalizer: PhoneNormalizer,
                   now: Int64, cachingKeys: Bool = true, in write: SubjectWriteTransaction) throws(StoreError) -> [(id: SubjectID, unindexed: Int)] {
        let connection = write.connection
        // `count` rows made `sealingChunk` at a time, `row(i, &values)` appending row i's values, each
        // chunk given to `insert` (with its count and rows) as soon as it is made (`StoreBackend.inserting`:
        // on PostgreSQL a COPY whose rows the server stores while this thread makes the next ones; on
        // SQLite bound as they are appended).
        let sendInChunks = { (count: Int, row: @escaping RowAppender, insert: (Int, @escaping RowAppender) throws(StoreError) -> Void) throws(StoreError) in
            for start in stride(from: 0, to: count, by: Store.sealingChunk) {
                try insert(min(Store.sealingChunk, count - start)) { row(start + $0, &$1) }
            }
        }
        // The blind-index tables `made` has rows for; their rows, each table's in index order, given to
        // `insert` as the tables at `first` and after.
        let blindIndexTables: [(table: String, rows: KeyPath<SealedNewSubject, [[SQLValue]]>)] =
            [("phone_index", \.phoneIndexRows), ("email_index", \.emailIndexRows)]
        let indexTables = { (made: [SealedNewSubject]) in blindIndexTables.filter { _, rows in made.contains { !$0[keyPath: rows].isEmpty } } }
        let sendIndexRows = { (made: [SealedNewSubject], tables: [(table: String, rows: KeyPath<SealedNewSubject, [[SQLValue]]>)], first: Int,
                               insert: (Int, Int, @escaping RowAppender) throws(StoreError) -> Void) throws(StoreError) in
            for (position, table) in tables.enumerated() {
                let ordered = Store.inIndexOrder(made.flatMap { $0[keyPath: table.rows] })
                try sendInChunks(ordered.count, { $1.append(contentsOf: ordered[$0]) }) { (count, row) throws(StoreError) in
                    try insert(first + position, count, row)
                }
            }
        }
        let keys = keyring.keys
        // The subjects sealed ahead, each of exactly the subject at its place, under the index versions that answer now.
        let indexVersions = keys.phoneIndexes.map(\.version)
        let ahead = sealedAhead.count != subjects.count ? [] : zip(sealedAhead, subjects).compactMap { sealed, subject in
            sealed.flatMap { $0.subject == subject && $0.indexVersions == indexVersions ? $0 : nil }
        }
        let storeKeys = { @Sendable [keyring] (made: [SealedNewSubject]) throws(StoreError) in
            try keyring.storeSubjectKeys(made.map(\.key), caching: cachingKeys)
        }
        let insertIndexRows = { [backend] (made: [SealedNewSubject]) throws(StoreError) in
            let tables = indexTables(made)
            guard !tables.isEmpty else { return }
            try backend.inserting(into: tables.map { ($0.table, Store.blindIndexColumns) }, on: connection) { (insert) throws(StoreError) in
                try sendIndexRows(made, tables, 0, insert)
            }
        }
        // The keys commit on another thread while this one inserts rows (a few subjects, a create, are
        // not worth a thread), and before the commit: a row is still never committed without its key
        // (a rollback after the keys leaves orphan keys, as before). The key database's commit waits
        // for its disk (`synchronous = FULL`): beside the rows, not after them. The subjects' audit
        // entries follow their keys on that thread (`SubjectWriteTransaction.auditAlongside`): chained,
        // MAC'd and appended while the rows go in, not after them (on PostgreSQL the audit table's
        // insert is a round trip and server work of its own).
        let alongsideKeys = { (made: [SealedNewSubject], insert: () throws(StoreError) -> Void) throws(StoreError) in
            for subject in made { write.record(subject.id, .create, fields: subject.fields) }
            if subjects.count < Store.sealingChunk {
                try storeKeys(made)
                try insert()
            } else {
                try write.auditAlongside(after: { () throws(StoreError) in try storeKeys(made) }, insert)
            }
        }
        let made: [SealedNewSubject]
        if ahead.count == subjects.count {
            // Their ids were taken ahead and committed (`reserveSubjectIDsAhead`): no other writer has
            // them. Their keys commit while every row of theirs is inserted.
            made = ahead
            // The rows, then the blind-index rows, in one stream (on PostgreSQL one query of COPYs): the
            // index rows are put in order while the server stores the last rows.
            let tables = indexTables(made)
            try alongsideKeys(made) { () throws(StoreError) in
                try backend.inserting(into: [("subjects", Store.newSubjectColumns)] + tables.map { ($0.table, Store.blindIndexColumns) },
                                      on: connection) { (insert) throws(StoreError) in
                    try sendInChunks(made.count, { made[$0].appendRow(now: now, to: &$1) }) { (count, row) throws(StoreError) in
                        try insert(0, count, row)
                    }
                    try injectFault("write.rows", subjects.count)
                    try sendIndexRows(made, tables, 1, insert)
                }
            }
        } else {
            let ids: [SubjectID]
            do throws(DatabaseError) { ids = try backend.reserveSubjectIDs(subjects.count, on: connection).map(SubjectID.init(rawValue:)) } catch {
                throw .database(error)
            }
            try keyring.reserve(keys.current.usage, count: subjects.count)
            // Each subject's key made and wrapped, and its fields sealed under it: pure CPU, done on other
            // threads a chunk at a time while this one inserts the rows of the chunks sealed before (on
            // PostgreSQL streamed into one COPY, `StoreBackend.inserting`). The keys, known once all are
            // made, commit while the blind-index rows are inserted.
            made = try backend.inserting(into: "subjects", columns: Store.newSubjectColumns, on: connection) { (insertChunk) throws(StoreError) in
                try Store.pipelinedMap(subjects.count, chunk: Store.sealingChunk) { (position) throws(StoreError) in
                    var draws = try Keyring.NewKeyDraws(count: 1, extraPerKey: Store.sealedFieldsDrawByteCount)
                    return try sealNew(subjects[position], id: ids[position], numbers: numbers[position], normalizer: normalizer, keys: keys,
                                       drawingFrom: &draws)
                } consume: { (chunk) throws(StoreError) in
                    try insertChunk(chunk.map { $0.row(now: now) })
                }
            }
            try injectFault("write.rows", subjects.count)
            try alongsideKeys(made) { () throws(StoreError) in try insertIndexRows(made) }
        }
        try injectFault("write.keys", subjects.count)
        try injectFault("write.sealed", subjects.count)
        return made.map { ($0.id, $0.unindexed) }
    }

    /// Takes `count` ids for new subjects ahead of the transaction that will insert them
    /// (`StoreBackend.reserveSubjectIDsAhead`): for `sealAhead`, on the data connection between two
    /// transactions. An id left unused (its row turned out to update a stored subject, or the import
    /// stopped) is never taken by anyone: a gap in the ids, as a rolled-back insert leaves.
    func reserveSubjectIDsAhead(_ count: Int) throws(StoreError) -> [SubjectID] {
        try withData { (connection) throws(DatabaseError) in
            try backend.reserveSubjectIDsAhead(count, on: connection).map(SubjectID.init(rawValue:))
        }
    }

    /// `subjects` (with their numbers normalised as `write` takes them) sealed as new subjects under
    /// `ids` (from `reserveSubjectIDsAhead`), ahead of the transaction that writes them: an import seals
    /// its next batch so while the batch before is written. Keys, ciphertexts and index rows are pure
    /// CPU (on this thread and one more); the database is asked only to reserve the KEK's encryptions.
    /// A subject whose sealing fails gets nil, as every one does when the reservation fails: `insertNew`
    /// then seals the batch again in its transaction, which fails there as it would have, so a failure
    /// here changes nothing of what is written, thrown or reported. Each one's external id is hashed
    /// for the write's tombstone probe here too (`SealedNewSubject.externalIDTag`). The random values
    /// (keys, identifiers, nonces) are drawn for `sealingChunk` subjects at a time (`Keyring.NewKeyDraws`).
    func sealAhead(_ subjects: [NewSubject], ids: [SubjectID], numbers: [[String?]?], normalizer: PhoneNormalizer) -> [SealedNewSubject?] {
        let keys = keyring.keys
        guard (try? keyring.reserve(keys.current.usage, count: subjects.count)) != nil else { return subjects.map { _ in nil } }
        return Store.concurrentMap(subjects.count, inRunsOf: Store.sealingChunk) { (run) -> [SealedNewSubject?] in
            guard var draws = try? Keyring.NewKeyDraws(count: run.count, extraPerKey: Store.sealedFieldsDrawByteCount) else { return run.map { _ in nil } }
            return run.map { position in
                try? sealNew(subjects[position], id: ids[position], numbers: numbers.indices.contains(position) ? numbers[position] : nil,
                             normalizer: normalizer, keys: keys, drawingFrom: &draws, taggingExternalID: true)
            }
        }
    }

    /// `subject` sealed as the new subject `id`: a fresh key made and wrapped under `keys`' current KEK
    /// (whose encryptions the caller reserved), its fields sealed under that key, its blind-index rows
    /// made under `keys`' index versions; with `taggingExternalID`, its external id's tombstone tag.
    /// `numbers`: as `insertNew` takes them. Its key and public random values (its key's identifier and
    /// wrapping nonce, a nonce per field) are taken from `draws`, drawn for it and maybe others.
    func sealNew(_ subject: NewSubject, id: SubjectID, numbers: [String?]?, normalizer: PhoneNormalizer,
                 keys: Keyring.LoadedKeys, drawingFrom draws: inout Keyring.NewKeyDraws, taggingExternalID: Bool = false) throws(StoreError) -> SealedNewSubject {
        try injectFault("write.seal", 1)
        let key = try keyring.makeSubjectKey(for: id, version: 1, wrappedUnder: keys.current, drawingFrom: &draws)
        let sealed = try sealedFields(subject.personal, of: id, under: key.handle, nonces: &draws.values)
        // The key is new: only a budget smaller than one subject's fields can be exhausted.
        guard UInt64(sealed.count) <= keyring.nonceBudget else {
            throw .keyBudgetExhausted(key: "subject:\(id.rawValue):\(key.handle.version)", used: 0, budget: keyring.nonceBudget)
        }
        let index: (entries: [BlindIndexEntry], unindexed: Int), emailIndexRows: [[SQLValue]], externalIDTag: [UInt8]?
        do throws(CryptoError) {
            index = try blindIndexEntries(subject.personal.phones ?? [], numbers: numbers, of: id, normalizer: normalizer, into: keys.phoneIndexes)
            emailIndexRows = try self.emailIndexRows(subject.personal.emails ?? [], of: id, into: keys.emailIndexes)
            externalIDTag = try subject.metadata.externalID.flatMap { (externalID) throws(CryptoError) in
                taggingExternalID ? try keyring.erasureKeys.tag(externalID: externalID) : nil
            }
        } catch {
            throw .crypto(error)
        }
        // `sealed` is in `PersonalField` order: one pass puts each ciphertext in its column.
        var ciphertexts: [SQLValue] = []
        ciphertexts.reserveCapacity(PersonalField.allCases.count)
        var next = sealed.startIndex
        for field in PersonalField.allCases {
            if next < sealed.endIndex, sealed[next].field == field {
                ciphertexts.append(.blob(sealed[next].ciphertext))
                next += 1
            } else {
                ciphertexts.append(.null)
            }
        }
        return SealedNewSubject(id: id, key: key, subject: subject, ciphertexts: ciphertexts,
                                phoneIndexRows: index.entries.map { Store.phoneIndexRow($0, of: id) }, emailIndexRows: emailIndexRows,
                                unindexed: index.unindexed, fields: sealed.map(\.field), indexVersions: keys.phoneIndexes.map(\.version),
                                externalIDTag: externalIDTag)
    }

    /// Blind-index rows (of `blindIndexColumns`) in the order of the tag index's key, (key_version,
    /// tag): a batch's rows, which hash to random tags, then descend that B-tree from left to right, each
    /// page they change met in one run rather than again and again at random.
    /// The keys are read out once and positions sorted by them: comparing the rows themselves read
    /// and reference-counted two rows per comparison.
    static func inIndexOrder(_ rows: [[SQLValue]]) -> [[SQLValue]] {
        let keys = rows.map { (row) -> (version: Int64, tag: Int64) in
            guard case .integer(let version) = row[0], case .integer(let tag) = row[1] else { return (0, 0) }
            return (version, tag)
        }
        return keys.indices.sorted { keys[$0] < keys[$1] }.map { rows[$0] }
    }

    /// Runs `body`, a bulk write (an import, a blind-index rotation), with the data connection readied
    /// for one (`StoreBackend.beginBulkWrites`), and ends that after it, whether it succeeds or throws.
    /// What it throws is thrown; a failure to end is not, as it loses nothing: on SQLite, the next
    /// commit's automatic checkpoint does what the final one could not, and the larger page cache lasts
    /// at worst until the connection closes.
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
    /// are done: the foreground's failure is thrown if it failed, else the background's. The thread
    /// is one of its own (a serial queue's, which libdispatch starts whatever the machine's cores are
    /// doing): `background` is a database's round trip the writer waits for, and the global queue's
    /// threads, one per core, may all be sealing the next batch (`sealAhead`), which held it back
    /// until a chunk was done (3 ms a batch of 500 on PostgreSQL, 2026-12-07).
    static func alongside(_ background: @Sendable () throws(StoreError) -> Void, _ foreground: () throws(StoreError) -> Void) throws(StoreError) {
        let outcome = BackgroundOutcome()
        let foregroundOutcome = withoutActuallyEscaping(background) { (background) -> Result<Void, StoreError> in
            DispatchQueue(label: "strongroom.alongside").async(group: outcome.running) { outcome.record(Result { () throws(StoreError) in try background() }) }
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
        try concurrentMap(count, inRunsOf: count) { (run) throws(Failure) in try run.map(transform) }
    }

    /// `concurrentMap`, each thread's positions given to `transform` in runs of at most `runLength`
    /// consecutive positions, whose values it returns in order: for work that shares a cost over a
    /// run (one draw of random values for several subjects).
    static func concurrentMap<T: Sendable, Failure: Error>(_ count: Int, inRunsOf runLength: Int,
                                                           _ transform: @Sendable (Range<Int>) throws(Failure) -> [T]) throws(Failure) -> [T] {
        let parts = count >= 16 ? 2 : 1
        let done = Mutex<[Int: Result<[T], Failure>]>([:])
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let outcome = Result { () throws(Failure) in
                let positions = count * part / parts..<count * (part + 1) / parts
                var mapped: [T] = []
                mapped.reserveCapacity(positions.count)
                for start in stride(from: positions.lowerBound, to: positions.upperBound, by: max(runLength, 1)) {
                    mapped += try transform(start..<min(start + max(runLength, 1), positions.upperBound))
                }
                return mapped
            }
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
