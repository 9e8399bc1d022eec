import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// A stored line of the audit log, as a reader finds it.
enum AuditStoredLine {
    /// A whole line, without its newline.
    case complete(ArraySlice<UInt8>)
    /// A line without its newline (a write cut short); `atEnd` when nothing follows it.
    case torn(atEnd: Bool)
}

/// A store's built-in audit log: the chain of MAC'd JSON lines, wherever they are kept (segment files
/// in a folder store, a table in a PostgreSQL store). Both keep the same line format and chain, so one
/// verifier reads both.
protocol AuditTrail: AuditHook {
    /// Appends `events` (as `record` does) and returns the sequence number the last of them took (nil
    /// when `events` is empty).
    func append(_ events: [AuditEvent]) throws -> UInt64?
    /// Saves the signed chain head now if entries were written since the last save.
    func flushHead()
    /// Saves the head and lets go of what the trail holds between appends (a file log's locks and
    /// mappings); a later append takes them up again.
    func close()
    /// Appends the entry `acknowledgement` makes for the gap at the log's end (given the gap and the
    /// entry MAC of the head it replaces) after the log's real last entry, and moves the signed head to
    /// it, so that appends work again; the gap stays in the log for `verify` to report. Throws
    /// `AuditLogError.noGap` when the end agrees with the head.
    func acknowledgeGap(_ acknowledgement: (AuditGap, [UInt8]?) -> AuditEvent) throws -> AuditGap
    /// Calls `body` with every stored line, oldest first, and where it is (a segment name or table,
    /// and a line number there).
    func forEachLine(_ body: (_ place: String, _ line: Int, AuditStoredLine) throws -> Void) throws
    /// Appends `events` only if `read.condition` holds, and returns `read`'s rows mapped by `map`, in one
    /// statement committed before it returns (`appended` tells whether the entries were appended); nil
    /// where the trail is not kept beside the data and cannot (a folder store's segment files).
    func record<T: Sendable>(_ events: [AuditEvent], with read: AuditedRead, _ map: @Sendable (any Row) throws -> T) throws -> (appended: Bool, rows: [T])?
    /// Whether the trail is kept beside the data, and `record(_:with:_:)` reads in the same statement.
    var appendsBesideData: Bool { get }
}

extension AuditTrail {
    var appendsBesideData: Bool { false }

    func record<T: Sendable>(_ events: [AuditEvent], with read: AuditedRead, _ map: @Sendable (any Row) throws -> T) throws -> (appended: Bool, rows: [T])? {
        nil
    }
}

/// A read of the data made in the same statement as an audit append, so that an answer and the entry
/// recording it cost one round trip (`AuditTrail.record(_:with:_:)`, the caller-ID hint).
struct AuditedRead {
    /// A `SELECT` over the data whose first column is never NULL, with numbered parameters `?1`…`?k`.
    let rows: String
    /// How many columns `rows` selects.
    let columnCount: Int
    /// The SQL condition, over the read's rows as the table `audited_read`, under which the entries are
    /// appended (same parameters).
    let condition: String
    /// The values of `?1`…`?k`.
    let arguments: [SQLValue]
}

extension AuditTrail {
    func record(_ events: [AuditEvent]) throws {
        _ = try append(events)
    }
}

extension AuditLineFormat {
    /// Chains `events` after the entry `sequence` whose MAC is `previous`, appending their lines to
    /// `output`; returns the new last sequence number and MAC.
    static func chain(_ events: [AuditEvent], after sequence: UInt64, previous: [UInt8], mac: HMACSHA256,
                      into output: inout [UInt8]) throws(AuditLogError) -> (sequence: UInt64, mac: [UInt8]) {
        var sequence = sequence
        var previous = previous
        for event in events {
            sequence += 1
            // The body is built in place and MAC'd where it lies.
            let bodyStart = output.count
            appendBody(sequence: sequence, event: event, to: &output)
            let code: [UInt8]
            do throws(CryptoError) {
                code = try mac.authenticationCode(forConcatenationOf: previous.span, output.span.extracting(bodyStart...))
            } catch {
                throw .crypto(error)
            }
            appendMAC(code, to: &output)
            previous = code
        }
        return (sequence, previous)
    }
}

/// Where the signed chain head is kept (the key database): read to check the log's end before a
/// writer continues it, and saved as the log grows.
protocol AuditHeadStore: Sendable {
    /// The saved head with its MAC; nil when none was saved.
    func auditHead() throws -> (head: AuditHead, code: [UInt8])?
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
    /// No head is saved and this one may not create it (the head was deleted): the trail must check
    /// its end against the head before it appends again.
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
    /// A save found the head deleted: the trail checks its end before its next append (an atomic, as
    /// every append looks at it).
    private let headFoundMissing = Atomic<Bool>(false)
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

    /// Saves a head `noteAppended` returned; a failure leaves the timer to try again.
    func save(_ head: AuditHead) {
        switch store.saveAuditHead(head, mode: state.withLock { $0.startedLog } ? .create : .advance) {
        case .saved: state.withLock { $0.startedLog = false }
        case .missing: headFoundMissing.store(true, ordering: .releasing)
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
        switch store.saveAuditHead(head, mode: state.withLock { $0.startedLog } ? .create : .advance) {
        case .saved: state.withLock { $0.startedLog = false }
        case .missing: headFoundMissing.store(true, ordering: .releasing)
        case .failed: state.withLock { $0.isCurrent = false }
        }
    }

    /// Whether a save found the head deleted since the last call: the trail then checks its end
    /// against the head (and refuses) before it appends again.
    func takeHeadFoundMissing() -> Bool {
        headFoundMissing.load(ordering: .acquiring) && headFoundMissing.exchange(false, ordering: .acquiringAndReleasing)
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

/// Why a writer refuses to continue the audit log: its end does not match the signed head, so
/// entries were lost (or the head was removed or replaced). Named by sequence numbers only.
public struct AuditGap: Sendable, Equatable, CustomStringConvertible {
    /// What kind of mismatch.
    public enum Kind: String, Sendable, Equatable, Codable {
        /// The log ends before the entry the signed head names: entries were cut off the end.
        case cut
        /// The entry at the head's sequence number, or an entry after it, is not the one chained from
        /// the head: the end of the log was replaced.
        case rewritten
        /// The log has entries but no head is saved.
        case headMissing = "head-missing"
        /// The saved head's own MAC does not verify.
        case headInvalid = "head-invalid"
    }

    /// What kind of mismatch.
    public let kind: Kind
    /// The sequence number the signed head names (0 when there is no valid head).
    public let expected: UInt64
    /// The sequence number of the log's last entry.
    public let found: UInt64

    /// Creates a gap description.
    public init(kind: Kind, expected: UInt64, found: UInt64) {
        self.kind = kind
        self.expected = expected
        self.found = found
    }

    public var description: String {
        switch kind {
        case .cut: return "the audit log ends at entry \(found) but its signed head is at entry \(expected): entries were cut off the end"
        case .rewritten: return "the audit log (last entry \(found)) does not chain from the entry \(expected) its signed head names: its end was replaced"
        case .headMissing: return "the audit log has entries up to \(found) but no signed head"
        case .headInvalid: return "the audit log's signed head does not verify (the log ends at entry \(found))"
        }
    }

    /// The acknowledgement entry's detail: the gap, the head it replaces (sequence and entry MAC,
    /// so the record names exactly which signed state was lost) and the operator's reason.
    func acknowledgementDetail(headMAC: [UInt8]?, reason: String) -> String {
        var hex: [UInt8] = []
        AuditLineFormat.appendHex(headMAC ?? [], to: &hex)
        return "gap \(kind.rawValue): expected \(expected), found \(found), head mac \(String(decoding: hex, as: UTF8.self)); reason: \(reason)"
    }

    /// Reads back `acknowledgementDetail`: the gap and the reason; nil when `detail` is not one.
    static func parseAcknowledgement(_ detail: String) -> (gap: AuditGap, reason: String)? {
        let scanner = Scanner(string: detail)
        scanner.charactersToBeSkipped = nil
        guard scanner.scanString("gap ") != nil, let kindText = scanner.scanUpToString(":"),
              let kind = Kind(rawValue: kindText), scanner.scanString(": expected ") != nil,
              let expected = scanner.scanUInt64(), scanner.scanString(", found ") != nil,
              let found = scanner.scanUInt64(), scanner.scanString(", head mac ") != nil else { return nil }
        _ = scanner.scanCharacters(from: CharacterSet(charactersIn: "0123456789abcdef"))
        guard scanner.scanString("; reason: ") != nil else { return nil }
        return (AuditGap(kind: kind, expected: expected, found: found), String(detail[scanner.currentIndex...]))
    }
}

/// The check a writer makes before it continues a log from entries it did not itself just write (a
/// rebuilt file log, a PostgreSQL tail read back): the log's end must agree with the signed head.
/// The head may lag the log by the entries of its last second, so a longer log is fine when the
/// entry at the head's sequence number has the head's MAC and every later entry chains from it; a
/// shorter log, a missing or invalid head, or a different entry there is a gap.
struct AuditEndCheck {
    let mac: HMACSHA256
    let headStore: any AuditHeadStore

    /// Checks the log's end, read by `readEnd` once the head is read: the head only ever covers
    /// entries already written, so read in this order a log that lost nothing is never shorter than
    /// its head, whatever other processes append meanwhile. `linesFrom(sequence)` gives the complete
    /// lines (without newlines) from the entry `sequence` on, oldest first. Returns the end; throws
    /// `AuditLogError.gap` on a mismatch.
    func check(readEnd: () throws -> (sequence: UInt64, mac: [UInt8]),
               linesFrom: (UInt64, _ last: UInt64) throws -> [ArraySlice<UInt8>]) throws -> (sequence: UInt64, mac: [UInt8]) {
        let (last, gap) = try findGap(readEnd: readEnd, linesFrom: linesFrom)
        if let gap { throw AuditLogError.gap(gap.gap) }
        return last
    }

    /// The log's end (read after the head) and its gap, with the saved head's entry MAC (nil when
    /// there is no valid head); no gap when the end agrees with the head.
    func findGap(readEnd: () throws -> (sequence: UInt64, mac: [UInt8]),
                 linesFrom: (UInt64, _ last: UInt64) throws -> [ArraySlice<UInt8>])
        throws -> (last: (sequence: UInt64, mac: [UInt8]), gap: (gap: AuditGap, headMAC: [UInt8]?)?) {
        let saved = try headStore.auditHead()
        let last = try readEnd()
        return (last, try gap(at: last, head: saved, linesFrom: { try linesFrom($0, last.sequence) }))
    }

    /// The gap between a log ending at `last` and the saved head.
    private func gap(at last: (sequence: UInt64, mac: [UInt8]), head saved: (head: AuditHead, code: [UInt8])?,
                     linesFrom: (UInt64) throws -> [ArraySlice<UInt8>]) throws -> (gap: AuditGap, headMAC: [UInt8]?)? {
        guard let saved else {
            return last.sequence == 0 ? nil : (AuditGap(kind: .headMissing, expected: 0, found: last.sequence), nil)
        }
        let head = saved.head
        guard constantTimeEquals(try head.authenticationCode(mac), saved.code) else {
            return (AuditGap(kind: .headInvalid, expected: 0, found: last.sequence), nil)
        }
        let rewritten = (AuditGap(kind: .rewritten, expected: head.sequence, found: last.sequence), head.entryMAC as [UInt8]?)
        if last.sequence < head.sequence { return (AuditGap(kind: .cut, expected: head.sequence, found: last.sequence), head.entryMAC) }
        if last.sequence == head.sequence { return constantTimeEquals(last.mac, head.entryMAC) ? nil : rewritten }
        // Longer than the head: the entries after it must chain from the entry it signed.
        var previous: [UInt8]?
        var expected = head.sequence
        for line in try linesFrom(head.sequence) {
            guard let entry = AuditLineFormat.split(line), entry.sequence == expected else { return rewritten }
            if let previous {
                guard constantTimeEquals(try mac.authenticationCode(for: [previous, Array(entry.body)]), entry.mac) else { return rewritten }
            } else {
                guard constantTimeEquals(entry.mac, head.entryMAC) else { return rewritten }
            }
            previous = entry.mac
            expected += 1
        }
        guard expected == last.sequence + 1, let previous, constantTimeEquals(previous, last.mac) else { return rewritten }
        return nil
    }
}
