/// Normalises phone numbers, as people and telephony layers write them, to E.164 under a default region.
///
/// The rules follow Google libphonenumber's parser (its metadata is the table in
/// `PhoneRegionTable.swift`): an extension is split off; letters become keypad digits (ITU-T E.161)
/// when there are at least three; any Unicode decimal digit counts; a leading `+` or the region's
/// international prefix introduces a country calling code; otherwise the region's trunk prefix is
/// stripped. The result must have a possible length for its country and at most 15 digits (E.164).
public struct PhoneNormalizer: Sendable {
    /// The region (ISO 3166 alpha-2) for numbers written without a country code.
    public let defaultRegion: String
    private let region: CompiledPhoneRegion

    /// A normaliser for `defaultRegion` (case-insensitive ISO 3166 alpha-2).
    public init(defaultRegion: String) throws(PhoneNumberError) {
        region = try PhoneNormalizer.compiledRegion(defaultRegion)
        self.defaultRegion = region.data.region
    }

    /// The supported regions' ISO codes, sorted.
    public static var supportedRegions: [String] { PhoneRegionData.all.map(\.region).sorted() }

    private static func compiledRegion(_ code: String) throws(PhoneNumberError) -> CompiledPhoneRegion {
        guard let region = PhoneRegions.byRegion[code.uppercased()] else { throw .unknownRegion(code) }
        return region
    }

    /// The E.164 form of `raw`, with `region` (default: the normaliser's) for national numbers.
    public func normalize(_ raw: String, region override: String? = nil) throws(PhoneNumberError) -> PhoneNumber {
        let region = try override.map { code throws(PhoneNumberError) in try PhoneNormalizer.compiledRegion(code) } ?? self.region
        let trimmed = raw.unicodeScalars.drop(while: PhoneNormalizer.isSpace).reversed().drop(while: PhoneNormalizer.isSpace)
        guard !trimmed.isEmpty else { throw .empty }
        if raw.unicodeScalars.contains(where: PhoneNormalizer.isControl) {
            throw .controlCharacter
        }
        var (number, extensionNumber) = try PhoneNormalizer.splitExtension(PhoneNormalizer.extractPossibleNumber(raw))
        let hasPlus = number.unicodeScalars.first.map(PhoneNormalizer.isPlus) ?? false
        if hasPlus { number = Substring(number.unicodeScalars.drop(while: PhoneNormalizer.isPlus)) }
        var digits = PhoneNormalizer.normalizeDigits(number)
        guard digits.count >= 2 else { throw digits.isEmpty ? .noDigits : .tooShort }
        guard digits.count <= 17 + 3 else { throw .moreThan15Digits }

        // Country calling code: after a plus, after the region's international prefix, or (rarely)
        // written without either in front of a national number.
        var countryCode = region.data.countryCode
        var metadata = region
        var international = hasPlus
        if !international, let idd = region.internationalPrefix, let match = try? idd.prefixMatch(in: digits) {
            let rest = digits[match.range.upperBound...]
            // A country calling code never starts with 0: "00" followed by 0 is not an international prefix.
            if rest.first != "0" {
                digits = String(rest)
                international = true
            }
        }
        var national: Substring
        if international {
            guard digits.count > 2 else { throw .tooShort }
            guard let (code, rest) = PhoneNormalizer.extractCountryCode(digits) else {
                throw .unknownCountryCode(Int(digits.prefix(3)) ?? 0)
            }
            countryCode = code
            national = rest
            if let main = PhoneRegions.byCountryCode[code], main.data.region != region.data.region, code != region.data.countryCode {
                metadata = main
            }
        } else {
            national = digits[...]
            let codeText = String(region.data.countryCode)
            if digits.hasPrefix(codeText) {
                let afterCode = digits.dropFirst(codeText.count)
                let potential = PhoneNormalizer.strippingNationalPrefix(afterCode, region) ?? afterCode
                if (!region.matchesNationalNumber(digits[...]) && region.matchesNationalNumber(potential))
                    || region.lengthCheck(digits.count) == .tooLong {
                    national = potential
                }
            }
        }
        guard national.count >= 2 else { throw .tooShort }
        if let stripped = PhoneNormalizer.strippingNationalPrefix(national, metadata) {
            switch metadata.lengthCheck(stripped.count) {
            case .tooShort, .possibleLocalOnly, .invalidLength: break
            case .possible, .tooLong: national = stripped
            }
        }
        guard national.count >= 2 else { throw .tooShort }
        guard national.count <= 17 else { throw .tooLong }
        // Possible for its country: the lengths of the region that decides for the calling code.
        let decider = PhoneRegions.byCountryCode[countryCode] ?? metadata
        switch decider.lengthCheck(national.count) {
        case .possible, .possibleLocalOnly: break
        case .tooShort: throw .tooShort
        case .tooLong: throw .tooLong
        case .invalidLength: throw .invalidLength
        }
        let codeText = String(countryCode)
        guard codeText.count + national.count <= 15 else { throw .moreThan15Digits }
        return PhoneNumber(e164: "+" + codeText + national, countryCode: countryCode, nationalNumber: String(national),
                           extensionNumber: extensionNumber)
    }

    // MARK: - Steps

    /// From the first digit or plus sign on, without trailing punctuation and without a second
    /// number ("… x302/x2303" keeps "… x302").
    private static func extractPossibleNumber(_ raw: String) throws(PhoneNumberError) -> Substring {
        let scalars = raw.unicodeScalars
        guard let start = scalars.firstIndex(where: { isPlus($0) || isDecimalDigit($0) }) else { throw .noDigits }
        var end = scalars.endIndex
        while end > start {
            let previous = scalars.index(before: end)
            let scalar = scalars[previous]
            if scalar == "#" || (scalar != "_" && (isLetter(scalar) || isNumber(scalar))) { break }
            end = previous
        }
        var number = Substring(scalars[start..<end])
        // A slash or backslash followed by spaces and "x" starts a second number.
        let units = Array(number.unicodeScalars)
        for (offset, scalar) in units.enumerated() where scalar == "/" || scalar == "\\" {
            var next = offset + 1
            while next < units.count, units[next] == " " { next += 1 }
            if next < units.count, units[next] == "x" {
                number = Substring(String(String.UnicodeScalarView(units[..<offset])))
                break
            }
        }
        return number
    }

    /// The number without its extension, and the extension's digits (ASCII), when one is written.
    private static func splitExtension(_ number: Substring) throws(PhoneNumberError) -> (Substring, String?) {
        // Every extension notation has a label letter, '#', '~', ';' or ','; without one the regex
        // (costly on this hot path) cannot match.
        let mayHaveExtension = number.unicodeScalars.contains {
            isLetter($0) || ["#", "\u{FF03}", "~", "\u{FF5E}", ";", ","].contains($0)
        }
        if mayHaveExtension, let match = try? extensionPattern.regex.firstMatch(in: number) {
            let head = number[..<match.range.lowerBound]
            if isViable(head) {
                for index in 1..<match.output.count {
                    if let digits = match.output[index].substring {
                        return (head, normalizeDigits(digits))
                    }
                }
            }
        }
        guard isViable(number) else {
            let hasInvalid = number.unicodeScalars.contains { !isPlus($0) && !isDecimalDigit($0) && !isPunctuation($0)
                && !$0.properties.isASCIIHexDigit && !("a"..."z").contains($0) && !("A"..."Z").contains($0) && $0 != "*" }
            throw hasInvalid ? .invalidCharacter : .tooShort
        }
        return (number, nil)
    }

    /// libphonenumber's viability test: two digits alone, or at least three digits (with punctuation
    /// between) before any letter.
    private static func isViable(_ number: Substring) -> Bool {
        let scalars = Array(number.unicodeScalars.drop(while: isPlus))
        if scalars.count == 2, scalars.allSatisfy(isDecimalDigit) { return true }
        var digitsBeforeLetter = 0
        var seenLetter = false
        for scalar in scalars {
            if isDecimalDigit(scalar) {
                if !seenLetter { digitsBeforeLetter += 1 }
            } else if isASCIILetter(scalar) {
                guard digitsBeforeLetter >= 3 else { return false }
                seenLetter = true
            } else if !isPunctuation(scalar) && scalar != "*" {
                return false
            }
        }
        return digitsBeforeLetter >= 3
    }

    /// ASCII digits of `number`: Unicode decimal digits mapped to 0–9 and, when there are at least
    /// three letters, letters mapped through the telephone keypad (ITU-T E.161).
    private static func normalizeDigits(_ number: Substring) -> String {
        let scalars = number.unicodeScalars
        let mapLetters = scalars.lazy.filter(isASCIILetter).count >= 3
        var output = ""
        output.reserveCapacity(scalars.count)
        for scalar in scalars {
            if ("0"..."9").contains(scalar) {
                output.unicodeScalars.append(scalar)
            } else if scalar.value >= 128, let value = scalar.properties.numericType == .decimal ? scalar.properties.numericValue : nil {
                output.unicodeScalars.append(Unicode.Scalar(UInt8(48 + Int(value))))
            } else if mapLetters, isASCIILetter(scalar) {
                output.unicodeScalars.append(keypad(scalar))
            }
        }
        return output
    }

    /// The country calling code that starts `digits` (one to three digits, never starting with 0).
    private static func extractCountryCode(_ digits: String) -> (Int, Substring)? {
        guard digits.first != "0" else { return nil }
        for length in 1...3 where length <= digits.count {
            if let code = Int(digits.prefix(length)), PhoneRegions.byCountryCode[code] != nil {
                return (code, digits.dropFirst(length))
            }
        }
        return nil
    }

    /// The number without its national (trunk) prefix or carrier code, transformed where the region
    /// says so; nil when there is none to strip, or stripping would turn a valid number invalid.
    private static func strippingNationalPrefix(_ number: Substring, _ region: CompiledPhoneRegion) -> Substring? {
        guard !number.isEmpty, let pattern = region.nationalPrefixForParsing,
              let match = try? pattern.prefixMatch(in: number) else { return nil }
        let viableOriginal = region.matchesNationalNumber(number)
        let rest = number[match.range.upperBound...]
        let groups = match.output.count - 1
        if let rule = region.data.nationalPrefixTransformRule, !rule.isEmpty, groups > 0, match.output[groups].substring != nil {
            var transformed = ""
            var characters = rule.makeIterator()
            while let character = characters.next() {
                // Group references: "$1" (Java's syntax) or "\\1" (as the generated table has them).
                if character == "$" || character == "\\", let digit = characters.next(), let index = digit.wholeNumberValue {
                    transformed += index <= groups ? String(match.output[index].substring ?? "") : ""
                } else {
                    transformed.append(character)
                }
            }
            transformed += rest
            if viableOriginal && !region.matchesNationalNumber(transformed[...]) { return nil }
            return Substring(transformed)
        }
        if viableOriginal && !region.matchesNationalNumber(rest) { return nil }
        return rest
    }

    // MARK: - Characters

    /// Extension notations libphonenumber accepts when parsing, anchored at the end: ";ext=123",
    /// "ext. 123", "x123", "#123", "доб 123", "anexo 123", "- 503#", ",,123", ";123", ",123".
    private static let extensionPattern = SharedRegex {
        let separators = "[ \u{00A0}\\t,]*"
        let afterLabel = "[:\\.\u{FF0E}]?[ \u{00A0}\\t,-]*"
        let explicitLabels = "(?:e?xt(?:ensi(?:o\u{0301}?|\u{00F3}))?n?|\u{FF45}?\u{FF58}\u{FF54}\u{FF4E}?|\u{0434}\u{043E}\u{0431}|anexo)"
        let ambiguousLabels = "(?:[x\u{FF58}#\u{FF03}~\u{FF5E}]|int|\u{FF49}\u{FF4E}\u{FF54})"
        let alternatives = [
            ";ext=(\\d{1,20})",
            separators + explicitLabels + afterLabel + "(\\d{1,20})#?",
            separators + ambiguousLabels + afterLabel + "(\\d{1,9})#?",
            "[- ]+(\\d{1,6})#",
            "[ \u{00A0}\\t]*(?:,{2}|;)" + afterLabel + "(\\d{1,15})#?",
            "[ \u{00A0}\\t]*(?:,)+" + afterLabel + "(\\d{1,9})#?",
        ]
        return try! Regex("(?:" + alternatives.joined(separator: "|") + ")$").ignoresCase()
    }

    // ASCII is answered without Unicode property tables: most numbers are ASCII, and the tables
    // cost more than the rest of the parse.

    private static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 128 ? scalar == " " || ("\t"..."\r").contains(scalar) : scalar.properties.isWhitespace
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 128 ? (scalar.value < 0x20 && scalar != "\t") || scalar.value == 0x7F
                           : scalar.properties.generalCategory == .control
    }

    private static func isPlus(_ scalar: Unicode.Scalar) -> Bool { scalar == "+" || scalar == "\u{FF0B}" }

    private static func isDecimalDigit(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 128 ? ("0"..."9").contains(scalar) : scalar.properties.numericType == .decimal
    }

    private static func isNumber(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 128 ? ("0"..."9").contains(scalar) : scalar.properties.numericType != nil
    }

    private static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 128 ? isASCIILetter(scalar) : scalar.properties.isAlphabetic
    }

    private static func isASCIILetter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
    }

    /// Separators people write between digits: dashes, spaces, dots, slashes, brackets, tildes.
    private static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x2D, 0x78, 0x2010...0x2015, 0x2212, 0x30FC, 0xFF0D...0xFF0F, 0x20, 0xA0, 0xAD, 0x200B, 0x2060, 0x3000,
             0x28, 0x29, 0xFF08, 0xFF09, 0xFF3B, 0xFF3D, 0x2E, 0x5B, 0x5D, 0x2F, 0x7E, 0x2053, 0x223C, 0xFF5E, 0x09:
            return true
        default:
            return false
        }
    }

    /// The ITU-T E.161 keypad digit of a letter.
    private static func keypad(_ letter: Unicode.Scalar) -> Unicode.Scalar {
        let index = Int((letter.properties.uppercaseMapping.unicodeScalars.first ?? letter).value) - 65
        let digits: [UInt8] = [2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 7, 8, 8, 8, 9, 9, 9, 9]
        return Unicode.Scalar(48 + digits[max(0, min(25, index))])
    }
}
