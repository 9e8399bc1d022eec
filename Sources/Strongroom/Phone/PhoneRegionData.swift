/// What libphonenumber's metadata says about one region's numbers: the facts the normaliser needs,
/// as data (`PhoneRegionTable.swift`, generated from the metadata).
struct PhoneRegionData: Sendable {
    /// ISO 3166 alpha-2 code.
    let region: String
    /// Country calling code (ITU-T E.164 Annex).
    let countryCode: Int
    /// Whether this region's metadata decides for its calling code (US for +1, GB for +44, RU for +7).
    let isMainForCountryCode: Bool
    /// Pattern of the international call prefixes dialled from this region ("00", "011", "0011", …).
    let internationalPrefix: String?
    /// Pattern of national (trunk) prefixes and carrier codes to strip from a national number.
    let nationalPrefixForParsing: String?
    /// How to rewrite what `nationalPrefixForParsing` captured ($1…), e.g. AR's mobile "15" → "9".
    let nationalPrefixTransformRule: String?
    /// Lengths a national significant number can have.
    let possibleLengths: [Int]
    /// Lengths only diallable within an area (still possible numbers).
    let localOnlyLengths: [Int]
    /// Pattern every valid national significant number matches.
    let nationalNumberPattern: String
}

/// A region's data with its patterns compiled.
///
/// The use of `@unchecked Sendable` is safe because:
/// - every property is a `let` set in `init`;
/// - `Regex` is an immutable value whose matching reads, never writes, its compiled program
///   (it lacks a `Sendable` conformance only because its `AnyRegexOutput` type parameter does).
final class CompiledPhoneRegion: @unchecked Sendable {
    let data: PhoneRegionData
    let internationalPrefix: Regex<AnyRegexOutput>?
    let nationalPrefixForParsing: Regex<AnyRegexOutput>?
    let nationalNumber: Regex<AnyRegexOutput>

    init(_ data: PhoneRegionData) {
        self.data = data
        // The table is generated from well-formed metadata and checked by the tests: a pattern that
        // does not compile is a build defect, not an input error.
        internationalPrefix = data.internationalPrefix.map { try! Regex($0) }
        nationalPrefixForParsing = data.nationalPrefixForParsing.map { try! Regex($0) }
        nationalNumber = try! Regex(data.nationalNumberPattern)
    }

    /// Whether `number` is entirely a valid national number of the region.
    func matchesNationalNumber(_ number: Substring) -> Bool {
        (try? nationalNumber.wholeMatch(in: number)) != nil
    }

    /// libphonenumber's length test of a national significant number.
    func lengthCheck(_ count: Int) -> PhoneLengthCheck {
        let lengths = data.possibleLengths
        guard let minimum = lengths.first, let maximum = lengths.last else { return .invalidLength }
        if data.localOnlyLengths.contains(count) { return .possibleLocalOnly }
        if count == minimum { return .possible }
        if count < minimum { return .tooShort }
        if count > maximum { return .tooLong }
        return lengths.contains(count) ? .possible : .invalidLength
    }
}

/// A compiled pattern that may be shared between threads.
///
/// The use of `@unchecked Sendable` is safe because `Regex` is an immutable value whose matching reads,
/// never writes, its compiled program; it lacks `Sendable` only because `AnyRegexOutput` does.
struct SharedRegex: @unchecked Sendable {
    let regex: Regex<AnyRegexOutput>
    init(_ make: () -> Regex<AnyRegexOutput>) { regex = make() }
}

/// The outcome of a length test.
enum PhoneLengthCheck {
    case possible, possibleLocalOnly, tooShort, tooLong, invalidLength
}

/// The supported regions, compiled once.
enum PhoneRegions {
    /// By ISO code.
    static let byRegion: [String: CompiledPhoneRegion] = Dictionary(
        uniqueKeysWithValues: PhoneRegionData.all.map { ($0.region, CompiledPhoneRegion($0)) })

    /// The region whose metadata decides for each calling code.
    static let byCountryCode: [Int: CompiledPhoneRegion] = Dictionary(
        byRegion.values.filter(\.data.isMainForCountryCode).map { ($0.data.countryCode, $0) },
        uniquingKeysWith: { first, _ in first })
}
