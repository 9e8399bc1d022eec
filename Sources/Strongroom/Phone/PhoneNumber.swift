/// A phone number in E.164 form (ITU-T E.164), with any extension kept apart.
public struct PhoneNumber: Hashable, Sendable, CustomStringConvertible {
    /// The E.164 form: "+", the country calling code and the national significant number, e.g. "+442079460958".
    public let e164: String
    /// The country calling code, e.g. 44.
    public let countryCode: Int
    /// The national significant number (no trunk prefix), e.g. "2079460958".
    public let nationalNumber: String
    /// The extension's digits ("123" of "x123"), never part of the E.164 form; nil when none was written.
    public let extensionNumber: String?

    /// The E.164 form: personal data, so callers decide where it may go.
    public var description: String { e164 }
}
