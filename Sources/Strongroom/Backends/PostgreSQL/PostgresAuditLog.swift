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
/// durable). It chains after the last entry this process knows of. The sequence number is the primary
/// key, so when another process appended meanwhile the insert fails as a whole; the log then reads the
/// real last entry and chains again. Entry n+1 can only be written by someone who saw entry n
/// committed, and never twice: one chain, no forks, no gaps, and one round trip while no one else writes.
/// A tail read back is first checked against the signed head (`AuditEndCheck`): rows cut off the end
/// are a gap, and nothing is appended after one until it is acknowledged.
///
/// Thread safety: safe to call from any thread; calls are serialised.
final class PostgresAuditLog: AuditTrail {
    /// The table's name, shown as the place of a bad entry.
    static let table = "audit_log"
    /// How many times an append chains again after losing a race before it gives up (fail closed).
    static let attempts = 1000
    private let state: Mutex<State>
    private let mac: HMACSHA256
    private let genesis: [UInt8]
    private let headKeeper: AuditHeadKeeper
    private let endCheck: AuditEndCheck

    private struct State: ~Copyable {
        let connection: any Database
        /// The last entry this process knows of; nil until read.
        var tail: (sequence: UInt64, mac: [UInt8])?
    }

    init(connection: consuming sending any Database, mac: HMACSHA256, storeID: [UInt8],
         headStore: any AuditHeadStore) throws(AuditLogError) {
        self.state = Mutex(State(connection: connection, tail: nil))
        self.mac = mac
        self.headKeeper = AuditHeadKeeper(store: headStore)
        self.endCheck = AuditEndCheck(mac: mac, headStore: headStore)
        do { genesis = try AuditLineFormat.genesis(mac: mac, storeID: storeID) } catch { throw .crypto(error) }
    }

    func record(_ events: [AuditEvent]) throws {
        guard !events.isEmpty else { return }
        let dueHead = try state.withLock { state in
            // A head found deleted: the tail is read back and checked against the head.
            if headKeeper.takeHeadFoundMissing() { state.tail = nil }
            for _ in 0..<PostgresAuditLog.attempts {
                let tail = try state.tail ?? checkedTail(state.connection)
                var output: [UInt8] = []
                let last = try AuditLineFormat.chain(events, after: tail.sequence, previous: tail.mac, mac: mac, into: &output)
                var values: [SQLValue] = []
                var start = 0
                for sequence in (tail.sequence + 1)...last.sequence {
                    let end = output[start...].firstIndex(of: UInt8(ascii: "\n"))! + 1
                    values += [.integer(Int64(sequence)), .blob(Array(output[start..<end]))]
                    start = end
                }
                let rows = Array(repeating: "(?::bigint, ?::bytea)", count: events.count).joined(separator: ", ")
                do {
                    // Inserted only while the entry chained after is still there: rows cut off the end
                    // under a running process make its next append read the tail back and check it.
                    try state.connection.run("""
                        INSERT INTO audit_log (sequence, line) SELECT v.sequence, v.line FROM (VALUES \(rows)) AS v(sequence, line)
                        WHERE ? = 0 OR EXISTS (SELECT 1 FROM audit_log WHERE sequence = ?)
                        """, values + [.integer(Int64(tail.sequence)), .integer(Int64(tail.sequence))])
                    guard state.connection.changes == events.count else {
                        state.tail = nil
                        continue
                    }
                } catch let error as DatabaseError where error.isConstraintViolation {
                    state.tail = nil   // another process appended: chain after its entries
                    continue
                } catch {
                    state.tail = nil
                    throw error
                }
                state.tail = last
                // Noted in chain order, under the state lock; saved (when due) outside it.
                return headKeeper.noteAppended(sequence: last.sequence, entryMAC: last.mac, after: tail.sequence)
            }
            throw AuditLogError.contended(attempts: PostgresAuditLog.attempts)
        }
        if let dueHead { headKeeper.save(dueHead) }
    }

    /// The last entry in the table, once its end is known to agree with the signed head (read
    /// first: other processes may append and save heads meanwhile).
    private func checkedTail(_ database: any Database) throws -> (sequence: UInt64, mac: [UInt8]) {
        try endCheck.check(readEnd: { try readTail(database) }, linesFrom: { try lines(from: $0, through: $1, in: database) })
    }

    /// The lines (without newlines) of the entries `from` through `last`, in sequence order.
    private func lines(from first: UInt64, through last: UInt64, in database: any Database) throws -> [ArraySlice<UInt8>] {
        try database.rows("SELECT line FROM audit_log WHERE sequence >= ? AND sequence <= ? ORDER BY sequence",
                          [.integer(Int64(first)), .integer(Int64(last))]) { row in
            let line = row.blob(0) ?? []
            return line.last == UInt8(ascii: "\n") ? line.dropLast() : line[...]
        }
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
                    try state.connection.run("INSERT INTO audit_log (sequence, line) VALUES (?, ?)",
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
    func forEachLine(_ body: (_ place: String, _ line: Int, AuditStoredLine) throws -> Void) throws {
        var after: Int64 = -1
        var position = 0
        while true {
            let page = try state.withLock { state in
                try state.connection.rows("SELECT sequence, line FROM audit_log WHERE sequence > ? ORDER BY sequence LIMIT 10000",
                                  [.integer(after)]) { ($0.int64(0), $0.blob(1) ?? []) }
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
