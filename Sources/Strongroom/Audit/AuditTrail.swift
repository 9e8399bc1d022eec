import Foundation
import StrongroomCrypto
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
    /// Saves the signed chain head now if entries were written since the last save.
    func flushHead()
    /// Saves the head and lets go of what the trail holds between appends (a file log's locks and
    /// mappings); a later append takes them up again.
    func close()
    /// Calls `body` with every stored line, oldest first, and where it is (a segment name or table,
    /// and a line number there).
    func forEachLine(_ body: (_ place: String, _ line: Int, AuditStoredLine) throws -> Void) throws
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

/// Decides when the signed chain head is saved to the key database: at most once a second while
/// entries are appended (so a busy store pays one key-database write a second, not one per entry),
/// and on `flush` (close). A failed save is tried again at the next append.
final class AuditHeadKeeper: Sendable {
    private struct State {
        var sequence: UInt64 = 0
        var entryMAC: [UInt8] = []
        var lastSave = Date.distantPast
        var isCurrent = true
    }

    private let state = Mutex(State())
    /// Saves a head; false when the key database could not take it now.
    private let save: @Sendable (AuditHead) -> Bool

    init(save: @escaping @Sendable (AuditHead) -> Bool) {
        self.save = save
    }

    /// Notes that the chain now ends at `sequence` with `entryMAC`, and saves the head when due.
    /// An older position (a concurrent appender that finished later) is ignored.
    func appended(sequence: UInt64, entryMAC: [UInt8]) {
        let head: AuditHead? = state.withLock { state in
            guard sequence > state.sequence else { return nil }
            state.sequence = sequence
            state.entryMAC = entryMAC
            state.isCurrent = false
            let now = Date()
            guard now.timeIntervalSince(state.lastSave) >= 1 else { return nil }
            state.lastSave = now
            state.isCurrent = true
            return AuditHead(sequence: sequence, entryMAC: entryMAC, time: now)
        }
        // Saved outside the lock: a busy key database delays the head, never the reader.
        if let head, !save(head) { state.withLock { $0.isCurrent = false; $0.lastSave = .distantPast } }
    }

    /// Saves the head now if entries were appended since the last save.
    func flush() {
        let head: AuditHead? = state.withLock { state in
            guard !state.isCurrent, state.sequence > 0 else { return nil }
            state.isCurrent = true
            state.lastSave = Date()
            return AuditHead(sequence: state.sequence, entryMAC: state.entryMAC, time: state.lastSave)
        }
        if let head, !save(head) { state.withLock { $0.isCurrent = false } }
    }
}
