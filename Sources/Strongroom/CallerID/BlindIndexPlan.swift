/// Chooses the length of blind-index tags from the number of values the index is planned to hold.
///
/// CipherSweet's rule (Paragon IE, "Blind Index Planning"): for R indexed values, pick a tag length
/// b with 2 ≤ R / 2^b < √R. The lower bound makes every tag shared by at least two values on average,
/// so a tag never singles out one number; the upper bound keeps the candidates per lookup few. This
/// plan takes the longest such b (fewest candidates): b = ⌊log2(R / 2)⌋, and at least ⌊log2(√R)⌋ + 1.
/// For R = 10^6: b = 18 (3.8 values per tag on average); 10^4: b = 12; 10^7: b = 22.
public enum BlindIndexPlan {
    /// The tag length, in bits, for `population` indexed values (at least 8, at most 32).
    public static func bits(forPopulation population: Int) -> Int {
        let values = Double(max(population, 16))
        let longest = Int((values / 2).log2Floor)
        return min(32, max(8, longest))
    }

    /// The expected number of indexed values sharing one tag: R / 2^b.
    public static func expectedCoincidences(population: Int, bits: Int) -> Double {
        Double(population) / Double(UInt64(1) << UInt64(bits))
    }
}

private extension Double {
    var log2Floor: Double {
        var exponent = 0.0
        var value = self
        while value >= 2 {
            value /= 2
            exponent += 1
        }
        return exponent
    }
}
