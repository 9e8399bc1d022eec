import Foundation
import StrongroomStorage

/// A rotation's resumable walk over subjects in id order: its committed position (the last subject
/// done) and count, kept in the key database's `rotations` row so that an interrupted run resumes
/// where it stopped. Used by the kinds that visit every subject (data and index); the KEK rotation
/// walks subject keys with its cursor committed inside each batch's own transaction.
struct SubjectWalk {
    /// What the walk rotates.
    let kind: RotationKind
    /// Whether an interrupted walk was found and resumed.
    let resumed: Bool
    /// The last subject done.
    var cursor: Int64
    /// Subjects done so far.
    var done: Int
}

extension Store {
    /// Starts (or finds) the walk of a rotation of `kind` over subjects.
    func beginWalk(_ kind: RotationKind, targetVersion: UInt32) throws(StoreError) -> SubjectWalk {
        let total = try count()
        return try storeErrors {
            try keyring.database.read { tables in
                if let rotation = try tables.rotation(kind), rotation.cursor > 0 || rotation.done > 0 {
                    return SubjectWalk(kind: kind, resumed: true, cursor: rotation.cursor, done: rotation.done)
                }
                try tables.startRotation(kind, targetVersion: targetVersion, total: total, startedAt: Store.milliseconds(Date()))
                return SubjectWalk(kind: kind, resumed: false, cursor: 0, done: 0)
            }
        }
    }

    /// Runs `walk` to its end: `batch` handles the subjects after a cursor (its arguments: the cursor and
    /// the batch's number) and returns the last subject it handled and how many it counted, or nil when
    /// none are left. After each batch the position is committed, `progress` told, and the fault
    /// injection point "rotate-<kind>.batch" passed. Returns the number of batches.
    @discardableResult
    func run(_ walk: inout SubjectWalk, progress: (Int, Int) -> Void,
             batch: (Int64, Int) throws(StoreError) -> (last: SubjectID, count: Int)?) throws(StoreError) -> Int {
        let total = try rotationTotal(walk.kind)
        var batches = 0
        while let (last, count) = try batch(walk.cursor, batches + 1) {
            walk.cursor = last.rawValue
            walk.done += count
            let position = walk
            try storeErrors {
                try keyring.database.read { try $0.advanceRotation(position.kind, cursor: position.cursor, done: position.done) }
            }
            batches += 1
            progress(walk.done, total)
            try storeErrors { try faultInjection?("rotate-\(walk.kind.rawValue).batch", batches) }
        }
        return batches
    }

    /// The number of items the rotation of `kind` walks, as counted when it started.
    func rotationTotal(_ kind: RotationKind) throws(StoreError) -> Int {
        try storeErrors {
            try keyring.database.read { try $0.rotation(kind)?.total ?? 0 }
        }
    }

    /// Rotations in progress (interrupted, or running in another process).
    public func rotationsInProgress() throws(StoreError) -> [RotationProgress] {
        try storeErrors {
            try keyring.database.read { try $0.rotationsInProgress() }
        }
    }
}
