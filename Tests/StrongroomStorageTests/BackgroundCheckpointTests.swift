import Foundation
import StrongroomStorage
import StrongroomTestSupport
import Testing

@Suite("SQLite checkpoints in the background")
struct BackgroundCheckpointTests {
    /// The test's files, removed after it.
    let scratch = TemporaryDirectory("strongroom-checkpoint")

    /// A connection in WAL mode with a table `t (x BLOB)`, checkpointing in the background after `pages`.
    func connection(_ name: String, pages: Int32) throws -> SQLiteConnection {
        let connection = try SQLiteConnection(path: scratch.path(name))
        try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE IF NOT EXISTS t (x BLOB)")
        connection.checkpointInBackground(afterPages: pages)
        return connection
    }

    /// Commits `count` transactions of one 8 KiB row each (about three pages).
    func write(_ count: Int, on connection: SQLiteConnection) throws {
        for index in 0..<count {
            try connection.transaction { () throws(DatabaseError) in
                try connection.run("INSERT INTO t VALUES (?)", [.blob([UInt8](repeating: UInt8(index % 251), count: 8192))])
            }
        }
    }

    func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Waits up to five seconds for `condition`.
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return condition()
    }

    @Test("commits past the threshold are copied into the database file by another connection, SQLite's own automatic checkpoint is off, and the WAL stays bounded under writes without a pause")
    func checkpointsAndBoundedWAL() throws {
        let path = scratch.path("bounded.sqlite")
        let writer = try connection("bounded.sqlite", pages: 16)
        #expect(try writer.scalarInteger("PRAGMA wal_autocheckpoint") == 0)
        #expect(writer.backgroundCheckpointPages == 16)
        // 400 transactions, about 3.2 MiB: without checkpoints the WAL would hold all of it.
        try write(400, on: writer)
        #expect(eventually { size(path) > 3_000_000 }, "the database file received the committed pages")
        // The WAL restarts from its beginning: its file never grew far past twice the threshold and a
        // transaction (about 35 pages of 4 KiB and a frame header each).
        #expect(size(path + "-wal") < 60 * 4120)
        // Second act: a reader holding an old snapshot keeps the checkpoint from copying everything; the
        // writes go on, the reader still reads its snapshot, and once it is done the WAL is copied whole
        // and starts again.
        let reader = try SQLiteConnection(path: path)
        try reader.execute("BEGIN")
        #expect(try reader.scalarInteger("SELECT count(*) FROM t") == 400)
        try write(100, on: writer)
        #expect(try reader.scalarInteger("SELECT count(*) FROM t") == 400)
        try reader.execute("COMMIT")
        try write(100, on: writer)
        let walAfterReader = size(path + "-wal")
        try write(300, on: writer)
        #expect(size(path + "-wal") <= max(walAfterReader, 60 * 4120))
        #expect(try writer.scalarInteger("SELECT count(*) FROM t") == 900)
    }

    @Test("discarding deleted content right after a burst of commits waits for the checkpoint in flight and truncates the WAL; closing with one queued loses nothing")
    func discardAndCloseDuringCheckpoint() throws {
        let path = scratch.path("discard.sqlite")
        do {
            let writer = try connection("discard.sqlite", pages: 8)
            try write(200, on: writer)
            try writer.run("DELETE FROM t WHERE rowid % 2 = 0", [])
            #expect(try writer.discardDeletedContent(waitingUpTo: 1000))
            #expect(size(path + "-wal") == 0)
            // Second act: more commits set off more checkpoints, and the connection closes with one
            // likely still queued or running.
            try write(150, on: writer)
        }
        let reopened = try connection("discard.sqlite", pages: 8)
        #expect(try reopened.scalarInteger("SELECT count(*) FROM t") == 250)
        #expect(try reopened.firstRow("PRAGMA integrity_check", []) { $0.text(0) } == "ok")
        try write(50, on: reopened)
        #expect(try reopened.scalarInteger("SELECT count(*) FROM t") == 300)
    }
}
