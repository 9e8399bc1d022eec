import StrongroomStorage
import StrongroomTestSupport
import Testing

@Suite("SQLite functions defined by the engine")
struct SQLiteFunctionTests {
    /// The test's files, removed after it.
    let scratch = TemporaryDirectory("strongroom-storage")

    @Test("a predicate sees its arguments as typed columns and filters rows inside the query")
    func predicate() throws {
        let connection = try SQLiteConnection(path: scratch.path("fn.sqlite"))
        try connection.execute("CREATE TABLE t (id INTEGER, b BLOB, s TEXT, r REAL)")
        for id in 1...6 {
            try connection.run("INSERT INTO t VALUES (?, ?, ?, ?)", [.int(id), .blob([UInt8(id), 7]), .text("row \(id)"), .real(Double(id) / 2)])
        }
        try connection.run("INSERT INTO t VALUES (7, NULL, NULL, NULL)")
        var seen: [(Int64, [UInt8]?, String?, Double, Bool)] = []
        try connection.definePredicate("keep", argumentCount: 5) { arguments in
            seen.append((arguments.int64(0), arguments.blob(1), arguments.text(2), arguments.double(3), arguments.isNull(1)))
            // Keeps even ids whose blob ends with the bound byte.
            return arguments.int64(0) % 2 == 0 && arguments.blob(1)?.last == UInt8(truncatingIfNeeded: arguments.int64(4))
        }
        let kept = try connection.rows("SELECT id FROM t WHERE keep(id, b, s, r, ?) ORDER BY id", [.integer(7)]) { $0.int64(0) }
        #expect(kept == [2, 4, 6])
        #expect(seen.count == 7)
        #expect(seen[0].0 == 1 && seen[0].1 == [1, 7] && seen[0].2 == "row 1" && seen[0].3 == 0.5 && !seen[0].4)
        #expect(seen[6].0 == 7 && seen[6].1 == nil && seen[6].2 == nil && seen[6].4)
    }

    @Test("a predicate cannot be called from the schema (a trigger or view), only from the connection's own statements")
    func directOnly() throws {
        let connection = try SQLiteConnection(path: scratch.path("fn-direct.sqlite"))
        try connection.definePredicate("secret_check", argumentCount: 1) { _ in true }
        try connection.execute("CREATE TABLE t (x INTEGER); CREATE VIEW v AS SELECT x FROM t WHERE secret_check(x)")
        try connection.run("INSERT INTO t VALUES (1)")
        #expect(throws: DatabaseError.self) { try connection.scalarInteger("SELECT count(*) FROM v") }
        #expect(try connection.scalarInteger("SELECT count(*) FROM t WHERE secret_check(x)") == 1)
    }
}
