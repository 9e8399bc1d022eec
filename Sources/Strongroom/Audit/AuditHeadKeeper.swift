import Foundation
import StrongroomCrypto
import Synchronization

/// Where the signed chain head is kept (the key database): read to check the log's end before a
/// writer continues it, and saved as the log grows.
protocol AuditHeadStore: Sendable {
    /// The saved head with its MAC; nil when none was saved.
    func auditHead() throws(StoreError) -> (head: AuditHead, code: [UInt8])?
    /// Saves `head` as `mode` says.
    func saveAuditHead(_ head: AuditHead, mode: AuditHeadSaveMode) -> AuditHeadSave
}

/// How a head may be saved.
enum AuditHeadSaveMode: Equatable, Sendable {
    /// Moves the saved head forward; does nothing if it is newer, and reports a missing one.
    case advance
    /// As `advance`, but creates the head if there is none: for a log whose first entries this
    /// process wrote (after an empty log with no head).
    case create
    /// Replaces whatever is saved: an acknowledged gap, whose entry may come before the lost head.
    case replace
}

/// How saving the signed head went.
enum AuditHeadSave: Equatable, Sendable {
    /// Saved, or a newer head was already there.
    case saved
    /// The key database could not take it now (busy): try again later.
    case failed
    /// No head is saved and this one may not create it (the head was deleted), or the log no longer
    /// holds the saved head's entry (`checkSavedHead`): the trail must check its end against the head
    /// before it appends again.
    case missing
}

/// Decides when the signed chain head is saved to the key database: at once for the first entry after
/// a save that is at least a second old, else by a timer at most a second after the entry (so a busy
/// store pays one key-database write a second, not one per entry, and an idle one has its last entries
/// signed within a second), and on `flush` (close, verify). A failed save is tried again by the timer.
final class AuditHeadKeeper: Sendable {
    private struct State {
        var sequence: UInt64 = 0
        var entryMAC: [UInt8] = []
        var lastSave = Date.distantPast
        var isCurrent = true
        /// A timed save is scheduled.
        var isTimerArmed = false
        /// This keeper's next save may create the head: its trail started the log (an empty log, no
        /// head), and it was not saved since.
        var startedLog = false
    }

    /// How long after an entry its head is saved at the latest (SECURITY.md states this window).
    static let interval: TimeInterval = 1

    private let state = Mutex(State())
    /// A save found the head deleted, or the log not holding its entry: the trail checks its end before
    /// its next append (an atomic, as every append looks at it).
    private let endCheckDue = Atomic<Bool>(false)
    /// Reads the MAC of the log's entry at a sequence number (nil: the log holds none), once
    /// `checkSavedHead` set it.
    private let entryReader = Mutex<(@Sendable (UInt64) throws -> [UInt8]?)?>(nil)
    /// Where the head is saved.
    private let store: any AuditHeadStore
    /// Runs the timed saves, off the appending threads.
    private let timerQueue = DispatchQueue(label: "strongroom.audit.head", qos: .utility)

    init(store: any AuditHeadStore) {
        self.store = store
    }

    /// Called under the trail's append lock, in chain order: notes that the chain now ends at
    /// `sequence` with `entryMAC`. Returns the head to save now (outside the lock, with `save`) when
    /// one is due; otherwise a timed save is scheduled.
    func noteAppended(sequence: UInt64, entryMAC: [UInt8], after previous: UInt64) -> AuditHead? {
        let (head, arm): (AuditHead?, Bool) = state.withLock { state in
            if previous == 0 { state.startedLog = true }
            state.sequence = sequence
            state.entryMAC = entryMAC
            state.isCurrent = false
            let now = Date()
            if now.timeIntervalSince(state.lastSave) >= AuditHeadKeeper.interval {
                state.lastSave = now
                state.isCurrent = true
                return (AuditHead(sequence: sequence, entryMAC: entryMAC, time: now), false)
            }
            guard !state.isTimerArmed else { return (nil, false) }
            state.isTimerArmed = true
            return (nil, true)
        }
        if arm { armTimer() }
        return head
    }

    /// Makes every save first check that the log still holds the entry the saved head names, as
    /// `entryMAC` reads the log, and refuse to move the head past a log that does not.
    ///
    /// For a trail whose appends chain after the last entry this process knows of, without reading the
    /// log's end (PostgreSQL's): when entries were cut off the end that this process never saw, its
    /// next appends find their predecessor there and refill the cut sequence numbers with its own
    /// entries. The saved head, written by the process that saw the lost entries, names one of them;
    /// moving it forward over the refilled chain would leave a log that verifies. So the head is saved
    /// only while the log holds its entry (a log may run past its head, never short of it nor differ
    /// there); otherwise the trail checks its end against the head before its next append, and that
    /// check reports the gap (`AuditEndCheck`). Heads are saved at most a second apart, so the appends a
    /// process makes after a cut it did not see are bounded by that second, the same window in which
    /// the last entries are not yet signed; they and the cut are reported by `audit verify`.
    ///
    /// A folder log's writers share their state, but it is a file that can be rewritten under them
    /// (see `AuditLog.entryMAC(at:in:own:)`), so it makes the same check, and its reader also requires
    /// the process's own last entry to be where it wrote it.
    func checkSavedHead(readingEntries entryMAC: @escaping @Sendable (UInt64) throws -> [UInt8]?) {
        entryReader.withLock { $0 = entryMAC }
    }

    /// Saves a head `noteAppended` returned; a failure leaves the timer to try again.
    func save(_ head: AuditHead) {
        switch savedIfLogHoldsSavedHead(head) {
        case .saved: state.withLock { $0.startedLog = false }
        case .missing: endCheckDue.store(true, ordering: .releasing)
        case .failed:
            state.withLock { $0.isCurrent = false; $0.lastSave = .distantPast }
            armTimerIfIdle()
        }
    }

    /// Saves the head now if entries were appended since the last save.
    func flush() {
        let head: AuditHead? = state.withLock { state in
            guard !state.isCurrent, state.sequence > 0 else { return nil }
            state.isCurrent = true
            state.lastSave = Date()
            return AuditHead(sequence: state.sequence, entryMAC: state.entryMAC, time: state.lastSave)
        }
        guard let head else { return }
        switch savedIfLogHoldsSavedHead(head) {
        case .saved: state.withLock { $0.startedLog = false }
        case .missing: endCheckDue.store(true, ordering: .releasing)
        case .failed: state.withLock { $0.isCurrent = false }
        }
    }

    /// `head` saved (moving the saved one forward, or creating it when this keeper's trail started the
    /// log), once the log is found to hold the saved head's entry (`checkSavedHead`): `.missing`
    /// when it does not, `.failed` when that could not be read now.
    private func savedIfLogHoldsSavedHead(_ head: AuditHead) -> AuditHeadSave {
        if let entryMAC = entryReader.withLock({ $0 }) {
            do {
                // No head saved: `saveAuditHead` creates it or reports it missing.
                if let saved = try store.auditHead() {
                    guard let stored = try entryMAC(saved.head.sequence), constantTimeEquals(stored, saved.head.entryMAC) else {
                        return .missing
                    }
                }
            } catch {
                return .failed
            }
        }
        return store.saveAuditHead(head, mode: state.withLock { $0.startedLog } ? .create : .advance)
    }

    /// Whether a save found the head deleted, or the log not holding its entry, since the last call:
    /// the trail then checks its end against the head (and refuses) before it appends again.
    func takeEndCheckDue() -> Bool {
        endCheckDue.load(ordering: .acquiring) && endCheckDue.exchange(false, ordering: .acquiringAndReleasing)
    }

    /// After an acknowledged gap: the chain now ends at the acknowledgement, whose head replaces the
    /// saved one (which names entries that are gone). False when it could not be saved.
    func replace(sequence: UInt64, entryMAC: [UInt8]) -> Bool {
        let now = Date()
        state.withLock { state in
            state.sequence = sequence
            state.entryMAC = entryMAC
            state.isCurrent = true
            state.lastSave = now
        }
        return store.saveAuditHead(AuditHead(sequence: sequence, entryMAC: entryMAC, time: now), mode: .replace) == .saved
    }

    /// Schedules a timed save unless one is scheduled.
    private func armTimerIfIdle() {
        let arm = state.withLock { state in
            guard !state.isTimerArmed else { return false }
            state.isTimerArmed = true
            return true
        }
        if arm { armTimer() }
    }

    /// Runs `flush` one interval from now. The closure holds the keeper weakly: a store dropped
    /// meanwhile is not kept alive, and nothing is saved for it (its close saved the head).
    private func armTimer() {
        timerQueue.asyncAfter(deadline: .now() + AuditHeadKeeper.interval) { [weak self] in
            guard let self else { return }
            state.withLock { $0.isTimerArmed = false }
            flush()
            // A save that failed (a busy key database) is tried again a second later.
            if state.withLock({ !$0.isCurrent }) { armTimerIfIdle() }
        }
    }
}
