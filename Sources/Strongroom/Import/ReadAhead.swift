import Dispatch
import Synchronization

/// Reads an import's next batch on other threads while the caller writes the one before, and seals
/// it there too when given ids for it (`Store.sealAhead`): the reader and the batch read are handed
/// over under a lock, and `finish` waits for the work to end.
final class ReadAhead: Sendable {
    private let state: Mutex<(reader: CSVReader, read: CSVImporter.ReadBatch?)>
    private let reading = DispatchGroup()
    private let readBatch: @Sendable (inout CSVReader, [SubjectID]?) -> CSVImporter.ReadBatch

    /// Reads batches from `reader` with `readBatch`, which takes the ids to seal the batch's rows under
    /// (nil: the rows are not sealed ahead).
    init(reader: CSVReader, readBatch: @escaping @Sendable (inout CSVReader, [SubjectID]?) -> CSVImporter.ReadBatch) {
        state = Mutex((reader, nil))
        self.readBatch = readBatch
    }

    /// Whether the file has no more records (asked between batches).
    var isAtEnd: Bool { state.withLock { $0.reader.atEnd() } }

    /// The next batch, read (and sealed under `ids`, if given) on this thread.
    func readNow(ids: [SubjectID]?) -> CSVImporter.ReadBatch {
        state.withLock { readBatch(&$0.reader, ids) }
    }

    /// Starts reading (and sealing under `ids`, if given) the next batch on another thread.
    func start(ids: [SubjectID]?) {
        DispatchQueue.global().async(group: reading) { [self] in
            state.withLock { $0.read = readBatch(&$0.reader, ids) }
        }
    }

    /// The batch `start` read, once it is read.
    func finish() -> CSVImporter.ReadBatch {
        reading.wait()
        return state.withLock { state in
            defer { state.read = nil }
            return state.read ?? CSVImporter.ReadBatch()
        }
    }
}
