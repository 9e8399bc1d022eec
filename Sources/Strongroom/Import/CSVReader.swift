/// Why a CSV file could not be read. Carries line numbers, never field content (it may be personal data).
public enum CSVError: Error, Equatable, Sendable {
    /// A quoted field runs to the end of the input; `line` is where its opening quote is.
    case unterminatedQuote(line: Int)
    /// A quote inside an unquoted field, or text after a closing quote; `line` is where that quote or text is.
    case unexpectedQuote(line: Int)
    /// A field is not valid UTF-8; `line` is where that field starts.
    case invalidUTF8(line: Int)
}

/// One CSV record and the line it starts on.
public struct CSVRecord: Equatable, Sendable {
    /// The 1-based physical line where the record starts.
    public let line: Int
    /// The fields, unquoted, in order; a blank line is one empty field.
    public let fields: [String]
}

/// Reads RFC 4180 CSV records from UTF-8 bytes.
///
/// - Fields are separated by commas and records by CRLF, LF or a lone CR. A field in double quotes may
///   hold commas, line breaks and quotes written as `""`. A leading UTF-8 byte order mark is skipped.
/// - Lines are physical lines counted from 1: a line break inside a quoted field starts a new line,
///   so a record's `line` is where it starts and the next record's `line` is past all of its lines.
/// - A blank line within the file is a record of one empty field (RFC 4180); blank lines at the end
///   of the input are not records, so a file may end with or without a line break.
/// - Fields are not trimmed, and records may differ in their number of fields: the caller checks.
///
/// After an error, `next()` continues with the rest of the input, so an importer can report a bad
/// record and go on:
/// - `invalidUTF8`: the whole record has been read; the next call returns the record after it.
/// - `unexpectedQuote`: the next call starts at the line after the one with the stray quote or text.
/// - `unterminatedQuote`: the next call starts at the line after the one with the opening quote, since
///   a quote that is never closed was most likely meant to be a plain character.
public struct CSVReader: Sendable {
    /// The whole file.
    private let bytes: [UInt8]
    /// The index of the next byte to read.
    private var position: Int
    /// The physical line `position` is on.
    private var line = 1
    /// Where a run of line breaks known to be followed by more data ends, so each blank run is scanned once.
    private var blankRunEnd = 0
    /// The number of fields of the last record, to size the next one.
    private var fieldCountHint = 0

    // The bytes with a meaning in CSV.
    private static let quote = UInt8(ascii: "\"")
    private static let comma = UInt8(ascii: ",")
    private static let lineFeed = UInt8(ascii: "\n")
    private static let carriageReturn = UInt8(ascii: "\r")

    /// A reader over a whole file.
    public init(bytes: [UInt8]) {
        self.bytes = bytes
        position = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
    }

    /// The next record, or nil at the end of the input.
    /// - Throws: `CSVError` for a malformed record; calling again continues after it (see the type's documentation).
    public mutating func next() throws(CSVError) -> CSVRecord? {
        guard !atEnd() else { return nil }
        let storage = self.bytes
        let bytes = storage.span
        let count = bytes.count
        var position = self.position
        var line = self.line
        let recordLine = line
        var fields: [String] = []
        fields.reserveCapacity(fieldCountHint)
        var invalidFieldLine: Int?

        while true {
            let fieldLine = line
            let value: String?
            if position < count, bytes[position] == Self.quote {
                let openingQuote = position
                position += 1
                var segmentStart = position
                var unescaped: [UInt8] = []
                var hasEscapes = false
                while true {
                    guard position < count else {
                        resume(afterLineBreakFrom: openingQuote, onLine: fieldLine)
                        throw .unterminatedQuote(line: fieldLine)
                    }
                    let byte = bytes[position]
                    if byte == Self.quote {
                        guard position + 1 < count, bytes[position + 1] == Self.quote else { break }
                        unescaped.append(contentsOf: storage[segmentStart...position])
                        hasEscapes = true
                        position += 2
                        segmentStart = position
                        continue
                    }
                    if byte == Self.lineFeed || (byte == Self.carriageReturn && !(position + 1 < count && bytes[position + 1] == Self.lineFeed)) {
                        line += 1
                    }
                    position += 1
                }
                if hasEscapes {
                    unescaped.append(contentsOf: storage[segmentStart..<position])
                    value = Self.string(unescaped.span)
                } else {
                    value = Self.string(bytes.extracting(segmentStart..<position))
                }
                position += 1
                if position < count {
                    let byte = bytes[position]
                    if byte != Self.comma && byte != Self.lineFeed && byte != Self.carriageReturn {
                        resume(afterLineBreakFrom: position, onLine: line)
                        throw .unexpectedQuote(line: line)
                    }
                }
            } else {
                let start = position
                while position < count {
                    let byte = bytes[position]
                    if byte == Self.comma || byte == Self.lineFeed || byte == Self.carriageReturn { break }
                    if byte == Self.quote {
                        resume(afterLineBreakFrom: position, onLine: line)
                        throw .unexpectedQuote(line: line)
                    }
                    position += 1
                }
                value = start == position ? "" : Self.string(bytes.extracting(start..<position))
            }
            if let value {
                fields.append(value)
            } else if invalidFieldLine == nil {
                invalidFieldLine = fieldLine
            }

            guard position < count else { break }
            let separator = bytes[position]
            position += 1
            if separator == Self.comma { continue }
            if separator == Self.carriageReturn, position < count, bytes[position] == Self.lineFeed { position += 1 }
            line += 1
            break
        }

        self.position = position
        self.line = line
        if let invalidFieldLine { throw .invalidUTF8(line: invalidFieldLine) }
        fieldCountHint = fields.count
        return CSVRecord(line: recordLine, fields: fields)
    }

    /// The text of `utf8`, or nil when it is not valid UTF-8.
    private static func string(_ utf8: Span<UInt8>) -> String? {
        guard let text = try? UTF8Span(validating: utf8) else { return nil }
        return String(copying: text)
    }

    /// Whether nothing but line breaks is left (consuming them if so).
    private mutating func atEnd() -> Bool {
        guard position < bytes.count else { return true }
        guard position >= blankRunEnd else { return false }
        var index = position
        while index < bytes.count, bytes[index] == Self.lineFeed || bytes[index] == Self.carriageReturn { index += 1 }
        guard index < bytes.count else {
            position = bytes.count
            return true
        }
        blankRunEnd = index
        return false
    }

    /// Continues reading at the start of the line after the first line break at or after `index`, which is on line `line`.
    private mutating func resume(afterLineBreakFrom index: Int, onLine line: Int) {
        var index = index
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == Self.lineFeed { break }
            if byte == Self.carriageReturn {
                if index < bytes.count, bytes[index] == Self.lineFeed { index += 1 }
                break
            }
        }
        position = index
        self.line = line + 1
    }
}
