import Foundation
import StrongroomCrypto

/// The signed position of the newest audit entry, kept in the key database so that a log whose
/// last entries were cut off is caught by `audit verify`, and refused by writers.
struct AuditHead: Equatable, Sendable {
    /// Sequence number of the newest entry covered.
    let sequence: UInt64
    /// That entry's MAC.
    let entryMAC: [UInt8]
    /// When the head was written, in microseconds since 1970 (an integer, so the MAC input is exact).
    let microseconds: Int64

    init(sequence: UInt64, entryMAC: [UInt8], time: Date) {
        self.init(sequence: sequence, entryMAC: entryMAC, microseconds: Int64(time.timeIntervalSince1970 * 1_000_000))
    }

    init(sequence: UInt64, entryMAC: [UInt8], microseconds: Int64) {
        self.sequence = sequence
        self.entryMAC = entryMAC
        self.microseconds = microseconds
    }

    /// The head's own MAC: HMAC(audit key, label || sequence || entry MAC || time in microseconds).
    func authenticationCode(_ mac: HMACSHA256) throws(CryptoError) -> [UInt8] {
        var fields: [UInt8] = []
        appendUInt64(sequence, to: &fields)
        fields.append(contentsOf: entryMAC)
        appendUInt64(UInt64(bitPattern: microseconds), to: &fields)
        return try mac.authenticationCode(for: [Array("strongroom.audit.head.v1".utf8), fields])
    }
}
