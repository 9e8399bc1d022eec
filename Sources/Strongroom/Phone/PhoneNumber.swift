/// A phone number in E.164 form (ITU-T E.164), with any extension kept apart.
public struct PhoneNumber: Hashable, Sendable, CustomStringConvertible {
    /// "+442079460958".
    public let e164: String
    /// The country calling code, e.g. 44.
    public let countryCode: Int
    /// The national significant number, e.g. "2079460958".
    public let nationalNumber: String
    /// The extension ("123" of "x123"), never part of the E.164 form.
    public let extensionNumber: String?

    public var description: String { e164 }
}

/// Why a phone number could not be normalised. Carries no digits of the input: it is personal data.
public enum PhoneNumberError: Error, Equatable, Sendable {
    /// Nothing but white space.
    case empty
    /// No digit at all.
    case noDigits
    /// A control character (other than a tab).
    case controlCharacter
    /// A character that has no place in a phone number.
    case invalidCharacter
    /// Too few digits for the region's numbers.
    case tooShort
    /// Too many digits for the region's numbers.
    case tooLong
    /// A digit count the region's numbers never have (between its shortest and longest).
    case invalidLength
    /// More than 15 digits in all: longer than any E.164 number (ITU-T E.164 §6.1).
    case moreThan15Digits
    /// A country calling code no supported region has.
    case unknownCountryCode(Int)
    /// A region code that is not supported (ISO 3166 alpha-2 expected).
    case unknownRegion(String)

    /// A short reason for `strongroom phone normalize` (`invalid: REASON`), e.g. "too-short".
    public var reason: String {
        switch self {
        case .empty: return "empty"
        case .noDigits: return "no-digits"
        case .controlCharacter: return "control-character"
        case .invalidCharacter: return "invalid-character"
        case .tooShort: return "too-short"
        case .tooLong: return "too-long"
        case .invalidLength: return "invalid-length"
        case .moreThan15Digits: return "more-than-15-digits"
        case .unknownCountryCode(let code): return "unknown-country-code \(code)"
        case .unknownRegion(let region): return "unknown-region \(region)"
        }
    }
}
