/// Punycode (RFC 3492): the encoding IDNA uses to write a Unicode domain label in ASCII ("bücher" →
/// "bcher-kva"; the label is then written "xn--bcher-kva"). Only the encoder: the e-mail index needs
/// the ASCII form of a domain, never the way back.
enum Punycode {
    // The bootstring parameters of RFC 3492 §5.
    private static let base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700, initialBias = 72, initialN = 128

    /// The Punycode encoding of `scalars` (without the "xn--" prefix), or nil when a delta overflows
    /// (RFC 3492 §6.4; only labels far longer than DNS allows get there).
    static func encode(_ scalars: [Unicode.Scalar]) -> String? {
        let codePoints = scalars.map { Int($0.value) }
        var output = codePoints.filter { $0 < 0x80 }.map { UInt8($0) }
        let basicCount = output.count
        if basicCount > 0 { output.append(UInt8(ascii: "-")) }
        var n = initialN, delta = 0, bias = initialBias, handled = basicCount
        while handled < codePoints.count {
            // The smallest code point not yet handled (§6.3).
            let next = codePoints.filter { $0 >= n }.min()!
            let (product, overflow) = (next - n).multipliedReportingOverflow(by: handled + 1)
            guard !overflow, delta <= Int(Int32.max) - product else { return nil }
            delta += product
            n = next
            for codePoint in codePoints {
                if codePoint < n {
                    delta += 1
                    guard delta <= Int(Int32.max) else { return nil }
                }
                guard codePoint == n else { continue }
                // The delta as a variable-length integer, digits against thresholds (§6.3).
                var q = delta
                var k = base
                while true {
                    let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                    if q < t { break }
                    output.append(digit(t + (q - t) % (base - t)))
                    q = (q - t) / (base - t)
                    k += base
                }
                output.append(digit(q))
                bias = adapt(delta, points: handled + 1, first: handled == basicCount)
                delta = 0
                handled += 1
            }
            delta += 1
            n += 1
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// The ASCII character of a digit value 0–35: a–z, then 0–9 (§5).
    private static func digit(_ value: Int) -> UInt8 {
        value < 26 ? UInt8(ascii: "a") + UInt8(value) : UInt8(ascii: "0") + UInt8(value - 26)
    }

    /// The bias adaptation function of §6.1.
    private static func adapt(_ delta: Int, points: Int, first: Bool) -> Int {
        var delta = first ? delta / damp : delta / 2
        delta += delta / points
        var k = 0
        while delta > ((base - tMin) * tMax) / 2 {
            delta /= base - tMin
            k += base
        }
        return k + (base - tMin + 1) * delta / (delta + skew)
    }
}
