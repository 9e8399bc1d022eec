import Foundation
@testable import StrongroomStorage
import StrongroomTestSupport
import Synchronization
import Testing

@Suite("PostgreSQL connection: placeholders and URLs (no server needed)")
struct PostgresConnectionTextTests {
    @Test("bare ? placeholders are numbered $1, $2, … in order", arguments: [
        ("SELECT 1", "SELECT 1"),
        ("SELECT ?", "SELECT $1"),
        ("INSERT INTO t (a, b, c) VALUES (?, ?, ?)", "INSERT INTO t (a, b, c) VALUES ($1, $2, $3)"),
        ("UPDATE t SET a=? WHERE b=?", "UPDATE t SET a=$1 WHERE b=$2"),
        ("SELECT ?,?", "SELECT $1,$2"),
        ("SELECT ? -- ä 漢字 😀", "SELECT $1 -- ä 漢字 😀"),
    ])
    func bare(sql: String, expected: String) {
        #expect(PostgresConnection.numberedParameters(sql) == expected)
    }

    @Test("?N keeps its number; a bare ? after numbered ones takes the largest number so far + 1 (SQLite's rule)", arguments: [
        ("SELECT ?1, ?2", "SELECT $1, $2"),
        ("SELECT ?2, ?1", "SELECT $2, $1"),
        ("UPDATE subjects SET last_contacted_at = ?1 WHERE id = ?2 AND last_contacted_at < ?1", "UPDATE subjects SET last_contacted_at = $1 WHERE id = $2 AND last_contacted_at < $1"),
        ("WHERE id > ? AND (?2 IS NULL OR kind = ?2) ORDER BY id LIMIT ?", "WHERE id > $1 AND ($2 IS NULL OR kind = $2) ORDER BY id LIMIT $3"),
        ("SELECT ?, ?5, ?", "SELECT $1, $5, $6"),
        ("SELECT ?3, ?, ?1, ?", "SELECT $3, $4, $1, $5"),
        ("SELECT ?, ?1, ?", "SELECT $1, $1, $2"),
        ("SELECT ?10, ?", "SELECT $10, $11"),
        ("SELECT ?12abc", "SELECT $12abc"),
    ])
    func numbered(sql: String, expected: String) {
        #expect(PostgresConnection.numberedParameters(sql) == expected)
    }

    @Test("a ? inside quotes or a quoted identifier is left alone", arguments: [
        ("SELECT '?' , ?", "SELECT '?' , $1"),
        ("SELECT 'it''s ?2', ?", "SELECT 'it''s ?2', $1"),
        ("SELECT \"odd?name\" FROM t WHERE x = ?", "SELECT \"odd?name\" FROM t WHERE x = $1"),
        ("SELECT '\"?', ?, \"'?\", ?", "SELECT '\"?', $1, \"'?\", $2"),
        ("SELECT ? || '?1 ?' || ?", "SELECT $1 || '?1 ?' || $2"),
        ("SELECT '漢字?', ?", "SELECT '漢字?', $1"),
    ])
    func quoted(sql: String, expected: String) {
        #expect(PostgresConnection.numberedParameters(sql) == expected)
    }

    @Test("split takes schema= out of the URL and keeps the other parameters; no schema= means the default")
    func split() throws {
        let plain = try PostgresConnection.split("postgresql://crm@db.internal:5432/crm")
        #expect(plain.connectionInfo == "postgresql://crm@db.internal:5432/crm" && plain.schema == PostgresConnection.defaultSchema)
        #expect(PostgresConnection.defaultSchema == "strongroom")
        let named = try PostgresConnection.split("postgresql://crm@db.internal/crm?schema=sales_2026")
        #expect(named.connectionInfo == "postgresql://crm@db.internal/crm" && named.schema == "sales_2026")
        let mixed = try PostgresConnection.split("postgres://u:p@h/db?sslmode=require&schema=t_1&connect_timeout=5")
        #expect(mixed.connectionInfo == "postgres://u:p@h/db?sslmode=require&connect_timeout=5" && mixed.schema == "t_1")
        let others = try PostgresConnection.split("postgresql://h/db?sslmode=disable")
        #expect(others.connectionInfo == "postgresql://h/db?sslmode=disable" && others.schema == "strongroom")
        let longest = String(repeating: "a", count: 63)
        #expect(try PostgresConnection.split("postgresql://h/db?schema=\(longest)").schema == longest)
        #expect(try PostgresConnection.split("postgresql://h/db?schema=_x9").schema == "_x9")
    }

    @Test("a schema that is not a plain lower-case identifier, or a URL that is not PostgreSQL's, is refused", arguments: [
        "postgresql://h/db?schema=", "postgresql://h/db?schema=Sales", "postgresql://h/db?schema=a-b", "postgresql://h/db?schema=1abc",
        "postgresql://h/db?schema=a;DROP%20SCHEMA%20x", "postgresql://h/db?schema=a\"b", "postgresql://h/db?schema=a%20b",
        "postgresql://h/db?schema=café", "postgresql://h/db?schema=a.b", "postgresql://h/db?schema=" + String(repeating: "a", count: 64),
        "mysql://h/db?schema=x", "h/db", "",
    ])
    func refused(url: String) {
        #expect {
            try PostgresConnection.split(url)
        } throws: { error in
            guard let error = error as? DatabaseError else { return false }
            return error.sqlState == "08000" && !error.isConstraintViolation
        }
    }
}

/// A fresh schema on the test server and a connection to it (the schema created); `drop()` removes it.
private struct Scratch {
    let url: String
    let connection: PostgresConnection
    var schema: String { connection.schema }

    /// nil when the PostgreSQL half is off (then the suite is disabled) or the variable is missing (then an
    /// issue says what to do).
    init?() throws {
        guard let url = PostgresTestServer.url(schema: PostgresTestServer.uniqueSchema()) else {
            if let message = PostgresTestServer.missingMessage { Issue.record(Comment(rawValue: message)) }
            PostgresTestServer.announceIfOff()
            return nil
        }
        self.url = url
        connection = try PostgresConnection(url: url, create: true, writeLock: "test")
    }

    /// Another connection to the same schema.
    func connect(writeLock: String = "test") throws -> PostgresConnection {
        try PostgresConnection(url: url, create: false, writeLock: writeLock)
    }

    func drop() {
        if let cleaner = try? PostgresConnection(url: url, create: false, writeLock: "cleanup") {
            try? cleaner.execute("DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE")
        }
    }
}

/// The error `body` throws, or nil.
///
/// The tests below pass closures that take closures (`transaction { … }`) through this plain function rather
/// than writing them inside `#expect { … } throws:`: with Swift 6.3.1 a closure written inside a macro's
/// argument can share its symbol with a later closure of the same function, which then runs the wrong body.
private func thrown(_ body: () throws -> Void) -> (any Error)? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

/// Has the server end `connection`'s session (`pg_terminate_backend`, from `killer`), waits until its
/// backend is gone, and runs one statement on `connection`, which may be the one that finds the session
/// dead (and fails, typed): the connection is usable again after it at the latest. Returns the ended
/// backend's process id.
private func terminateSession(of connection: PostgresConnection, from killer: PostgresConnection) throws -> Int64 {
    let pid = try #require(try connection.scalarInteger("SELECT pg_backend_pid()"))
    #expect(try killer.scalarText("SELECT pg_terminate_backend(?::integer)::text", [.integer(pid)]) == "true")
    for _ in 0..<100 {  // until the backend is gone
        guard try killer.scalarInteger("SELECT count(*) FROM pg_stat_activity WHERE pid = ?::integer", [.integer(pid)]) != 0 else { break }
        Thread.sleep(forTimeInterval: 0.05)
    }
    let first = thrown { _ = try connection.scalarInteger("SELECT 1") }
    #expect(first == nil || first is DatabaseError)
    return pid
}

/// A moment, for ordering events across threads.
private func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// When a transaction's body began and ended, written by its thread.
private final class Times: Sendable {
    private let times = Mutex<(UInt64, UInt64)?>(nil)
    var value: (UInt64, UInt64)? { times.withLock { $0 } }
    func set(_ value: (UInt64, UInt64)) { times.withLock { $0 = value } }
}

/// Runs a write transaction on a connection of its own, on a thread of its own, that holds the write lock
/// `lock` of the schema at `url` for `hold` seconds; `started` is signalled once its body runs. The
/// function returned waits for the thread and gives when the body began and ended (nil if it failed).
private func transactionOnAnotherThread(_ url: String, lock: String, hold: Double,
                                        started: DispatchSemaphore? = nil) -> () -> (UInt64, UInt64)? {
    let result = Times()
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        defer { done.signal() }
        guard let own = try? PostgresConnection(url: url, create: false, writeLock: lock) else { return }
        try? own.transaction { () throws(DatabaseError) in
            let begin = now()
            started?.signal()
            try own.run("INSERT INTO t (x) VALUES (1)")
            Thread.sleep(forTimeInterval: hold)
            result.set((begin, now()))
        }
    }
    return {
        done.wait()
        return result.value
    }
}

@Suite("PostgreSQL connection against the test server", .enabled(if: !PostgresTestServer.isOff, "STRONGROOM_TEST_POSTGRES=off"))
struct PostgresConnectionTests {
    @Test("the connection works in the URL's schema: created on demand, set as the search path")
    func schema() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        #expect(connection.schema == (try PostgresConnection.split(scratch.url).schema) && connection.dialect == .postgresql)
        #expect(try connection.scalarText("SELECT current_schema()::text") == scratch.schema)
        try connection.execute("CREATE TABLE here (x BIGINT)")
        #expect(try connection.scalarText("SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'here'") == scratch.schema)
        // Without create, a missing schema is not made (nothing to find there).
        let missing = try #require(PostgresTestServer.url(schema: PostgresTestServer.uniqueSchema()))
        let other = try PostgresConnection(url: missing, create: false, writeLock: "test")
        #expect(try other.scalarText("SELECT current_schema()::text") == nil)
        #expect(try other.scalarText("SELECT to_regclass('here')::text") == nil)
        #expect(try other.scalarInteger("SELECT count(*) FROM pg_namespace WHERE nspname = ?", [.text(other.schema)]) == 0)
    }

    @Test("integers, reals, text, bytes and NULL round-trip through bound parameters")
    func roundTrip() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("CREATE TABLE v (id BIGINT PRIMARY KEY, i BIGINT, r DOUBLE PRECISION, t TEXT, b BYTEA)")
        let insert = "INSERT INTO v (id, i, r, t, b) VALUES (?, ?, ?, ?, ?)"
        let select = "SELECT i, r, t, b FROM v WHERE id = ?"
        let integers: [Int64] = [0, 1, -1, 42, Int64.max, Int64.min, Int64.min + 1, -1_790_000_000_000, 1_790_000_000_000]
        let reals: [Double] = [0, -0.5, 0.1, Double.pi, 1e308, -2.5e-300, Double.leastNonzeroMagnitude, 123_456_789.125]
        let texts = ["", "plain", "Zoë Ångström", "漢字かな", "😀👩‍👩‍👧", "e\u{0301}", "quote ' and \" and \\ and ?", String(repeating: "x", count: 100_000)]
        var random = SystemRandomNumberGenerator()
        let megabyte = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
        let blobs: [[UInt8]] = [[], [0], [0, 0, 0], Array(0...255), Array("\\x00".utf8), megabyte]
        var id: Int64 = 0
        for value in integers {
            id += 1
            try connection.run(insert, [.integer(id), .integer(value), .null, .null, .null])
            #expect(try connection.firstRow(select, [.integer(id)]) { $0.int64(0) } == value)
        }
        for value in reals {
            id += 1
            try connection.run(insert, [.integer(id), .null, .real(value), .null, .null])
            #expect(try connection.firstRow(select, [.integer(id)]) { $0.double(1) } == value, "\(value)")
        }
        for value in texts {
            id += 1
            try connection.run(insert, [.integer(id), .null, .null, .text(value), .null])
            #expect(try connection.firstRow(select, [.integer(id)]) { $0.text(2) } == .some(.some(value)), "\(value.prefix(20))")
        }
        for value in blobs {
            id += 1
            try connection.run(insert, [.integer(id), .null, .null, .null, .blob(value)])
            // An empty blob stays an empty blob, not NULL; every byte value survives, 1 MB too.
            #expect(try connection.firstRow(select, [.integer(id)]) { $0.blob(3) } == .some(.some(value)), "a blob of \(value.count) bytes")
        }
        // NULL in every column: nil for text and bytes, 0 for numbers.
        id += 1
        try connection.run(insert, [.integer(id), .null, .null, .null, .null])
        let nulls = try #require(try connection.firstRow(select, [.integer(id)]) { row in
            ((0..<4).map { row.isNull($0) }, row.int64(0), row.double(1), row.text(2), row.blob(3))
        })
        #expect(nulls.0 == [true, true, true, true] && nulls.1 == 0 && nulls.2 == 0 && nulls.3 == nil && nulls.4 == nil)
        #expect(try connection.firstRow(select, [.integer(1)]) { $0.isNull(0) } == false)
        // The optional helpers bind NULL for nil.
        id += 1
        try connection.run(insert, [.integer(id), .integer(nil as Int64?), .null, .text(nil as String?), .blob(nil as [UInt8]?)])
        #expect(try connection.scalarInteger("SELECT count(*) FROM v WHERE id = ? AND i IS NULL AND t IS NULL AND b IS NULL", [.integer(id)]) == 1)
        // Scalar helpers, rows, and booleans read as integers.
        #expect(try connection.scalarInteger("SELECT count(*) FROM v") == id)
        #expect(try connection.scalarInteger("SELECT i FROM v WHERE id = -1") == nil)
        #expect(try connection.firstRow("SELECT 1 WHERE false") { $0.int64(0) } == nil)
        #expect(try connection.rows("SELECT id FROM v WHERE id <= 3 ORDER BY id") { $0.int64(0) } == [1, 2, 3])
        #expect(try connection.firstRow("SELECT true, false") { [$0.int64(0), $0.int64(1)] } == [1, 0])
    }

    @Test("text with a NUL character is refused before anything is sent, as a typed error, and the transaction goes on")
    func nulRefused() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("CREATE TABLE t (x TEXT)")
        let refusal = thrown { try connection.run("INSERT INTO t (x) VALUES (?)", [.text("secret\u{0}value")]) }
        let error = try #require(refusal as? DatabaseError, "\(String(describing: refusal))")
        #expect(error.sqlState == "22000" && !error.isConstraintViolation)
        #expect(!error.description.contains("secret") && error.sql == "INSERT INTO t (x) VALUES (?)")
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 0)
        // Nothing reached the server: a transaction around the refusal is not aborted and commits the rest.
        var inside: (any Error)?
        try connection.transaction { () throws(DatabaseError) in
            try connection.run("INSERT INTO t (x) VALUES (?)", [.text("before")])
            inside = thrown { try connection.run("INSERT INTO t (x) VALUES (?)", [.text("\u{0}")]) }
            try connection.run("INSERT INTO t (x) VALUES (?)", [.text("after")])
        }
        #expect((inside as? DatabaseError)?.sqlState == "22000")
        #expect(try connection.rows("SELECT x FROM t ORDER BY x") { $0.text(0) } == ["after", "before"])
        // A NUL byte in a blob is fine.
        try connection.execute("CREATE TABLE b (x BYTEA)")
        try connection.run("INSERT INTO b (x) VALUES (?)", [.blob([0x73, 0x00, 0x74])])
        #expect(try connection.firstRow("SELECT x FROM b") { $0.blob(0) } == .some([0x73, 0x00, 0x74]))
    }

    @Test("a unique violation is a constraint violation whose message carries no value")
    func uniqueViolation() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("CREATE TABLE u (k TEXT PRIMARY KEY, b BYTEA UNIQUE)")
        try connection.run("INSERT INTO u (k, b) VALUES (?, ?)", [.text("secret-value-4242"), .blob(Array("secret-bytes-77".utf8))])
        let duplicates: [[SQLValue]] = [[.text("secret-value-4242"), .blob([1])], [.text("other"), .blob(Array("secret-bytes-77".utf8))]]
        for values in duplicates {
            let failure = thrown { try connection.run("INSERT INTO u (k, b) VALUES (?, ?)", values) }
            let error = try #require(failure as? DatabaseError, "\(String(describing: failure))")
            #expect(error.isConstraintViolation && error.isUniqueViolation && error.code == .postgresql(sqlState: "23505"))
            // Neither the value nor its bytes (as hex, as PostgreSQL's DETAIL would show them) are in the error.
            for text in [error.description, error.message, "\(error)", String(reflecting: error)] {
                #expect(!text.contains("secret") && !text.contains("4242") && !text.contains("7365637265742d62797465732d3737"), "\(text)")
            }
        }
        // Other errors are not constraint violations.
        let missing = thrown { try connection.execute("SELECT * FROM missing_table") } as? DatabaseError
        #expect(missing?.sqlState == "42P01" && missing?.isConstraintViolation == false)
        #expect(try connection.scalarInteger("SELECT count(*) FROM u") == 1)
    }

    @Test("a transaction whose body throws is rolled back, and the error is the body's")
    func rollback() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("CREATE TABLE t (x BIGINT)")
        let abort = DatabaseError(code: .postgresql(sqlState: "P0001"), message: "the body's own error")
        let error = thrown {
            try connection.transaction { () throws(DatabaseError) in
                try connection.run("INSERT INTO t (x) VALUES (?)", [.integer(1)])
                throw abort
            }
        }
        #expect(error as? DatabaseError == abort)
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 0)
        // The connection is out of the transaction (no advisory lock held), and the lock is free for another connection.
        #expect(try connection.scalarInteger("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == 0)
        let other = try scratch.connect()
        let started = now()
        try other.transaction { () throws(DatabaseError) in try other.run("INSERT INTO t (x) VALUES (2)") }
        #expect(now() - started < 5_000_000_000)
        // A transaction that returns commits and passes its value on.
        let value = try connection.transaction { () throws(DatabaseError) -> Int in
            try connection.run("INSERT INTO t (x) VALUES (3)")
            return 7
        }
        #expect(value == 7)
        #expect(try connection.rows("SELECT x FROM t ORDER BY x") { $0.int64(0) } == [2, 3])
    }

    @Test("a statement that fails inside a transaction fails the transaction: COMMIT turned into ROLLBACK is reported")
    func failedStatementFailsTransaction() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("CREATE TABLE t (x BIGINT UNIQUE)")
        // The body swallows the statement's error and returns: PostgreSQL answers COMMIT with ROLLBACK.
        let swallowed = thrown {
            try connection.transaction { () throws(DatabaseError) in
                try connection.run("INSERT INTO t (x) VALUES (1)")
                _ = thrown { try connection.run("INSERT INTO t (x) VALUES (1)") }
            }
        }
        let rolledBack = try #require(swallowed as? DatabaseError, "\(String(describing: swallowed))")
        #expect(rolledBack.sqlState == "40000" && rolledBack.message.contains("rolled back"))
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 0)
        // The body lets it through: that error comes out, and nothing is committed.
        let passed = thrown {
            try connection.transaction { () throws(DatabaseError) in
                try connection.run("INSERT INTO t (x) VALUES (2)")
                try connection.run("INSERT INTO t (x) VALUES (2)")
            }
        }
        #expect((passed as? DatabaseError)?.sqlState == "23505")
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 0)
        // The connection is usable afterwards, in and out of transactions.
        try connection.transaction { () throws(DatabaseError) in try connection.run("INSERT INTO t (x) VALUES (3)") }
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 1)
    }

    @Test("two connections' write transactions on one schema run one after the other; another lock name does not wait")
    func writeTransactionsSerialize() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        try scratch.connection.execute("CREATE TABLE t (x BIGINT)")
        // Same schema, same lock: the second body starts only after the first one's ended.
        let firstStarted = DispatchSemaphore(value: 0)
        let first = transactionOnAnotherThread(scratch.url, lock: "data", hold: 0.8, started: firstStarted)
        firstStarted.wait()
        let second = transactionOnAnotherThread(scratch.url, lock: "data", hold: 0)
        let (firstBegin, firstEnd) = try #require(first())
        let (secondBegin, _) = try #require(second())
        #expect(secondBegin >= firstEnd, "the second transaction ran while the first held the lock")
        #expect(firstEnd - firstBegin >= 700_000_000)
        // Another lock name (the audit log beside the data) does not wait.
        let heldStarted = DispatchSemaphore(value: 0)
        let held = transactionOnAnotherThread(scratch.url, lock: "data", hold: 1.0, started: heldStarted)
        heldStarted.wait()
        let audit = transactionOnAnotherThread(scratch.url, lock: "audit", hold: 0)
        let (auditBegin, _) = try #require(audit())
        let (heldBegin, heldEnd) = try #require(held())
        #expect(auditBegin > heldBegin && auditBegin < heldEnd, "a transaction under another lock name waited")
        #expect(try scratch.connection.scalarInteger("SELECT count(*) FROM t") == 4)
    }

    @Test("changes counts the rows of the last INSERT, UPDATE or DELETE")
    func changes() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("CREATE TABLE t (x BIGINT PRIMARY KEY)")
        try connection.run("INSERT INTO t (x) VALUES (?), (?), (?)", [.integer(1), .integer(2), .integer(3)])
        #expect(connection.changes == 3)
        try connection.run("UPDATE t SET x = x + 10 WHERE x >= ?", [.integer(2)])
        #expect(connection.changes == 2)
        try connection.run("UPDATE t SET x = 0 WHERE x = ?", [.integer(99)])
        #expect(connection.changes == 0)
        try connection.run("INSERT INTO t (x) VALUES (?) ON CONFLICT DO NOTHING", [.integer(4)])
        #expect(connection.changes == 1)
        try connection.run("INSERT INTO t (x) VALUES (?) ON CONFLICT DO NOTHING", [.integer(4)])
        #expect(connection.changes == 0)
        try connection.execute("DELETE FROM t WHERE x > 10")
        #expect(connection.changes == 2)
        try connection.run("DELETE FROM t")
        #expect(connection.changes == 2)
        try connection.execute("CREATE TABLE u (y BIGINT)")
        #expect(connection.changes == 0)
    }

    @Test("schemaVersion is 0 in a new schema, then what setSchemaVersion recorded, per schema")
    func schemaVersion() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        #expect(try connection.schemaVersion() == 0)
        try connection.transaction { () throws(DatabaseError) in try connection.setSchemaVersion(3) }
        #expect(try connection.schemaVersion() == 3)
        try connection.setSchemaVersion(5)
        #expect(try connection.schemaVersion() == 5)
        #expect(try scratch.connect().schemaVersion() == 5)
        // Another schema on the same server has its own (none).
        guard let other = try Scratch() else { return }
        defer { other.drop() }
        #expect(try other.connection.schemaVersion() == 0)
        // A rolled-back setSchemaVersion leaves the version as it was.
        let abort = DatabaseError(code: .postgresql(sqlState: "P0001"), message: "the body's own error")
        let error = thrown {
            try connection.transaction { () throws(DatabaseError) in
                try connection.setSchemaVersion(9)
                throw abort
            }
        }
        #expect(error as? DatabaseError == abort)
        #expect(try connection.schemaVersion() == 5)
    }

    @Test("after the server terminated the connection's backend, the connection reconnects and queries work again")
    func reconnect() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("CREATE TABLE t (x BIGINT)")
        let insert = "INSERT INTO t (x) VALUES (?)"
        try connection.run(insert, [.integer(1)])  // a statement the old session prepared
        let pid = try terminateSession(of: connection, from: try scratch.connect(writeLock: "killer"))
        #expect(try connection.scalarInteger("SELECT 1") == 1)
        #expect(try connection.scalarInteger("SELECT pg_backend_pid()") != pid)
        // The new session is set up as the old one was: the schema on the search path, statements prepared again.
        #expect(try connection.scalarText("SELECT current_schema()::text") == connection.schema)
        try connection.run(insert, [.integer(2)])
        #expect(try connection.rows("SELECT x FROM t ORDER BY x") { $0.int64(0) } == [1, 2])
        try connection.transaction { () throws(DatabaseError) in try connection.run(insert, [.integer(3)]) }
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 3)
    }

    @Test("durable commits: the session commits with synchronous_commit on though its URL asks for off, and again after the server ended it; a plain connection keeps what it was given")
    func durableCommits() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        // The session's default off, as on a server set for throughput.
        let asyncURL = scratch.url + (scratch.url.contains("?") ? "&" : "?") + "options=-c%20synchronous_commit%3Doff"
        let setting = "SELECT current_setting('synchronous_commit')"
        let plain = try PostgresConnection(url: asyncURL, create: false, writeLock: "test")
        #expect(try plain.scalarText(setting) == "off")
        let durable = try PostgresConnection(url: asyncURL, create: false, writeLock: "audit", durableCommits: true)
        #expect(try durable.scalarText(setting) == "on")
        try durable.execute("CREATE TABLE t (x BIGINT)")
        try durable.transaction { () throws(DatabaseError) in try durable.run("INSERT INTO t (x) VALUES (1)") }
        // Second act: the server ends the session; the one the connection reconnects to is durable too.
        let pid = try terminateSession(of: durable, from: plain)
        #expect(try durable.scalarText(setting) == "on")
        #expect(try durable.scalarInteger("SELECT pg_backend_pid()") != pid)
        try durable.transaction { () throws(DatabaseError) in try durable.run("INSERT INTO t (x) VALUES (2)") }
        #expect(try plain.scalarInteger("SELECT count(*) FROM t") == 2)
        #expect(try plain.scalarText(setting) == "off")
    }

    @Test("a locked turn: the read sees what another connection committed while it waited for the lock; the statement and COMMIT go in one message; a failed statement rolls the turn back")
    func lockedTurn() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("CREATE TABLE t (x BIGINT PRIMARY KEY)")
        // Another connection holds the write lock and commits a row after 0.3 s; the turn waits, then reads it.
        let started = DispatchSemaphore(value: 0)
        let other = transactionOnAnotherThread(scratch.url, lock: "test", hold: 0.3, started: started)
        started.wait()
        var seen: [Int64] = []
        try connection.beginLocked(reading: "SELECT x FROM t ORDER BY x") { seen.append($0.int64(0)) }
        #expect(other() != nil)
        #expect(seen == [1], "the read ran after the other transaction's commit")
        var returned: [Int64] = []
        try connection.forEachRowAndCommit("INSERT INTO t (x) VALUES (?) RETURNING x", [.integer(2)]) { returned.append($0.int64(0)) }
        #expect(returned == [2])
        let observer = try scratch.connect(writeLock: "observer")
        #expect(try observer.scalarInteger("SELECT count(*) FROM t") == 2, "committed, seen by another connection")
        // A statement that fails (the key is taken) rolls the turn back: its read-side insert is gone too.
        try connection.beginLocked(reading: "INSERT INTO t (x) VALUES (10) RETURNING x") { _ in }
        let failure = thrown { try connection.forEachRowAndCommit("INSERT INTO t (x) VALUES (?)", [.integer(2)]) { _ in } }
        #expect((failure as? DatabaseError)?.isConstraintViolation == true)
        #expect(try observer.scalarInteger("SELECT count(*) FROM t") == 2)
        // Second act: the connection is out of the transaction and takes turns again; the lock was released.
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 2)
        try connection.beginLocked(reading: "SELECT 1") { _ in }
        try connection.forEachRowAndCommit("INSERT INTO t (x) VALUES (?)", [.integer(3)]) { _ in }
        try observer.transaction { () throws(DatabaseError) in try observer.run("INSERT INTO t (x) VALUES (4)") }
        #expect(try observer.rows("SELECT x FROM t ORDER BY x") { $0.int64(0) } == [1, 2, 3, 4])
    }
}

@Suite("PostgreSQL results in binary format, read as the text format reads them", .enabled(if: !PostgresTestServer.isOff, "STRONGROOM_TEST_POSTGRES=off"))
struct PostgresBinaryResultTests {
    /// What every accessor of a row gives for one column (`withBlob` copied out), but `int64` of a
    /// double (the text form is read only as far as its digits go) and `double` of a boolean ("t" is no
    /// number), which no statement of the engine reads and the two formats answer differently.
    struct Reading: Equatable {
        let isNull: Bool, integer: Int64?, real: Double?, text: String?, blob: [UInt8]?, inPlace: [UInt8]

        init(_ row: any Row, _ index: Int, kind: Kind) {
            isNull = row.isNull(index)
            integer = kind == .real ? nil : row.int64(index)
            real = kind == .boolean ? nil : row.double(index)
            text = row.text(index)
            blob = row.blob(index)
            inPlace = row.withBlob(index) { bytes in (0..<bytes.count).map { bytes[$0] } }
        }

        enum Kind { case boolean, real, other }
    }

    /// Each row of `sql` as `Reading`s (`kinds` by column, `.other` when absent): in binary format (a
    /// prepared statement) and in text format (the simple query protocol, which a locked turn's read
    /// uses), the turn rolled back.
    static func bothFormats(_ connection: PostgresConnection, _ sql: String, columns: Int, kinds: [Int: Reading.Kind])
        throws -> (binary: [[Reading]], text: [[Reading]]) {
        func read(_ row: any Row) -> [Reading] { (0..<columns).map { Reading(row, $0, kind: kinds[$0] ?? .other) } }
        let binary = try connection.rows(sql) { read($0) }
        var text: [[Reading]] = []
        try connection.beginLocked(reading: sql) { text.append(read($0)) }
        connection.rollBack()
        return (binary, text)
    }

    @Test("every column type the engine reads (bigint, integer, smallint, boolean, double precision, text, bytea, and what count, max, EXISTS, bool_or, nextval, literals and int8send give; real and oid too) reads the same in binary as in text: Int64.min and max, NULLs, empty bytea and text, non-ASCII text")
    func everyEngineType() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("""
            CREATE TABLE v (id BIGINT PRIMARY KEY, i8 BIGINT, i4 INTEGER, i2 SMALLINT, b BOOLEAN, f8 DOUBLE PRECISION, t TEXT, by BYTEA);
            CREATE SEQUENCE counter START 9007199254740993
            """)
        let rows: [[SQLValue]] = [
            [.integer(1), .integer(Int64.min), .integer(Int64(Int32.min)), .integer(Int64(Int16.min)), .integer(1), .real(-2.5e-300),
             .text("Zoë Ångström 漢字 😀 e\u{0301}"), .blob(Array(0...255))],
            [.integer(2), .integer(Int64.max), .integer(Int64(Int32.max)), .integer(Int64(Int16.max)), .integer(0), .real(1e308), .text(""), .blob([])],
            [.integer(3), .null, .null, .null, .null, .null, .null, .null],
            [.integer(4), .integer(-1), .integer(-1), .integer(-1), .integer(1), .real(0.1), .text("-42 and digits"), .blob(Array("123".utf8))],
            [.integer(5), .integer(0), .integer(0), .integer(0), .integer(0), .real(-0.5), .text("\\x00"), .blob(Array("\\x00".utf8))],
        ]
        for row in rows {
            try connection.run("INSERT INTO v VALUES (?, ?, ?, ?, ?::integer::boolean, ?, ?, ?)", row)
        }
        let columns = try Self.bothFormats(connection, "SELECT i8, i4, i2, b, f8, t, by FROM v ORDER BY id", columns: 7,
                                            kinds: [3: .boolean, 4: .real])
        #expect(columns.binary.count == rows.count)
        #expect(columns.binary == columns.text)
        // Exact values, not only agreement: the extremes, NULL, an empty bytea that is not NULL, every byte value.
        let first = try #require(columns.binary.first), second = columns.binary[1], nulls = columns.binary[2]
        #expect(first[0].integer == Int64.min && second[0].integer == Int64.max && first[0].text == String(Int64.min))
        #expect(first[1].integer == Int64(Int32.min) && second[2].integer == Int64(Int16.max))
        #expect(first[3].integer == 1 && first[3].text == "t" && second[3].integer == 0 && second[3].text == "f")
        #expect(first[4].text == "-2.5e-300" && second[4].text == "1e+308")
        #expect(first[4].real == -2.5e-300 && second[4].real == 1e308)
        #expect(first[5].text == "Zoë Ångström 漢字 😀 e\u{0301}" && second[5].text == "" && second[5].blob == [])
        #expect(first[6].blob == Array(0...255) && first[6].inPlace == Array(0...255))
        #expect(second[6].blob == [] && !second[6].isNull && second[6].text == "\\x")
        #expect(nulls.allSatisfy { $0.isNull && ($0.integer ?? 0) == 0 && $0.text == nil && $0.blob == nil && $0.inPlace == [] })
        // What the engine's statements compute: counts, max, EXISTS, bool_or, literals, CASE, int8send, nextval.
        let computed = try Self.bothFormats(connection, """
            SELECT count(*), max(i8), max(i4), EXISTS (SELECT 1 FROM v WHERE b), bool_or(b), 1, 'literal', CASE WHEN count(*) > 0 THEN 1 ELSE 0 END,
                   coalesce(string_agg(int8send(id) || by, ''::bytea ORDER BY id), ''::bytea), nextval('counter'), min(f8),
                   (-1.5)::real, 'pg_class'::regclass::oid
            FROM v
            """, columns: 13, kinds: [3: .boolean, 4: .boolean, 10: .real, 11: .real])
        #expect(computed.binary.count == 1)
        // nextval moved on between the two reads; the rest agrees.
        #expect(computed.binary[0].prefix(9) == computed.text[0].prefix(9) && computed.binary[0][10...] == computed.text[0][10...])
        let aggregate = try #require(computed.binary.first)
        #expect(aggregate[0].integer == 5 && aggregate[1].integer == Int64.max && aggregate[2].integer == Int64(Int32.max))
        #expect(aggregate[3].integer == 1 && aggregate[4].integer == 1 && aggregate[5].integer == 1 && aggregate[6].text == "literal" && aggregate[7].integer == 1)
        #expect(aggregate[9].integer == 9_007_199_254_740_993 && computed.text[0][9].integer == 9_007_199_254_740_994)
        #expect(aggregate[10].real == -0.5 && aggregate[11].real == -1.5 && aggregate[11].text == "-1.5" && aggregate[12].integer == 1259)
        var expectedAggregate: [UInt8] = []
        for row in rows {
            guard case .integer(let id) = row[0], case .blob(let bytes) = row[7] else { continue }
            expectedAggregate += withUnsafeBytes(of: id.bigEndian) { Array($0) } + bytes
        }
        #expect(aggregate[8].blob == expectedAggregate && aggregate[8].inPlace == expectedAggregate)
    }

    @Test("a result column of a type the binary reader does not know (numeric, timestamp, uuid) is a typed error naming no value, before any row is read; the connection goes on")
    func unknownTypeRefused() throws {
        guard let scratch = try Scratch() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        for sql in ["SELECT 12.5::numeric", "SELECT 1, now()", "SELECT gen_random_uuid()", "SELECT ?::bigint::numeric"] {
            var rowsRead = 0
            let error = thrown {
                try connection.forEachRow(sql, sql.contains("?") ? [.integer(424_242)] : []) { _ in rowsRead += 1 }
            }
            let refusal = try #require(error as? DatabaseError, "\(sql)")
            #expect(refusal.sqlState == "42804" && refusal.sql == sql && rowsRead == 0)
            #expect(!refusal.description.contains("12.5") && !refusal.description.contains("424242"))
            #expect(throws: DatabaseError.self) { try connection.firstRow(sql, sql.contains("?") ? [.integer(1)] : []) { $0.int64(0) } }
        }
        // A statement whose rows nobody reads runs; the text format (a turn's read) still reads such a column.
        try connection.run("SELECT now()")
        try connection.beginLocked(reading: "SELECT 12.5::numeric") { #expect($0.text(0) == "12.5") }
        connection.rollBack()
        // Second act: the same connection reads rows in binary again.
        #expect(try connection.scalarInteger("SELECT ?::bigint", [.integer(Int64.min)]) == Int64.min)
        #expect(try connection.scalarText("SELECT 'Zoë'") == "Zoë")
    }
}

@Suite("PostgreSQL binary COPY and binary arrays, round trip through the test server", .enabled(if: !PostgresTestServer.isOff, "STRONGROOM_TEST_POSTGRES=off"))
struct PostgresBinaryCopyTests {
    /// Rows of every kind a bulk insert sends: NULLs, empty and large bytes, negative and extreme
    /// integers, reals, text with non-ASCII characters and COPY's text-format specials.
    static func awkwardRows() -> [[SQLValue]] {
        var random = SystemRandomNumberGenerator()
        let large = (0..<(3 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
        return [
            [.integer(1), .integer(-1), .real(-0.5), .text("Zoë Ångström 漢字 😀"), .blob([])],
            [.integer(2), .integer(Int64.min + 1), .real(1e308), .text(""), .blob(Array(0...255))],
            [.integer(3), .integer(Int64.max), .null, .text("tab\there\nline \\N back\\slash \"quote\" {brace}, comma"), .null],
            [.integer(4), .null, .real(Double.leastNonzeroMagnitude), .null, .blob(large)],
            [.integer(5), .integer(-1_790_000_000_000), .real(0), .text("\\x00"), .blob(Array("\\x00".utf8))],
        ]
    }

    static let columns = ["id", "i", "r", "t", "b"]
    /// A scratch schema holding the table `v` of one column per kind of value (nil as `Scratch()` is).
    fileprivate static func scratchWithTable() throws -> Scratch? {
        guard let scratch = try Scratch() else { return nil }
        try scratch.connection.execute("CREATE TABLE v (id BIGINT PRIMARY KEY, i BIGINT, r DOUBLE PRECISION, t TEXT, b BYTEA)")
        return scratch
    }

    /// Every row of `v`, in id order, as the values it was written with.
    static func stored(_ connection: PostgresConnection) throws -> [[SQLValue]] {
        try connection.rows("SELECT id, i, r, t, b FROM v ORDER BY id") { row in
            [.integer(row.int64(0)), row.isNull(1) ? .null : .integer(row.int64(1)), row.isNull(2) ? .null : .real(row.double(2)),
             .text(row.text(3)), .blob(row.blob(4))]
        }
    }

    @Test("rows sent by a streamed binary COPY in several sets come back exactly: NULLs, empty and 3 MB bytes, negative integers, non-ASCII text")
    func copyRoundTrip() throws {
        guard let scratch = try Self.scratchWithTable() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        let rows = Self.awkwardRows()
        let (sets, copied) = try connection.copyBinary(into: "v", columns: Self.columns) { (send) throws(DatabaseError) -> Int in
            try send(Array(rows[0..<2]))
            try send([])
            try send(Array(rows[2...]))
            return 3
        }
        #expect(sets == 3 && copied == rows.count)
        #expect(try Self.stored(connection) == rows)
        // Second act: the connection runs statements and another COPY afterwards.
        _ = try connection.copyBinary(into: "v", columns: ["id", "t"]) { (send) throws(DatabaseError) in try send([[.integer(6), .text("later")]]) }
        #expect(try connection.scalarText("SELECT t FROM v WHERE id = 6") == "later")
    }

    @Test("binary array parameters spread into rows by unnest come back exactly, NULLs included; text with NUL or a value of the wrong type is refused before sending")
    func arrayRoundTrip() throws {
        guard let scratch = try Self.scratchWithTable() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        let rows = Self.awkwardRows()
        let kinds: [PostgresConnection.ArrayElement] = [.bigint, .bigint, .float, .text, .bytea]
        var parameters: [SQLValue] = []
        for (position, kind) in kinds.enumerated() {
            parameters.append(.blob(try PostgresConnection.binaryArray(rows.map { $0[position] }, of: kind)))
        }
        try connection.run("INSERT INTO v SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::double precision[], ?::text[], ?::bytea[])", parameters)
        #expect(try Self.stored(connection) == rows)
        #expect(try connection.rows("SELECT id FROM v WHERE t = ANY(?::text[]) ORDER BY id",
                                    [.blob(try PostgresConnection.binaryArray([.text("Zoë Ångström 漢字 😀"), .text("")], of: .text))]) { $0.int64(0) } == [1, 2])
        #expect(throws: DatabaseError.self) { try PostgresConnection.binaryArray([.text("a\u{0}b")], of: .text) }
        #expect(throws: DatabaseError.self) { try PostgresConnection.binaryArray([.integer(1)], of: .text) }
    }

    @Test("a binary COPY failing mid-stream (a duplicate key, a NUL in text, the client's own error) fails its transaction, which rolls back; the connection copies again afterwards")
    func failedCopyRollsBack() throws {
        guard let scratch = try Self.scratchWithTable() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        let rows = Self.awkwardRows()
        let clientError = DatabaseError(code: .postgresql(sqlState: "P0001"), message: "the body's own error")
        let failures: [(sent: [[SQLValue]], expected: String)] = [
            ([Array(rows[0]), Array(rows[0])], "23505"),
            ([[.integer(9), .null, .null, .text("secret\u{0}value"), .null]], "22000"),
            ([Array(rows[1])], "P0001"),
        ]
        for failure in failures {
            let error = thrown {
                try connection.transaction { () throws(DatabaseError) in
                    try connection.run("INSERT INTO v (id) VALUES (100)")
                    _ = try connection.copyBinary(into: "v", columns: Self.columns) { (send) throws(DatabaseError) in
                        try send(Array(rows[2...]))
                        try send(failure.sent)
                        if failure.expected == "P0001" { throw clientError }
                    }
                }
            }
            let databaseError = try #require(error as? DatabaseError, "\(String(describing: error))")
            #expect(databaseError.sqlState == failure.expected)
            #expect(!databaseError.description.contains("secret"))
            #expect(try connection.scalarInteger("SELECT count(*) FROM v") == 0, "the whole transaction rolled back")
        }
        // Second act: the same rows copy in a transaction of their own, and another connection sees them.
        try connection.transaction { () throws(DatabaseError) in
            _ = try connection.copyBinary(into: "v", columns: Self.columns) { (send) throws(DatabaseError) in try send(rows) }
        }
        #expect(try Self.stored(try scratch.connect()) == rows)
    }

    @Test("several tables' binary COPYs in one query: each table gets its rows (none for a table sent none); a failure in the second, or the client's between them, rolls the transaction back whole; the connection copies again")
    func copyIntoSeveralTables() throws {
        guard let scratch = try Self.scratchWithTable() else { return }
        defer { scratch.drop() }
        let connection = scratch.connection
        try connection.execute("CREATE TABLE w (id BIGINT PRIMARY KEY, t TEXT); CREATE TABLE x (id BIGINT PRIMARY KEY)")
        let rows = Self.awkwardRows()
        let tables = [(table: "v", columns: Self.columns), (table: "x", columns: ["id"]), (table: "w", columns: ["id", "t"])]
        let count = { (table: String) throws -> Int64? in try connection.scalarInteger("SELECT count(*) FROM \(table)") }
        let clientError = DatabaseError(code: .postgresql(sqlState: "P0001"), message: "the body's own error")
        for failure in ["23505", "P0001"] {
            let error = thrown {
                try connection.transaction { () throws(DatabaseError) in
                    _ = try connection.copyBinary(into: tables) { (send) throws(DatabaseError) in
                        try send(0, rows)
                        if failure == "P0001" { throw clientError }
                        try send(2, [[.integer(1), .text("one")], [.integer(1), .text("again")]])
                    }
                }
            }
            #expect((error as? DatabaseError)?.sqlState == failure)
            #expect(try count("v") == 0 && count("w") == 0, "the whole transaction rolled back")
        }
        // Rows for a table whose COPY is over are refused, and the query abandoned.
        #expect(throws: DatabaseError.self) {
            try connection.transaction { () throws(DatabaseError) in
                _ = try connection.copyBinary(into: tables) { (send) throws(DatabaseError) in
                    try send(2, [[.integer(1), .text("one")]])
                    try send(0, rows)
                }
            }
        }
        #expect(try count("w") == 0)
        // Second act: the three tables in one query, in sets, the middle one sent nothing; another connection sees them.
        let (sets, copied) = try connection.copyBinary(into: tables) { (send) throws(DatabaseError) -> Int in
            try send(0, Array(rows[0..<2]))
            try send(0, Array(rows[2...]))
            try send(2, [[.integer(7), .text("seven")]])
            return 3
        }
        #expect(sets == 3 && copied == rows.count + 1)
        let other = try scratch.connect()
        #expect(try Self.stored(other) == rows)
        #expect(try other.scalarText("SELECT t FROM w WHERE id = 7") == "seven" && other.scalarInteger("SELECT count(*) FROM x") == 0)
    }
}
