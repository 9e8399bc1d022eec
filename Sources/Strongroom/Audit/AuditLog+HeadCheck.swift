import StrongroomCrypto
import StrongroomStorage

/// The folder log's part of the check before a head save (`AuditHeadKeeper.checkSavedHead`): reading
/// an entry by its sequence number from the segment files, which are what the log's readers read.
///
/// Why a folder log needs it although its writers share one state: that state (`audit/TAIL`) is a file
/// anyone who can write the folder can rewrite, say back to an entry before a cut, and then every
/// writer chains after that entry and refills the cut sequence numbers; and a segment replaced while a
/// hard link elsewhere keeps the old file linked leaves the writers storing into a file no reader reads.
/// Either way the writers' own check (one `fstat` an append) passes, and their head saves would move
/// the signed head over a refilled chain that verifies, or over entries the log does not hold.
extension AuditLog {
    /// How much of a segment is read at a time to find a line.
    static let lineReadLength = 4096

    /// The MAC of entry `sequence` in the log in `directory`; nil when the segment files do not hold it,
    /// or do not hold `own`, the entry this process appended last, where it wrote it (its line must still
    /// end there, with its sequence number and MAC). The entry is found by halving the byte range of
    /// the segment that holds it (lines are in the order of their numbers): a few reads of 4 KiB, never
    /// the whole segment, so a head save costs the same however many entries a second brings.
    static func entryMAC(at sequence: UInt64, in directory: String, own: AppendedEntry?) throws -> [UInt8]? {
        let segments = try listSegments(in: directory)
        do throws(FileError) {
            if let own {
                let path = directory + "/" + segmentName(own.segment)
                guard segments.contains(path), let line = try lineEnding(at: own.end, in: PositionalReader(path: path)),
                      let entry = AuditLineFormat.split(line[...]), entry.sequence == own.sequence,
                      constantTimeEquals(entry.mac, own.mac) else { return nil }
                if sequence == own.sequence { return entry.mac }
            }
            for path in segments.reversed() {
                let file = try PositionalReader(path: path)
                // A segment just started holds no whole line yet: the entry is in an older one.
                guard let first = try entry(startingFrom: 0, in: file) else { continue }
                if first.sequence > sequence { continue }
                return try search(sequence, in: file)
            }
            return nil
        } catch {
            throw AuditLogError.unavailable(error)
        }
    }

    /// The MAC of entry `sequence` in `file`, found by halving the range of bytes its line may start in;
    /// nil when no line there has that number.
    private static func search(_ sequence: UInt64, in file: PositionalReader) throws(FileError) -> [UInt8]? {
        // Every entry starting in lower..<upper may be the one; none starting outside it is.
        var lower: Int64 = 0
        var upper = file.size
        while lower < upper {
            let middle = lower + (upper - lower) / 2
            // The first entry starting at or after `middle`: none before its start, after `middle`.
            guard let entry = try entry(startingFrom: middle, in: file), entry.start < upper else {
                upper = middle
                continue
            }
            if entry.sequence == sequence { return entry.mac }
            if entry.sequence < sequence { lower = entry.end } else { upper = middle }
        }
        return nil
    }

    /// The first entry of `file` whose line starts at or after `offset`: where its line starts and ends
    /// (past its newline), its sequence number and MAC. Lines that are not entries are passed over, as
    /// writers pass over them (`audit verify` reports them); nil when no whole line follows.
    private static func entry(startingFrom offset: Int64, in file: PositionalReader) throws(FileError)
        -> (start: Int64, end: Int64, sequence: UInt64, mac: [UInt8])? {
        var offset = offset
        while let line = try line(startingFrom: offset, in: file) {
            if let entry = AuditLineFormat.split(line.bytes[...]) { return (line.start, line.end, entry.sequence, entry.mac) }
            offset = line.end
        }
        return nil
    }

    /// The first whole line of `file` starting at or after `offset` (at a line's start: `offset` is 0
    /// or follows a newline): where it starts, where it ends (past its newline), and its bytes without
    /// the newline. Nil when none does: the file ends first, or a NUL byte (space not yet written) comes
    /// before the line's end.
    private static func line(startingFrom offset: Int64, in file: PositionalReader) throws(FileError)
        -> (start: Int64, end: Int64, bytes: [UInt8])? {
        let newline = UInt8(ascii: "\n")
        // Read from the byte before, to see whether `offset` is a line's start.
        let from = max(0, offset - 1)
        var bytes: [UInt8] = []
        var lineStart: Int? = offset == 0 ? 0 : nil
        while true {
            let chunk = try file.read(from: from + Int64(bytes.count), count: lineReadLength)
            let searchedFrom = bytes.count
            bytes.append(contentsOf: chunk)
            var index = searchedFrom
            while index < bytes.count {
                if bytes[index] == 0 { return nil }
                if bytes[index] == newline {
                    if let start = lineStart {
                        return (from + Int64(start), from + Int64(index) + 1, Array(bytes[start..<index]))
                    }
                    lineStart = index + 1
                }
                index += 1
            }
            if chunk.count < lineReadLength { return nil }
        }
    }

    /// The bytes (without its newline) of the line of `file` that ends at `end` (past its newline), after
    /// the newline or NUL byte before it (as `cutTail` reads a last line); nil when no line ends there.
    private static func lineEnding(at end: Int64, in file: PositionalReader) throws(FileError) -> [UInt8]? {
        let newline = UInt8(ascii: "\n")
        var length = lineReadLength
        while true {
            let from = max(0, end - Int64(length))
            let bytes = try file.read(from: from, count: Int(end - from))
            guard bytes.count == Int(end - from), bytes.last == newline else { return nil }
            if let previous = bytes.dropLast().lastIndex(where: { $0 == newline || $0 == 0 }) {
                return Array(bytes[(previous + 1)..<(bytes.count - 1)])
            }
            if from == 0 { return Array(bytes.dropLast()) }
            length *= 2
        }
    }
}
