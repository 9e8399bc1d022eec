/// How libphonenumber reads a written number: whether it is viable at all, where an extension
/// begins (its extension patterns for parsing), and its digits.
enum PhoneText {
    // MARK: - Viability

    /// libphonenumber's viability test: the text is two digits alone, or optional plus signs then at
    /// least three digits with only separators (and "*") before the third, then separators, digits
    /// and ASCII letters; optionally followed by an extension.
    static func isViable(_ chars: PhoneChars, _ range: Range<Int>) -> Bool {
        if isViableWithoutExtension(chars, range) { return true }
        let tail = ExtensionTail(chars, end: range.upperBound, floor: range.lowerBound)
        for position in range where extensionMatches(chars, at: position, tail)
            && isViableWithoutExtension(chars, range.lowerBound..<position) {
            return true
        }
        return false
    }

    private static func isViableWithoutExtension(_ chars: PhoneChars, _ range: Range<Int>) -> Bool {
        if range.count < 2 { return false }
        if range.count == 2 { return chars[range.lowerBound].isDigit && chars[range.lowerBound + 1].isDigit }
        var position = range.lowerBound
        while position < range.upperBound, chars[position].isPlus { position += 1 }
        var digits = 0
        while position < range.upperBound {
            let char = chars[position]
            if char.isDigit {
                digits += 1
            } else if !(char.isPunctuation || char.value == 0x2A || (digits >= 3 && char.isASCIILetter)) {   // "*"
                return false
            }
            position += 1
        }
        return digits >= 3
    }

    // MARK: - Extensions

    /// Where the extension starts (the leftmost place an extension notation runs to the end), or nil.
    static func extensionStart(_ chars: PhoneChars, _ range: Range<Int>) -> Int? {
        let tail = ExtensionTail(chars, end: range.upperBound, floor: range.lowerBound)
        return range.first { extensionMatches(chars, at: $0, tail) }
    }

    /// The digits (ASCII) of the extension that ends at `end`: its trailing digits, before any "#".
    static func extensionDigits(_ chars: PhoneChars, from start: Int, to end: Int) -> String {
        let tail = ExtensionTail(chars, end: end, floor: start)
        var text = ""
        for position in tail.digits {
            text.unicodeScalars.append(Unicode.Scalar(0x30 + (chars[position].digit ?? 0)))
        }
        return text
    }

    /// The trailing digits of a candidate extension, and whether a "#" closes it.
    private struct ExtensionTail {
        let digits: Range<Int>
        let closedByHash: Bool

        init(_ chars: PhoneChars, end: Int, floor: Int) {
            closedByHash = end > floor && chars[end - 1].value == 0x23
            let digitsEnd = closedByHash ? end - 1 : end
            var start = digitsEnd
            while start > floor, chars[start - 1].isDigit { start -= 1 }
            digits = start..<digitsEnd
        }
    }

    /// Whether one of libphonenumber's extension notations for parsing runs from `start` to `end`:
    /// ";ext=123", "ext. 123" (and its spellings), "x123" / "#123" / "~123" / "int 123", "- 123#",
    /// ",,123" / ";123", ",123".
    private static func extensionMatches(_ chars: PhoneChars, at start: Int, _ tail: ExtensionTail) -> Bool {
        let first = chars[start]
        guard first.mayBeExtension || isSeparator(first.value) || first.value == 0x2D else { return false }
        let digitsStart = tail.digits.lowerBound, count = tail.digits.count
        guard count > 0, start < digitsStart else { return false }

        // ";ext=" and the digits (RFC 3966), no "#".
        if !tail.closedByHash, count <= 20, spells(chars, at: start, rfcExtensionLabel) == digitsStart { return true }

        // An explicit or ambiguous label, after spaces, tabs or commas.
        let labelStart = skip(chars, from: start, to: digitsStart) { isSeparator($0) || $0 == 0x2C }
        var labelEnd = labelStart
        while labelEnd < digitsStart, !isAfterLabel(chars[labelEnd]) { labelEnd += 1 }
        if labelEnd > labelStart {
            let limit = digitLimit(ofLabel: chars, labelStart..<labelEnd)
            if count <= limit, isAfterLabelRun(chars, labelEnd, digitsStart) { return true }
        }

        // "- 123#": dashes and spaces, at most six digits, then "#".
        if tail.closedByHash, count <= 6, skip(chars, from: start, to: digitsStart, while: { $0 == 0x20 || $0 == 0x2D }) == digitsStart {
            return true
        }

        // ";" or ",," (auto-dialling), or commas alone, after spaces or tabs.
        let mark = skip(chars, from: start, to: digitsStart, while: isSeparator)
        guard mark < digitsStart else { return false }
        switch chars[mark].value {
        case 0x3B:
            return count <= 15 && isAfterLabelRun(chars, mark + 1, digitsStart)
        case 0x2C:
            if count <= 15, mark + 1 < digitsStart, chars[mark + 1].value == 0x2C, isAfterLabelRun(chars, mark + 2, digitsStart) {
                return true
            }
            return count <= 9 && isAfterLabelRun(chars, skip(chars, from: mark, to: digitsStart) { $0 == 0x2C }, digitsStart)
        default:
            return false
        }
    }

    /// Space, no-break space or tab.
    private static func isSeparator(_ value: UInt32) -> Bool {
        value == 0x20 || value == 0xA0 || value == 0x09
    }

    /// What may follow a label: ":", ".", full-width ".", space, tab, comma, dash, or a digit.
    private static func isAfterLabel(_ char: PhoneChar) -> Bool {
        switch char.value {
        case 0x3A, 0x2E, 0xFF0E, 0x2C, 0x2D: true
        default: isSeparator(char.value) || char.isDigit
        }
    }

    /// Whether `start..<end` may stand between a label and the digits: an optional ":" or "."
    /// then spaces, tabs, commas and dashes.
    private static func isAfterLabelRun(_ chars: PhoneChars, _ start: Int, _ end: Int) -> Bool {
        var position = start
        if position < end, [0x3A, 0x2E, 0xFF0E].contains(chars[position].value) { position += 1 }
        return skip(chars, from: position, to: end) { isSeparator($0) || $0 == 0x2C || $0 == 0x2D } == end
    }

    /// How many extension digits a label allows: 20 after an explicit label ("ext", "extension",
    /// "anexo", "доб"), 9 after an ambiguous one ("x", "#", "~", "int"), 0 when it is no label.
    private static func digitLimit(ofLabel chars: PhoneChars, _ range: Range<Int>) -> Int {
        func isLabel(_ labels: [[UInt32]]) -> Bool {
            labels.contains { label in
                label.count == range.count && zip(label, range).allSatisfy { $0 == chars[$1].folded }
            }
        }
        if isLabel(explicitLabels) { return 20 }
        if isLabel(ambiguousLabels) { return 9 }
        return 0
    }

    /// "e?xt(ensi(o|ó|o + combining acute))?n?", full-width "ｅ?ｘｔｎ?", Russian "доб", Spanish "anexo".
    private static let explicitLabels: [[UInt32]] = {
        var labels: [String] = []
        for e in ["", "e"] {
            for middle in ["", "ensio", "ensio\u{301}", "ensi\u{F3}"] {
                for n in ["", "n"] { labels.append(e + "xt" + middle + n) }
            }
        }
        labels += ["\u{FF58}\u{FF54}", "\u{FF45}\u{FF58}\u{FF54}", "\u{FF58}\u{FF54}\u{FF4E}", "\u{FF45}\u{FF58}\u{FF54}\u{FF4E}",
                   "\u{434}\u{43E}\u{431}", "anexo"]
        return labels.map { $0.unicodeScalars.map(\.value) }
    }()

    /// "x", "#", "~" (and their full-width forms), "int" (and full-width).
    private static let ambiguousLabels: [[UInt32]] = ["x", "\u{FF58}", "#", "\u{FF03}", "~", "\u{FF5E}", "int", "\u{FF49}\u{FF4E}\u{FF54}"]
        .map { $0.unicodeScalars.map(\.value) }

    /// ";ext=" (RFC 3966), as scalar values.
    private static let rfcExtensionLabel: [UInt32] = ";ext=".unicodeScalars.map(\.value)

    /// The position after `text` when the characters from `start` spell it (letters in any case).
    private static func spells(_ chars: PhoneChars, at start: Int, _ text: [UInt32]) -> Int? {
        guard start + text.count <= chars.count else { return nil }
        for (offset, expected) in text.enumerated() where chars[start + offset].folded != expected { return nil }
        return start + text.count
    }

    private static func skip(_ chars: PhoneChars, from start: Int, to end: Int, while accepts: (UInt32) -> Bool) -> Int {
        var position = start
        while position < end, accepts(chars[position].value) { position += 1 }
        return position
    }
}
