import StrongroomCrypto

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
        guard let end = try continuation(of: (head.sequence, head.entryMAC), lines: try linesFrom(head.sequence)),
              end.sequence == last.sequence, constantTimeEquals(end.mac, last.mac) else { return rewritten }
        return nil
    }

    /// The last of `lines` (without newlines, oldest first) when the first is the entry `known` (its
    /// sequence number and MAC) and each later one chains from the one before; nil otherwise.
    func continuation(of known: (sequence: UInt64, mac: [UInt8]), lines: [ArraySlice<UInt8>]) throws -> (sequence: UInt64, mac: [UInt8])? {
        var previous: [UInt8]?
        var expected = known.sequence
        for line in lines {
            guard let entry = AuditLineFormat.split(line), entry.sequence == expected else { return nil }
            if let previous {
                guard constantTimeEquals(try mac.authenticationCode(for: [previous, Array(entry.body)]), entry.mac) else { return nil }
            } else {
                guard constantTimeEquals(entry.mac, known.mac) else { return nil }
            }
            previous = entry.mac
            expected += 1
        }
        return previous.map { (expected - 1, $0) }
    }
}
