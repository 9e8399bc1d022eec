import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// The built-in audit log of a PostgreSQL store: the same MAC'd JSON lines and chain as the folder
/// store's segment files, one row per entry in the table `audit_log` beside the data, so that every
/// service instance sharing the store appends to one chain.
///
/// An append is one `INSERT` of the new entries, committed before `record` returns (so no plaintext
/// leaves the store before its entry is committed and, with PostgreSQL's default `synchronous_commit`,
/// durable). It chains after the last entry this process knows of, and takes the transaction-level
/// advisory lock `appendLock` before it inserts. The sequence number is the primary key, so when
/// another process appended meanwhile the insert fails as a whole. The log then takes its turn: in a
/// transaction holding that lock (no one else can insert until it commits) it reads the entries
/// appended since the one it knows, checks that they chain from it, and chains its own after the last.
/// That cannot lose again, so under contention an append waits in line rather than retrying; while
/// other processes keep appending, the next append takes its turn at once, and the first one that finds
/// no one else appended since goes back to the single statement. Entry n+1 can only be written by
/// someone who saw entry n committed, and never twice: one chain, no forks, no gaps, and one round trip
/// while no one else writes. A tail read back whole is first checked against the signed head
/// (`AuditEndCheck`): rows cut off the end are a gap, and nothing is appended after one until it is
/// acknowledged.
///
/// Thread safety: safe to call from any thread; calls are serialised.
final class PostgresAuditLog: AuditTrail {
    /// The table's name, shown as the place of a bad entry.
    static let table = "audit_log"
    /// How many times an append chains again before it gives up (fail closed): after the first try it
    /// waits for its turn, so only rows cut off the end meanwhile make it try again.
    static let attempts = 1000
    /// The transaction-level advisory lock every insert into the table takes first: the audit
    /// connection's write lock, which a turn (`PostgresConnection.beginLocked`) holds until its commit.
    private let appendLock: Int64
    /// The most entries a turn reads since the one it knew: with more (a process idle while others
    /// appended much), it reads the end and checks it against the signed head instead, as a first read does.
    static let turnReadLimit = 1000
    private let state: Mutex<State>
    /// The statements `record(_:with:_:)` made, by entry count, with the read each was made for: a
    /// lookup reuses the text instead of building it again (about a microsecond of a lookup's CPU).
    private let recordStatements = Mutex<[Int: (rows: String, condition: String, sql: String)]>([:])
    private let mac: HMACSHA256
    private let genesis: [UInt8]
    private let headKeeper: AuditHeadKeeper
    private let endCheck: AuditEndCheck

    private struct State: ~Copyable {
        let connection: PostgresConnection
        /// The last entry this process knows of; nil until read.
        var tail: (sequence: UInt64, mac: [UInt8])?
        /// True when others appended before this process's last append: the next one takes its turn at once.
        var contended = false
    }

    init(connection: consuming sending PostgresConnection, mac: HMACSHA256, storeID: [UInt8],
         headStore: any AuditHeadStore) throws(AuditLogError) {
        self.appendLock = connection.writeLockKey
        self.state = Mutex(State(connection: connection, tail: nil))
        self.mac = mac
        self.headKeeper = AuditHeadKeeper(store: headStore)
        self.endCheck = AuditEndCheck(mac: mac, headStore: headStore)
        do { genesis = try AuditLineFormat.genesis(mac: mac, storeID: storeID) } catch { throw .crypto(error) }
        // Appends chain after the last entry this process knows of without reading the table's end: a
        // head is saved only while the table holds the saved head's entry (see `checkSavedHead`).
        headKeeper.checkSavedHead { [weak self] sequence in try self?.entryMAC(at: sequence) }
    }

    /// The MAC of the table's entry `sequence`; nil when the table holds none there (or an unreadable
    /// line, or the entry of another number).
    private func entryMAC(at sequence: UInt64) throws -> [UInt8]? {
        let line = try state.withLock { state in
            try state.connection.firstRow("SELECT line FROM audit_log WHERE sequence = ?", [.integer(Int64(sequence))]) { $0.blob(0) ?? [] }
        }
        guard let line, let entry = AuditLineFormat.split(PostgresAuditLog.withoutNewline(line)), entry.sequence == sequence else { return nil }
        return entry.mac
    }

    func append(_ events: [AuditEvent]) throws -> UInt64? {
        guard !events.isEmpty else { return nil }
        let rows = Array(repeating: "(?::bigint, ?::bytea)", count: events.count).joined(separator: ", ")
        // Inserted only while the entry chained after is still there: rows cut off the end under a
        // running process make its next append read the tail back and check it.
        let sql = """
            WITH appended AS (
                INSERT INTO audit_log (sequence, line) SELECT v.sequence, v.line FROM (VALUES \(rows)) AS v(sequence, line)
                \(PostgresAuditLog.serialised(appendLock)) WHERE ? = 0 OR EXISTS (SELECT 1 FROM audit_log WHERE sequence = ?)
                RETURNING 1)
            SELECT count(*) FROM appended
            """
        return try appendChained(events, sql, arguments: { previous, values in values + [.integer(Int64(previous)), .integer(Int64(previous))] }) {
            rows -> Attempt<Int> in
            rows.first?.int64(0) == Int64(events.count) ? .appended(0) : .chainAgain
        }.lastSequence
    }

    var appendsBesideData: Bool { true }

    /// Appends `events` in the statement that reads `read`, as `append(_:)` appends them (chained after
    /// the last entry this process knows of, only while that entry is still there, again after losing a
    /// race): the entries are inserted only when `read.condition` holds too, and the statement, committed
    /// before this returns, also returns the read's rows. One round trip while no one else appends.
    func record(_ events: [AuditEvent], with read: AuditedRead, _ visit: (any Row) throws -> Void) throws -> Bool? {
        guard !events.isEmpty else { return nil }
        let sql = recordStatement(entries: events.count, with: read)
        let appended = try appendChained(events, sql, arguments: { previous, values in
            var arguments: [SQLValue] = []
            arguments.reserveCapacity(read.arguments.count + values.count + 1)
            arguments += read.arguments
            arguments += values
            arguments.append(.integer(Int64(previous)))
            return arguments
        }) {
            statementRows -> Attempt<Void> in
            // Every row carries the verdict; a read with no rows is one row of NULLs but for it.
            let (appendedCount, predecessorFound) = statementRows.last.map {
                ($0.int64(read.columnCount), $0.int64(read.columnCount + 1) != 0)
            } ?? (0, false)
            // Nothing appended and the entry chained after gone (rows cut off the end): the tail is read
            // back and checked, as `append(_:)` does, and the rows of this try are not visited.
            guard appendedCount == events.count || predecessorFound else { return .chainAgain }
            for row in statementRows where !row.isNull(0) { try visit(row) }
            // Otherwise nothing appended: the read's condition did not hold.
            return appendedCount == events.count ? .appended(()) : .notAppended(())
        }
        return appended.lastSequence != nil
    }

    /// The statement of `record(_:with:_:)` for `count` entries and `read` (`appendingSQL`), made once.
    private func recordStatement(entries count: Int, with read: AuditedRead) -> String {
        if let made = recordStatements.withLock({ $0[count] }), made.rows == read.rows, made.condition == read.condition {
            return made.sql
        }
        let sql = PostgresAuditLog.appendingSQL(entries: count, with: read, lock: appendLock)
        recordStatements.withLock { $0[count] = (read.rows, read.condition, sql) }
        return sql
    }

    /// What one try at an append did.
    private enum Attempt<Result: Sendable> {
        /// Every entry was inserted.
        case appended(Result)
        /// Nothing was inserted: the append's own condition did not hold.
        case notAppended(Result)
        /// Nothing was inserted: the entry chained after is gone (rows cut off the end).
        case chainAgain
    }

    /// Appends `events` by `sql` (with the values `arguments` gives for the sequence number of the entry
    /// chained after and each entry's sequence number and line; `outcome` says what its rows mean),
    /// chained after the last entry this process knows of. When another process appended meanwhile (the
    /// insert fails on the primary key), again in a turn: a transaction holding `appendLock` that reads
    /// the entries appended since (`advancedTail`), chains after them and commits. When the entry
    /// chained after is gone, after the real last entry, read and checked against the signed head. The
    /// sequence number the last entry took (nil when the statement did not append them), and what
    /// `outcome` returned.
    private func appendChained<Result: Sendable>(_ events: [AuditEvent], _ sql: String,
                                                 arguments: (_ previous: UInt64, _ entries: [SQLValue]) -> [SQLValue],
                                                 outcome: ([any Row]) throws -> Attempt<Result>) throws
        -> (lastSequence: UInt64?, result: Result) {
        let (lastSequence, result, dueHead) = try state.withLock { state throws -> (UInt64?, Result, AuditHead?) in
            // A head found deleted: the tail is read back and checked against the head.
            if headKeeper.takeEndCheckDue() { state.tail = nil }
            let connection = state.connection
            for attempt in 0..<PostgresAuditLog.attempts {
                let known = try state.tail ?? checkedTail(connection)
                let (tried, after, last): (Attempt<Result>, (sequence: UInt64, mac: [UInt8]), (sequence: UInt64, mac: [UInt8]))
                do {
                    if attempt == 0 && !state.contended {
                        let (chainedLast, values) = try chained(events, after: known)
                        let rows = try connection.rows(sql, arguments(known.sequence, values)) { $0 }
                        (tried, after, last) = (try outcome(rows), known, chainedLast)
                    } else {
                        // Its turn: no one else inserts until the commit, one round trip later.
                        var lines: [ArraySlice<UInt8>] = []
                        try connection.beginLocked(reading: """
                            SELECT line FROM audit_log WHERE sequence >= \(known.sequence) ORDER BY sequence LIMIT \(PostgresAuditLog.turnReadLimit)
                            """) {
                            lines.append(PostgresAuditLog.withoutNewline($0.blob(0) ?? []))
                        }
                        let (current, othersAppended, chainedLast, values): ((sequence: UInt64, mac: [UInt8]), Bool, (sequence: UInt64, mac: [UInt8]), [SQLValue])
                        do {
                            (current, othersAppended) = try advancedTail(from: known, lines: lines, connection)
                            (chainedLast, values) = try chained(events, after: current)
                        } catch {
                            connection.rollBack()
                            throw error
                        }
                        var rows: [any Row] = []
                        try connection.forEachRowAndCommit(sql, arguments(current.sequence, values)) { rows.append($0) }
                        (tried, after, last) = (try outcome(rows), current, chainedLast)
                        state.contended = othersAppended
                    }
                } catch let error as DatabaseError where error.isConstraintViolation {
                    state.contended = true   // another process appended: chain after its entries, in turn
                    continue
                } catch {
                    state.tail = nil
                    throw error
                }
                switch tried {
                case .appended(let result):
                    state.tail = last
                    // Noted in chain order, under the state lock; saved (when due) outside it.
                    return (last.sequence, result, headKeeper.noteAppended(sequence: last.sequence, entryMAC: last.mac, after: after.sequence))
                case .notAppended(let result):
                    state.tail = after
                    return (nil, result, nil)
                case .chainAgain:
                    state.tail = nil
                }
            }
            throw AuditLogError.contended(attempts: PostgresAuditLog.attempts)
        }
        if let dueHead { headKeeper.save(dueHead) }
        return (lastSequence, result)
    }

    /// The last entry in the table, given its `lines` from the entry `known` on (the last this process
    /// knew of), and whether others were appended after it: when `known` is still there and they chain
    /// from it, the last of them; otherwise (rows cut off or rewritten, or `turnReadLimit` lines or more)
    /// the last entry once the end is checked against the signed head, as a first read is.
    private func advancedTail(from known: (sequence: UInt64, mac: [UInt8]), lines: [ArraySlice<UInt8>], _ database: any Database) throws
        -> (tail: (sequence: UInt64, mac: [UInt8]), othersAppended: Bool) {
        if known.sequence > 0, lines.count < PostgresAuditLog.turnReadLimit, let end = try endCheck.continuation(of: known, lines: lines) {
            return (end, end.sequence != known.sequence)
        }
        return (try checkedTail(database), true)
    }

    /// A stored line without its newline.
    private static func withoutNewline(_ line: [UInt8]) -> ArraySlice<UInt8> {
        line.last == UInt8(ascii: "\n") ? line.dropLast() : line[...]
    }

    /// A join that takes the transaction-level advisory lock `key` before its rows are produced, so an
    /// insert from it waits for the turn in progress (the lock is taken again, harmlessly, in a turn).
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADVISORY-LOCKS>
    static func serialised(_ key: Int64) -> String {
        "CROSS JOIN (SELECT pg_advisory_xact_lock(\(key))) AS serialised"
    }

    /// The statement of `record(_:with:_:)` for `count` entries, inserting under the advisory lock
    /// `lock`: parameters `read.arguments`, then each entry's sequence number and line, then the
    /// sequence number of the entry chained after.
    static func appendingSQL(entries count: Int, with read: AuditedRead, lock: Int64) -> String {
        let first = read.arguments.count + 1
        let entries = (0..<count).map { "(?\(first + 2 * $0)::bigint, ?\(first + 2 * $0 + 1)::bytea)" }.joined(separator: ", ")
        let predecessor = first + 2 * count
        // The read is a CTE that the verdict and the answer share. The verdict, one row, is evaluated
        // once: whether the read's condition holds, and whether the entry chained after is still there
        // (as `append(_:)` checks); the insert appends only when both do, and the answer carries both
        // (the number of entries appended, counted from the insert's own rows, and the predecessor's
        // presence). The outer join returns one row even when the read has none.
        return """
            WITH audited_read AS (\(read.rows)),
            verdict AS (SELECT (\(read.condition)) AS read_holds,
                               ?\(predecessor)::bigint = 0 OR EXISTS (SELECT 1 FROM audit_log WHERE sequence = ?\(predecessor)::bigint) AS predecessor_found),
            appended AS (
                INSERT INTO audit_log (sequence, line) SELECT v.sequence, v.line FROM (VALUES \(entries)) AS v(sequence, line)
                \(serialised(lock)) CROSS JOIN verdict WHERE verdict.read_holds AND verdict.predecessor_found
                RETURNING 1)
            SELECT audited_read.*, (SELECT count(*) FROM appended), CASE WHEN verdict.predecessor_found THEN 1 ELSE 0 END
            FROM verdict LEFT JOIN audited_read ON true
            """
    }

    /// `events` chained after `tail`: the new last entry, and each entry's sequence number and line as
    /// the values of an insert.
    private func chained(_ events: [AuditEvent], after tail: (sequence: UInt64, mac: [UInt8])) throws
        -> (last: (sequence: UInt64, mac: [UInt8]), values: [SQLValue]) {
        var output: [UInt8] = []
        let last = try AuditLineFormat.chain(events, after: tail.sequence, previous: tail.mac, mac: mac, into: &output)
        // One entry (a lookup's): its line is the whole output, neither searched for its end nor copied.
        guard events.count > 1 else { return (last, [.integer(Int64(last.sequence)), .blob(output)]) }
        var values: [SQLValue] = []
        values.reserveCapacity(2 * events.count)
        var start = 0
        for sequence in (tail.sequence + 1)...last.sequence {
            let end = output[start...].firstIndex(of: UInt8(ascii: "\n"))! + 1
            values += [.integer(Int64(sequence)), .blob(Array(output[start..<end]))]
            start = end
        }
        return (last, values)
    }

    /// The last entry in the table, once its end is known to agree with the signed head (read
    /// first: other processes may append and save heads meanwhile).
    private func checkedTail(_ database: any Database) throws -> (sequence: UInt64, mac: [UInt8]) {
        try endCheck.check(readEnd: { try readTail(database) }, linesFrom: { try lines(from: $0, through: $1, in: database) })
    }

    /// The lines (without newlines) of the entries `from` through `last`, in sequence order.
    private func lines(from first: UInt64, through last: UInt64, in database: any Database) throws -> [ArraySlice<UInt8>] {
        try database.rows("SELECT line FROM audit_log WHERE sequence >= ? AND sequence <= ? ORDER BY sequence",
                          [.integer(Int64(first)), .integer(Int64(last))]) { PostgresAuditLog.withoutNewline($0.blob(0) ?? []) }
    }

    func acknowledgeGap(_ acknowledgement: (AuditGap, [UInt8]?) -> AuditEvent) throws -> AuditGap {
        let (gap, last) = try state.withLock { state in
            state.tail = nil
            for _ in 0..<PostgresAuditLog.attempts {
                let (tail, found) = try endCheck.findGap(readEnd: { try readTail(state.connection) }, linesFrom: {
                    try lines(from: $0, through: $1, in: state.connection)
                })
                guard let (gap, headMAC) = found else { throw AuditLogError.noGap }
                var output: [UInt8] = []
                let last = try AuditLineFormat.chain([acknowledgement(gap, headMAC)], after: tail.sequence, previous: tail.mac,
                                                     mac: mac, into: &output)
                do {
                    try state.connection.run("INSERT INTO audit_log (sequence, line) SELECT ?::bigint, ?::bytea FROM (SELECT 1) AS one \(PostgresAuditLog.serialised(appendLock))",
                                             [.integer(Int64(last.sequence)), .blob(output)])
                } catch let error as DatabaseError where error.isConstraintViolation {
                    continue   // another process appended meanwhile: look at the end again
                }
                state.tail = last
                return (gap, last)
            }
            throw AuditLogError.contended(attempts: PostgresAuditLog.attempts)
        }
        guard headKeeper.replace(sequence: last.sequence, entryMAC: last.mac) else {
            state.withLock { $0.tail = nil }
            throw AuditLogError.headNotSaved
        }
        return gap
    }

    /// The last entry in the table (genesis when it is empty).
    private func readTail(_ database: any Database) throws -> (sequence: UInt64, mac: [UInt8]) {
        guard let line = try database.firstRow("SELECT line FROM audit_log ORDER BY sequence DESC LIMIT 1", { $0.blob(0) ?? [] }) else {
            return (0, genesis)
        }
        guard line.last == UInt8(ascii: "\n"), let entry = AuditLineFormat.split(line.dropLast()) else {
            throw AuditLogError.unreadableTail(segment: PostgresAuditLog.table)
        }
        return (entry.sequence, entry.mac)
    }

    func close() {
        flushHead()
    }

    func flushHead() {
        headKeeper.flush()
    }

    /// Reads the table in pages of 10,000 rows in sequence order; the line number is the row's position.
    func forEachLine(_ body: (_ place: String, _ line: Int, AuditStoredLine) throws(StoreError) -> Void) throws(StoreError) {
        var after: Int64 = -1
        var position = 0
        while true {
            let page: [(Int64, [UInt8])]
            do throws(DatabaseError) {
                page = try state.withLock { (state) throws(DatabaseError) in
                    try state.connection.rows("SELECT sequence, line FROM audit_log WHERE sequence > ? ORDER BY sequence LIMIT 10000",
                                              [.integer(after)]) { ($0.int64(0), $0.blob(1) ?? []) }
                }
            } catch {
                throw .database(error)
            }
            guard let last = page.last else { return }
            for (_, line) in page {
                position += 1
                guard line.last == UInt8(ascii: "\n") else {
                    try body(PostgresAuditLog.table, position, .torn(atEnd: false))
                    continue
                }
                try body(PostgresAuditLog.table, position, .complete(line.dropLast()))
            }
            after = last.0
        }
    }
}
