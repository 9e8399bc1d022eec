import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// The blind index's (tag → subject, check) pairs of one index version, kept in the process, so that a
/// caller-ID lookup on a store whose audit trail lies beside the data (PostgreSQL) costs one round trip:
/// the hint names the subjects whose checks match the number, and one statement appends their audit
/// entries and returns their rows (`AuditTrail.record(_:with:_:)`).
///
/// A hint is never trusted for an answer. The statement appends the entries only while the index rows
/// under the number's tag are exactly those the hint holds (each subject id and check, compared in the
/// server) and none of their subjects is restricted, and the rows it returns are checked again here
/// against the number's full tag: a number changed, added or erased by any instance (this one or
/// another) since the hint was read changes the rows under its tag, so the entries are not appended, the
/// tag's pairs are replaced by the rows just read, and the lookup takes the full path. A stale hint can
/// cost a second round trip, never a wrong person or an unaudited name.
///
/// Memory: a `CallerIDHintTable` (24 bytes per number, the subject id and the 16-byte check inline, and
/// 16 bytes a slot, two slots or more per tag), plus the tags replaced since (`strongroom-bench callerid
/// --backend postgres` prints the heap's growth around the hint's read). It is read in one query on the
/// first lookup, and read again when the index version changes; between, each tag's pairs follow the
/// rows as lookups find them changed (`CallerIDHintTests.staleHintAfterChange`: the next lookup in one
/// instance sees a number another instance moved). A lookup reads one slot and one group of the table
/// where a dictionary of arrays read four or five places, each a cache miss in a large hint.
struct CallerIDHint: Sendable {
    /// One index row: whose, and its check (`PhoneBlindIndex.check`).
    struct Entry: Sendable, Equatable {
        let subject: SubjectID
        let check: InlineArray<16, UInt8>

        /// The same subject and the same check (not in constant time: a hint's checks are compared
        /// with rows just read, never with a secret).
        static func == (left: Entry, right: Entry) -> Bool {
            left.subject == right.subject && (0..<16).allSatisfy { left.check[$0] == right.check[$0] }
        }

        /// The entry of `subject`'s index row whose check is `check`.
        init(subject: SubjectID, check: InlineArray<16, UInt8>) {
            self.subject = subject
            self.check = check
        }

        /// The entry of an index row whose check is in column `column` of `row`, where the subject is in column 0.
        init(_ row: any Row, checkColumn column: Int) {
            self.init(subject: SubjectID(rawValue: row.int64(0)), check: row.withBlob(column) { bytes in
                InlineArray { index in index < bytes.count ? bytes[index] : 0 }
            })
        }
    }

    /// The index version whose rows these are.
    let indexVersion: UInt32
    /// Every row of the version as read; a tag absent there had no rows when read.
    private let table: CallerIDHintTable
    /// The rows of the tags replaced since, by truncated tag (an empty array for a tag with none now):
    /// they stand for the table's.
    private var replaced: [Int64: [Entry]] = [:]

    /// Reads every row of the index version `indexVersion` from `data` (the store's data connection).
    init(indexVersion: UInt32, from data: any Database) throws(DatabaseError) {
        self.indexVersion = indexVersion
        table = try CallerIDHint.readTable(indexVersion: indexVersion, from: data)
    }

    /// Every row of the index version `indexVersion` in `data`, in one query: `statement`, `readAll` or a
    /// backend's own over the same columns and parameter.
    static func readTable(indexVersion: UInt32, from data: any Database,
                          statement: String = readAll) throws(DatabaseError) -> CallerIDHintTable {
        var tags: [Int64] = []
        var entries: [Entry] = []
        try data.forEachRow(statement, [.int(Int(indexVersion))]) { row in
            tags.append(row.int64(1))
            entries.append(Entry(row, checkColumn: 2))
        }
        return CallerIDHintTable(tags: tags, entries: entries)
    }

    /// The statement reading the whole hint: once per process and index version, a walk of the version's
    /// rows in the covering index by design on PostgreSQL (`QueryPlanTests`; SQLite's is `SQLiteCallerIDHint.readAll`).
    static let readAll = "SELECT subject_id, tag, check_mac FROM phone_index WHERE key_version = ?"

    /// The rows under `tag`, as last read.
    func entries(under tag: Int64) -> ArraySlice<Entry> {
        if !replaced.isEmpty, let entries = replaced[tag] { return entries[...] }
        return table[tag]
    }

    /// Replaces the rows under `tag` with `entries`, just read. Rows the table already holds (a number
    /// no one holds, its tag's rows unchanged) are not kept twice, so that while nothing changes a
    /// lookup does not look in `replaced` at all.
    mutating func replace(under tag: Int64, with entries: [Entry]) {
        replaced[tag] = entries.elementsEqual(table[tag]) ? nil : entries
    }

    /// The rows of `entries` as the server lists them in `CallerIDHint.sameRowsCondition`: each subject id
    /// (8 bytes, big-endian, as `int8send` writes it) and check, ordered by subject id then check, end to end.
    static func fingerprint(_ entries: ArraySlice<Entry>) -> [UInt8] {
        let sorted = entries.sorted { left, right in
            if left.subject.rawValue != right.subject.rawValue { return left.subject.rawValue < right.subject.rawValue }
            for index in 0..<16 where left.check[index] != right.check[index] { return left.check[index] < right.check[index] }
            return false
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(sorted.count * 24)
        for entry in sorted {
            let subject = UInt64(bitPattern: entry.subject.rawValue)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: subject >> UInt64(shift))) }
            for index in 0..<16 { bytes.append(entry.check[index]) }
        }
        return bytes
    }

    /// The condition under which a lookup's audit entries are appended: the index rows read under the tag
    /// (`audited_read`) are exactly those whose fingerprint is `?3`, and none of their subjects is restricted,
    /// in one pass of one aggregate over the read's rows.
    ///
    /// The rows are compared as bytes (a quarter of the statement's time went to `encode` and text
    /// concatenation when they were compared in hex), in the order the read returns them, which is the
    /// fingerprint's: `hintedRead` orders them, and the index it probes already holds them in that order,
    /// so no sort runs (`QueryPlanTests`). Sorting inside the aggregate (`string_agg(… ORDER BY …)`) set up
    /// a sort for every lookup: 4–7 µs of the statement's 44 µs of server time, measured on a copy of its
    /// tables.
    /// PostgreSQL documents that an aggregate fed from a sorted subquery sees that order "usually"
    /// (<https://www.postgresql.org/docs/current/functions-aggregate.html>); where it would not, the
    /// fingerprints differ, nothing is appended and the lookup takes the full path: a round trip more,
    /// never a wrong answer.
    static let sameRowsCondition = """
        SELECT coalesce(string_agg(int8send(subject_id) || check_mac, ''::bytea), ''::bytea) = ?3::bytea
               AND NOT coalesce(bool_or(restricted <> 0), false)
        FROM audited_read
        """

    /// The candidates under the tag with their checks, in the fingerprint's order (subject id, then check).
    static let hintedRead = CallerIDProbe.withChecks.sql + " ORDER BY p.subject_id, p.check_mac"

    /// The read a hinted lookup appends its entries with: the candidates under the tag with their checks,
    /// over `arguments` (`?1` version, `?2` tag, `?3` the hint's fingerprint of the tag's rows).
    static func auditedRead(_ arguments: [SQLValue]) -> AuditedRead {
        AuditedRead(rows: hintedRead, columnCount: CallerCandidate.columnCount + 1,
                    condition: sameRowsCondition, arguments: arguments)
    }

    /// The candidates under a tag, with the newest index version in the store (`?1` version, `?2` tag): the
    /// SQLite hint refills a tag with this (`SQLiteCallerIDHint`), the holders' rows included.
    static let candidatesAndNewestVersion = """
        SELECT c.*, m.newest FROM (SELECT max(key_version) AS newest FROM phone_index) AS m
        LEFT JOIN (\(CallerIDProbe.withChecks.sql)) AS c ON true
        """

    /// The index rows under a tag, subject id and check only, with the newest index version in the store
    /// (`?1` version, `?2` tag), read from the covering tag index alone: a lookup the hint finds no one for
    /// reads this, and answers "no one" only when the rows still say so and no newer index version exists
    /// (an index rotation finished by another process). The candidates' `subjects` rows are not read: for
    /// a number no one holds (a fifth of the benchmark's lookups) they are of no use, and reading them
    /// took the server 72 µs a lookup against the plain query's 49 (2026-12-07); a row that has come to
    /// hold the number since the hint was read sends the lookup down the full path, a round trip more.
    static let entriesAndNewestVersion = """
        SELECT p.subject_id, p.check_mac, m.newest FROM (SELECT max(key_version) AS newest FROM phone_index) AS m
        LEFT JOIN phone_index p ON p.key_version = ?1 AND p.tag = ?2
        """
}

/// A row of the caller-ID probe with checks (`CallerIDProbe.withChecks`): its hint entry and, when it
/// holds the number looked up, the candidate (the other rows' clear columns are not read).
private struct CheckedCandidate {
    let entry: CallerIDHint.Entry
    let candidate: CallerCandidate?

    /// `row` checked against the number's full tag (`verdict`).
    init(_ row: any Row, index: PhoneBlindIndex, fullTag: [UInt8], verified: [(entry: CallerIDHint.Entry, holds: Bool)]) {
        let (entry, holds) = CheckedCandidate.verdict(row, checkColumn: CallerCandidate.columnCount, index: index,
                                                      fullTag: fullTag, verified: verified)
        self.entry = entry
        candidate = holds ? CallerCandidate(row) : nil
    }

    /// The hint entry of an index row whose subject is in column 0 and check in `checkColumn`, and whether
    /// it holds the number of `fullTag`, checked on the bytes stored. A row whose subject and 16-byte check
    /// are those of an entry in `verified` (the hint's entries under the tag, each already checked against
    /// the same full tag in this lookup) takes that verdict: the keyed check is a function of the subject,
    /// the full tag and the stored bytes alone, so computing it again for the same bytes could only give
    /// the same answer.
    static func verdict(_ row: any Row, checkColumn: Int, index: PhoneBlindIndex, fullTag: [UInt8],
                        verified: [(entry: CallerIDHint.Entry, holds: Bool)]) -> (entry: CallerIDHint.Entry, holds: Bool) {
        let entry = CallerIDHint.Entry(row, checkColumn: checkColumn)
        let holds = row.withBlob(checkColumn) { stored in
            if stored.count == PhoneBlindIndex.checkByteCount, let known = verified.first(where: { $0.entry == entry }) {
                return known.holds
            }
            return index.matches(stored, subject: entry.subject, fullTag: fullTag.span)
        }
        return (entry, holds)
    }
}

extension Store {
    /// Finds the people holding `e164` in one round trip, through the hint; nil when the full path must
    /// answer (no hint for this store's trail or purpose, an index rotation under way or finished
    /// elsewhere, or rows changed since the hint was read and no one of them holds the number).
    ///
    /// Only where the audit trail appends beside the data and is the store's first hook, for a declared
    /// purpose not resting on consent (whose check would need a read of the ledger first).
    func callerIDThroughHint(_ e164: String, context: AccessContext) throws(StoreError) -> [CallerMatch]? {
        // The trail first: on SQLite this is every lookup's first step, and reading the keys takes a lock.
        guard recordsToAuditTrail, auditTrail.appendsBesideData else { return nil }
        let indexes = keyring.keys.phoneIndexes
        guard indexes.count == 1, let index = indexes.first,
              let declaration = purposeDeclaration(context.purpose), declaration.lawfulBasis != .consent else { return nil }
        let tags: PhoneBlindIndex.Tags
        do throws(CryptoError) { tags = try index.tags(for: e164) } catch { throw .crypto(error) }
        let known = try hintEntries(under: tags.truncated, indexVersion: index.version)
        // Each entry's verdict, kept so that the rows the statement returns with the same bytes are not checked twice.
        let verified = known.map { entry in (entry: entry, holds: index.matches(entry.check.span, subject: entry.subject, fullTag: tags.full.span)) }
        var holders: [SubjectID] = []
        holders.reserveCapacity(known.count)
        for (entry, holds) in verified where holds && !holders.contains(entry.subject) { holders.append(entry.subject) }
        let arguments: [SQLValue] = [.int(Int(index.version)), .integer(tags.truncated)]
        guard !holders.isEmpty else { return try hintedAbsence(tags, index: index, arguments: arguments, verified: verified) }
        let now = Date()
        let events = holders.map { AuditEvent(.decrypt, context, subject: $0, fields: Store.nameOnly, time: now) }
        let audited = CallerIDHint.auditedRead([arguments[0], arguments[1], .blob(CallerIDHint.fingerprint(known))])
        var rows: [CheckedCandidate] = []
        let appended = try reportingAuditFailure(of: auditTrail) {
            try auditTrail.record(events, with: audited) { rows.append(CheckedCandidate($0, index: index, fullTag: tags.full, verified: verified)) }
        }
        guard let appended else { return nil }
        // The entries are committed to the trail; the other hooks have them before any name is opened.
        if appended { try audit(events, skippingTrail: true) }
        var candidates: [CallerCandidate] = []
        candidates.reserveCapacity(rows.count)
        for row in rows {
            guard let candidate = row.candidate, !candidates.contains(where: { $0.id == candidate.id }) else { continue }
            // Appended: the rows are those the hint held, so the holders are those the entries name.
            guard !appended || holders.contains(candidate.id) else { continue }
            candidates.append(candidate)
        }
        if !appended {
            let current = rows.map(\.entry)
            callerIDHint.withLock { $0?.replace(under: tags.truncated, with: current) }
            guard !candidates.isEmpty else { return nil }
        }
        return try answer(candidates, okEntriesCommitted: appended, context: context)
    }

    /// The answer for a number the hint holds no one for: no one ([]) when the tag's index rows read now
    /// still hold no one and no newer index version exists; nil (the full path) otherwise. The rows read
    /// replace the hint's under the tag. `verified`: the hint's entries under the tag with their verdicts.
    private func hintedAbsence(_ tags: PhoneBlindIndex.Tags, index: PhoneBlindIndex, arguments: [SQLValue],
                               verified: [(entry: CallerIDHint.Entry, holds: Bool)]) throws(StoreError) -> [CallerMatch]? {
        var newest: Int64?
        var current: [CallerIDHint.Entry] = []
        var someoneHolds = false
        try withData { (connection) throws(DatabaseError) in
            try connection.forEachRow(CallerIDHint.entriesAndNewestVersion, arguments) { row in
                newest = row.isNull(2) ? nil : row.int64(2)
                guard !row.isNull(0) else { return }
                let (entry, holds) = CheckedCandidate.verdict(row, checkColumn: 1, index: index, fullTag: tags.full, verified: verified)
                current.append(entry)
                someoneHolds = someoneHolds || holds
            }
        }
        guard (newest ?? 0) <= Int64(index.version) else { return nil }
        callerIDHint.withLock { $0?.replace(under: tags.truncated, with: current) }
        return someoneHolds ? nil : []
    }

    /// The hint's rows under `tag` for the index version `indexVersion`, read first if the hint is of
    /// another version or was not read yet.
    private func hintEntries(under tag: Int64, indexVersion: UInt32) throws(StoreError) -> ArraySlice<CallerIDHint.Entry> {
        if let entries = callerIDHint.withLock({ $0?.indexVersion == indexVersion ? $0?.entries(under: tag) : nil }) { return entries }
        let loaded = try withData { (connection) throws(DatabaseError) in try CallerIDHint(indexVersion: indexVersion, from: connection) }
        callerIDHint.withLock { $0 = loaded }
        return loaded.entries(under: tag)
    }
}

/// Every row of one index version as read at once, grouped by truncated tag: the entries in one array,
/// each tag's rows side by side, and an open-addressing table from a tag to its group. The tags are
/// already keyed hashes, so their low bits index the table (no hashing), and a lookup reads one slot and
/// one group: two places in memory where a dictionary of arrays reads four or five (its bucket map,
/// keys, values, the array's header, its elements), each a cache miss in a hint of millions of rows.
///
/// Memory: 24 bytes a row (`CallerIDHint.Entry`) and 16 bytes a slot, two slots or more per tag held.
struct CallerIDHintTable: Sendable {
    /// A tag's group in `entries`; `tag` is `Slot.vacant` in a slot no tag took.
    private struct Slot {
        static let vacant: Int64 = -1
        var tag = Slot.vacant
        var start: UInt32 = 0
        var count: UInt32 = 0
    }

    private let entries: [CallerIDHint.Entry]
    private let slots: [Slot]
    /// `slots.count - 1`, a power of two less one.
    private let mask: Int

    /// The table of the rows whose tags are `tags` and entries `entries` (in the same order; in tag order,
    /// as a walk of a covering index gives them, they are kept as they are, else sorted by tag). Tags are
    /// the non-negative leading bits of a keyed hash.
    init(tags: [Int64], entries: [CallerIDHint.Entry]) {
        precondition(tags.count == entries.count, "one tag per entry")
        var tags = tags
        var entries = entries
        if !zip(tags, tags.dropFirst()).allSatisfy({ $0 <= $1 }) {
            let order = tags.indices.sorted { tags[$0] < tags[$1] }
            (tags, entries) = (order.map { tags[$0] }, order.map { entries[$0] })
        }
        var groups = 0
        for index in tags.indices where index == 0 || tags[index - 1] != tags[index] { groups += 1 }
        // At most half full, so that a probe for a tag held by no row ends at a vacant slot within a step or two.
        var slotCount = 1
        while slotCount < 2 * groups { slotCount *= 2 }
        var slots = [Slot](repeating: Slot(), count: slotCount)
        mask = slotCount - 1
        var start = 0
        while start < tags.count {
            var end = start + 1
            while end < tags.count, tags[end] == tags[start] { end += 1 }
            var slot = Int(truncatingIfNeeded: tags[start]) & mask
            while slots[slot].tag != Slot.vacant { slot = (slot + 1) & mask }
            slots[slot] = Slot(tag: tags[start], start: UInt32(start), count: UInt32(end - start))
            start = end
        }
        self.slots = slots
        self.entries = entries
        // Each lookup reads one slot and one group at random places: in huge pages, without a page walk.
        preferHugePages(for: self.slots)
        preferHugePages(for: self.entries)
    }

    /// The rows under `tag` (empty when none).
    subscript(tag: Int64) -> ArraySlice<CallerIDHint.Entry> {
        var slot = Int(truncatingIfNeeded: tag) & mask
        while true {
            let found = slots[slot]
            if found.tag == tag { return entries[Int(found.start)..<Int(found.start + found.count)] }
            if found.tag == Slot.vacant { return [] }
            slot = (slot + 1) & mask
        }
    }
}
