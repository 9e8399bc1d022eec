import Foundation
import StrongroomStorage

/// A rotation's resumable walk, the one every kind that visits all subjects or all subject keys runs
/// (data, index, KEK): its committed position (the last subject done) and count, kept in the key
/// database's `rotations` row so that an interrupted run resumes where it stopped; its batches, the
/// progress told after each, the fault point "rotate-<kind>.batch" passed after each; and the audit
/// entries of its start (or resumption) and of its end.
struct RotationWalk {
    /// What the walk rotates.
    let kind: RotationKind
    /// Whether an interrupted rotation of this kind was found and resumed.
    let resumed: Bool
    /// The key version being rotated to (0 for the data keys, which have one version per subject).
    let targetVersion: UInt32
    /// Items in all, as counted when the rotation started.
    let total: Int
    /// The last subject done.
    private(set) var cursor: Int64
    /// Items done so far (by this run and the interrupted ones before it).
    private(set) var done: Int
    /// Batches run by this call.
    private(set) var batches = 0
    private let store: Store
    private let context: AccessContext

    /// What a batch hands back: the last subject it handled and how many items it counted.
    struct Batch {
        /// The last subject handled: the walk's next cursor.
        let last: Int64
        /// Items handled (subjects, or subject keys for the KEK).
        let count: Int
    }

    /// Finds the rotation of `kind` in progress, or starts one, in one key-database transaction: `start`
    /// (given the key tables) makes what the new rotation needs (a new key, for the kinds that make one)
    /// and returns the version rotated to and the number of items the walk will visit.
    static func begin(_ kind: RotationKind, of store: Store, context: AccessContext,
                      start: (KeyTables) throws(StoreError) -> (target: UInt32, total: Int)) throws(StoreError) -> RotationWalk {
        let (row, resumed) = try store.keyring.database.transaction { (tables) throws(StoreError) -> (RotationRow, Bool) in
            do throws(DatabaseError) {
                if let row = try tables.rotation(kind) { return (row, true) }
            } catch { throw .database(error) }
            let (target, total) = try start(tables)
            do throws(DatabaseError) {
                try tables.startRotation(kind, targetVersion: target, total: total, startedAt: Store.milliseconds(Date()))
            } catch { throw .database(error) }
            return (RotationRow(targetVersion: target, done: 0, cursor: 0, total: total), false)
        }
        return RotationWalk(kind: kind, resumed: resumed, targetVersion: row.targetVersion, total: row.total,
                            cursor: row.cursor, done: row.done, store: store, context: context)
    }

    /// Audits the start, or the resumption: "rotate-<kind>: started`detail`" (or "resumed…").
    func announce(_ detail: String) throws(StoreError) {
        try store.audit([AuditEvent(.keys, context, subject: nil,
                                    detail: "rotate-\(kind.rawValue): \(resumed ? "resumed" : "started")\(detail)")])
    }

    /// Runs the walk to its end. `batch` handles the items after a cursor (given the cursor, the
    /// items done before it and the batch's number) and returns what it did, or nil when none are
    /// left. After each batch the position is committed (unless `batch` committed it with its own
    /// work, `positionCommittedByBatch`, through `KeyTables.advanceRotation`), `progress` told, and the
    /// fault point passed. With `sweepingAgain`, a walk that reaches the end goes once more from the
    /// start (for items written behind the cursor by a process that had not seen the rotation).
    mutating func run(positionCommittedByBatch: Bool = false, sweepingAgain: Bool = false, progress: (Int, Int) -> Void,
                      batch: (_ cursor: Int64, _ done: Int, _ number: Int) throws(StoreError) -> Batch?) throws(StoreError) {
        var swept = !sweepingAgain
        while true {
            guard let handled = try batch(cursor, done, batches + 1) else {
                guard !swept else { return }
                (cursor, swept) = (0, true)
                continue
            }
            cursor = handled.last
            done += handled.count
            batches += 1
            if !positionCommittedByBatch {
                let (kind, cursor, done) = (kind, cursor, done)
                try store.keyring.database.read { (tables) throws(DatabaseError) in try tables.advanceRotation(kind, cursor: cursor, done: done) }
            }
            progress(done, total)
            try store.injectFault("rotate-\(kind.rawValue).batch", batches)
        }
    }

    /// Ends the rotation: `ending` (given the key tables, in the transaction that deletes the
    /// rotation's row) does the kind's last step and says whether the rotation may end; when it may,
    /// the end is audited ("rotate-<kind>: finished, `summary`"). Returns whether it ended.
    @discardableResult
    func finish(_ summary: String, ending: (KeyTables) throws(DatabaseError) -> Bool = { _ in true }) throws(StoreError) -> Bool {
        let kind = kind
        let ended = try store.keyring.database.transaction { (tables) throws(DatabaseError) in
            guard try ending(tables) else { return false }
            try tables.finishRotation(kind)
            return true
        }
        if ended { try store.audit([AuditEvent(.keys, context, subject: nil, detail: "rotate-\(kind.rawValue): finished, \(summary)")]) }
        return ended
    }
}

extension Store {
    /// Rotations in progress (interrupted, or running in another process).
    public func rotationsInProgress() throws(StoreError) -> [RotationProgress] {
        try keyring.database.read { (tables) throws(DatabaseError) in try tables.rotationsInProgress() }
    }
}

extension AccessContext {
    /// The context a rotation decrypts and writes in: this one's actor and address, for purpose `key-rotation`.
    var forKeyRotation: AccessContext { AccessContext(actor: actor, purpose: .keyRotation, clientAddress: clientAddress) }
}
