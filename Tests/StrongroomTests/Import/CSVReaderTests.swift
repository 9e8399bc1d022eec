@testable import Strongroom
import StrongroomTestSupport
import Testing

@Suite("CSV reader")
struct CSVReaderTests {
    // MARK: Well-formed input

    @Test("simple records, each with its line")
    func simple() throws {
        #expect(try records("name,phone\nAnn,020 7946 0958\nBob,+44 20 7946 0000\n") == [
            CSVRecord(line: 1, fields: ["name", "phone"]),
            CSVRecord(line: 2, fields: ["Ann", "020 7946 0958"]),
            CSVRecord(line: 3, fields: ["Bob", "+44 20 7946 0000"]),
        ])
    }

    @Test("quoted fields hold commas, line breaks and escaped quotes")
    func quoted() throws {
        let text = "\"1 Road, Town\",\"two\nlines\",\"say \"\"hi\"\"\",\"\"\"\",\"\",plain\n"
        #expect(try records(text) == [
            CSVRecord(line: 1, fields: ["1 Road, Town", "two\nlines", "say \"hi\"", "\"", "", "plain"]),
        ])
        #expect(try records("\"a\r\nb\rc\",d") == [CSVRecord(line: 1, fields: ["a\r\nb\rc", "d"])])
    }

    @Test("records end with CRLF, LF or a lone CR", arguments: ["\r\n", "\n", "\r"])
    func lineEnds(_ end: String) throws {
        let expected = [
            CSVRecord(line: 1, fields: ["a", "b"]),
            CSVRecord(line: 2, fields: ["c", "d"]),
            CSVRecord(line: 3, fields: ["e", ""]),
        ]
        #expect(try records("a,b\(end)c,d\(end)e,\(end)") == expected)
        #expect(try records("a,b\(end)c,d\(end)e,") == expected)
    }

    @Test("mixed line ends in one file")
    func mixedLineEnds() throws {
        #expect(try records("a\r\nb\nc\rd\n\re").map(\.line) == [1, 2, 3, 4, 5, 6])
        #expect(try records("a\r\nb\nc\rd\n\re").map(\.fields) == [["a"], ["b"], ["c"], ["d"], [""], ["e"]])
    }

    @Test("a leading UTF-8 BOM is skipped; one elsewhere is content")
    func byteOrderMark() throws {
        #expect(try records("\u{FEFF}id,name\n1,Ann\n") == [
            CSVRecord(line: 1, fields: ["id", "name"]),
            CSVRecord(line: 2, fields: ["1", "Ann"]),
        ])
        #expect(try records("\u{FEFF}").isEmpty)
        #expect(try records("\u{FEFF}\u{FEFF}x\n") == [CSVRecord(line: 1, fields: ["\u{FEFF}x"])])
        #expect(try records("a,\u{FEFF}b\n") == [CSVRecord(line: 1, fields: ["a", "\u{FEFF}b"])])
    }

    @Test("empty fields, quoted or not, and trailing commas")
    func emptyFields() throws {
        #expect(try records(",,\n\"\",\"\",\"\"\na,,b\na,\n,a\n").map(\.fields) == [
            ["", "", ""], ["", "", ""], ["a", "", "b"], ["a", ""], ["", "a"],
        ])
    }

    @Test("the end: with or without a final line break; blank lines at the end are not records")
    func endOfInput() throws {
        #expect(try records("").isEmpty)
        #expect(try records("\n").isEmpty)
        #expect(try records("\r\n\r\n\n").isEmpty)
        let one = [CSVRecord(line: 1, fields: ["a", "b"])]
        #expect(try records("a,b") == one)
        #expect(try records("a,b\n") == one)
        #expect(try records("a,b\r\n") == one)
        #expect(try records("a,b\n\n\r\n") == one)
        // A single empty field at the end must be quoted to count.
        #expect(try records("a\n\"\"\n") == [CSVRecord(line: 1, fields: ["a"]), CSVRecord(line: 2, fields: [""])])
        var reader = CSVReader(bytes: Array("a\n".utf8))
        _ = try reader.next()
        let second = try reader.next(), third = try reader.next()
        #expect(second == nil && third == nil)
    }

    @Test("a blank line within the file is a record of one empty field")
    func blankLineInside() throws {
        #expect(try records("a\n\nb\n\r\n\rc") == [
            CSVRecord(line: 1, fields: ["a"]), CSVRecord(line: 2, fields: [""]), CSVRecord(line: 3, fields: ["b"]),
            CSVRecord(line: 4, fields: [""]), CSVRecord(line: 5, fields: [""]), CSVRecord(line: 6, fields: ["c"]),
        ])
    }

    @Test("line numbers count the line breaks inside quoted fields")
    func linesWithMultilineFields() throws {
        let text = "h1,h2\n\"one\ntwo\r\nthree\rfour\",x\nnext,y\n\"\n\",\"\r\n\"\nlast,z"
        #expect(try records(text) == [
            CSVRecord(line: 1, fields: ["h1", "h2"]),
            CSVRecord(line: 2, fields: ["one\ntwo\r\nthree\rfour", "x"]),
            CSVRecord(line: 6, fields: ["next", "y"]),
            CSVRecord(line: 7, fields: ["\n", "\r\n"]),
            CSVRecord(line: 10, fields: ["last", "z"]),
        ])
    }

    @Test("unicode passes through unchanged")
    func unicode() throws {
        let fields = ["Zoë Ångström", "東京都", "👩‍👩‍👧", "e\u{301}", "Ω≈ç√"]
        let read = try records(fields.joined(separator: ",") + "\n")
        #expect(read.map { $0.fields.map { Array($0.utf8) } } == [fields.map { Array($0.utf8) }])
    }

    @Test("many rows keep their line numbers")
    func manyRows() throws {
        let text = (1...5_000).map { "\($0),\"row \($0)\"" }.joined(separator: "\r\n")
        let read = try records(text)
        #expect(read.count == 5_000)
        #expect(read.allSatisfy { $0.fields == [String($0.line), "row \($0.line)"] })
    }

    // MARK: Errors and recovery

    @Test("a quote that is never closed: its line; reading goes on at the next line")
    func unterminatedQuote() {
        #expect(outcomes("a,b\nc,\"d\ne,f\n") == [
            .success(CSVRecord(line: 1, fields: ["a", "b"])),
            .failure(.unterminatedQuote(line: 2)),
            .success(CSVRecord(line: 3, fields: ["e", "f"])),
        ])
        // The quote opens on line 3 of a record starting on line 2.
        #expect(outcomes("h\n\"x\ny\",\"open\nrest") == [
            .success(CSVRecord(line: 1, fields: ["h"])),
            .failure(.unterminatedQuote(line: 3)),
            .success(CSVRecord(line: 4, fields: ["rest"])),
        ])
        #expect(outcomes("\"") == [.failure(.unterminatedQuote(line: 1))])
        #expect(outcomes("a\n\"abc\"\"") == [.success(CSVRecord(line: 1, fields: ["a"])), .failure(.unterminatedQuote(line: 2))])
    }

    @Test("a quote inside an unquoted field: its line; reading goes on at the next line")
    func quoteInUnquotedField() {
        #expect(outcomes("a,b\nDee \"Quoted\",x\nc,d\n") == [
            .success(CSVRecord(line: 1, fields: ["a", "b"])),
            .failure(.unexpectedQuote(line: 2)),
            .success(CSVRecord(line: 3, fields: ["c", "d"])),
        ])
        #expect(outcomes("x, \"padded\"\r\ny") == [.failure(.unexpectedQuote(line: 1)), .success(CSVRecord(line: 2, fields: ["y"]))])
        #expect(outcomes("x\"") == [.failure(.unexpectedQuote(line: 1))])
    }

    @Test("text after a closing quote: the line it is on; reading goes on at the next line")
    func textAfterClosingQuote() {
        #expect(outcomes("\"ab\"c,d\rnext") == [.failure(.unexpectedQuote(line: 1)), .success(CSVRecord(line: 2, fields: ["next"]))])
        #expect(outcomes("a\n\"multi\nline\" x,y\nnext\n") == [
            .success(CSVRecord(line: 1, fields: ["a"])),
            .failure(.unexpectedQuote(line: 3)),
            .success(CSVRecord(line: 4, fields: ["next"])),
        ])
        #expect(outcomes("\"a\"\"") == [.failure(.unterminatedQuote(line: 1))])
    }

    @Test("invalid UTF-8 is reported for the field's line; the whole record is skipped",
          arguments: [[0xFF], [0xC3], [0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] as [[UInt8]])
    func invalidUTF8(_ bad: [UInt8]) {
        let unquoted = Array("a,b\nx,".utf8) + bad + Array(",y\nc,d\n".utf8)
        #expect(outcomes(unquoted) == [
            .success(CSVRecord(line: 1, fields: ["a", "b"])),
            .failure(.invalidUTF8(line: 2)),
            .success(CSVRecord(line: 3, fields: ["c", "d"])),
        ])
        // In a quoted field on the record's second line, before another multi-line field.
        let quoted = Array("a\nx,\"\n".utf8) + bad + Array("\",\"p\nq\"\nc".utf8)
        #expect(outcomes(quoted) == [
            .success(CSVRecord(line: 1, fields: ["a"])),
            .failure(.invalidUTF8(line: 2)),
            .success(CSVRecord(line: 5, fields: ["c"])),
        ])
        #expect(outcomes(bad) == [.failure(.invalidUTF8(line: 1))])
    }

    @Test("errors name the line, never the field content")
    func errorsCarryNoContent() {
        for text in ["secret\"x", "\"secret", "\"secret\"x"] {
            var reader = CSVReader(bytes: Array(text.utf8))
            do {
                _ = try reader.next()
                Issue.record("\(text.count) bytes: expected an error")
            } catch {
                #expect(!String(describing: error).contains("secret") && !String(reflecting: error).contains("secret"))
            }
        }
    }

    @Test("a truncated BOM is content, so it is invalid UTF-8")
    func truncatedBOM() {
        #expect(outcomes([0xEF, 0xBB, 0x0A, 0x61]) == [.failure(.invalidUTF8(line: 1)), .success(CSVRecord(line: 2, fields: ["a"]))])
    }

    // MARK: Properties

    @Test("random tables written by an RFC 4180 writer read back identically, with their lines")
    func roundTrip() throws {
        var generator = SplitMix64(seed: 0x5EED_CAFE)
        for round in 0..<400 {
            let table = randomTable(using: &generator)
            let written = writeCSV(table, using: &generator)
            let read = try records(written.bytes)
            #expect(read.map { $0.fields.map { Array($0.utf8) } } == table.map { $0.map { Array($0.utf8) } },
                    "round \(round)")
            #expect(read.map(\.line) == written.lines, "round \(round)")
        }
    }

    @Test("on arbitrary bytes, reading ends, and reported lines only go forward")
    func arbitraryBytesTerminate() {
        var generator = SplitMix64(seed: 0xBAD_C0DE)
        let alphabet: [UInt8] = Array("\",\r\n a".utf8) + [0xFF, 0xC3, 0xA9]
        for round in 0..<400 {
            let bytes = (0..<Int.random(in: 0...60, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
            let physicalLines = 1 + lineBreaks(in: bytes)
            let lines = outcomes(bytes).map { outcome in
                switch outcome {
                case .success(let record): record.line
                case .failure(.unterminatedQuote(let line)), .failure(.unexpectedQuote(let line)), .failure(.invalidUTF8(let line)): line
                }
            }
            #expect(lines.count <= bytes.count + 1, "round \(round)")
            #expect(zip(lines, lines.dropFirst()).allSatisfy { $0 < $1 }, "round \(round): \(lines)")
            #expect(lines.allSatisfy { 1...physicalLines ~= $0 }, "round \(round)")
        }
    }
}

// MARK: - Helpers

/// Every record of `text`, failing on the first error.
private func records(_ text: String) throws -> [CSVRecord] {
    try records(Array(text.utf8))
}

/// Every record of `bytes`, failing on the first error.
private func records(_ bytes: [UInt8]) throws -> [CSVRecord] {
    var reader = CSVReader(bytes: bytes)
    var result: [CSVRecord] = []
    while let record = try reader.next() { result.append(record) }
    return result
}

/// Every record and error of `text`, reading on after errors.
private func outcomes(_ text: String) -> [Result<CSVRecord, CSVError>] {
    outcomes(Array(text.utf8))
}

/// Every record and error of `bytes`, reading on after errors (at most one per byte, and one more).
private func outcomes(_ bytes: [UInt8]) -> [Result<CSVRecord, CSVError>] {
    var reader = CSVReader(bytes: bytes)
    var result: [Result<CSVRecord, CSVError>] = []
    while result.count <= bytes.count + 1 {
        do {
            guard let record = try reader.next() else { break }
            result.append(.success(record))
        } catch {
            result.append(.failure(error))
        }
    }
    return result
}

/// The physical line breaks in `bytes`: LF, CRLF or a lone CR.
private func lineBreaks(in bytes: [UInt8]) -> Int {
    var count = 0
    for index in bytes.indices {
        if bytes[index] == UInt8(ascii: "\n") {
            count += 1
        } else if bytes[index] == UInt8(ascii: "\r"), index + 1 == bytes.endIndex || bytes[index + 1] != UInt8(ascii: "\n") {
            count += 1
        }
    }
    return count
}


/// Pieces of field text: plain, the characters CSV treats specially, and multi-byte unicode.
private let fieldPieces = [
    "a", "Z", "0", " ", "-", "+44", ",", "\"", "\"\"", "\n", "\r", "\r\n", "\t", ";", "'",
    "é", "e\u{301}", "ß", "東京", "👩‍👩‍👧", "🇬🇧", "\u{FEFF}", "\u{0}", "Ω",
]

/// A table of 0 to 12 rows of 1 to 6 random fields.
private func randomTable(using generator: inout SplitMix64) -> [[String]] {
    (0..<Int.random(in: 0...12, using: &generator)).map { _ in
        (0..<Int.random(in: 1...6, using: &generator)).map { _ in
            (0..<Int.random(in: 0...6, using: &generator)).map { _ in fieldPieces.randomElement(using: &generator)! }.joined()
        }
    }
}

/// `table` as RFC 4180 CSV, with a random line end, BOM, final line break and needless quoting,
/// and the line each record starts on.
private func writeCSV(_ table: [[String]], using generator: inout SplitMix64) -> (bytes: [UInt8], lines: [Int]) {
    let quote = UInt8(ascii: "\"")
    let lineEnd = Array(["\r\n", "\n", "\r"].randomElement(using: &generator)!.utf8)
    let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]
    var bytes = Bool.random(using: &generator) ? byteOrderMark : []
    var lines: [Int] = []
    var line = 1
    for (index, row) in table.enumerated() {
        lines.append(line)
        var piece: [UInt8] = []
        for (column, field) in row.enumerated() {
            if column > 0 { piece.append(UInt8(ascii: ",")) }
            let utf8 = Array(field.utf8)
            let mustQuote = utf8.contains { Array(",\"\r\n".utf8).contains($0) }
                || utf8.starts(with: byteOrderMark)
                || (row.count == 1 && utf8.isEmpty)
            if mustQuote || Int.random(in: 0..<5, using: &generator) == 0 {
                piece += [quote] + utf8.flatMap { $0 == quote ? [quote, quote] : [$0] } + [quote]
            } else {
                piece += utf8
            }
        }
        if index < table.count - 1 || Bool.random(using: &generator) { piece += lineEnd }
        line += lineBreaks(in: piece)
        bytes += piece
    }
    return (bytes, lines)
}
