import Foundation

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
