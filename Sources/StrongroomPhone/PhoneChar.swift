/// One character of a written number, read once: its scalar value and what it is to a phone number.
///
/// Character sets follow libphonenumber's parser (PhoneNumberUtil: VALID_PUNCTUATION,
/// VALID_START_CHAR, VALID_ALPHA, the trailing-character rule), so that both read a string alike.
struct PhoneChar {
    private let bits: UInt32

    private static let valueMask: UInt32 = 0x1F_FFFF
    private static let digitShift: UInt32 = 21          // 4 bits: 0...9, or 15 for no digit
    private static let plusFlag: UInt32 = 1 << 25
    private static let punctuationFlag: UInt32 = 1 << 26
    private static let letterFlag: UInt32 = 1 << 27     // ASCII letter
    private static let keptFlag: UInt32 = 1 << 28       // letter, number or "#": kept at the end
    private static let extensionFlag: UInt32 = 1 << 29  // may belong to an extension's label

    @inline(__always)
    init(_ scalar: Unicode.Scalar) {
        let value = scalar.value
        if value < 0x80 { self.init(ascii: value) } else { self.init(wide: scalar) }
    }

    private init(ascii value: UInt32) {
        var bits = value | 15 << Self.digitShift
        if value &- 0x30 < 10 {
            bits = value | (value - 0x30) << Self.digitShift | Self.keptFlag
        } else if (value | 0x20) &- 0x61 < 26 {
            bits |= Self.letterFlag | Self.keptFlag | Self.extensionFlag
            if value | 0x20 == 0x78 { bits |= Self.punctuationFlag }   // "x" (and "X": matched ignoring case)
        } else {
            switch value {
            case 0x2B: bits |= Self.plusFlag
            case 0x23: bits |= Self.keptFlag | Self.extensionFlag                      // "#"
            case 0x3B, 0x2C: bits |= Self.extensionFlag                                // ";" ","
            case 0x7E: bits |= Self.punctuationFlag | Self.extensionFlag               // "~"
            case 0x20, 0x28, 0x29, 0x2D, 0x2E, 0x2F, 0x5B, 0x5D: bits |= Self.punctuationFlag
            default: break
            }
        }
        self.bits = bits
    }

    @inline(never)
    private init(wide scalar: Unicode.Scalar) {
        let value = scalar.value
        var bits = value | 15 << Self.digitShift
        if Self.isWidePunctuation(value) {
            bits |= Self.punctuationFlag | Self.extensionFlag
        } else if value == 0xFF0B {
            bits |= Self.plusFlag | Self.extensionFlag
        } else if let digit = Self.decimalValue(scalar) {
            bits = value | UInt32(digit) << Self.digitShift | Self.keptFlag
        } else {
            bits |= Self.extensionFlag
            let properties = scalar.properties
            if properties.numericType != nil {
                bits |= Self.keptFlag
            } else {
                switch properties.generalCategory {
                case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: bits |= Self.keptFlag
                default: break
                }
            }
        }
        self.bits = bits
    }

    /// The Unicode scalar value.
    var value: UInt32 { bits & Self.valueMask }
    /// The value of a decimal digit (any scalar of Unicode numeric type decimal), else nil.
    var digit: UInt8? {
        let digit = UInt8(truncatingIfNeeded: bits >> Self.digitShift & 15)
        return digit < 10 ? digit : nil
    }
    var isDigit: Bool { bits >> Self.digitShift & 15 < 10 }
    /// "+" or the full-width plus.
    var isPlus: Bool { bits & Self.plusFlag != 0 }
    /// A separator people write between digits (dashes, spaces, dots, slashes, brackets, tildes, "x").
    var isPunctuation: Bool { bits & Self.punctuationFlag != 0 }
    var isASCIILetter: Bool { bits & Self.letterFlag != 0 }
    /// A letter, a number or "#": what the end of a possible number may be.
    var isKeptAtEnd: Bool { bits & Self.keptFlag != 0 }
    /// May belong to an extension's notation but never to a plain number.
    var mayBeExtension: Bool { bits & Self.extensionFlag != 0 }

    /// The digit an ASCII letter stands for on the telephone keypad (ITU-T E.161).
    var keypadDigit: UInt8 {
        let keypad: InlineArray<26, UInt8> = [2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 7, 8, 8, 8, 9, 9, 9, 9]
        return keypad[Int((value | 0x20) &- 0x61)]
    }

    /// Lower case for the letters of extension labels (ASCII, full-width Latin, Cyrillic, "Ó").
    var folded: UInt32 {
        switch value {
        case 0x41...0x5A, 0xFF21...0xFF3A, 0x410...0x42F: value + 0x20
        case 0xD3: 0xF3
        default: value
        }
    }

    /// Non-ASCII separators of libphonenumber's VALID_PUNCTUATION.
    private static func isWidePunctuation(_ value: UInt32) -> Bool {
        switch value {
        case 0xA0, 0xAD, 0x2010...0x2015, 0x200B, 0x2053, 0x2060, 0x2212, 0x223C, 0x3000, 0x30FC,
             0xFF08, 0xFF09, 0xFF0D...0xFF0F, 0xFF3B, 0xFF3D, 0xFF5E:
            return true
        default:
            return false
        }
    }

    /// The value of a non-ASCII decimal digit; the common blocks without a property look-up.
    private static func decimalValue(_ scalar: Unicode.Scalar) -> UInt8? {
        let value = scalar.value
        for zero: UInt32 in [0xFF10, 0x0660, 0x06F0, 0x0966] where value &- zero < 10 { return UInt8(value - zero) }
        let properties = scalar.properties
        guard properties.numericType == .decimal, let number = properties.numericValue else { return nil }
        return UInt8(number)
    }
}

/// The characters of a written number from its first "+" or digit on, held inline (spilling to the
/// heap only past 48), so that each is decoded and classified once.
struct PhoneChars {
    private static let inlineCapacity = 48
    private var inline = InlineArray<48, PhoneChar>(repeating: PhoneChar(" "))
    private var spill: [PhoneChar] = []
    private(set) var count = 0

    mutating func append(_ char: PhoneChar) {
        if count < Self.inlineCapacity { inline[count] = char } else { spill.append(char) }
        count += 1
    }

    subscript(position: Int) -> PhoneChar {
        position < Self.inlineCapacity ? inline[position] : spill[position - Self.inlineCapacity]
    }
}
