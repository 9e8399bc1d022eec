/// One region's numbering facts, as Google libphonenumber's metadata (PhoneNumberMetadata.xml) states
/// them: a row of `PhoneRegionData.all` (`PhoneRegionTable.swift`). Region-specific parsing rules
/// are data here (patterns and a transform), never code.
struct PhoneRegionData: Sendable {
    /// ISO 3166 alpha-2 code, e.g. "GB".
    let region: String
    /// Country calling code (ITU-T E.164), e.g. 44.
    let countryCode: Int
    /// Whether this region decides the possible lengths of its calling code (US for +1, RU for +7).
    let isMainForCountryCode: Bool
    /// The international call prefixes dialled from this region, as a `DigitPattern` ("00", "011", "810"…).
    let internationalPrefix: String
    /// The national (trunk) prefixes and carrier codes a national number may start with, as a
    /// `DigitPattern` ("0", "8", "06", AR's "0…15"); nil when the region has none (IT, ES, DK…).
    let nationalPrefix: String?
    /// What replaces a matched national prefix, with `$1`, `$2` for its groups (AR: "9$1", mobile
    /// "0 11 15 …" becomes "9 11 …"); nil to drop it.
    let nationalPrefixTransform: String?
    /// Lengths a national significant number may have (general description, `possibleLengths national`).
    let possibleLengths: [Int]
    /// Lengths possible only when dialled within an area (`possibleLengths localOnly`): still accepted.
    let localOnlyLengths: [Int]
    /// The pattern (`DigitPattern`) every valid national significant number of the region matches.
    let nationalNumberPattern: String
}

/// How a digit count fares against a region's possible lengths (libphonenumber's length test).
enum PhoneLengthCheck {
    case possible, possibleLocalOnly, tooShort, tooLong, invalidLength
}

/// A region's facts ready for parsing: patterns compiled, lengths as bit sets. Immutable, so shared
/// by reference (one retain instead of one per pattern).
final class PhoneRegion: Sendable {
    let code: String
    let countryCode: Int
    let countryCodeDigitCount: Int
    let internationalPrefix: DigitPattern
    let nationalPrefix: DigitPattern?
    /// The transform as steps: a digit value (0...9), or -g for the digits of group g.
    let transform: [Int8]?
    let nationalNumber: DigitPattern
    private let possible: UInt32
    private let localOnly: UInt32
    private let shortest: Int
    private let longest: Int

    init(_ data: PhoneRegionData) {
        code = data.region
        countryCode = data.countryCode
        countryCodeDigitCount = String(data.countryCode).count
        internationalPrefix = DigitPattern(data.internationalPrefix)
        nationalPrefix = data.nationalPrefix.map(DigitPattern.init)
        transform = data.nationalPrefixTransform.map { rule in
            var steps: [Int8] = []
            var referencesGroup = false
            for byte in rule.utf8 {
                if byte == UInt8(ascii: "$") {
                    referencesGroup = true
                } else {
                    let digit = Int8(byte) - Int8(UInt8(ascii: "0"))
                    steps.append(referencesGroup ? -digit : digit)
                    referencesGroup = false
                }
            }
            return steps
        }
        nationalNumber = DigitPattern(data.nationalNumberPattern)
        possible = data.possibleLengths.reduce(0) { $0 | 1 << UInt32($1) }
        localOnly = data.localOnlyLengths.reduce(0) { $0 | 1 << UInt32($1) }
        shortest = data.possibleLengths.min() ?? 0
        longest = data.possibleLengths.max() ?? 0
    }

    /// libphonenumber's length test: a local-only length first, then shortest, longest and the set.
    func checkLength(_ count: Int) -> PhoneLengthCheck {
        if count < 32, localOnly & 1 << UInt32(count) != 0 { return .possibleLocalOnly }
        if count == shortest { return .possible }
        if count < shortest { return .tooShort }
        if count > longest { return .tooLong }
        return possible & 1 << UInt32(count) != 0 ? .possible : .invalidLength
    }

    /// Whether `digits` is a valid national significant number of the region (its general pattern).
    func isValidNational(_ digits: PhoneDigits) -> Bool {
        nationalNumber.matchesWhole(digits)
    }

    /// `digits` without a national (trunk) prefix or carrier code, transformed where the region says
    /// so; `digits` itself when there is none, or when removing it would turn a valid number invalid
    /// (libphonenumber's maybeStripNationalPrefixAndCarrierCode).
    func strippingNationalPrefix(_ digits: PhoneDigits) -> PhoneDigits {
        guard !digits.isEmpty, let nationalPrefix, let match = nationalPrefix.matchPrefix(digits) else { return digits }
        let lastGroup = nationalPrefix.groupCount
        let result: PhoneDigits
        if let transform, lastGroup > 0, match.capture(lastGroup) != nil {
            var transformed = PhoneDigits()
            for step in transform {
                if step >= 0 {
                    _ = transformed.append(UInt8(step))
                } else if let range = match.capture(Int(-step)) {
                    for offset in range { _ = transformed.append(digits[offset]) }
                }
            }
            for offset in match.length..<digits.count { _ = transformed.append(digits[offset]) }
            result = transformed
        } else {
            result = digits.dropping(match.length)
        }
        if isValidNational(digits) && !isValidNational(result) { return digits }
        return result
    }
}

/// The supported regions, compiled once, and the calling-code index.
enum PhoneRegions {
    /// Every supported region, in table order.
    static let all: [PhoneRegion] = PhoneRegionData.all.map(PhoneRegion.init)

    /// Index into `all` by ISO code.
    static let indexByCode: [String: Int] = Dictionary(
        uniqueKeysWithValues: all.enumerated().map { ($0.element.code, $0.offset) })

    /// For each calling code 0...999: the index of the region that decides for it, `unsupported`
    /// for an assigned code no supported region has, `unassigned` otherwise.
    static let byCallingCode: [Int16] = {
        var table = [Int16](repeating: unassigned, count: 1000)
        for code in PhoneRegionData.assignedCallingCodes { table[code] = unsupported }
        for (index, data) in PhoneRegionData.all.enumerated() where data.isMainForCountryCode {
            table[data.countryCode] = Int16(index)
        }
        return table
    }()

    static let unsupported: Int16 = -1
    static let unassigned: Int16 = -2

    /// The region that decides for a supported calling code.
    static func main(for callingCode: Int) -> PhoneRegion {
        all[Int(byCallingCode[callingCode])]
    }

    /// The index of a supported region, its code matched case-insensitively.
    static func index(of code: String) throws(PhoneNumberError) -> Int {
        if let index = indexByCode[code] ?? indexByCode[code.uppercased()] { return index }
        let isPlainCode = (1...3).contains(code.utf8.count)
            && code.utf8.allSatisfy { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0 & 0xDF) }
        throw .unknownRegion(isPlainCode ? code : "invalid")
    }
}
