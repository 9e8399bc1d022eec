import Dispatch
import Synchronization

/// Reads an import's next batch on another thread while the caller writes the one before: the reader
/// and the batch read are handed over under a lock, and `finish` waits for the read to end.
final class ReadAhead: Sendable {
    private let state: Mutex<(reader: CSVReader, read: CSVImporter.ReadBatch?)>
    private let reading = DispatchGroup()
    private let readBatch: @Sendable (inout CSVReader) -> CSVImporter.ReadBatch

    init(reader: CSVReader, readBatch: @escaping @Sendable (inout CSVReader) -> CSVImporter.ReadBatch) {
        state = Mutex((reader, nil))
        self.readBatch = readBatch
    }

    /// The next batch, read on this thread.
    func readNow() -> CSVImporter.ReadBatch {
        state.withLock { readBatch(&$0.reader) }
    }

    /// Starts reading the next batch on another thread.
    func start() {
        DispatchQueue.global().async(group: reading) { [self] in
            state.withLock { $0.read = readBatch(&$0.reader) }
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
