import Foundation

/// RFC 3339 timestamps in UTC with microseconds ("2026-11-23T07:30:00.123456Z"), written and read
/// without a `DateFormatter`, which costs microseconds per call on the audit path.
enum Timestamp {
    /// Formats `date` as RFC 3339 UTC with six fractional digits.
    static func format(_ date: Date) -> String {
        var bytes: [UInt8] = []
        append(date, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The UTC day of `date`, "2026-11-23".
    static func day(_ date: Date) -> String {
        String(format(date).prefix(10))
    }

    /// Appends `date` as RFC 3339 UTC with six fractional digits (27 bytes).
    static func append(_ date: Date, to out: inout [UInt8]) {
        let totalMicroseconds = Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
        let (seconds, microseconds) = floorDivide(totalMicroseconds, 1_000_000)
        let (days, secondOfDay) = floorDivide(seconds, 86_400)
        let (year, month, day) = civil(fromDays: days)
        // Written through an output span: one capacity check for the 27 bytes, not one per byte.
        out.append(addingCapacity: 27) { (text: inout OutputSpan<UInt8>) in
            func digits(_ value: Int64, _ width: Int) {
                var divisor: Int64 = 1
                for _ in 1..<width { divisor *= 10 }
                var rest = value
                while divisor > 0 {
                    text.append(UInt8(48 + (rest / divisor) % 10))
                    rest %= divisor
                    divisor /= 10
                }
            }
            digits(year, 4); text.append(UInt8(ascii: "-")); digits(month, 2); text.append(UInt8(ascii: "-")); digits(day, 2)
            text.append(UInt8(ascii: "T"))
            digits(secondOfDay / 3600, 2); text.append(UInt8(ascii: ":")); digits(secondOfDay % 3600 / 60, 2)
            text.append(UInt8(ascii: ":")); digits(secondOfDay % 60, 2)
            text.append(UInt8(ascii: ".")); digits(microseconds, 6); text.append(UInt8(ascii: "Z"))
        }
    }

    /// Parses RFC 3339 ("2026-11-23T07:30:00Z", with optional fraction and numeric offset), or a
    /// date alone ("2026-11-23", midnight UTC). Nil when malformed.
    static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int64? {
            guard range.upperBound <= bytes.count else { return nil }
            var value: Int64 = 0
            for index in range {
                guard (48...57).contains(bytes[index]) else { return nil }
                value = value * 10 + Int64(bytes[index] - 48)
            }
            return value
        }
        guard let year = number(0..<4), bytes.count >= 10, bytes[4] == 45, let month = number(5..<7), bytes[7] == 45,
              let day = number(8..<10), (1...12).contains(month), (1...31).contains(day) else { return nil }
        let days = days(fromCivil: year, month, day)
        if bytes.count == 10 { return Date(timeIntervalSince1970: TimeInterval(days * 86_400)) }
        guard bytes.count >= 20, bytes[10] == 84 || bytes[10] == 116 || bytes[10] == 32,
              let hour = number(11..<13), bytes[13] == 58, let minute = number(14..<16), bytes[16] == 58,
              let second = number(17..<19), hour < 24, minute < 60, second < 61 else { return nil }
        var index = 19
        var fraction = 0.0
        if bytes[index] == 46 {
            var scale = 0.1
            index += 1
            let start = index
            while index < bytes.count, (48...57).contains(bytes[index]) {
                fraction += Double(bytes[index] - 48) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        guard index < bytes.count else { return nil }
        var offset: Int64 = 0
        switch bytes[index] {
        case 90, 122: // Z z
            guard index + 1 == bytes.count else { return nil }
        case 43, 45: // + -
            guard index + 6 == bytes.count, let offsetHours = number(index + 1..<index + 3), bytes[index + 3] == 58,
                  let offsetMinutes = number(index + 4..<index + 6) else { return nil }
            offset = (offsetHours * 3600 + offsetMinutes * 60) * (bytes[index] == 43 ? 1 : -1)
        default:
            return nil
        }
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: TimeInterval(seconds) + fraction)
    }

    private static func floorDivide(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        let (quotient, remainder) = value.quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }

    // Howard Hinnant's civil calendar algorithms (days since 1970-01-01 in the proleptic Gregorian calendar).
    private static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let adjustedYear = month <= 2 ? year - 1 : year
        let era = (adjustedYear >= 0 ? adjustedYear : adjustedYear - 399) / 400
        let yearOfEra = adjustedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
