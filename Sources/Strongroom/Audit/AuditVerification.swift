import Foundation
import StrongroomCrypto
import StrongroomStorage

/// The result of checking the audit log's chain against its signed head.
public struct AuditVerification: Sendable, Equatable {
    /// What is wrong, if anything.
    public enum Problem: Sendable, Equatable, CustomStringConvertible {
        /// An entry's MAC does not match: it, or an entry before it that still parses, was edited.
        case badEntry(sequence: UInt64, segment: String, line: Int, reason: String)
        /// Entries are missing, duplicated or out of order: the next entry was not the one expected.
        case outOfOrder(expected: UInt64, found: UInt64, segment: String, line: Int)
        /// The log ends before the signed head: entries were cut off from the end.
        case missingFromEnd(expected: UInt64, headSequence: UInt64)
        /// The last line of the log is incomplete (a write interrupted by a crash).
        case tornLastLine(segment: String, line: Int)
        /// The signed head in the key database does not verify, or does not match the log's entry.
        case badHead(reason: String)
        /// The log has entries but the key database holds no signed head (it was deleted): the log's
        /// end cannot be vouched for.
        case missingHead(lastSequence: UInt64)

        public var description: String {
            switch self {
            case .badEntry(let sequence, let segment, let line, let reason):
                return "entry \(sequence) (\(segment) line \(line)) is bad: \(reason)"
            case .outOfOrder(let expected, let found, let segment, let line):
                return "expected entry \(expected) but found \(found) (\(segment) line \(line)): entries deleted, inserted or reordered"
            case .missingFromEnd(let expected, let head):
                return "entries missing from the end: expected entry \(expected) (signed head is at \(head))"
            case .tornLastLine(let segment, let line):
                return "the last line (\(segment) line \(line)) is torn: a write was cut short"
            case .badHead(let reason):
                return "the signed chain head is bad: \(reason)"
            case .missingHead(let last):
                return "the signed chain head is missing, though the log has entries up to \(last): its end cannot be vouched for"
            }
        }
    }

    /// A gap an operator acknowledged (`Store.acknowledgeAuditGap`): recorded in the log by a signed
    /// entry chained after the last entry that was left, so it cannot be forged or removed unnoticed.
    public struct AcknowledgedGap: Sendable, Equatable, CustomStringConvertible {
        /// The gap as found when it was acknowledged (the lost head's sequence number, the last entry left).
        public let gap: AuditGap
        /// The acknowledgement's own sequence number.
        public let sequence: UInt64
        /// When it was acknowledged (RFC 3339).
        public let time: String
        /// Who acknowledged it.
        public let actor: String
        /// Why, as the operator gave it.
        public let reason: String

        public var description: String {
            "acknowledged at entry \(sequence) (\(time)) by \(actor): \(gap); reason: \(reason)"
        }
    }

    /// How many entries verified.
    public let verifiedEntries: Int
    /// The sequence number of the last entry that verified (0 when none).
    public let lastSequence: UInt64
    /// The sequence number the signed head covers (0 when no head was saved yet).
    public let headSequence: UInt64
    /// The first problem found; nil when every entry verified and the end matches the head.
    public let problem: Problem?
    /// The gaps acknowledged in the log, oldest first: entries lost for good, with who recorded it and why.
    public let acknowledgedGaps: [AcknowledgedGap]

    /// True when every entry verified, the end matches the signed head, and no gap was ever acknowledged.
    public var isIntact: Bool { problem == nil && acknowledgedGaps.isEmpty }

    /// True when every entry verified and the end matches the signed head; acknowledged gaps are
    /// accepted (they are still listed in `acknowledgedGaps`).
    public var isIntactExceptAcknowledgedGaps: Bool { problem == nil }
}

/// Checks the audit log: every line's MAC, the chain from genesis, sequence numbers, and the signed
/// head, which must be present once the log has entries; lists the gaps acknowledged on the way.
struct AuditVerifier {
    let trail: any AuditTrail
    let mac: HMACSHA256
    let genesis: [UInt8]
    /// The head saved in the key database, with its MAC; nil when none is saved.
    let head: (head: AuditHead, code: [UInt8])?

    /// Verifies the log; `verifiedEntry` is called with each entry that verified (its place, line number and
    /// line), in order, before the next line is read. Linear: one pass, one MAC a line.
    func verify(_ verifiedEntry: (_ place: String, _ line: Int, ArraySlice<UInt8>) throws(StoreError) -> Void = { _, _, _ in })
        throws(StoreError) -> AuditVerification {
        var previous = genesis
        var expected: UInt64 = 1
        var verified = 0
        var headEntryMAC: [UInt8]?
        var acknowledged: [AuditVerification.AcknowledgedGap] = []
        let headSequence = head?.head.sequence ?? 0
        func result(_ problem: AuditVerification.Problem?) -> AuditVerification {
            AuditVerification(verifiedEntries: verified, lastSequence: expected - 1, headSequence: headSequence, problem: problem,
                              acknowledgedGaps: acknowledged)
        }
        if let head {
            let code: [UInt8]
            do throws(CryptoError) { code = try head.head.authenticationCode(mac) } catch { throw .crypto(error) }
            guard constantTimeEquals(code, head.code) else { return result(.badHead(reason: "its MAC does not verify")) }
        }
        var problem: AuditVerification.Problem?
        try trail.forEachLine { (place, lineNumber, stored) throws(StoreError) in
            guard problem == nil else { return }
            let line: ArraySlice<UInt8>
            switch stored {
            case .torn(atEnd: true):
                problem = .tornLastLine(segment: place, line: lineNumber)
                return
            case .torn(atEnd: false):
                problem = .badEntry(sequence: expected, segment: place, line: lineNumber, reason: "incomplete line inside the log")
                return
            case .complete(let bytes):
                line = bytes
            }
            guard let entry = AuditLineFormat.split(line) else {
                problem = .badEntry(sequence: expected, segment: place, line: lineNumber, reason: "not a well-formed entry")
                return
            }
            guard entry.sequence == expected else {
                problem = .outOfOrder(expected: expected, found: entry.sequence, segment: place, line: lineNumber)
                return
            }
            let code: [UInt8]
            do throws(CryptoError) { code = try mac.authenticationCode(for: [previous, Array(entry.body)]) } catch { throw .crypto(error) }
            guard constantTimeEquals(code, entry.mac) else {
                problem = .badEntry(sequence: entry.sequence, segment: place, line: lineNumber,
                                    reason: "MAC mismatch (edited, or chained to a removed entry)")
                return
            }
            if entry.sequence == headSequence { headEntryMAC = code }
            if let gap = AuditVerifier.acknowledgement(line, body: entry.body) { acknowledged.append(gap) }
            previous = code
            expected += 1
            verified += 1
            try verifiedEntry(place, lineNumber, line)
        }
        if let problem { return result(problem) }
        guard let head else { return result(expected > 1 ? .missingHead(lastSequence: expected - 1) : nil) }
        if expected - 1 < head.head.sequence {
            return result(.missingFromEnd(expected: expected, headSequence: head.head.sequence))
        }
        if head.head.sequence > 0, let headEntryMAC, !constantTimeEquals(headEntryMAC, head.head.entryMAC) {
            return result(.badHead(reason: "entry \(head.head.sequence) differs from the one the head signed"))
        }
        return result(nil)
    }

    /// The `action` member of an acknowledgement, as the writer writes it (a string value holding the
    /// same text would have its quotes escaped, so this cannot match inside one).
    private static let acknowledgementMarker = Array("\"action\":\"\(AuditEvent.Action.acknowledgeGap.rawValue)\"".utf8)

    /// The acknowledged gap a verified line records, if it is an acknowledgement.
    private static func acknowledgement(_ line: ArraySlice<UInt8>, body: ArraySlice<UInt8>) -> AuditVerification.AcknowledgedGap? {
        guard AuditLineFormat.firstRange(of: acknowledgementMarker, in: body) != nil,
              let entry = try? JSONDecoder().decode(AuditEntry.self, from: Data(line)),
              entry.action == AuditEvent.Action.acknowledgeGap.rawValue,
              let (gap, reason) = entry.detail.flatMap(AuditGap.parseAcknowledgement) else { return nil }
        return AuditVerification.AcknowledgedGap(gap: gap, sequence: entry.seq, time: entry.time, actor: entry.actor, reason: reason)
    }
}
