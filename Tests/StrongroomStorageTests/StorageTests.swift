import Foundation
import StrongroomStorage
import Testing

/// A fresh path in the temporary folder.
func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-storage-\(UUID().uuidString)-\(name)").path
}

@Suite("SQLite connection, statements, transactions and migrations")
struct ConnectionTests {
    @Test("values of every type round-trip through bound parameters")
    func roundTrip() throws {
        let connection = try SQLiteConnection(path: temporaryPath("rt.sqlite"))
        try connection.execute("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n BLOB)")
        try connection.run("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [.integer(-42), .real(2.5), .text("zeta ζ"), .blob([0, 1, 255]), .null])
        try connection.run("INSERT INTO t (b) VALUES (?)", [.blob([])])
        let row = try #require(try connection.firstRow("SELECT i, r, s, b, n FROM t WHERE i IS NOT NULL") {
            ($0.int64(0), $0.double(1), $0.text(2), $0.blob(3), $0.isNull(4))
        })
        #expect(row.0 == -42 && row.1 == 2.5 && row.2 == "zeta ζ" && row.3 == [0, 1, 255] && row.4)
        // An empty blob stays an empty blob, not NULL.
        #expect(try connection.firstRow("SELECT b FROM t WHERE i IS NULL") { $0.blob(0) } == .some([]))
    }

    @Test("a transaction that throws is rolled back")
    func rollback() throws {
        let connection = try SQLiteConnection(path: temporaryPath("tx.sqlite"))
        try connection.execute("CREATE TABLE t (x INTEGER)")
        struct Abort: Error {}
        #expect(throws: Abort.self) {
            try connection.transaction {
                try connection.run("INSERT INTO t VALUES (1)")
                throw Abort()
            }
        }
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 0)
        #expect(!connection.isInTransaction)
    }

    @Test("errors carry SQLite's code and message, never the bound values")
    func errors() throws {
        let connection = try SQLiteConnection(path: temporaryPath("err.sqlite"))
        try connection.execute("CREATE TABLE t (x TEXT UNIQUE)")
        try connection.run("INSERT INTO t VALUES (?)", [.text("secret-value-1")])
        #expect {
            try connection.run("INSERT INTO t VALUES (?)", [.text("secret-value-1")])
        } throws: { error in
            guard let error = error as? SQLiteError else { return false }
            return error.isConstraintViolation && !error.description.contains("secret-value-1")
        }
        #expect(throws: SQLiteError.self) { try connection.execute("SELECT * FROM missing") }
        #expect(throws: SQLiteError.self) { try SQLiteConnection(path: temporaryPath("absent.sqlite"), create: false) }
    }

    @Test("migrations apply once, in order, and a file from a newer build is refused")
    func migrations() throws {
        let path = temporaryPath("mig.sqlite")
        let steps = [Migration(version: 1, sql: "CREATE TABLE a (x)"), Migration(version: 2, sql: "CREATE TABLE b (y)")]
        let connection = try SQLiteConnection(path: path)
        try connection.migrate(steps)
        try connection.migrate(steps)
        #expect(try connection.schemaVersion() == 2)
        #expect(throws: MigrationError.schemaNewerThanBuild(found: 2, supported: 1)) { try connection.migrate(Array(steps.prefix(1))) }
    }
}

@Suite("Append-only files and file locks")
struct FileTests {
    @Test("appends grow the file; truncation cuts it; a replaced file is noticed")
    func appendOnly() throws {
        let path = temporaryPath("log.jsonl")
        let file = try AppendOnlyFile(path: path)
        try file.append(Array("one\n".utf8))
        try file.append(Array("two\n".utf8))
        #expect(try file.size() == 8)
        #expect(try AppendOnlyFile.readAll(path: path) == Array("one\ntwo\n".utf8))
        try file.truncate(to: 4)
        #expect(try file.sizeIfStillLinked() == 4)
        try file.synchronizer().synchronize()
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        try FileManager.default.removeItem(atPath: path)
        try Data("other".utf8).write(to: URL(fileURLWithPath: path))
        #expect(try file.sizeIfStillLinked() == nil)
    }

    @Test("the exclusive lock runs its body and passes on its result and errors")
    func lock() throws {
        let lock = try FileLock(path: temporaryPath("LOCK"))
        #expect(try lock.withExclusiveLock { 7 } == 7)
        struct Failure: Error {}
        #expect(throws: Failure.self) { try lock.withExclusiveLock { throw Failure() } }
        #expect(try lock.withExclusiveLock { "again" } == "again")
    }
}
