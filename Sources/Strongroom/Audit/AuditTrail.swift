import Foundation
import StrongroomCrypto
import StrongroomStorage

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
    /// and a line number there). A segment that cannot be read is `StoreError.file`, a table
    /// `StoreError.database`.
    func forEachLine(_ body: (_ place: String, _ line: Int, AuditStoredLine) throws(StoreError) -> Void) throws(StoreError)
    /// Appends `events` only if `read.condition` holds, and calls `visit` with each of `read`'s rows, in
    /// one statement committed before it returns; returns whether the entries were appended, or nil
    /// where the trail is not kept beside the data and cannot (a folder store's segment files).
    ///
    /// Not generic: it is called through `any AuditTrail` on every caller-ID lookup, where a generic
    /// requirement ran unspecialised and looked up type metadata at run time (1.3–1.9% of a PostgreSQL
    /// lookup's instructions in the process, measured with callgrind).
    func record(_ events: [AuditEvent], with read: AuditedRead, _ visit: (any Row) throws -> Void) throws -> Bool?
    /// Whether the trail is kept beside the data, and `record(_:with:_:)` reads in the same statement.
    var appendsBesideData: Bool { get }
}

extension AuditTrail {
    var appendsBesideData: Bool { false }

    func record(_ events: [AuditEvent], with read: AuditedRead, _ visit: (any Row) throws -> Void) throws -> Bool? {
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
    /// appended (same parameters): a boolean expression, or a query returning one boolean.
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
        // Room for the usual lines at once (a caller-ID lookup's is about 230 bytes): grown from empty, a
        // line's buffer was copied into a larger one six times over.
        output.reserveCapacity(output.count + events.count * 320)
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
