internal import CSQLite

/// One transaction a connection committed (`SQLiteConnection.transaction`) while it kept a change
/// journal: the data version (`SQLiteConnection.dataVersion`) it began from, the one its commit left,
/// and the keys its statements reported through the journal's SQL function.
public struct CommittedChanges: Sendable {
    /// The data version inside the transaction, before its commit: the latest data, as a write
    /// transaction holds the write lock from its start.
    public let fromVersion: UInt32
    /// The data version right after the commit (`fromVersion` + 1 when it wrote to the main database).
    public let toVersion: UInt32
    /// The keys reported during the transaction, in order, repeats included.
    public let keys: [Int64]
}

/// What a connection's own transactions changed since it was last asked (`SQLiteConnection.takeChangeJournal`).
public struct ChangeJournalEntries: Sendable {
    /// The committed transactions, oldest first.
    public let transactions: [CommittedChanges]
    /// False when more keys were reported than the journal keeps: the transactions' keys are then
    /// incomplete, and a reader must assume anything changed.
    public let complete: Bool
}

/// The journal behind `SQLiteConnection.keepChangeJournal`: keys reported by the SQL function during
/// the open transaction, and the transactions committed since the journal was last taken. At most
/// `keyLimit` keys are kept in all; past that it only notes that it lost some, so its memory is bounded
/// however much is written between two reads.
final class ChangeJournal {
    private let keyLimit: Int
    private var pendingKeys: [Int64] = []
    private var committed: [CommittedChanges] = []
    private var keptKeys = 0
    private var overflowed = false

    init(keyLimit: Int) {
        self.keyLimit = keyLimit
    }

    /// Notes `key`, reported by a statement of the open transaction.
    func report(_ key: Int64) {
        guard !overflowed else { return }
        guard keptKeys < keyLimit else {
            overflowed = true
            (pendingKeys, committed, keptKeys) = ([], [], 0)
            return
        }
        pendingKeys.append(key)
        keptKeys += 1
    }

    /// The open transaction committed, moving the data version from `fromVersion` to `toVersion`.
    func commit(from fromVersion: UInt32, to toVersion: UInt32) {
        if !overflowed { committed.append(CommittedChanges(fromVersion: fromVersion, toVersion: toVersion, keys: pendingKeys)) }
        pendingKeys = []
    }

    /// The open transaction rolled back: its keys name nothing that changed.
    func rollBack() {
        keptKeys -= pendingKeys.count
        pendingKeys = []
    }

    /// The committed transactions since the last call, and whether their keys are complete; starts afresh.
    func take() -> ChangeJournalEntries {
        defer { (committed, keptKeys, overflowed) = ([], pendingKeys.count, false) }
        return ChangeJournalEntries(transactions: committed, complete: !overflowed)
    }
}

extension SQLiteConnection {
    /// Starts keeping a journal of this connection's own committed transactions (`takeChangeJournal`):
    /// for each, the data versions before and after its commit, and the keys its statements reported by
    /// calling the SQL function `function(key)` (from this connection's TEMP triggers, typically). At most
    /// `keyLimit` keys are kept between two reads of the journal. Calling it again changes nothing.
    ///
    /// The function is not `SQLITE_DIRECTONLY` (a trigger must be able to call it), so the schema could
    /// call it too: a reported key can only make the reader assume more changed, never less.
    /// Related SQLite documentation: <https://www.sqlite.org/c3ref/create_function.html>
    public func keepChangeJournal(function name: String, keyLimit: Int) throws(DatabaseError) {
        guard changeJournal == nil else { return }
        let journal = ChangeJournal(keyLimit: keyLimit)
        let box = unsafe Unmanaged.passRetained(journal).toOpaque()
        // On failure SQLite calls the destructor itself, which releases the box.
        let code = unsafe sqlite3_create_function_v2(
            handle, name, 1, SQLITE_UTF8, box,
            { context, _, values in
                let journal = unsafe Unmanaged<ChangeJournal>.fromOpaque(sqlite3_user_data(context)!).takeUnretainedValue()
                unsafe journal.report(sqlite3_value_int64(values![0]))
                unsafe sqlite3_result_null(context)
            },
            nil, nil,
            { pointer in unsafe Unmanaged<ChangeJournal>.fromOpaque(pointer!).release() })
        guard code == SQLITE_OK else { throw unsafe SQLiteConnection.error(handle, code: code, sql: nil) }
        changeJournal = journal
    }

    /// The transactions this connection committed since the last call (none without `keepChangeJournal`).
    public func takeChangeJournal() -> ChangeJournalEntries {
        changeJournal?.take() ?? ChangeJournalEntries(transactions: [], complete: true)
    }
}
