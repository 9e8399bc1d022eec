@testable import Strongroom
import StrongroomTestSupport
import Testing

/// The byte search the audit log's readers use on every line (`AuditLineFormat.firstRange(of:in:)`):
/// `audit verify` looking for acknowledgements, `audit show --subject` and the export's access logs
/// skipping the lines about other subjects.
@Suite("Audit lines: the marker search")
struct AuditLineSearchTests {
    /// Where `marker` first occurs in `line`, by trying every start in turn.
    private static func reference(_ marker: [UInt8], _ line: ArraySlice<UInt8>) -> Range<Int>? {
        var start = line.startIndex
        while start + marker.count <= line.endIndex {
            if line[start..<start + marker.count].elementsEqual(marker) { return start..<start + marker.count }
            start += 1
        }
        return nil
    }

    @Test("finds the first occurrence where a try-every-start search does, in slices that start anywhere in their array (5,000 seeded rounds)")
    func agreesWithReference() {
        var random = SplitMix64(seed: 0x5EA2C4)
        for round in 0..<5_000 {
            // Three letters: partial matches, overlapping and repeated markers are common.
            let whole = (0..<Int.random(in: 0...40, using: &random)).map { _ in UInt8.random(in: 97...99, using: &random) }
            let start = Int.random(in: 0...whole.count, using: &random)
            let line = whole[start..<Int.random(in: start...whole.count, using: &random)]
            let marker = (0..<Int.random(in: 1...5, using: &random)).map { _ in UInt8.random(in: 97...99, using: &random) }
            #expect(AuditLineFormat.firstRange(of: marker, in: line) == Self.reference(marker, line),
                    "round \(round): \(marker) in \(Array(line)) from index \(line.startIndex)")
        }
    }

    @Test("the readers' markers: at a line's start and at its end, absent, or longer than the line")
    func readersMarkers() {
        let marker = Array(",\"subject\":\"".utf8)
        let line = Array("{\"seq\":7,\"subject\":\"42\"}".utf8)
        let found = AuditLineFormat.firstRange(of: marker, in: line[...])
        #expect(found.map { Array(line[$0]) } == marker)
        #expect(found?.lowerBound == 8)
        // A slice that begins past the start keeps its array's indices.
        #expect(AuditLineFormat.firstRange(of: marker, in: line[8...]) == found)
        #expect(AuditLineFormat.firstRange(of: marker, in: line[9...]) == nil)
        #expect(AuditLineFormat.firstRange(of: marker, in: line[..<19]) == nil, "cut one byte short")
        #expect(AuditLineFormat.firstRange(of: marker, in: line[..<20]) == 8..<20, "ending the slice")
        #expect(AuditLineFormat.firstRange(of: marker, in: marker[...]) == 0..<marker.count)
        #expect(AuditLineFormat.firstRange(of: marker, in: marker.dropLast()) == nil)
        #expect(AuditLineFormat.firstRange(of: marker, in: []) == nil)
    }
}
