import Foundation
import StrongroomStorage

/// The audit log's segment files: their names and listing, the allocation steps they grow by, cutting a
/// segment to its last complete line, and reading their lines (for the head check and for verification).
extension AuditLog {
    /// The segment files of `directory`, oldest first (none when it cannot be listed).
    static func segmentPaths(in directory: String) -> [String] {
        (try? listSegments(in: directory)) ?? []
    }

    /// The segment files of `directory`, oldest first: the files named as `segmentName` names them.
    /// Throws when the folder cannot be listed (a writer must not take that for an empty log).
    static func listSegments(in directory: String) throws(AuditLogError) -> [String] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            let code = ((error as? CocoaError)?.underlying as? POSIXError)?.code.rawValue ?? EIO
            throw .unavailable(FileError(path: directory, operation: "list", code: code))
        }
        var numbers: [Int] = []
        for name in names where name.hasSuffix(".jsonl") {
            if let number = Int(name.dropLast(6)), number > 0, name == segmentName(number) { numbers.append(number) }
        }
        return numbers.sorted().map { directory + "/" + segmentName($0) }
    }

    /// The file name of segment `number`: eight digits or more, then `.jsonl`.
    static func segmentName(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".jsonl"
    }

    /// The length of the segment at `path` up to its last complete line, which is cut there (through
    /// `file` when it is mapped), and that line's sequence number and MAC; nil for an empty segment.
    func cutTail(of path: String, file: MappedFile?) throws -> (length: Int64, last: (sequence: UInt64, mac: [UInt8])?) {
        let bytes: [UInt8]
        do { bytes = try AppendOnlyFile.readAll(path: path) } catch { throw AuditLogError.unavailable(error) }
        // Lines are copied in whole, newline last (`MappedFile.storeRecords`): what follows the last
        // newline is a torn line or unwritten space.
        let end = (bytes.lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
        if end < bytes.count {
            do {
                if let file { try file.truncate(to: Int64(end)) } else { try AppendOnlyFile(path: path).truncate(to: Int64(end)) }
            } catch {
                throw AuditLogError.unavailable(error)
            }
        }
        guard end > 0 else { return (0, nil) }
        // Zeros before the line are not part of it: entries zeroed in place under a running writer,
        // which went on after them (`audit verify` reports them; the end check, the lost entries).
        let start = (bytes[..<(end - 1)].lastIndex { $0 == UInt8(ascii: "\n") || $0 == 0 } ?? -1) + 1
        guard let entry = AuditLineFormat.split(bytes[start..<(end - 1)]) else {
            throw AuditLogError.unreadableTail(segment: path)
        }
        return (Int64(end), (entry.sequence, entry.mac))
    }

    /// The complete lines (without newlines) of the entries from `sequence` on, oldest first, read
    /// from the newest of `segments` back to the one that holds that entry (the head lags the log by
    /// about a second of entries, so that is usually the newest alone).
    static func lines(from sequence: UInt64, in segments: [String]) throws -> [ArraySlice<UInt8>] {
        var newestFirst: [[ArraySlice<UInt8>]] = []
        for path in segments.reversed() {
            let bytes: [UInt8]
            do { bytes = try AppendOnlyFile.readAll(path: path) } catch { throw AuditLogError.unavailable(error) }
            let end = (bytes.lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
            let lines = bytes[..<end].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast()
            guard let first = lines.first else { continue }
            newestFirst.append(Array(lines))
            if let entry = AuditLineFormat.split(first), entry.sequence <= sequence { break }
        }
        let all = newestFirst.reversed().joined()
        // A line that does not split is left out with the entries before `sequence`; after the first
        // entry from `sequence` on, it keeps its place (the caller's chain check then fails on it).
        return Array(all.drop { AuditLineFormat.split($0).map { $0.sequence < sequence } ?? true })
    }

    /// The allocated length for `length` bytes of entries: the next whole step above it.
    static func allocation(for length: Int64) -> Int64 {
        (length / allocationStep + 1) * allocationStep
    }

    func forEachLine(_ body: (_ place: String, _ line: Int, AuditStoredLine) throws(StoreError) -> Void) throws(StoreError) {
        let segments = AuditLog.segmentPaths(in: directory)
        for (segmentIndex, path) in segments.enumerated() {
            let name = URL(fileURLWithPath: path).lastPathComponent
            let bytes: [UInt8]
            do throws(FileError) { bytes = try AppendOnlyFile.readAll(path: path) } catch { throw .file(error) }
            // Preallocated space not yet written is zeros: a run of them ends the segment's data. A zero
            // with data after it stays in its line, which then does not verify.
            var end = bytes.count
            while end > 0, bytes[end - 1] == 0 { end -= 1 }
            var lineStart = 0
            var lineNumber = 0
            while lineStart < end {
                lineNumber += 1
                guard let newline = bytes[lineStart..<end].firstIndex(of: UInt8(ascii: "\n")) else {
                    try body(name, lineNumber, .torn(atEnd: segmentIndex == segments.count - 1))
                    break
                }
                try body(name, lineNumber, .complete(bytes[lineStart..<newline]))
                lineStart = newline + 1
            }
        }
    }

    /// The number in a segment file's name.
    static func segmentNumber(of path: String) -> Int {
        Int(URL(fileURLWithPath: path).lastPathComponent.dropLast(6)) ?? 0
    }
}
