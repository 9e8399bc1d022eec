import Foundation
@testable import Strongroom
import StrongroomPhone
import Testing

/// Agreement with Google libphonenumber on `Fixtures/phone-numbers-dev.csv`, and caller ID over the
/// contacts sample.
@Suite("Phone corpus")
struct PhoneCorpusTests {
    /// The rows where this normaliser may disagree with libphonenumber 9.0.43, keyed by region and
    /// raw text, each with its reason. Every one is libphonenumber accepting what the requirements
    /// refuse; none is a different number.
    static let acceptedDisagreements: [String: String] = {
        // A NUL before the number: libphonenumber skips everything before the "+"; the requirements
        // refuse any control character as a sign of corrupted or hostile input.
        let controlCharacter = "control character (NUL) in the input: refused, libphonenumber skips it"
        // "00" is not the international prefix of JP (010), NG (009), ID (00[89]) or KR (00 + carrier
        // digit), so libphonenumber reads these as national numbers of 16 digits with the region's
        // calling code: longer than the 15 digits ITU-T E.164 §6 allows, so refused here.
        let over15 = "16 digits with the region's code (00 is no international prefix there): over the E.164 maximum of 15"
        return [
            key("JP", "\u{0}+442079460958"): controlCharacter,
            key("AE", "\u{0}+442079460958"): controlCharacter,
            key("MX", "\u{0}+442079460958"): controlCharacter,
            key("AU", "\u{0}+442079460958"): controlCharacter,
            key("AT", "\u{0}+442079460958"): controlCharacter,
            key("JP", "00 91 81237 60622"): over15,     // libphonenumber: +8100918123760622
            key("NG", "00 49 1512 3602839"): over15,    // libphonenumber: +23404915123602839
            key("NG", "00 421 912 121 098"): over15,    // libphonenumber: +2340421912121098
            key("ID", "00 44 7400 859897"): over15,     // libphonenumber: +6200447400859897
            key("ID", "00 358 13 1238250"): over15,     // libphonenumber: +6200358131238250
            key("KR", "00 421 912 159 613"): over15,    // libphonenumber: +8200421912159613
        ]
    }()

    static func key(_ region: String, _ raw: String) -> String { region + "|" + raw }

    @Test("agrees with libphonenumber on the development corpus")
    func corpusAgreement() throws {
        let rows = try PhoneFixtures.rows("phone-numbers-dev.csv")
        #expect(rows.count == 2500)
        var agreed = 0
        var byRegion: [String: (agreed: Int, total: Int)] = [:]
        var disagreements: [String] = []
        var seenAccepted = Set<String>()
        for row in rows {
            let raw = try #require(row["raw"]), region = try #require(row["region"]), expected = try #require(row["expected"])
            let normalizer = try PhoneNormalizer(defaultRegion: region)
            let actual: String
            do { actual = try normalizer.normalize(raw).e164 } catch { actual = "invalid" }
            var counts = byRegion[region, default: (0, 0)]
            counts.total += 1
            if actual == expected {
                agreed += 1
                counts.agreed += 1
            } else {
                let key = Self.key(region, raw)
                disagreements.append("\(region) \(raw.debugDescription): libphonenumber \(expected), here \(actual)"
                    + (Self.acceptedDisagreements[key].map { " (accepted: \($0))" } ?? ""))
                // Never another number: a disagreement may only be a number against "invalid".
                #expect(actual == "invalid" || expected == "invalid",
                        "\(region) \(raw.debugDescription) gave \(actual), libphonenumber \(expected)")
                #expect(Self.acceptedDisagreements[key] != nil, "disagreement not in the allow-list: \(disagreements.last ?? "")")
                seenAccepted.insert(key)
            }
            byRegion[region] = counts
        }
        let rate = Double(agreed) / Double(rows.count) * 100
        print("libphonenumber agreement: \(agreed)/\(rows.count) = \(String(format: "%.2f", rate))%")
        print("by region: " + byRegion.sorted { $0.key < $1.key }
            .map { "\($0.key) \($0.value.agreed)/\($0.value.total)" }.joined(separator: ", "))
        for line in disagreements { print("  disagreement: \(line)") }
        #expect(rate >= 99)
        // The allow-list holds no stale entries.
        #expect(Set(Self.acceptedDisagreements.keys) == seenAccepted)
    }

    @Test("every incoming call of the contacts sample is among its person's normalised numbers")
    func contactsSample() throws {
        let normalizer = try PhoneNormalizer(defaultRegion: "GB")
        var numbersByPerson: [String: Set<String>] = [:]
        var stored = 0
        var unreadable: [String] = []
        for row in try PhoneFixtures.rows("contacts-sample.csv") {
            let person = try #require(row["external_id"])
            for column in ["phone", "mobile", "work_phone"] {
                guard let text = row[column], !text.isEmpty else { continue }
                stored += 1
                do {
                    numbersByPerson[person, default: []].insert(try normalizer.normalize(text).e164)
                } catch {
                    unreadable.append("\(person) \(column): \(error.reason)")
                }
            }
        }
        let calls = try PhoneFixtures.rows("contacts-sample.calls.csv")
        print("contacts sample: \(numbersByPerson.count) people, \(stored) stored numbers, \(unreadable.count) unreadable, \(calls.count) calls")
        #expect(numbersByPerson.count == 992 && calls.count == 1713)
        #expect(unreadable.isEmpty, "\(unreadable)")
        for call in calls {
            let person = try #require(call["external_id"]), incoming = try #require(call["incoming"])
            #expect(call["region"] == "GB")
            #expect(numbersByPerson[person, default: []].contains(incoming), "call from \(incoming) does not reach \(person)")
        }
    }
}
