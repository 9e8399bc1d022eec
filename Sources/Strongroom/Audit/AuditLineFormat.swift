import Foundation
import StrongroomCrypto

/// The audit log's line format (version 1): one JSON object a line, MAC last.
///
/// `{"seq":12,"time":"2026-11-23T07:30:00.123456Z","action":"decrypt","actor":"alice","purpose":"caller-id",`
/// `"subject":"17","fields":["name","phones"],"outcome":"ok","client":"10.0.0.7","detail":"…","mac":"<64 hex>"}`
///
/// The MAC is HMAC-SHA256 (RFC 2104) under the store's audit key over the previous entry's MAC and the
/// line's bytes up to (not including) `,"mac":`. Chaining makes an edited, deleted, inserted or
/// reordered entry break every MAC after it; the first entry chains from a genesis value bound to the
/// store's id.
enum AuditLineFormat {
    /// `,"mac":"` + 64 hex digits + `"}` + newline.
    static let macSuffixByteCount = 8 + 64 + 3
    private static let macPrefix = Array(",\"mac\":\"".utf8)

    /// The value the first entry chains from: HMAC(audit key, label || store id).
    static func genesis(mac: HMACSHA256, storeID: [UInt8]) throws(CryptoError) -> [UInt8] {
        try mac.authenticationCode(for: [Array("strongroom.audit.genesis.v1".utf8), storeID])
    }

    /// Appends the line's body: the JSON object without its MAC member and closing brace. Built as
    /// bytes, not through string interpolation: it is written for every decrypt.
    static func appendBody(sequence: UInt64, event: AuditEvent, to out: inout [UInt8]) {
        out.append(contentsOf: "{\"seq\":".utf8)
        appendDecimal(sequence, to: &out)
        out.append(contentsOf: ",\"time\":\"".utf8)
        Timestamp.append(event.time, to: &out)
        out.append(contentsOf: "\",\"action\":\"".utf8)
        out.append(contentsOf: event.action.rawValue.utf8)
        out.append(contentsOf: "\",\"actor\":".utf8)
        appendJSONString(event.actor, to: &out)
        out.append(contentsOf: ",\"purpose\":".utf8)
        appendJSONString(event.purpose, to: &out)
        if let subject = event.subject {
            out.append(contentsOf: ",\"subject\":\"".utf8)
            appendDecimal(UInt64(bitPattern: subject.rawValue), to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: ",\"fields\":[".utf8)
        for (index, field) in event.fields.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: field.rawValue.utf8)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: "],\"outcome\":\"".utf8)
        out.append(contentsOf: event.outcome.rawValue.utf8)
        out.append(UInt8(ascii: "\""))
        if let client = event.clientAddress {
            out.append(contentsOf: ",\"client\":".utf8)
            appendJSONString(client, to: &out)
        }
        if let detail = event.detail {
            out.append(contentsOf: ",\"detail\":".utf8)
            appendJSONString(detail, to: &out)
        }
    }

    /// Appends `value` in decimal.
    static func appendDecimal(_ value: UInt64, to out: inout [UInt8]) {
        // Digits from the right, dividing by the constant 10 only (a multiplication once compiled): a
        // division by a computed power of ten is a hardware divide per digit, and every audit line
        // writes two numbers.
        var digits = InlineArray<20, UInt8>(repeating: 0)
        var start = digits.count
        var rest = value
        repeat {
            start -= 1
            digits[start] = UInt8(truncatingIfNeeded: 48 + rest % 10)
            rest /= 10
        } while rest > 0
        out.append(addingCapacity: digits.count - start) { (text: inout OutputSpan<UInt8>) in
            for index in start..<digits.count { text.append(digits[index]) }
        }
    }

    /// Appends `value` as a JSON string literal; printable ASCII without quotes or backslashes (the
    /// usual actor, purpose and address) is copied as is.
    static func appendJSONString(_ value: String, to out: inout [UInt8]) {
        if value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) {
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: value.utf8)
            out.append(UInt8(ascii: "\""))
        } else {
            out.append(contentsOf: jsonString(value).utf8)
        }
    }

    /// The complete line: body, MAC member, closing brace and newline.
    static func line(body: [UInt8], mac: [UInt8], into output: inout [UInt8]) {
        output.append(contentsOf: body)
        appendMAC(mac, to: &output)
    }

    /// Ends a line whose body `output` ends with: MAC member, closing brace and newline.
    static func appendMAC(_ mac: [UInt8], to output: inout [UInt8]) {
        output.append(contentsOf: macPrefix)
        appendHex(mac, to: &output)
        output.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: "}"), UInt8(ascii: "\n")])
    }

    /// Splits a line (without its newline) into body, MAC and sequence number; nil when it is not of this format.
    static func split(_ line: ArraySlice<UInt8>) -> (body: ArraySlice<UInt8>, mac: [UInt8], sequence: UInt64)? {
        let suffixLength = macSuffixByteCount - 1
        guard line.count > suffixLength + 8 else { return nil }
        let bodyEnd = line.endIndex - suffixLength
        guard line[bodyEnd..<bodyEnd + macPrefix.count].elementsEqual(macPrefix),
              line[line.endIndex - 2] == UInt8(ascii: "\""), line[line.endIndex - 1] == UInt8(ascii: "}"),
              let mac = decodeHex(line[(bodyEnd + macPrefix.count)..<(line.endIndex - 2)]) else { return nil }
        // The body starts with {"seq":N, — read N without a JSON parser (verification must be fast).
        let prefix = Array("{\"seq\":".utf8)
        guard line.starts(with: prefix) else { return nil }
        var sequence: UInt64 = 0
        var index = line.startIndex + prefix.count
        let digitsStart = index
        while index < bodyEnd, (48...57).contains(line[index]), index - digitsStart < 19 {
            sequence = sequence * 10 + UInt64(line[index] - 48)
            index += 1
        }
        guard index > digitsStart, index < bodyEnd, line[index] == UInt8(ascii: ",") else { return nil }
        return (line[line.startIndex..<bodyEnd], mac, sequence)
    }

    /// Where `marker` first occurs in `line` (a line or part of one), or nil.
    ///
    /// A plain scan for the marker's first byte, then a comparison. Foundation's `firstRange(of:)`, the
    /// overload byte slices used to pick, is generic over the other collection and ran unspecialised
    /// for every byte: 13 µs an entry of `audit verify`, which looks for the acknowledgement marker in
    /// every line (70,000 entries a second; 855,000 with this scan; `strongroom-bench audit-verify`).
    static func firstRange(of marker: [UInt8], in line: ArraySlice<UInt8>) -> Range<Int>? {
        guard let first = marker.first, line.count >= marker.count else { return nil }
        var start = line.startIndex
        let lastStart = line.endIndex - marker.count
        while start <= lastStart {
            if line[start] == first, line[start..<start + marker.count].elementsEqual(marker) { return start..<start + marker.count }
            start += 1
        }
        return nil
    }

    /// A JSON string literal for `value` (RFC 8259 §7 escaping).
    static func jsonString(_ value: String) -> String {
        var result = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            // Beyond RFC 8259's C0 controls, everything a terminal acts on (DEL, C1, U+2028/9, bidi
            // overrides) is escaped too, so `audit export` prints no raw control character.
            case _ where scalar.isTerminalControl: result += scalar.jsonEscape
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func appendHex(_ bytes: [UInt8], to output: inout [UInt8]) {
        output.append(addingCapacity: bytes.count * 2) { (text: inout OutputSpan<UInt8>) in
            for byte in bytes {
                text.append(hexDigits[Int(byte >> 4)])
                text.append(hexDigits[Int(byte & 0x0F)])
            }
        }
    }

    static func decodeHex<Bytes: Collection<UInt8>>(_ text: Bytes) -> [UInt8]? {
        guard text.count.isMultiple(of: 2) else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(text.count / 2)
        var high: UInt8?
        for character in text {
            let value: UInt8
            switch character {
            case 48...57: value = character - 48
            case 97...102: value = character - 87
            default: return nil
            }
            if let pending = high {
                output.append(pending << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return output
    }
}
