internal import CSQLite
import Dispatch
import Synchronization

/// Runs the checkpoints of one connection's commits on a queue of its own, through a second connection
/// to the same file, so that the commit which fills the WAL past `pages` returns at once instead of
/// copying the WAL into the database file and syncing it first.
///
/// SQLite's automatic checkpoint runs in the committing thread: at a million subjects a checkpoint of
/// 16,384 pages held the write that set it off for about 200 ms, one write in about 1,600 (at 1,000
/// pages, 10–30 ms, one write in about 100). A PASSIVE checkpoint never blocks a writer or a reader:
/// commits go on appending to the WAL while it copies, and the WAL starts again from its beginning at
/// the first write after a checkpoint that copied everything. What it cannot copy yet (a reader still
/// needs older pages) is left for the next one, as with the automatic checkpoint.
/// Related SQLite documentation: <https://www.sqlite.org/wal.html#checkpointing>,
/// <https://www.sqlite.org/c3ref/wal_hook.html>, <https://www.sqlite.org/c3ref/wal_checkpoint_v2.html>
///
/// Thread safety: `committed(walPages:)` is called by SQLite on the thread that committed; the
/// checkpoints run on `queue`; the checkpoint connection is only touched there and in `close()`,
/// once no commit can call in any more.
final class BackgroundCheckpointer: Sendable {
    /// The database file.
    let path: String
    /// Pages in the WAL from which a commit starts a checkpoint.
    let pages: Int32
    private let queue = DispatchQueue(label: "strongroom.sqlite.checkpoint")
    /// Whether a checkpoint is queued or running: a commit meanwhile queues none.
    private let scheduled = Atomic<Bool>(false)
    /// The checkpoint connection (`sqlite3 *`), opened by the first checkpoint.
    private let connection = Mutex<OpaquePointer?>(nil)

    init(path: String, pages: Int32) {
        self.path = path
        self.pages = pages
    }

    /// Called after each commit with the number of pages in the WAL: queues a checkpoint once there are
    /// `pages` or more and none is queued or running.
    ///
    /// The WAL starts again from its beginning only at a write that begins once a checkpoint has copied
    /// all of it; a writer that commits batch after batch (an import) begins each while the checkpoint of
    /// the last is still copying, and the WAL would grow without end. So at twice `pages` the commit
    /// waits for the checkpoint in flight and then copies what is left itself: the next write begins on
    /// a WAL copied whole and starts it again (unless a reader still needs its older pages, as with
    /// SQLite's automatic checkpoint).
    func committed(walPages: Int32) {
        guard walPages >= pages else { return }
        if walPages >= 2 * pages {
            queue.sync { checkpoint() }
            return
        }
        guard !scheduled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.async { [self] in
            checkpoint()
            scheduled.store(false, ordering: .releasing)
        }
    }

    /// Returns once no checkpoint is queued or running (one queued before the call has run).
    func waitForCheckpoint() {
        queue.sync {}
    }

    /// Waits for a checkpoint in flight and closes the checkpoint connection. Called once the
    /// connection it serves no longer calls `committed(walPages:)`.
    func close() {
        waitForCheckpoint()
        connection.withLock { handle in
            if let open = handle { unsafe sqlite3_close_v2(open) }
            handle = nil
        }
    }

    /// One PASSIVE checkpoint of the whole WAL. A failure (another connection is checkpointing, which
    /// SQLite reports as busy at once; a file error) leaves the WAL as it is, whole and valid, for the
    /// next commit's checkpoint: nothing committed depends on a checkpoint.
    private func checkpoint() {
        connection.withLock { handle in
            if handle == nil {
                var opened: OpaquePointer?
                let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
                // A read first: a connection finds the WAL (and checkpoints anything) only once it has
                // read the database.
                guard unsafe sqlite3_open_v2(path, &opened, flags, nil) == SQLITE_OK,
                      unsafe sqlite3_exec(opened, "PRAGMA schema_version", nil, nil, nil) == SQLITE_OK else {
                    unsafe sqlite3_close_v2(opened)
                    return
                }
                handle = opened
            }
            guard let open = handle else { return }
            _ = unsafe sqlite3_wal_checkpoint_v2(open, "main", SQLITE_CHECKPOINT_PASSIVE, nil, nil)
        }
    }
}
