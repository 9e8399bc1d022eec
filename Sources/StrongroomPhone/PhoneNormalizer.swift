/// Normalises phone numbers as people and telephony layers write them to E.164, under a default region.
///
/// It reads a number the way Google libphonenumber's parser does and accepts it when libphonenumber
/// would call it *possible* (its length fits its country), with the facts of its metadata as data
/// (`PhoneRegionTable.swift`): text before the first digit or "+" is ignored; an extension
/// ("x123", "ext. 123", ";ext=123", "#123"…) is kept apart; three or more letters are read on the
/// telephone keypad (ITU-T E.161); any Unicode decimal digit counts; "+" or the region's
/// international prefix introduces a country calling code; a national (trunk) prefix is dropped.
/// Stricter than libphonenumber: control characters are refused, and so is anything longer than
/// the 15 digits of ITU-T E.164.
///
/// A value type without shared mutable state: use one from any number of threads.
public struct PhoneNormalizer: Sendable {
    /// The region (ISO 3166 alpha-2, upper case) of numbers written without a country code.
    public let defaultRegion: String
    private let home: PhoneRegion

    /// A normaliser for numbers written in `defaultRegion` (ISO 3166 alpha-2, any case).
    public init(defaultRegion: String) throws(PhoneNumberError) {
        home = PhoneRegions.all[try PhoneRegions.index(of: defaultRegion)]
        self.defaultRegion = home.code
    }

    /// The ISO codes of the supported regions, sorted.
    public static var supportedRegions: [String] { PhoneRegions.all.map(\.code).sorted() }

    /// The E.164 form of `raw`; numbers written without a country code belong to `region` (by
    /// default the normaliser's).
    public func normalize(_ raw: String, region: String? = nil) throws(PhoneNumberError) -> PhoneNumber {
        let home = try region.map { code throws(PhoneNumberError) in PhoneRegions.all[try PhoneRegions.index(of: code)] } ?? self.home
        return try Self.parse(raw, home: home)
    }

    /// The longest input libphonenumber reads (MAX_INPUT_STRING_LENGTH).
    private static let maximumInputLength = 250
    /// The shortest and longest national significant numbers libphonenumber accepts.
    private static let minimumNationalLength = 2
    private static let maximumNationalLength = 17
    /// ITU-T E.164 §6: at most 15 digits, country code included.
    private static let maximumE164Digits = 15

    /// What one pass over the raw input finds: the characters from the first "+" or digit on, where
    /// the possible number ends, and whether an extension or a second number may follow.
    private struct Scan {
        var chars = PhoneChars()
        var end = 0
        var mayHaveExtension = false
        var mayHaveSecondNumber = false
    }

    /// Step 1, in one pass: control characters, blank input, and the possible number: from the first
    /// "+" or digit to the last letter, number or "#", each character classified once.
    private static func scan(_ raw: String) throws(PhoneNumberError) -> Scan {
        var scan = Scan()
        var started = false, blank = true
        var length = 0
        for scalar in raw.unicodeScalars {
            let value = scalar.value
            length += 1
            if value < 0x20 || (value >= 0x7F && value <= 0x9F) {
                guard value == 0x09 || value == 0x0A || value == 0x0D else { throw .controlCharacter }
            } else if blank, value != 0x20, !(value >= 0x80 && scalar.properties.isWhitespace) {
                blank = false
            }
            guard length <= maximumInputLength else { continue }
            if !started {
                if value < 0x80 && value != 0x2B && value &- 0x30 >= 10 { continue }
                let char = PhoneChar(scalar)
                guard char.isPlus || char.isDigit else { continue }
                started = true
            }
            let char = PhoneChar(scalar)
            scan.chars.append(char)
            if char.isKeptAtEnd { scan.end = scan.chars.count }
            if char.mayBeExtension { scan.mayHaveExtension = true }
            if value == 0x2F || value == 0x5C { scan.mayHaveSecondNumber = true }
        }
        if blank { throw .empty }
        if length > maximumInputLength { throw .tooLong }
        guard started else { throw .noDigits }
        return scan
    }

    private static func parse(_ raw: String, home: PhoneRegion) throws(PhoneNumberError) -> PhoneNumber {
        // 1. The characters, read once (a constant from here on: the steps below borrow them, where
        //    a variable's 200 bytes were copied for each call).
        let scan = try scan(raw)
        let chars = scan.chars
        var end = scan.end
        // "…/ x2303" (or "\ x…") starts a second number: keep the first.
        if scan.mayHaveSecondNumber { end = secondNumberStart(chars, 0..<end) ?? end }

        // 2. Viability, then the extension.
        guard PhoneText.isViable(chars, 0..<end) else { throw notViable(chars, 0..<end) }
        var numberEnd = end
        var extensionNumber: String?
        if scan.mayHaveExtension, let extensionStart = PhoneText.extensionStart(chars, 0..<end),
           PhoneText.isViable(chars, 0..<extensionStart) {
            numberEnd = extensionStart
            extensionNumber = PhoneText.extensionDigits(chars, from: extensionStart, to: end)
        }

        // 3. Digits: leading plus signs apart; letters on the keypad when there are three or more.
        var digitsStart = 0
        while digitsStart < numberEnd, chars[digitsStart].isPlus { digitsStart += 1 }
        let hasPlus = digitsStart != 0
        let digits = try normalizedDigits(chars, digitsStart..<numberEnd, mayHaveLetters: scan.mayHaveExtension)

        // 4. Country calling code: after "+", after the region's international prefix, or written
        //    without either before a national number.
        var extracted: (code: Int, national: PhoneDigits)?
        do {
            extracted = try extractCountryCode(digits, international: hasPlus, home: home)
        } catch .unknownCountryCode(let code) where hasPlus && PhoneRegions.byCallingCode[min(code, 999)] == PhoneRegions.unassigned {
            // libphonenumber reads "+" followed by an international prefix ("+00 44 …") this way.
            guard let retried = try extractCountryCode(digits, international: false, home: home) else {
                throw .unknownCountryCode(code)
            }
            extracted = retried
        }
        var countryCode = home.countryCode
        var national = digits
        var region = home
        if let extracted {
            countryCode = extracted.code
            national = extracted.national
            let main = PhoneRegions.main(for: countryCode)
            if main.code != home.code { region = main }
        }

        // 5. National (trunk) prefix, kept when what remains could not be a number of the region.
        guard national.count >= minimumNationalLength else { throw .tooShort }
        let withoutPrefix = region.strippingNationalPrefix(national)
        switch region.checkLength(withoutPrefix.count) {
        case .tooShort, .possibleLocalOnly, .invalidLength: break
        case .possible, .tooLong: national = withoutPrefix
        }
        guard national.count >= minimumNationalLength else { throw .tooShort }
        guard national.count <= maximumNationalLength else { throw .tooLong }

        // 6. Possible for its country: the lengths of the region that decides for the calling code.
        switch PhoneRegions.main(for: countryCode).checkLength(national.count) {
        case .possible, .possibleLocalOnly: break
        case .tooShort: throw .tooShort
        case .tooLong: throw .tooLong
        case .invalidLength: throw .invalidLength
        }
        let codeDigits = PhoneRegions.main(for: countryCode).countryCodeDigitCount
        guard codeDigits + national.count <= maximumE164Digits else { throw .moreThan15Digits }

        var value = UInt64(countryCode)
        for offset in 0..<national.count { value = value * 10 + UInt64(national[offset]) }
        let e164 = "+" + String(value)
        return PhoneNumber(e164: e164, countryCode: countryCode, extensionNumber: extensionNumber)
    }

    /// libphonenumber's maybeExtractCountryCode: the calling code and the rest, or nil for a national number.
    private static func extractCountryCode(_ digits: PhoneDigits, international: Bool,
                                           home: PhoneRegion) throws(PhoneNumberError) -> (code: Int, national: PhoneDigits)? {
        var full = digits
        var international = international
        // The region's international prefix, unless a 0 follows it (no calling code starts with 0).
        if !international, let match = home.internationalPrefix.matchPrefix(full),
           match.length == full.count || full[match.length] != 0 {
            full = full.dropping(match.length)
            international = true
        }
        if international {
            guard full.count > minimumNationalLength else { throw .tooShort }
            guard full[0] != 0 else { throw .unknownCountryCode(0) }
            for length in 1...min(3, full.count) {
                let code = full.prefixValue(length)
                switch PhoneRegions.byCallingCode[code] {
                case PhoneRegions.unassigned: continue
                case PhoneRegions.unsupported: throw .unknownCountryCode(code)
                default: return (code, full.dropping(length))
                }
            }
            throw .unknownCountryCode(full.prefixValue(3))
        }
        // Written without "+": the region's own calling code in front, taken as such when the number
        // is valid only without it, or too long with it.
        guard full.hasPrefix(home.countryCode, digitCount: home.countryCodeDigitCount) else { return nil }
        let rest = home.strippingNationalPrefix(full.dropping(home.countryCodeDigitCount))
        if (!home.isValidNational(full) && home.isValidNational(rest)) || home.checkLength(full.count) == .tooLong {
            return (home.countryCode, rest)
        }
        return nil
    }

    /// The digit values of `range`: decimal digits, or (with three or more ASCII letters) keypad
    /// digits for letters and ASCII digits only, as libphonenumber normalises.
    private static func normalizedDigits(_ chars: PhoneChars, _ range: Range<Int>,
                                         mayHaveLetters: Bool) throws(PhoneNumberError) -> PhoneDigits {
        var letters = 0
        if mayHaveLetters {
            for position in range where chars[position].isASCIILetter { letters += 1 }
        }
        var digits = PhoneDigits()
        for position in range {
            let char = chars[position]
            var digit: UInt8?
            if letters < 3 {
                digit = char.digit
            } else if char.isASCIILetter {
                digit = char.keypadDigit
            } else if char.value &- 0x30 < 10 {
                digit = UInt8(char.value - 0x30)
            }
            if let digit, !digits.append(digit) { throw .moreThan15Digits }
        }
        return digits
    }

    /// Where "/ x" or "\\ x" (spaces allowed before the x) starts a second number, if it does.
    private static func secondNumberStart(_ chars: PhoneChars, _ range: Range<Int>) -> Int? {
        for position in range where chars[position].value == 0x2F || chars[position].value == 0x5C {
            var next = position + 1
            while next < range.upperBound, chars[next].value == 0x20 { next += 1 }
            if next < range.upperBound, chars[next].value == 0x78 { return position }
        }
        return nil
    }

    /// Why text that is not a viable number was refused.
    private static func notViable(_ chars: PhoneChars, _ range: Range<Int>) -> PhoneNumberError {
        var digits = 0
        var foreign = false
        for position in range {
            let char = chars[position]
            if char.isDigit {
                digits += 1
            } else if !(char.isPlus || char.isPunctuation || char.value == 0x2A) {
                foreign = true
            }
        }
        if digits == 0 { return .noDigits }
        return foreign ? .invalidCharacter : .tooShort
    }
}
