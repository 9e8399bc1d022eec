/// Why a CSV file could not be read. Carries line numbers, never field content (it may be personal data).
public enum CSVError: Error, Equatable, Sendable {
    /// A quoted field runs to the end of the input.
    case unterminatedQuote(line: Int)
    /// A quote inside an unquoted field, or text after a closing quote.
    case unexpectedQuote(line: Int)
    /// A field is not valid UTF-8.
    case invalidUTF8(line: Int)
}

/// One CSV record and the line it starts on.
public struct CSVRecord: Equatable, Sendable {
    /// The 1-based physical line where the record starts.
    public let line: Int
    /// The fields, unquoted.
    public let fields: [String]
}

/// Reads RFC 4180 CSV records from UTF-8 bytes: comma separators, CRLF, LF or CR line ends, quoted
/// fields with `""` escapes and embedded separators and line breaks; a leading UTF-8 BOM is skipped.
///
/// After an error the reader resumes at the start of the next line, so an importer can report the
/// bad record and go on.
public struct CSVReader: Sendable {
    private let bytes: [UInt8]
    private var position: Int
    private var line = 1

    /// A reader over a whole file.
    public init(bytes: [UInt8]) {
        self.bytes = bytes
        position = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
    }

    /// The next record, nil at the end of the input.
    public mutating func next() throws(CSVError) -> CSVRecord? {
        guard position < bytes.count else { return nil }
        let startLine = line
        var fields: [String] = []
        var field: [UInt8] = []
        while true {
            if position < bytes.count, bytes[position] == UInt8(ascii: "\"") {
                position += 1
                var closed = false
                while position < bytes.count {
                    let byte = bytes[position]
                    position += 1
                    if byte == UInt8(ascii: "\"") {
                        if position < bytes.count, bytes[position] == UInt8(ascii: "\"") {
                            field.append(byte)
                            position += 1
                        } else {
                            closed = true
                            break
                        }
                    } else {
                        if byte == UInt8(ascii: "\n") || (byte == UInt8(ascii: "\r") && (position >= bytes.count || bytes[position] != UInt8(ascii: "\n"))) {
                            line += 1
                        }
                        field.append(byte)
                    }
                }
                guard closed else { throw .unterminatedQuote(line: startLine) }
                if position < bytes.count, ![UInt8(ascii: ","), UInt8(ascii: "\n"), UInt8(ascii: "\r")].contains(bytes[position]) {
                    skipRestOfLine()
                    throw .unexpectedQuote(line: startLine)
                }
            } else {
                while position < bytes.count {
                    let byte = bytes[position]
                    if byte == UInt8(ascii: ",") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") { break }
                    if byte == UInt8(ascii: "\"") {
                        skipRestOfLine()
                        throw .unexpectedQuote(line: startLine)
                    }
                    field.append(byte)
                    position += 1
                }
            }
            guard let text = String(validating: field, as: UTF8.self) else {
                skipRestOfLine()
                throw .invalidUTF8(line: startLine)
            }
            fields.append(text)
            field.removeAll(keepingCapacity: true)
            guard position < bytes.count else { break }
            let separator = bytes[position]
            position += 1
            if separator == UInt8(ascii: ",") { continue }
            if separator == UInt8(ascii: "\r"), position < bytes.count, bytes[position] == UInt8(ascii: "\n") { position += 1 }
            line += 1
            break
        }
        return CSVRecord(line: startLine, fields: fields)
    }

    /// Moves past the end of the current line (error recovery).
    private mutating func skipRestOfLine() {
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            if byte == UInt8(ascii: "\n") { break }
            if byte == UInt8(ascii: "\r") {
                if position < bytes.count, bytes[position] == UInt8(ascii: "\n") { position += 1 }
                break
            }
        }
        line += 1
    }
}
