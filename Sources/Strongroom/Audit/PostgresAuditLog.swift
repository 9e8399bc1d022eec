import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// The built-in audit log of a PostgreSQL store: the same MAC'd JSON lines and chain as the folder
/// store's segment files, one row per entry in the table `audit_log` beside the data, so that every
/// service instance sharing the store appends to one chain.
///
/// Each `record` call is one transaction on a connection of its own, under an advisory lock that only
/// audit appends take: it reads the chain's last entry, chains the new entries after it and commits
/// them before returning, so no plaintext leaves the store before its entry is committed (and, with
/// PostgreSQL's default `synchronous_commit`, durable). The lock makes concurrent writers in any number
/// of processes form one chain: no forks, no gaps (the sequence number is also the primary key).
///
/// Thread safety: safe to call from any thread; calls are serialised.
final class PostgresAuditLog: AuditTrail {
    /// The table's name, shown as the place of a bad entry.
    static let table = "audit_log"
    private let connection: Mutex<any Database>
    private let mac: HMACSHA256
    private let genesis: [UInt8]
    private let headKeeper: AuditHeadKeeper

    init(connection: consuming sending any Database, mac: HMACSHA256, storeID: [UInt8],
         saveHead: @escaping @Sendable (AuditHead) -> Bool) throws(AuditLogError) {
        do { genesis = try AuditLineFormat.genesis(mac: mac, storeID: storeID) } catch { throw .crypto(error) }
        self.connection = Mutex(connection)
        self.mac = mac
        self.headKeeper = AuditHeadKeeper(save: saveHead)
    }

    func record(_ events: [AuditEvent]) throws {
        guard !events.isEmpty else { return }
        let (sequence, entryMAC) = try connection.withLock { database in
            try database.transaction {
                var tail = (sequence: UInt64(0), mac: genesis)
                if let line = try database.firstRow("SELECT line FROM audit_log ORDER BY sequence DESC LIMIT 1", { $0.blob(0) ?? [] }) {
                    guard let entry = AuditLineFormat.split(line.dropLast()) else {
                        throw AuditLogError.unreadableTail(segment: PostgresAuditLog.table)
                    }
                    tail = (entry.sequence, entry.mac)
                }
                var output: [UInt8] = []
                let last = try AuditLineFormat.chain(events, after: tail.sequence, previous: tail.mac, mac: mac, into: &output)
                var start = 0
                for sequence in (tail.sequence + 1)...last.sequence {
                    let end = output[start...].firstIndex(of: UInt8(ascii: "\n"))! + 1
                    try database.run("INSERT INTO audit_log (sequence, line) VALUES (?, ?)",
                                     [.integer(Int64(sequence)), .blob(Array(output[start..<end]))])
                    start = end
                }
                return last
            }
        }
        headKeeper.appended(sequence: sequence, entryMAC: entryMAC)
    }

    func flushHead() {
        headKeeper.flush()
    }

    /// Reads the table in pages of 10,000 rows in sequence order; the line number is the row's position.
    func forEachLine(_ body: (_ place: String, _ line: Int, AuditStoredLine) throws -> Void) throws {
        var after: Int64 = -1
        var position = 0
        while true {
            let page = try connection.withLock { database in
                try database.rows("SELECT sequence, line FROM audit_log WHERE sequence > ? ORDER BY sequence LIMIT 10000",
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
