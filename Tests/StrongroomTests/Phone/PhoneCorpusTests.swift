import Foundation
import Strongroom
import Testing

/// Agreement with Google libphonenumber on `Fixtures/phone-numbers-dev.csv` (its verdicts: the E.164
/// form where it parses the input as a possible number for the default region, else `invalid`).
@Suite("Phone corpus from libphonenumber")
struct PhoneCorpusTests {
    /// Why a disagreement is accepted, or nil when it is not.
    ///
    /// - A control character (here NUL) in the input: libphonenumber drops it; this normaliser
    ///   refuses it, because a control character in a number is a sign of corrupted or hostile input.
    /// - More than 15 digits: libphonenumber allows national numbers of up to 17 digits (some Japanese,
    ///   Nigerian, Indonesian and Korean dialling strings); ITU-T E.164 §6.1 caps an international
    ///   number at 15 digits, so such a string is not an E.164 number.
    static func acceptedReason(raw: String, expected: String, actual: String) -> String? {
        if actual == "invalid", raw.unicodeScalars.contains(where: { $0.properties.generalCategory == .control && $0 != "\t" }) {
            return "control character"
        }
        if actual == "invalid", expected.count - 1 > 15 { return "more than 15 digits" }
        return nil
    }

    @Test("agrees with libphonenumber on the development corpus")
    func corpusAgreement() throws {
        let rows = try csvRows("phone-numbers-dev.csv")
        #expect(rows.count == 2500)
        var agreed = 0
        var byRegion: [String: (agreed: Int, total: Int)] = [:]
        var disagreements: [String] = []
        var accepted: [String: Int] = [:]
        for row in rows {
            let raw = row["raw"]!, region = row["region"]!, expected = row["expected"]!
            let normalizer = try PhoneNormalizer(defaultRegion: region)
            let actual: String
            do { actual = try normalizer.normalize(raw).e164 } catch { actual = "invalid" }
            let counts = byRegion[region, default: (0, 0)]
            if actual == expected {
                agreed += 1
                byRegion[region] = (counts.agreed + 1, counts.total + 1)
            } else {
                byRegion[region] = (counts.agreed, counts.total + 1)
                disagreements.append("\(region) \(raw.debugDescription): expected \(expected), got \(actual)")
                // Never a different number: a disagreement may only be valid against invalid.
                #expect(actual == "invalid" || expected == "invalid", "\(region) \(raw.debugDescription) normalised to another number")
                let reason = Self.acceptedReason(raw: raw, expected: expected, actual: actual)
                #expect(reason != nil, "unexpected disagreement: \(disagreements.last!)")
                accepted[reason ?? "not accepted", default: 0] += 1
            }
        }
        let rate = Double(agreed) / Double(rows.count) * 100
        print("libphonenumber agreement: \(agreed)/\(rows.count) (\(String(format: "%.2f", rate))%)")
        for (region, counts) in byRegion.sorted(by: { $0.key < $1.key }) where counts.agreed < counts.total {
            print("  \(region): \(counts.agreed)/\(counts.total)")
        }
        disagreements.forEach { print("  disagreement: \($0)") }
        print("  accepted disagreements: \(accepted.sorted { $0.key < $1.key }.map { "\($0.value) for \($0.key)" }.joined(separator: ", "))")
        #expect(rate >= 99)
    }
}
