import Foundation
import StrongroomStorage
import StrongroomTestSupport
import Testing

@Suite("SQLite connection, statements, transactions and migrations")
struct ConnectionTests {
    /// The test's files, removed after it.
    let scratch = TemporaryDirectory("strongroom-storage")

    @Test("values of every type round-trip through bound parameters")
    func roundTrip() throws {
        let connection = try SQLiteConnection(path: scratch.path("rt.sqlite"))
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

    @Test("values lent to a statement (no copy) round-trip as bound ones do; a failed run leaves nothing lent, and the statement runs again")
    func lentValues() throws {
        let connection = try SQLiteConnection(path: scratch.path("lent.sqlite"))
        try connection.execute("CREATE TABLE t (i INTEGER UNIQUE, r REAL, s TEXT, b BLOB, n BLOB)")
        let insert = "INSERT INTO t VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)"
        // Built at run time: bytes of arrays and strings made here, released once the run returns.
        let text = String(repeating: "zeta ζ ", count: 3)
        try connection.runLendingValues(insert, [.integer(1), .real(2.5), .text(text), .blob([0, 1, 255]), .null,
                                                 .integer(2), .null, .text(""), .blob([]), .blob(Array(repeating: 7, count: 5_000))])
        var rows: [(Int64, Double, String?, [UInt8]?, [UInt8]?)] = []
        try connection.forEachRow("SELECT i, r, s, b, n FROM t ORDER BY i") { rows.append(($0.int64(0), $0.double(1), $0.text(2), $0.blob(3), $0.blob(4))) }
        #expect(rows.count == 2)
        #expect(rows[0].0 == 1 && rows[0].1 == 2.5 && rows[0].2 == text && rows[0].3 == [0, 1, 255] && rows[0].4 == nil)
        // An empty text and an empty blob stay empty, not NULL.
        #expect(rows[1].0 == 2 && rows[1].2 == "" && rows[1].3 == [] && rows[1].4 == Array(repeating: 7, count: 5_000))
        // A run that fails (the second row's `i` taken) inserts neither row and throws.
        #expect(throws: DatabaseError.self) {
            try connection.runLendingValues(insert, [.integer(3), .null, .text("x"), .blob([1]), .null, .integer(1), .null, .null, .null, .null])
        }
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 2)
        // The second act: the same statement, run again with other values and through `run`, and a
        // statement that binds no values: nothing of the failed run's bytes is left bound.
        try connection.runLendingValues(insert, [.integer(3), .null, .text("three"), .blob([3]), .null, .integer(4), .null, .null, .null, .null])
        try connection.run("INSERT INTO t (i) VALUES (?)", [.integer(5)])
        var later: [String] = []
        try connection.forEachRow("SELECT i, s, b FROM t WHERE i >= 3 ORDER BY i") { later.append("\($0.int64(0)) \($0.text(1) ?? "-") \($0.blob(2) ?? [])") }
        #expect(later == ["3 three [3]", "4 - []", "5 - []"])
    }

    @Test("the data version stays while nobody commits and moves when another connection or this one does")
    func dataVersion() throws {
        let path = scratch.path("dv.sqlite")
        let reader = try SQLiteConnection(path: path)
        try reader.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)")
        let writer = try SQLiteConnection(path: path)
        func read() throws -> UInt32 {
            _ = try reader.scalarInteger("SELECT count(*) FROM t")
            return reader.dataVersion
        }
        let first = try read()
        #expect(try read() == first)
        try writer.run("INSERT INTO t VALUES (1)", [])
        let afterOther = try read()
        #expect(afterOther != first)
        #expect(try read() == afterOther)
        try reader.run("INSERT INTO t VALUES (2)", [])
        #expect(try read() != afterOther)
    }

    @Test("the change journal: each commit's data versions and reported keys, none for a rollback, incomplete past its limit")
    func changeJournal() throws {
        struct Refused: DatabaseFailure {
            init(_ error: DatabaseError) {}
            init() {}
        }
        let path = scratch.path("journal.sqlite")
        let connection = try SQLiteConnection(path: path)
        try connection.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)")
        try connection.keepChangeJournal(function: "changed", keyLimit: 3)
        try connection.execute("CREATE TEMP TRIGGER t_insert AFTER INSERT ON main.t BEGIN SELECT changed(NEW.x); END")
        _ = try connection.scalarInteger("SELECT count(*) FROM t")
        let before = connection.dataVersion
        try connection.transaction { () throws(DatabaseError) in try connection.run("INSERT INTO t VALUES (7), (8)", []) }
        let committed = connection.takeChangeJournal()
        #expect(committed.complete)
        let commit = try #require(committed.transactions.first)
        #expect(committed.transactions.count == 1)
        #expect(commit.fromVersion == before && commit.toVersion == connection.dataVersion && commit.keys == [7, 8])
        #expect(connection.dataVersion != before)
        _ = try connection.scalarInteger("SELECT count(*) FROM t")
        #expect(committed.transactions.last?.toVersion == connection.dataVersion, "the next read sees the commit's version")
        // A rolled-back transaction reports nothing; the journal was emptied by the take.
        #expect(throws: Refused.self) {
            try connection.transaction { () throws(Refused) in
                try? connection.run("INSERT INTO t VALUES (9)", [])
                throw Refused()
            }
        }
        #expect(connection.takeChangeJournal().transactions.isEmpty)
        // Past the limit the journal says it is incomplete; second act: it records again after being taken.
        try connection.transaction { () throws(DatabaseError) in try connection.run("INSERT INTO t VALUES (1), (2), (3), (4)", []) }
        let overflowed = connection.takeChangeJournal()
        #expect(!overflowed.complete && overflowed.transactions.isEmpty)
        try connection.transaction { () throws(DatabaseError) in try connection.run("INSERT INTO t VALUES (5)", []) }
        let again = connection.takeChangeJournal()
        #expect(again.complete && again.transactions.map(\.keys) == [[5]])
        // A write outside `transaction` is not journalled: only the version tells of it.
        let version = connection.dataVersion
        try connection.run("INSERT INTO t VALUES (6)", [])
        #expect(connection.dataVersion != version)
        #expect(connection.takeChangeJournal().transactions.isEmpty)
    }

    @Test("a transaction that throws is rolled back")
    func rollback() throws {
        let connection = try SQLiteConnection(path: scratch.path("tx.sqlite"))
        try connection.execute("CREATE TABLE t (x INTEGER)")
        let abort = DatabaseError(code: .sqlite(extendedCode: 1), message: "the body's own error")
        #expect(throws: abort) {
            try connection.transaction { () throws(DatabaseError) in
                try connection.run("INSERT INTO t VALUES (1)")
                throw abort
            }
        }
        #expect(try connection.scalarInteger("SELECT count(*) FROM t") == 0)
        #expect(!connection.isInTransaction)
    }

    /// A transaction body's own error type: the body's failures, and the statements' it lets through.
    private enum BodyFailure: DatabaseFailure, Equatable {
        case database(DatabaseError)
        case refused
        init(_ error: DatabaseError) { self = .database(error) }
    }

    @Test("a transaction's BEGIN that fails (another connection holds the write lock) comes as the body's error type; the body's own error passes unchanged")
    func transactionFailureTakesBodysType() throws {
        let path = scratch.path("busy.sqlite")
        let holder = try SQLiteConnection(path: path)
        try holder.execute("CREATE TABLE t (x INTEGER)")
        let waiting = try SQLiteConnection(path: path, busyTimeoutMilliseconds: 0)
        try holder.execute("BEGIN IMMEDIATE")
        var ran = false
        let busy = #expect(throws: BodyFailure.self) {
            try waiting.transaction { () throws(BodyFailure) in ran = true }
        }
        guard case .database(let error)? = busy, case .sqlite(let code) = error.code else {
            Issue.record("not the body's type holding BEGIN's failure: \(String(describing: busy))")
            return
        }
        #expect(code & 0xff == 5 && error.sql == "BEGIN IMMEDIATE", "SQLITE_BUSY from BEGIN, not \(error)")
        #expect(!ran && !waiting.isInTransaction)
        // Second act: the lock is let go; the body's own error rolls back and comes out as thrown, and a
        // body that returns commits.
        try holder.execute("COMMIT")
        #expect(throws: BodyFailure.refused) {
            try waiting.transaction { () throws(BodyFailure) in
                do throws(DatabaseError) { try waiting.run("INSERT INTO t VALUES (1)") } catch { throw .database(error) }
                throw .refused
            }
        }
        try waiting.transaction { () throws(BodyFailure) in
            do throws(DatabaseError) { try waiting.run("INSERT INTO t VALUES (2)") } catch { throw .database(error) }
        }
        #expect(try holder.rows("SELECT x FROM t") { $0.int64(0) } == [2])
    }

    @Test("errors carry SQLite's code and message, never the bound values")
    func errors() throws {
        let connection = try SQLiteConnection(path: scratch.path("err.sqlite"))
        try connection.execute("CREATE TABLE t (x TEXT UNIQUE)")
        try connection.run("INSERT INTO t VALUES (?)", [.text("secret-value-1")])
        #expect {
            try connection.run("INSERT INTO t VALUES (?)", [.text("secret-value-1")])
        } throws: { error in
            guard let error = error as? DatabaseError else { return false }
            // SQLITE_CONSTRAINT_UNIQUE (2067), the SQL with its placeholder, and no value anywhere.
            return error.code == .sqlite(extendedCode: 2067) && error.isConstraintViolation && error.isUniqueViolation
                && error.sql == "INSERT INTO t VALUES (?)"
                && ![error.description, error.message, String(reflecting: error)].contains { $0.contains("secret-value-1") }
        }
        #expect(throws: DatabaseError.self) { try connection.execute("SELECT * FROM missing") }
        #expect(throws: DatabaseError.self) { try SQLiteConnection(path: scratch.path("absent.sqlite"), create: false) }
    }

    @Test("migrations apply once, in order, and a file from a newer build is refused")
    func migrations() throws {
        let path = scratch.path("mig.sqlite")
        let steps = [Migration(version: 1, sql: "CREATE TABLE a (x)"), Migration(version: 2, sql: "CREATE TABLE b (y)")]
        let connection = try SQLiteConnection(path: path)
        try connection.migrate(steps)
        try connection.migrate(steps)
        #expect(try connection.schemaVersion() == 2)
        #expect(throws: MigrationError.schemaNewerThanBuild(found: 2, supported: 1)) { try connection.migrate(Array(steps.prefix(1))) }
    }
}

@Suite("Append-only files, mapped files and file locks")
struct FileTests {
    /// The test's files, removed after it.
    let scratch = TemporaryDirectory("strongroom-storage")

    @Test("a mapped block's bytes read as the array already held when they match it, else afresh")
    func loadReusingKnownBytes() throws {
        let path = scratch.path("block")
        let writer = try MappedBlock(path: path, byteCount: 4096)
        let reader = try MappedBlock(path: path, byteCount: 4096)
        let first = [UInt8](repeating: 0xA1, count: 32)
        writer.store(first, at: 64)
        let known = reader.load(count: 32, at: 64)
        let reused = reader.load(count: 32, at: 64, reusing: known)
        let sameStorage = reused.withUnsafeBufferPointer { $0.baseAddress } == known.withUnsafeBufferPointer { $0.baseAddress }
        #expect(reused == first && sameStorage)
        // Another handle changes the bytes: the array held is stale, and what the file holds is read.
        let second = [UInt8](repeating: 0xB2, count: 32)
        writer.store(second, at: 64)
        #expect(reader.load(count: 32, at: 64, reusing: known) == second)
        #expect(reader.load(count: 31, at: 64, reusing: second) == Array(second.prefix(31)))
        #expect(reader.load(count: 0, at: 64, reusing: []) == [])
        #expect(reader.load(count: 32, at: 64, reusing: nil) == second)
    }

    @Test("appends grow the file and truncation cuts it")
    func appendOnly() throws {
        let path = scratch.path("log.jsonl")
        let file = try AppendOnlyFile(path: path)
        try file.append(Array("one\n".utf8))
        try file.append(Array("two\n".utf8))
        #expect(try AppendOnlyFile.readAll(path: path) == Array("one\ntwo\n".utf8))
        try file.truncate(to: 4)
        #expect(try AppendOnlyFile.readAll(path: path) == Array("one\n".utf8))
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    @Test("a mapped file grows preallocated with zeros, its stores are in the file at once, and it is cut to length")
    func mapped() throws {
        let path = scratch.path("mapped.jsonl")
        let file = try MappedFile(path: path, window: 1 << 16)
        #expect(file.size == 0)
        try file.allocate(to: 8192)
        #expect(file.size == 8192)
        #expect(try file.sizeIfStillLinked() == 8192)
        try file.storeRecords(Array("one\ntwo\n".utf8), at: 0, terminator: UInt8(ascii: "\n"))
        try file.storeRecords(Array("three\n".utf8), at: 8, terminator: UInt8(ascii: "\n"))
        try file.storeRecords(Array("no end".utf8), at: 8186, terminator: UInt8(ascii: "\n"))
        // Read back through read(2), not the mapping: the bytes are in the page cache already.
        let bytes = try AppendOnlyFile.readAll(path: path)
        #expect(bytes.count == 8192)
        #expect(Array(bytes[..<14]) == Array("one\ntwo\nthree\n".utf8))
        #expect(bytes[14..<8186].allSatisfy { $0 == 0 })
        #expect(Array(bytes[8186...]) == Array("no end".utf8))
        try file.synchronizer().synchronize()
        try file.truncate(to: 14)
        #expect(try AppendOnlyFile.readAll(path: path) == Array("one\ntwo\nthree\n".utf8))
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    @Test("a mapped file's window moves along a long file, and sees growth made through another handle")
    func mappedWindow() throws {
        let path = scratch.path("window.jsonl")
        let file = try MappedFile(path: path, window: 4096)
        try file.allocate(to: 3 * 4096 + 10)
        // Within the first window, then past it, then across a page boundary, then back at the start.
        try file.storeRecords([1, 10], at: 0, terminator: 10)
        try file.storeRecords([2, 10], at: 3 * 4096 + 8, terminator: 10)
        try file.storeRecords(Array(repeating: 3, count: 5000) + [10], at: 4090, terminator: 10)
        try file.storeRecords([4], at: 2, terminator: 10)
        let bytes = try AppendOnlyFile.readAll(path: path)
        #expect(Array(bytes[0..<3]) == [1, 10, 4] && Array(bytes[(3 * 4096 + 8)...]) == [2, 10])
        #expect(bytes[4090..<9090].allSatisfy { $0 == 3 } && bytes[9090] == 10)
        let other = try MappedFile(path: path, window: 4096)
        #expect(other.size == 3 * 4096 + 10)
        try file.allocate(to: 1 << 20)
        #expect(other.size == 3 * 4096 + 10)
        #expect(try other.sizeIfStillLinked() == 1 << 20)
        try other.storeRecords([5], at: (1 << 20) - 1, terminator: 10)
        #expect(try AppendOnlyFile.readAll(path: path).last == 5)
    }

    @Test("a mapped block is made whole, zero-filled and 0600, and its fields are shared by every handle")
    func block() throws {
        let path = scratch.path("TAIL")
        let first = try MappedBlock(path: path, byteCount: 4096)
        #expect(try AppendOnlyFile.readAll(path: path) == [UInt8](repeating: 0, count: 4096))
        first.storeUInt64(0x0102_0304_0506_0708, at: 8)
        first.store([9, 8, 7], at: 100)
        let second = try MappedBlock(path: path, byteCount: 4096)
        #expect(second.loadUInt64(at: 8) == 0x0102_0304_0506_0708)
        #expect(second.load(count: 3, at: 100) == [9, 8, 7])
        second.storeUInt64(42, at: 0)
        #expect(first.loadUInt64(at: 0) == 42)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    #if os(Linux)
    @Test("a populator readies a fresh file's pages for writing and changes no byte, inside the file or past its end")
    func populate() throws {
        let path = scratch.path("populate.jsonl")
        let file = try MappedFile(path: path, window: 1 << 16)
        try file.allocate(to: 4 << 20)
        let populator = try file.populator()
        let ahead = (1 << 20)..<(5 << 18)
        // Preallocated blocks are not in the page cache until something faults them in.
        #expect(try residentPages(of: path, in: ahead) == 0)
        populator.populate(Int64(ahead.lowerBound)..<Int64(ahead.upperBound))
        populator.populate((8 << 20)..<(9 << 20))
        #expect(populator.isSupported)
        #expect(try residentPages(of: path, in: ahead) == ahead.count / 4096)
        try file.storeRecords(Array("kept\n".utf8), at: 1 << 20, terminator: UInt8(ascii: "\n"))
        let bytes = try AppendOnlyFile.readAll(path: path)
        #expect(bytes.count == 4 << 20 && Array(bytes[(1 << 20)..<((1 << 20) + 5)]) == Array("kept\n".utf8))
        #expect(bytes[..<(1 << 20)].allSatisfy { $0 == 0 } && bytes[((1 << 20) + 5)...].allSatisfy { $0 == 0 })
    }

    @Test("pages readied inside the writer's window take its stores without a page fault; pages outside it still fault")
    func populateInPlace() throws {
        let path = scratch.path("in-place.jsonl")
        let file = try MappedFile(path: path, window: 1 << 20)
        try file.allocate(to: 4 << 20)
        let populator = try file.populator()
        let record = [UInt8](repeating: UInt8(ascii: "a"), count: 4095) + [UInt8(ascii: "\n")]
        // The first store maps the window [0, 1 MiB); 64 pages of it are readied, then stored into.
        try file.storeRecords(record, at: 0, terminator: UInt8(ascii: "\n"))
        populator.populate(4096..<(65 * 4096))
        let readied = try pageFaults { for page in 1...64 { try file.storeRecords(record, at: Int64(page) * 4096, terminator: UInt8(ascii: "\n")) } }
        // The next 64 pages of the window were not readied: each store's first touch faults.
        let cold = try pageFaults { for page in 65...128 { try file.storeRecords(record, at: Int64(page) * 4096, terminator: UInt8(ascii: "\n")) } }
        #expect(readied <= 2)
        #expect(cold >= 60)
        let bytes = try AppendOnlyFile.readAll(path: path)
        #expect(bytes[..<(129 * 4096)].elementsEqual((0..<129).flatMap { _ in record }))
        #expect(bytes[(129 * 4096)...].allSatisfy { $0 == 0 })
    }
    #endif

    @Test("a mapped file that was deleted or replaced is noticed")
    func mappedReplaced() throws {
        let path = scratch.path("replaced.jsonl")
        let file = try MappedFile(path: path, window: 4096)
        #expect(try file.sizeIfStillLinked() == 0)
        try FileManager.default.removeItem(atPath: path)
        try Data("other".utf8).write(to: URL(fileURLWithPath: path))
        #expect(try file.sizeIfStillLinked() == nil)
    }

    @Test("a mapped file is not created in a folder that is not one")
    func mappedUnavailable() throws {
        let folder = scratch.path("not-a-folder")
        try Data("file".utf8).write(to: URL(fileURLWithPath: folder))
        #expect { try MappedFile(path: folder + "/x", window: 4096) } throws: { error in
            (error as? FileError)?.operation == "open" && (error as? FileError)?.code == ENOTDIR
        }
    }

    @Test("the exclusive lock runs its body and passes on its result and errors")
    func lock() throws {
        let lock = try FileLock(path: scratch.path("LOCK"))
        #expect(try lock.withExclusiveLock(until: LockDeadline(secondsFromNow: 30)) { 7 } == 7)
        struct Failure: Error {}
        #expect(throws: Failure.self) { try lock.withExclusiveLock(until: LockDeadline(secondsFromNow: 30)) { throw Failure() } }
        #expect(try lock.withExclusiveLock(until: LockDeadline(secondsFromNow: 30)) { "again" } == "again")
    }

    @Test("shared holders keep out an exclusive try; the last one out can take it")
    func presence() throws {
        let path = scratch.path("PRESENT")
        // Two handles on one file behave as two processes do (flock locks belong to the open file).
        let first = try FileLock(path: path)
        let second = try FileLock(path: path)
        #expect(try first.tryLockExclusive())
        #expect(try !second.tryLockExclusive())
        try first.lockShared(until: LockDeadline(secondsFromNow: 30))
        try second.lockShared(until: LockDeadline(secondsFromNow: 30))
        #expect(try !first.tryLockExclusive())
        // The failed attempt left `first` with no lock at all: `second` is alone now.
        #expect(try second.tryLockExclusive())
        second.unlock()
        #expect(try first.tryLockExclusive())
        first.unlock()
    }
}

#if os(Linux)

/// How many page faults this thread takes while `body` runs (`getrusage(RUSAGE_THREAD)`: minor and major).
private func pageFaults(_ body: () throws -> Void) throws -> Int {
    func count() -> Int {
        var usage = rusage()
        getrusage(.init(1), &usage)   // RUSAGE_THREAD (Linux), which Glibc's module leaves out
        return usage.ru_minflt + usage.ru_majflt
    }
    let before = count()
    try body()
    return count() - before
}

/// How many of the 4 KiB pages holding `range` of the file at `path` are in the page cache: `mincore`
/// over a read-only mapping of its own, which faults nothing in. (Large folios make residency coarser
/// than a page: a page next to a touched one may count too.)
private func residentPages(of path: String, in range: Range<Int>) throws -> Int {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    defer { close(descriptor) }
    guard let base = mmap(nil, range.upperBound, PROT_READ, MAP_SHARED, descriptor, 0), base != MAP_FAILED else {
        throw POSIXError(.init(rawValue: errno) ?? .EIO)
    }
    defer { munmap(base, range.upperBound) }
    var residency = [UInt8](repeating: 0, count: (range.count + 4095) / 4096)
    guard mincore(base + range.lowerBound, range.count, &residency) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    return residency.filter { $0 & 1 == 1 }.count
}
#endif
