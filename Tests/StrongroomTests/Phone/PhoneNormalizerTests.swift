@testable import StrongroomPhone
import StrongroomTestSupport
import Testing

/// The normaliser's behaviour, format by format; expected values are libphonenumber 9.0.43's.
@Suite("Phone normaliser")
struct PhoneNormalizerTests {
    private static let london = "+442079460958"

    private func e164(_ raw: String, _ region: String = "GB") throws -> String {
        try PhoneNormalizer(defaultRegion: region).normalize(raw).e164
    }

    private func error(_ raw: String, _ region: String = "GB") -> PhoneNumberError? {
        do {
            _ = try PhoneNormalizer(defaultRegion: region).normalize(raw)
            return nil
        } catch {
            return error
        }
    }

    @Test("separators, brackets, a leading plus, the international and the trunk prefix", arguments: [
        "+44 20 7946 0958", "+442079460958", "+44.20.7946.0958", "+44-20-7946-0958", "+44/20/7946/0958",
        "+44 (20) 7946 0958", "+44 (0)20 7946 0958", "(020) 7946 0958", "020 7946 0958", "020-7946-0958", "020.7946.0958",
        "020/7946/0958", "02079460958", "0044 20 7946 0958", "00 44 20 7946 0958", "44 20 7946 0958", "  +44 20 7946 0958 \t",
        "+44\u{00A0}20\u{00A0}7946\u{00A0}0958", "+44 20 7946 0958.", "Tel: 020 7946 0958", "tel:+44-20-7946-0958", "[020] 7946 0958",
        "+44\u{2010}20\u{2010}7946\u{2010}0958", "＋４４ ２０ ７９４６ ０９５８",
    ])
    func formats(raw: String) throws {
        #expect(try e164(raw) == Self.london)
    }

    @Test("international call prefixes of the regions", arguments: [
        ("US", "011 44 20 7946 0958"), ("CA", "011 44 20 7946 0958"), ("JP", "010 44 20 7946 0958"), ("AU", "0011 44 20 7946 0958"),
        ("RU", "8 10 44 20 7946 0958"), ("RU", "810 44 20 7946 0958"), ("KR", "001 44 20 7946 0958"), ("KR", "00700 44 20 7946 0958"),
        ("BR", "0021 44 20 7946 0958"), ("ID", "008 44 20 7946 0958"), ("NG", "009 44 20 7946 0958"), ("SG", "001 44 20 7946 0958"),
        ("IL", "014 44 20 7946 0958"), ("CN", "00 44 20 7946 0958"), ("MX", "00 44 20 7946 0958"), ("DE", "00 44 20 7946 0958"),
        ("GB", "+00 44 20 7946 0958"),
    ])
    func internationalPrefixes(region: String, raw: String) throws {
        #expect(try e164(raw, region) == Self.london)
    }

    @Test("national numbers and trunk prefixes", arguments: [
        ("DE", "030 1234567", "+49301234567"), ("FR", "01 23 45 67 89", "+33123456789"), ("US", "1 (415) 555-2671", "+14155552671"),
        ("US", "(415) 555-2671", "+14155552671"), ("CA", "+1 506-234-5455", "+15062345455"), ("RU", "8 912 345-67-89", "+79123456789"),
        ("HU", "06 1 234 5678", "+3612345678"), ("IT", "02 1234 5678", "+390212345678"), ("IT", "+39 02 1234 5678", "+390212345678"),
        ("AR", "011 15-2345-6789", "+5491123456789"), ("AR", "+54 9 11 2345-6789", "+5491123456789"), ("JP", "03-1234-5678", "+81312345678"),
        ("MX", "55 1234 5678", "+525512345678"), ("BR", "(11) 96123-4567", "+5511961234567"), ("BR", "0 21 11 96123-4567", "+5511961234567"),
        ("GB", "030 1234567", "+44301234567"), ("DE", "49 30 1234567", "+49301234567"), ("LI", "+423 235 12 34", "+4232351234"),
        ("GB", "+590 590 12 34 56", "+590590123456"), ("GB", "+212 6 12 34 56 78", "+212612345678"),
        ("US", "555 1234", "+15551234"),  // libphonenumber: a seven-digit US number is possible (local only)
    ])
    func nationalNumbers(region: String, raw: String, expected: String) throws {
        #expect(try e164(raw, region) == expected)
    }

    @Test("the extension is kept apart", arguments: [
        "+44 20 7946 0958 x123", "+44 20 7946 0958 ext. 123", "+44 20 7946 0958 ext123", "+44 20 7946 0958;ext=123",
        "+44 20 7946 0958 #123", "+44 20 7946 0958 extension 123", "+44 20 7946 0958 Ext: 123", "+44 20 7946 0958,,123",
        "020 7946 0958 EXT 123", "020 7946 0958 - 123#", "+44 20 7946 0958 доб. 123", "+44 20 7946 0958 anexo 123",
        "+44 20 7946 0958 ｘ１２３",
    ])
    func extensions(raw: String) throws {
        let number = try PhoneNormalizer(defaultRegion: "GB").normalize(raw)
        #expect(number.e164 == Self.london)
        #expect(number.extensionNumber == "123")
        #expect(number.nationalNumber == "2079460958" && number.countryCode == 44)
    }

    @Test("no extension unless one is written")
    func noExtension() throws {
        #expect(try PhoneNormalizer(defaultRegion: "GB").normalize("020 7946 0958").extensionNumber == nil)
        // "… / x123" starts a second number, which is dropped.
        #expect(try PhoneNormalizer(defaultRegion: "GB").normalize("+44 20 7946 0958 / x123").extensionNumber == nil)
    }

    @Test("vanity numbers are read on the ITU-T E.161 keypad", arguments: [
        ("US", "1-800-FLOWERS", "+18003569377"), ("US", "1 800 GOT JUNK", "+18004685865"), ("GB", "0800 REVERSE", "+448007383773"),
        ("US", "1-800-flowers", "+18003569377"),
    ])
    func vanity(region: String, raw: String, expected: String) throws {
        #expect(try e164(raw, region) == expected)
    }

    @Test("any Unicode decimal digit counts", arguments: [
        ("GB", "＋４４ ２０ ７９４６ ０９５８", "+442079460958"),   // full-width
        ("GB", "+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨", "+442079460958"),              // Arabic-Indic
        ("IR", "۰۲۱ ۲۲۳۴ ۵۶۷۸", "+982122345678"),                // extended Arabic-Indic (Persian)
        ("IN", "०२२ २७७८ ४५६७", "+912227784567"),                 // Devanagari
        ("TH", "๐๒ ๑๒๓ ๔๕๖๗", "+6621234567"),                    // Thai
    ])
    func unicodeDigits(region: String, raw: String, expected: String) throws {
        #expect(try e164(raw, region) == expected)
    }

    @Test("invalid input is a typed error", arguments: [
        ("", PhoneNumberError.empty), ("   ", .empty), (" \t ", .empty),
        ("abc", .noDigits), ("☎", .noDigits), ("+", .noDigits), ("tel:", .noDigits),
        ("\u{0007}", .controlCharacter), ("+44\u{0007} 20 7946 0958", .controlCharacter), ("\u{0000}+442079460958", .controlCharacter),
        ("020 7946\u{001B}0958", .controlCharacter), ("+44 20 7946 0958\u{0085}", .controlCharacter),
        ("12a4567890", .invalidCharacter), ("12", .tooShort), ("1", .tooShort), ("+44 20", .tooShort), ("+44 ٢٠", .tooShort),
        ("020 7946 0958 0958", .tooLong), (String(repeating: "1", count: 251), .tooLong),
        ("+41 12 345 67 890", .invalidLength),   // CH numbers have 9 or 12 digits
        ("+49 1234 5678 9012 345", .moreThan15Digits), ("0049 1234 5678 9012 345", .moreThan15Digits),
        (String(repeating: "1", count: 80), .moreThan15Digits),
        ("+999 1234 5678", .unknownCountryCode(999)), ("+882 1234 5678", .unknownCountryCode(882)),
        ("+0 123 4567", .unknownCountryCode(0)), ("+800 1234 5678", .unknownCountryCode(800)),
    ])
    func errors(raw: String, expected: PhoneNumberError) {
        #expect(error(raw) == expected, "\(raw.debugDescription)")
    }

    @Test("more than 15 digits in all is refused even where libphonenumber allows the length", arguments: [
        ("JP", "00 91 81237 60622"), ("ID", "00 44 7400 859897"), ("KR", "00 421 912 159 613"), ("NG", "00 421 912 121 098"),
    ])
    func moreThan15Digits(region: String, raw: String) {
        #expect(error(raw, region) == .moreThan15Digits)
    }

    @Test("an unknown region is a typed error")
    func unknownRegion() throws {
        #expect(throws: PhoneNumberError.unknownRegion("XX")) { try PhoneNormalizer(defaultRegion: "XX") }
        #expect(throws: PhoneNumberError.unknownRegion("invalid")) { try PhoneNormalizer(defaultRegion: "+4420") }
        #expect(throws: PhoneNumberError.unknownRegion("zz")) { try PhoneNormalizer(defaultRegion: "GB").normalize("020 7946 0958", region: "zz") }
        #expect(try PhoneNormalizer(defaultRegion: "gb").defaultRegion == "GB")
    }

    @Test("the region can be overridden per call")
    func regionOverride() throws {
        let normalizer = try PhoneNormalizer(defaultRegion: "GB")
        #expect(try normalizer.normalize("030 1234567").e164 == "+44301234567")
        #expect(try normalizer.normalize("030 1234567", region: "DE").e164 == "+49301234567")
        #expect(try normalizer.normalize("030 1234567", region: "de").e164 == "+49301234567")
        #expect(try normalizer.normalize("(415) 555-2671", region: "US").e164 == "+14155552671")
        // A number with its country code does not depend on the region.
        #expect(try normalizer.normalize("+44 20 7946 0958", region: "JP").e164 == Self.london)
        #expect(normalizer.defaultRegion == "GB")
    }

    @Test("the country calling code and the national number split the E.164 form, for codes of one, two and three digits",
          arguments: [("(415) 555-2671", "US", 1, "4155552671"), ("020 7946 0958", "GB", 44, "2079460958"),
                      ("01 234 5678", "IE", 353, "12345678"), ("06 6982 1234", "IT", 39, "0669821234")])
    func nationalNumber(raw: String, region: String, countryCode: Int, national: String) throws {
        let number = try PhoneNormalizer(defaultRegion: region).normalize(raw)
        #expect(number.countryCode == countryCode && number.nationalNumber == national)
        #expect(number.e164 == "+\(countryCode)\(national)")
    }

    @Test("reasons are short, stable and carry no digits of the input")
    func reasons() throws {
        #expect(PhoneNumberError.empty.reason == "empty")
        #expect(PhoneNumberError.noDigits.reason == "no-digits")
        #expect(PhoneNumberError.tooShort.reason == "too-short")
        #expect(PhoneNumberError.moreThan15Digits.reason == "more-than-15-digits")
        #expect(PhoneNumberError.unknownCountryCode(999).reason == "unknown-country-code 999")
        #expect(PhoneNumberError.unknownRegion("XX").reason == "unknown-region XX")
        let normalizer = try PhoneNormalizer(defaultRegion: "GB")
        for raw in ["020 7946 0958 0958", "20a79460958", "+41 20 7946 09580", "+44\u{7} 20 7946 0958", "+49 2079 4609 5820 7946", "794",
                    "+999 2079 4609 58"] {
            do {
                _ = try normalizer.normalize(raw)
                Issue.record("\(raw.debugDescription) was accepted")
            } catch {
                let text = "\(error) \(error.reason) \(String(reflecting: error))"
                #expect(!["207", "794", "946", "460", "095", "958"].contains { text.contains($0) }, "\(text)")
            }
        }
    }

    @Test("the supported regions: every region of libphonenumber, the corpus's, the EU/EEA's and the largest among them")
    func supportedRegions() {
        let regions = PhoneNormalizer.supportedRegions
        #expect(regions == regions.sorted())
        let required = """
            US CA GB DE FR IT ES NL BE SE NO DK FI IE PT AT CH PL CZ GR HU RO BG HR SK SI LT LV EE LU MT CY IS LI
            IN CN JP KR BR MX AU NZ ZA SG AE RU TR ID NG PH AR EG SA IL PK BD ET CD VN IR TH TZ KE MM CO UG
            """.split(whereSeparator: \.isWhitespace).map(String.init)
        #expect(Set(required).isSubset(of: Set(regions)))
        #expect(regions.count == 245)
        // Every calling code's deciding region is in the table (the table compiles as it loads).
        for region in PhoneRegions.all {
            #expect(PhoneRegions.main(for: region.countryCode).countryCode == region.countryCode)
        }
    }

    @Test("digit patterns: classes, groups, alternatives in order, captures, end anchor")
    func digitPatterns() {
        func digits(_ text: String) -> PhoneDigits {
            var digits = PhoneDigits()
            for byte in text.utf8 { _ = digits.append(byte - 48) }
            return digits
        }
        let general = DigitPattern("(?:[4-7]\\d|9[0-689])\\d{7}|800\\d{2,9}")
        #expect(general.matchesWhole(digits("501234567")) && general.matchesWhole(digits("80012")))
        #expect(!general.matchesWhole(digits("50123456")) && !general.matchesWhole(digits("8001")))
        // First alternative wins, as in libphonenumber's lookingAt: "00" before "0011".
        #expect(DigitPattern("00|0011").matchPrefix(digits("001144"))?.length == 2)
        let carrier = DigitPattern("(?:0|90)(?:(1[245]|2[1-35])(\\d{10,11}))?")
        let match = carrier.matchPrefix(digits("0211196123456 7".filter(\.isNumber)))
        #expect(match?.capture(1) == 1..<3 && match?.capture(2) == 3..<14)
        #expect(DigitPattern("(000[2569]\\d{4,6})$|0").matchPrefix(digits("000212345"))?.capture(1) == 0..<9)
        #expect(DigitPattern("(000[2569]\\d{4,6})$|0").matchPrefix(digits("0312345678"))?.length == 1)
    }

    // MARK: - Property: every style of a valid number gives one E.164

    /// Example national significant numbers (libphonenumber's metadata), with the region's trunk
    /// prefix as people write it before them (none before a Colombian mobile number: "0 3…" is read
    /// as a carrier code by libphonenumber too).
    private static let examples: [(region: String, trunk: String, national: String)] = [
        ("AE", "0", "22345678"), ("AE", "0", "501234567"), ("AF", "0", "234567890"), ("AF", "0", "701234567"),
        ("AR", "0", "1123456789"), ("AR", "0", "91123456789"), ("AT", "0", "1234567890"), ("AT", "0", "664123456"),
        ("AU", "0", "212345678"), ("AU", "0", "412345678"), ("BD", "0", "27111234"), ("BD", "0", "1812345678"),
        ("BE", "0", "12345678"), ("BE", "0", "450001234"), ("BG", "0", "2123456"), ("BG", "0", "43012345"),
        ("BR", "0", "1123456789"), ("BR", "0", "11961234567"), ("CA", "1", "5062345678"), ("CA", "1", "5062345678"),
        ("CD", "0", "1234567"), ("CD", "0", "991234567"), ("CH", "0", "212345678"), ("CH", "0", "781234567"),
        ("CN", "0", "1012345678"), ("CN", "0", "13123456789"), ("CO", "0", "6012345678"), ("CO", "", "3211234567"),
        ("CY", "", "22345678"), ("CY", "", "96123456"), ("CZ", "", "212345678"), ("CZ", "", "601123456"),
        ("DE", "0", "30123456"), ("DE", "0", "15123456789"), ("DK", "", "32123456"), ("DK", "", "34412345"),
        ("DZ", "0", "12345678"), ("DZ", "0", "551234567"), ("EE", "", "3212345"), ("EE", "", "51234567"),
        ("EG", "0", "234567890"), ("EG", "0", "1001234567"), ("ES", "", "810123456"), ("ES", "", "612345678"),
        ("ET", "0", "111112345"), ("ET", "0", "911234567"), ("FI", "0", "131234567"), ("FI", "0", "412345678"),
        ("FR", "0", "123456789"), ("FR", "0", "612345678"), ("GB", "0", "1212345678"), ("GB", "0", "7400123456"),
        ("GH", "0", "302345678"), ("GH", "0", "231234567"), ("GR", "", "2123456789"), ("GR", "", "6912345678"),
        ("HK", "", "21234567"), ("HK", "", "51234567"), ("HR", "0", "12345678"), ("HR", "0", "921234567"),
        ("HU", "06", "12345678"), ("HU", "06", "201234567"), ("ID", "0", "218350123"), ("ID", "0", "812345678"),
        ("IE", "0", "2212345"), ("IE", "0", "850123456"), ("IL", "0", "21234567"), ("IL", "0", "502345678"),
        ("IN", "0", "7410410123"), ("IN", "0", "8123456789"), ("IQ", "0", "12345678"), ("IQ", "0", "7912345678"),
        ("IR", "0", "2123456789"), ("IR", "0", "9123456789"), ("IS", "", "4101234"), ("IS", "", "6111234"),
        ("IT", "", "0212345678"), ("IT", "", "3123456789"), ("JP", "0", "312345678"), ("JP", "0", "9012345678"),
        ("KE", "0", "202012345"), ("KE", "0", "712123456"), ("KR", "0", "22123456"), ("KR", "0", "1020000000"),
        ("KZ", "8", "7123456789"), ("KZ", "8", "7710009998"), ("LI", "0", "2345678"), ("LI", "0", "660234567"),
        ("LT", "0", "31234567"), ("LT", "0", "61234567"), ("LU", "", "27123456"), ("LU", "", "628123456"),
        ("LV", "", "63123456"), ("LV", "", "21234567"), ("MA", "0", "520123456"), ("MA", "0", "650123456"),
        ("MM", "0", "1234567"), ("MM", "0", "92123456"), ("MT", "", "21001234"), ("MT", "", "96961234"),
        ("MX", "", "2001234567"), ("MX", "", "2221234567"), ("MY", "0", "323856789"), ("MY", "0", "123456789"),
        ("NG", "0", "2033123456"), ("NG", "0", "8021234567"), ("NL", "0", "101234567"), ("NL", "0", "612345678"),
        ("NO", "", "21234567"), ("NO", "", "40612345"), ("NP", "0", "14567890"), ("NP", "0", "9841234567"),
        ("NZ", "0", "32345678"), ("NZ", "0", "211234567"), ("PE", "0", "11234567"), ("PE", "0", "912345678"),
        ("PH", "0", "232345678"), ("PH", "0", "9051234567"), ("PK", "0", "2123456789"), ("PK", "0", "3012345678"),
        ("PL", "", "123456789"), ("PL", "", "512345678"), ("PT", "", "212345678"), ("PT", "", "912345678"),
        ("RO", "0", "211234567"), ("RO", "0", "712034567"), ("RU", "8", "3011234567"), ("RU", "8", "9123456789"),
        ("SA", "0", "112345678"), ("SA", "0", "512345678"), ("SD", "0", "153123456"), ("SD", "0", "911231234"),
        ("SE", "0", "8123456"), ("SE", "0", "701234567"), ("SG", "", "61234567"), ("SG", "", "81234567"),
        ("SI", "0", "12345678"), ("SI", "0", "31234567"), ("SK", "0", "221234567"), ("SK", "0", "912123456"),
        ("TH", "0", "21234567"), ("TH", "0", "812345678"), ("TR", "0", "2123456789"), ("TR", "0", "5012345678"),
        ("TW", "0", "221234567"), ("TW", "0", "912345678"), ("TZ", "0", "222345678"), ("TZ", "0", "621234567"),
        ("UA", "0", "311234567"), ("UA", "0", "501234567"), ("UG", "0", "312345678"), ("UG", "0", "712345678"),
        ("US", "1", "2015550123"), ("US", "1", "2015550123"), ("VE", "0", "2121234567"), ("VE", "0", "4121234567"),
        ("VN", "0", "2101234567"), ("VN", "0", "912345678"), ("ZA", "0", "101234567"), ("ZA", "0", "711234567"),
    ]

    /// Regions to dial from, with an international prefix written as people dial it.
    private static let diallers: [(region: String, prefix: String)] = [
        ("GB", "00"), ("US", "011"), ("CA", "011"), ("JP", "010"), ("AU", "0011"), ("RU", "8 10"), ("KR", "001"), ("BR", "0021"),
        ("ID", "008"), ("NG", "009"), ("SG", "001"), ("IL", "014"), ("MX", "00"), ("CN", "00"), ("DE", "00"), ("FI", "00"),
    ]

    @Test("every style of a valid number normalises to the same E.164", arguments: 0..<6)
    func stylesAgree(seed: UInt64) throws {
        var random = SplitMix64(seed: 0x9E37_79B9_7F4A_7C15 &+ seed)
        var checked = 0
        for _ in 0..<200 {
            let example = Self.examples[Int(random.next() % UInt64(Self.examples.count))]
            var national = Array(example.national.utf8)
            for offset in national.count - Int(random.next() % 4)..<national.count { national[offset] = UInt8(48 + random.next() % 10) }
            let nationalText = String(decoding: national, as: UTF8.self)
            let region = PhoneRegions.all[try #require(PhoneRegions.indexByCode[example.region])]
            let main = PhoneRegions.main(for: region.countryCode)
            var digits = PhoneDigits()
            for byte in national { _ = digits.append(byte - 48) }
            // Varying the last digits may leave the numbering plan: keep only valid numbers.
            guard region.isValidNational(digits), main.isValidNational(digits), main.checkLength(digits.count) == .possible,
                  String(region.countryCode).count + digits.count <= 15 else { continue }
            let expected = "+\(region.countryCode)\(nationalText)"
            let dialler = Self.diallers[Int(random.next() % UInt64(Self.diallers.count))]
            var styles: [(region: String, text: String)] = [
                (dialler.region, "+\(region.countryCode)\(nationalText)"),
                (dialler.region, "+\(region.countryCode) \(grouped(nationalText, &random))"),
                (dialler.region, "\(dialler.prefix) \(region.countryCode) \(grouped(nationalText, &random))"),
                (example.region, example.trunk + grouped(nationalText, &random)),
                (example.region, "  " + example.trunk + nationalText + "\t"),
            ]
            if example.trunk == "0" {
                styles.append((dialler.region, "+\(region.countryCode) (0)\(grouped(nationalText, &random))"))
            }
            for style in styles {
                let normalizer = try PhoneNormalizer(defaultRegion: style.region)
                #expect(try normalizer.normalize(style.text).e164 == expected, "\(style.region) \(style.text.debugDescription)")
            }
            checked += 1
        }
        #expect(checked > 100)
    }

    /// The digits in groups of one to four, with one kind of separator, the first group sometimes in brackets.
    private func grouped(_ digits: String, _ random: inout SplitMix64) -> String {
        let separators = [" ", "-", ".", "/", " ", ""]
        let separator = separators[Int(random.next() % UInt64(separators.count))]
        var groups: [Substring] = []
        var rest = Substring(digits)
        while !rest.isEmpty {
            let size = min(rest.count, 1 + Int(random.next() % 4))
            groups.append(rest.prefix(size))
            rest = rest.dropFirst(size)
        }
        if groups.count > 1, random.next() % 4 == 0 { groups[0] = "(" + groups[0] + ")" }
        return groups.joined(separator: separator)
    }
}

