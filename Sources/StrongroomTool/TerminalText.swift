import Strongroom

/// Makes stored and imported text safe to print: a name holding `ESC[2J`, a CR, a C1 control or a
/// bidirectional override (Trojan Source, CVE-2021-42574) must be shown, never acted on by the terminal.
///
/// Text lines show each such character (`Unicode.Scalar.isTerminalControl`: C0 incl. TAB, CR and LF,
/// DEL, C1, U+2028/U+2029, U+202A–U+202E, U+2066–U+2069) as a visible escape in Swift's notation,
/// `\u{1B}`, so a value always stays on its one line. A backslash is not escaped: a stored text
/// `\u{1B}` and a stored ESC look alike, and `--json` gives the exact value.
enum TerminalText {
    /// `text` with every terminal control character shown as `\u{HEX}`.
    static func escaping(_ text: String) -> String {
        replacing(in: text, where: \.isTerminalControl) { "\\u{\(String($0.value, radix: 16, uppercase: true))}" }
    }

    /// JSON text with the terminal control characters JSON leaves raw (DEL, C1, U+2028/U+2029, bidi
    /// controls) written as `\uXXXX` escapes: the same JSON value (RFC 8259 §7), and nothing a terminal
    /// acts on when it is printed. C0 controls are escaped by every JSON encoder inside strings, and
    /// outside strings are only the whitespace between tokens, which is kept.
    static func escapingJSON(_ json: String) -> String {
        replacing(in: json, where: { $0.isTerminalControl && !["\n", "\r", "\t"].contains($0) }, with: \.jsonEscape)
    }

    /// `text` with each scalar that `isReplaced` picks written as `replacement` of it.
    private static func replacing(in text: String, where isReplaced: (Unicode.Scalar) -> Bool,
                                  with replacement: (Unicode.Scalar) -> String) -> String {
        guard text.unicodeScalars.contains(where: isReplaced) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if isReplaced(scalar) { result.append(contentsOf: replacement(scalar).unicodeScalars) } else { result.append(scalar) }
        }
        return String(result)
    }
}
