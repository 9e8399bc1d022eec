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
            }
        }
    }

    /// How many entries verified.
    public let verifiedEntries: Int
    /// The sequence number of the last entry that verified (0 when none).
    public let lastSequence: UInt64
    /// The sequence number the signed head covers (0 when no head was saved yet).
    public let headSequence: UInt64
    /// The first problem found; nil when the log is intact.
    public let problem: Problem?

    /// True when every entry verified and nothing is missing up to the head.
    public var isIntact: Bool { problem == nil }
}

/// Checks the audit log: every line's MAC, the chain from genesis, sequence numbers, and the signed head.
struct AuditVerifier {
    let trail: any AuditTrail
    let mac: HMACSHA256
    let genesis: [UInt8]
    /// The head saved in the key database, with its MAC; nil when none was saved yet.
    let head: (head: AuditHead, code: [UInt8])?

    func verify() throws -> AuditVerification {
        var previous = genesis
        var expected: UInt64 = 1
        var verified = 0
        var headEntryMAC: [UInt8]?
        let headSequence = head?.head.sequence ?? 0
        func result(_ problem: AuditVerification.Problem?) -> AuditVerification {
            AuditVerification(verifiedEntries: verified, lastSequence: expected - 1, headSequence: headSequence, problem: problem)
        }
        if let head {
            let code = try head.head.authenticationCode(mac)
            guard constantTimeEquals(code, head.code) else { return result(.badHead(reason: "its MAC does not verify")) }
        }
        var problem: AuditVerification.Problem?
        try trail.forEachLine { place, lineNumber, stored in
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
            let code = try mac.authenticationCode(for: [previous, Array(entry.body)])
            guard constantTimeEquals(code, entry.mac) else {
                problem = .badEntry(sequence: entry.sequence, segment: place, line: lineNumber,
                                    reason: "MAC mismatch (edited, or chained to a removed entry)")
                return
            }
            if entry.sequence == headSequence { headEntryMAC = code }
            previous = code
            expected += 1
            verified += 1
        }
        if let problem { return result(problem) }
        if let head {
            if expected - 1 < head.head.sequence {
                return result(.missingFromEnd(expected: expected, headSequence: head.head.sequence))
            }
            if head.head.sequence > 0, let headEntryMAC, !constantTimeEquals(headEntryMAC, head.head.entryMAC) {
                return result(.badHead(reason: "entry \(head.head.sequence) differs from the one the head signed"))
            }
        }
        return result(nil)
    }
}
