/// Why a phone number could not be normalised. Carries no digits of the input (it is personal data).
public enum PhoneNumberError: Error, Equatable, Sendable {
    /// Nothing but white space.
    case empty
    /// Not a single digit (nor anything a number could start with).
    case noDigits
    /// A control character other than tab, line feed or carriage return: corrupted or hostile input.
    case controlCharacter
    /// A character that has no place in a written phone number (e.g. a letter before the third digit).
    case invalidCharacter
    /// Too few digits for a number of its country.
    case tooShort
    /// Too many digits for a number of its country (or an input of more than 250 characters).
    case tooLong
    /// A digit count between the country's shortest and longest that its numbers never have.
    case invalidLength
    /// More digits in all than the 15 an international number may have (ITU-T E.164 §6).
    case moreThan15Digits
    /// A country calling code that no supported region has (the code written after "+" or an IDD).
    case unknownCountryCode(Int)
    /// A region that is not supported: the code as given when it is one to three ASCII letters, else "invalid".
    case unknownRegion(String)

    /// A short machine-and-human reason used by `strongroom phone normalize` as `invalid: REASON`,
    /// e.g. "empty", "too-short", "unknown-country-code 999".
    public var reason: String {
        switch self {
        case .empty: "empty"
        case .noDigits: "no-digits"
        case .controlCharacter: "control-character"
        case .invalidCharacter: "invalid-character"
        case .tooShort: "too-short"
        case .tooLong: "too-long"
        case .invalidLength: "invalid-length"
        case .moreThan15Digits: "more-than-15-digits"
        case .unknownCountryCode(let code): "unknown-country-code \(code)"
        case .unknownRegion(let region): "unknown-region \(region)"
        }
    }
}
