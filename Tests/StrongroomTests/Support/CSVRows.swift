import Foundation
import Strongroom
import StrongroomTestSupport

/// The records of a CSV fixture as dictionaries keyed by the header, read with the store's own reader.
func csvRows(_ fixture: String) throws -> [[String: String]] {
    var reader = CSVReader(bytes: [UInt8](try Fixture.data(fixture)))
    guard let header = try reader.next() else { return [] }
    var rows: [[String: String]] = []
    while let record = try reader.next() {
        rows.append(Dictionary(uniqueKeysWithValues: zip(header.fields, record.fields)))
    }
    return rows
}
