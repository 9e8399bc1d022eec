import Foundation

/// An e-mail address in the one form the e-mail blind index keys: trimmed, lower-cased, its domain in
/// ASCII (IDNA).
///
/// The domain is mapped as UTS #46 maps it, closely enough for addresses people type (Unicode NFKC,
/// so full-width letters are letters; lower-cased; the ideographic full stops read as dots), then each non-ASCII label is written "xn--" + Punycode (RFC 3492), so
/// "Ivo@BÜCHER.example" and "ivo@xn--bcher-kva.example" are the same address. The local part is
/// lower-cased too: RFC 5321 lets a server tell "Ivo" from "ivo", but no mail system in use does, and
/// a requester who writes their address differently must still be found.
///
/// An address that cannot be delivered to is refused (`EmailAddressError`), never indexed: an
/// `@`-less or empty part, a label that is empty, too long or holds other than letters, digits and
/// inner hyphens, a domain of one label, or lengths beyond RFC 5321 §4.5.3.1 (64 for the local part,
/// 255 for the domain, 254 for the address).
struct EmailAddress: Sendable, Hashable {
    /// The normalised address, "local@ascii-domain".
    let normalized: String

    /// Normalises `text`.
    init(_ text: String) throws(EmailAddressError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let at = trimmed.lastIndex(of: "@") else { throw .missingAt }
        let local = trimmed[..<at].lowercased()
        guard !local.isEmpty, !local.contains("@") else { throw .invalidLocalPart }
        guard local.utf8.count <= 64 else { throw .tooLong }
        guard local.unicodeScalars.allSatisfy({ !$0.properties.isWhitespace && $0.properties.generalCategory != .control }) else {
            throw .invalidLocalPart
        }
        let domain = try EmailAddress.asciiDomain(String(trimmed[trimmed.index(after: at)...]))
        normalized = local + "@" + domain
        guard normalized.utf8.count <= 254 else { throw .tooLong }
    }

    /// The domain in lower-case ASCII, each Unicode label as "xn--" + Punycode (IDNA, UTS #46 mapping).
    private static func asciiDomain(_ domain: String) throws(EmailAddressError) -> String {
        // ASCII is its own NFKC form. (A regular expression here, compiled at each call, was a quarter
        // of an index rotation's CPU.)
        let folded = domain.utf8.allSatisfy { $0 < 0x80 } ? domain : domain.precomposedStringWithCompatibilityMapping
        var mapped = String.UnicodeScalarView()
        for scalar in folded.lowercased().unicodeScalars {
            mapped.append(EmailAddress.ideographicFullStops.contains(scalar) ? "." : scalar)
        }
        let labels = String(mapped).split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2 else { throw .invalidDomain }
        var ascii: [String] = []
        for label in labels {
            let scalars = Array(label.unicodeScalars)
            guard !scalars.isEmpty, scalars.first != "-", scalars.last != "-",
                  scalars.allSatisfy(isLabelScalar) else { throw .invalidDomain }
            if scalars.allSatisfy(\.isASCII) {
                ascii.append(String(label))
            } else {
                guard let encoded = Punycode.encode(scalars) else { throw .invalidDomain }
                ascii.append("xn--" + encoded)
            }
            guard ascii[ascii.count - 1].utf8.count <= 63 else { throw .invalidDomain }
        }
        let joined = ascii.joined(separator: ".")
        guard joined.utf8.count <= 255 else { throw .tooLong }
        return joined
    }

    /// The full stops UTS #46 maps to "." in a domain: ideographic, full-width and half-width ideographic.
    private static let ideographicFullStops: Set<Unicode.Scalar> = ["\u{3002}", "\u{FF0E}", "\u{FF61}"]

    /// A character a domain label may hold: an ASCII letter, digit or hyphen, or a non-ASCII letter,
    /// mark or digit (IDNA2008's PVALID classes, roughly: no symbols, punctuation or spaces).
    private static func isLabelScalar(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII {
            return ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "-"
        }
        switch scalar.properties.generalCategory {
        case .lowercaseLetter, .uppercaseLetter, .titlecaseLetter, .otherLetter, .modifierLetter,
             .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber:
            return true
        default:
            return false
        }
    }
}

/// Why a text is not an e-mail address the index can key (never the text itself).
enum EmailAddressError: Error, Equatable, Sendable {
    /// No "@".
    case missingAt
    /// The part before the "@" is empty or holds a space, control character or second "@".
    case invalidLocalPart
    /// The domain is not a name of two or more valid labels.
    case invalidDomain
    /// Longer than RFC 5321 allows.
    case tooLong

    /// A short reason for an error line.
    var reason: String {
        switch self {
        case .missingAt: return "no @"
        case .invalidLocalPart: return "invalid part before the @"
        case .invalidDomain: return "invalid domain"
        case .tooLong: return "too long"
        }
    }
}
