import Dispatch
import Synchronization

/// Prepares an import's next batches on other threads while the caller writes the one before: seals
/// batch k+1 (`Store.sealAhead`, given ids taken for it) and then reads batch k+2 from the file. The
/// reader and the batches are handed over under a lock, and `finish` waits for the work to end.
final class ReadAhead: Sendable {
    private let state: Mutex<(reader: CSVReader, sealed: CSVImporter.ReadBatch?, read: CSVImporter.ReadBatch?)>
    private let working = DispatchGroup()
    private let readBatch: @Sendable (inout CSVReader) -> CSVImporter.ReadBatch
    private let seal: @Sendable (CSVImporter.ReadBatch, [SubjectID]) -> CSVImporter.ReadBatch

    /// Reads batches from `reader` with `readBatch`, and seals them with `seal` (the batch with each row
    /// sealed under the id at its position).
    init(reader: CSVReader, readBatch: @escaping @Sendable (inout CSVReader) -> CSVImporter.ReadBatch,
         seal: @escaping @Sendable (CSVImporter.ReadBatch, [SubjectID]) -> CSVImporter.ReadBatch) {
        state = Mutex((reader, nil, nil))
        self.readBatch = readBatch
        self.seal = seal
    }

    /// The next batch, read on this thread.
    func readNow() -> CSVImporter.ReadBatch {
        state.withLock { readBatch(&$0.reader) }
    }

    /// `batch` sealed under `ids` on this thread and one more; `batch` as it is without ids.
    func sealNow(_ batch: CSVImporter.ReadBatch, under ids: [SubjectID]?) -> CSVImporter.ReadBatch {
        ids.map { seal(batch, $0) } ?? batch
    }

    /// Starts sealing `batch` under `ids` (when given), then reading the next batch, on other threads,
    /// which then let go of `written` (a batch the caller wrote and holds no more): the last release of
    /// its rows, their sealed subjects and the strings they hold is freeing memory, work the writing
    /// thread does not wait for.
    func start(sealing batch: CSVImporter.ReadBatch, under ids: [SubjectID]?, releasing written: CSVImporter.ReadBatch) {
        DispatchQueue.global().async(group: working) { [self] in
            let sealed = sealNow(batch, under: ids)
            state.withLock {
                $0.sealed = sealed
                $0.read = readBatch(&$0.reader)
            }
            // Named here so that this closure holds it, and lets go of it on this thread.
            withExtendedLifetime(written) {}
        }
    }

    /// The batch `start` sealed and the one it read after it, once both are done.
    func finish() -> (sealed: CSVImporter.ReadBatch, read: CSVImporter.ReadBatch) {
        working.wait()
        return state.withLock { state in
            defer { (state.sealed, state.read) = (nil, nil) }
            return (state.sealed ?? CSVImporter.ReadBatch(), state.read ?? CSVImporter.ReadBatch())
        }
    }
}
