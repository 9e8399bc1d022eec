/// A run of decimal digit values (0...9) held inline, so that parsing allocates nothing.
///
/// Holds at most `capacity` digits; a window (`lower`..<`upper`) over the storage makes dropping a
/// prefix free.
struct PhoneDigits {
    /// More digits than any number can have after its international and national prefixes.
    static let capacity = 64

    private var storage = InlineArray<64, UInt8>(repeating: 0)
    private var lower = 0
    private var upper = 0

    init() {}

    /// The number of digits.
    var count: Int { upper - lower }
    var isEmpty: Bool { upper == lower }

    /// The digit value at `offset` from the first digit.
    subscript(offset: Int) -> UInt8 { storage[lower + offset] }

    /// Appends a digit value; false when full.
    mutating func append(_ digit: UInt8) -> Bool {
        guard upper < Self.capacity else { return false }
        storage[upper] = digit
        upper += 1
        return true
    }

    /// These digits without the first `n`.
    func dropping(_ n: Int) -> PhoneDigits {
        var copy = self
        copy.lower += min(n, count)
        return copy
    }

    /// The digits in `offsets` (relative to the first digit).
    func slice(_ offsets: Range<Int>) -> PhoneDigits {
        var copy = self
        copy.upper = lower + offsets.upperBound
        copy.lower = lower + offsets.lowerBound
        return copy
    }

    /// Whether these digits start with the decimal digits of `value` (a positive number).
    func hasPrefix(_ value: Int, digitCount: Int) -> Bool {
        guard count >= digitCount else { return false }
        var rest = value
        for offset in stride(from: digitCount - 1, through: 0, by: -1) {
            guard Int(self[offset]) == rest % 10 else { return false }
            rest /= 10
        }
        return true
    }

    /// The number the first `n` digits spell.
    func prefixValue(_ n: Int) -> Int {
        var value = 0
        for offset in 0..<min(n, count) { value = value * 10 + Int(self[offset]) }
        return value
    }
}
