import StrongroomCrypto
import StrongroomStorage

/// The blind index's (tag → subject, check) pairs of one index version kept in the process on SQLite, so
/// that a caller-ID lookup skips the index probe and the keyed checks in SQL: the hint names the subjects
/// whose checks match the number, and their rows are read by primary key.
///
/// It is exact, not a guess: it answers only while the data is the data it was read from, which SQLite
/// tells without a system call (`SQLiteConnection.dataVersion`, a counter that moves whenever the main
/// database changes, through this connection or any other, in any process). Every statement a hinted
/// lookup runs is followed by that check; versions only grow, so the last check equal to `validAt` means
/// every read of the lookup saw that data. Then:
/// - this store's own writes (its one data connection) keep it exact: TEMP triggers on `phone_index`
///   report each changed row's tag into the connection's change journal (`SQLiteConnection.keepChangeJournal`),
///   which notes the data versions before and after each commit. A commit that began from `validAt` (it
///   holds the write lock, so nothing else changed in between) moves `validAt` to its own version, and the
///   tags it reported are read again;
/// - any other change (another process or another opening of the store, a commit that began from other
///   data, a journal that overflowed) empties it: from then on each tag is read on its first lookup (the
///   candidates with their checks and the newest index version, one statement) and kept, so the hint
///   refills as lookups go, with no pause and no re-read of the whole index.
///
/// A lookup of a tag the hint does not hold, or when an index version newer than the keys' exists (an
/// index rotation elsewhere: the keys must be reloaded), or while two index versions answer, takes the
/// probe (`Store.subjectsHolding`). So a stale hint never gives a wrong person nor misses one the probe
/// would find; the row's own check (`PhoneBlindIndex.matches`) decides each match.
///
/// Memory: a `CallerIDHintTable` (24 bytes a number, 16 bytes a slot, two slots or more per tag), plus
/// the tags read again since; read whole on the first lookup, as on PostgreSQL (`strongroom-bench
/// callerid` reports it).
struct SQLiteCallerIDHint: Sendable {
    /// The index version whose rows these are.
    let indexVersion: UInt32
    /// The data version at which the held tags' rows are those in `entriesByTag`; nil when none is held.
    private var validAt: UInt32?
    /// Every row of the index version as read whole on the first lookup; nil once the hint was emptied.
    private var table: CallerIDHintTable?
    /// The rows of the tags read since, by truncated tag (an empty array for a tag known to have none):
    /// they replace the table's for those tags.
    private var entriesByTag: [Int64: [CallerIDHint.Entry]] = [:]
    /// True while every tag of the index is held (the table, and the tags read since); false once the
    /// hint was emptied, when only the tags in `entriesByTag` are known.
    var holdsEveryTag: Bool { table != nil }
    /// Tags this store's writes changed since they were read (read again before the next answer).
    private var changedTags: Set<Int64> = []

    /// The most tag changes the journal keeps between two lookups: beyond that (an import, a rotation in
    /// this process) the hint is emptied instead.
    static let journalLimit = 4_096

    /// The SQL function the triggers report a changed tag through.
    static let reportFunction = "strongroom_phone_index_changed"

    /// TEMP triggers (this connection's own, stored nowhere) reporting each changed index row's tag.
    static let triggers = """
        CREATE TEMP TRIGGER IF NOT EXISTS caller_id_hint_insert AFTER INSERT ON main.phone_index
        BEGIN SELECT \(reportFunction)(NEW.tag); END;
        CREATE TEMP TRIGGER IF NOT EXISTS caller_id_hint_delete AFTER DELETE ON main.phone_index
        BEGIN SELECT \(reportFunction)(OLD.tag); END;
        CREATE TEMP TRIGGER IF NOT EXISTS caller_id_hint_update AFTER UPDATE ON main.phone_index
        BEGIN SELECT \(reportFunction)(OLD.tag); SELECT \(reportFunction)(NEW.tag); END;
        """

    /// The statement reading the whole hint, once per process and index version: a walk of the table in
    /// rowid order (`+key_version` keeps the version out of every index's search, as SQLite documents:
    /// <https://www.sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_>). Since data
    /// version 13 the tag index holds neither subject nor check, and read through it every row would be a
    /// lookup by rowid at a random place in the table; the rows are sorted by tag in the process instead
    /// (`CallerIDHintTable`).
    static let readAll = "SELECT subject_id, tag, check_mac FROM phone_index WHERE +key_version = ?"

    /// The newest index version in the data: above the hint's, the keys are behind an index rotation.
    static let newestIndexVersion = "SELECT max(key_version) FROM phone_index"

    /// A candidate's row by primary key, as the probe reads it (`CallerCandidate.columns`).
    static let candidateByID = "SELECT \(CallerCandidate.subjectColumns) FROM subjects s WHERE s.id = ?"

    /// Reads every row of `indexVersion` from `connection` (starting its change journal first, so that
    /// no write is missed between); an empty hint, refilled tag by tag, when the data changed during the
    /// read or holds a newer index version.
    static func read(indexVersion: UInt32, from connection: SQLiteConnection) throws(DatabaseError) -> SQLiteCallerIDHint {
        try connection.keepChangeJournal(function: reportFunction, keyLimit: journalLimit)
        try connection.execute(triggers)
        _ = connection.takeChangeJournal()
        var hint = SQLiteCallerIDHint(indexVersion: indexVersion)
        hint.table = try CallerIDHint.readTable(indexVersion: indexVersion, from: connection, statement: readAll)
        let version = connection.dataVersion
        let newest = try connection.scalarInteger(newestIndexVersion)
        if connection.dataVersion == version, (newest ?? 0) <= Int64(indexVersion) { hint.validAt = version } else { hint.empty() }
        return hint
    }

    private init(indexVersion: UInt32) {
        self.indexVersion = indexVersion
    }

    /// The subjects holding the number of `tags` under `index`, with their rows; nil when the probe must
    /// answer (see the type's description). `prefetch` is told each holder before its row is read, so
    /// that what the decrypt will need (its key's place in the key cache) loads while SQLite reads.
    mutating func candidates(holding tags: PhoneBlindIndex.Tags, index: PhoneBlindIndex,
                             on connection: SQLiteConnection, prefetch: (SubjectID) -> Void) throws(DatabaseError) -> [CallerCandidate]? {
        follow(connection.takeChangeJournal())
        if holdsEveryTag, !changedTags.isEmpty {
            for tag in changedTags { _ = try readTag(tag, index: index, tags: nil, on: connection) }
            changedTags = []
        }
        if let entries = entries(under: tags.truncated) {
            var candidates: [CallerCandidate] = []
            var rowsFound = true
            for entry in entries where !candidates.contains(where: { $0.id == entry.subject })
                && index.matches(entry.check.span, subject: entry.subject, fullTag: tags.full.span) {
                prefetch(entry.subject)
                guard let candidate = try connection.firstRow(Self.candidateByID, [.integer(entry.subject.rawValue)], CallerCandidate.init)
                else { rowsFound = false; break }
                candidates.append(candidate)
            }
            // With no row to read, the newest index version's read tells the data version.
            let newest = candidates.isEmpty && rowsFound ? try connection.scalarInteger(Self.newestIndexVersion) : nil
            if rowsFound, (newest ?? 0) <= Int64(index.version), connection.dataVersion == validAt { return candidates }
            empty()
        }
        return try readTag(tags.truncated, index: index, tags: tags, on: connection)
    }

    /// Reads the rows under `tag` (the candidates with their checks, and the newest index version) and
    /// keeps them; returns the candidates holding the number of `tags`, or nil when the keys are behind
    /// a newer index version (or `tags` is nil: a refresh only).
    private mutating func readTag(_ tag: Int64, index: PhoneBlindIndex, tags: PhoneBlindIndex.Tags?,
                                  on connection: SQLiteConnection) throws(DatabaseError) -> [CallerCandidate]? {
        var newest: Int64?
        var entries: [CallerIDHint.Entry] = []
        var holders: [CallerCandidate] = []
        try connection.forEachRow(CallerIDHint.candidatesAndNewestVersion, [.int(Int(index.version)), .integer(tag)]) { row in
            newest = row.isNull(CallerCandidate.columnCount + 1) ? nil : row.int64(CallerCandidate.columnCount + 1)
            guard !row.isNull(0) else { return }
            let entry = CallerIDHint.Entry(row, checkColumn: CallerCandidate.columnCount)
            entries.append(entry)
            if let tags, !holders.contains(where: { $0.id == entry.subject }),
               index.matches(entry.check.span, subject: entry.subject, fullTag: tags.full.span) {
                holders.append(CallerCandidate(row))
            }
        }
        let version = connection.dataVersion
        guard (newest ?? 0) <= Int64(index.version) else {
            empty()
            return nil
        }
        if version != validAt {
            empty()
            validAt = version
        }
        entriesByTag[tag] = entries
        return tags == nil ? nil : holders
    }

    /// Follows this store's own commits since the last lookup: each that began from the data the hint
    /// holds moves it to the commit's data, its tags to be read again; anything else empties the hint.
    private mutating func follow(_ journal: ChangeJournalEntries) {
        guard journal.complete else { return empty() }
        for commit in journal.transactions {
            guard commit.fromVersion == validAt else { return empty() }
            validAt = commit.toVersion
            for tag in commit.keys {
                if holdsEveryTag { changedTags.insert(tag) } else { entriesByTag[tag] = nil }
            }
        }
        if changedTags.count > Self.journalLimit { empty() }
    }

    /// Forgets every tag: each is read again on its next lookup.
    private mutating func empty() {
        (validAt, table, entriesByTag, changedTags) = (nil, nil, [:], [])
    }

    /// The rows under `tag` if known: read since the table, or the table's (none when it has none).
    private func entries(under tag: Int64) -> ArraySlice<CallerIDHint.Entry>? {
        // Empty until this store writes or the hint is emptied: no hashing on the lookups before.
        if !entriesByTag.isEmpty, let read = entriesByTag[tag] { return read[...] }
        return table?[tag]
    }
}

extension Store {
    /// The subjects holding `e164`, with their rows, through the SQLite hint (`SQLiteCallerIDHint`), read
    /// whole on the first lookup; nil when the probe must answer (another backend, two index versions
    /// answering, or the hint cannot say).
    func candidatesThroughSQLiteHint(_ e164: String) throws(StoreError) -> [CallerCandidate]? {
        let indexes = keyring.keys.phoneIndexes
        // A metatype comparison: `backend is SQLiteBackend` is a dynamic cast, on every lookup.
        guard indexes.count == 1, let index = indexes.first, type(of: backend) == SQLiteBackend.self else { return nil }
        let tags: PhoneBlindIndex.Tags
        do throws(CryptoError) { tags = try index.tags(for: e164) } catch { throw .crypto(error) }
        return try withData { (connection) throws(DatabaseError) -> [CallerCandidate]? in
            guard let connection = connection as? SQLiteConnection else { return nil }
            // Under the data connection's lock, so no write of this store runs meanwhile (the lock order: data, then hint).
            return try sqliteCallerIDHint.withLock { (hint) throws(DatabaseError) -> [CallerCandidate]? in
                if hint?.indexVersion != index.version {
                    hint = try SQLiteCallerIDHint.read(indexVersion: index.version, from: connection)
                }
                return try hint?.candidates(holding: tags, index: index, on: connection, prefetch: keyring.prefetchSubjectKey)
            }
        }
    }
}
