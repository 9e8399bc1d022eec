extension Unicode.Scalar {
    /// Whether a terminal or text viewer acts on this character instead of showing it, so that stored
    /// text holding it could clear a screen, move the cursor, start a new line or reorder what is shown.
    ///
    /// - C0 controls U+0000–U+001F (ESC starts ANSI/ECMA-48 sequences; CR and LF start a new line; TAB
    ///   is included too: no stored value needs one to be shown), and DEL U+007F.
    /// - C1 controls U+0080–U+009F (ECMA-48 §5.2: U+009B is CSI, a one-character `ESC [`).
    /// - The line and paragraph separators U+2028 and U+2029.
    /// - The bidirectional embeddings, overrides and isolates U+202A–U+202E and U+2066–U+2069, which make
    ///   text display in another order than it is stored (Trojan Source, CVE-2021-42574). The implicit
    ///   marks (U+200E, U+200F, U+061C) reorder nothing beyond neutral neighbours and are left as they are.
    package var isTerminalControl: Bool {
        switch value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028...0x2029, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    /// The JSON escape of this character, `\u` and four lowercase hex digits (RFC 8259 §7); for
    /// characters of the Basic Multilingual Plane, which every terminal control is.
    package var jsonEscape: String {
        let hex = String(value, radix: 16)
        return "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}
