import Foundation
import StrongroomTestSupport

/// The CSV fixtures of the phone tests (`Fixtures/`), read with a small reader of their own, so that
/// the normaliser's tests do not depend on the importer's CSV reader.
enum PhoneFixtures {
    /// The records of a CSV fixture, each keyed by the header's names.
    static func rows(_ name: String) throws -> [[String: String]] {
        let records = csvRecords(String(decoding: try Fixture.data(name), as: UTF8.self))
        guard let header = records.first else { return [] }
        return records.dropFirst().map { Dictionary(zip(header, $0), uniquingKeysWith: { first, _ in first }) }
    }

    /// A tiny CSV reader (RFC 4180): commas, CRLF or LF, double-quoted fields with "" for a quote.
    /// Anything else in a field (tabs, NUL, other control characters) is kept as it is.
    static func csvRecords(_ text: String) -> [[String]] {
        var records: [[String]] = []
        var record: [String] = []
        var field = ""
        var quoted = false
        var scalars = text.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        while let scalar = pending ?? scalars.next() {
            pending = nil
            if quoted {
                if scalar == "\"" {
                    let next = scalars.next()
                    if next == "\"" { field.unicodeScalars.append("\"") } else { quoted = false; pending = next }
                } else {
                    field.unicodeScalars.append(scalar)
                }
                continue
            }
            switch scalar {
            case "\"" where field.isEmpty: quoted = true
            case ",": record.append(field); field = ""
            case "\r": continue
            case "\n": record.append(field); records.append(record); record = []; field = ""
            default: field.unicodeScalars.append(scalar)
            }
        }
        if !field.isEmpty || !record.isEmpty { record.append(field); records.append(record) }
        return records
    }
}
