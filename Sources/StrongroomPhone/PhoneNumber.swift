/// A phone number in E.164 form (ITU-T E.164), with any extension kept apart.
public struct PhoneNumber: Hashable, Sendable, CustomStringConvertible {
    /// The E.164 form: "+", the country calling code and the national significant number, e.g. "+442079460958".
    public let e164: String
    /// The country calling code, e.g. 44.
    public let countryCode: Int
    /// The extension's digits ("123" of "x123"), never part of the E.164 form; nil when none was written.
    public let extensionNumber: String?

    /// The national significant number (no trunk prefix), e.g. "2079460958": the E.164 form after "+"
    /// and the country calling code (made when asked for: caller ID, the hot path, needs only `e164`).
    public var nationalNumber: String {
        let codeDigits = countryCode < 10 ? 1 : countryCode < 100 ? 2 : 3
        return String(e164.utf8.dropFirst(1 + codeDigits)) ?? ""
    }

    /// The E.164 form: personal data, so callers decide where it may go.
    public var description: String { e164 }
}
