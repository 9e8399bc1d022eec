@testable import Strongroom
import Testing

/// The SQLite hint's table (`CallerIDHintTable`): every row of an index version grouped by tag, found
/// by the tag's low bits in an open-addressing table.
@Suite("Caller ID: the hint's table of rows by tag")
struct CallerIDHintTableTests {
    /// An entry whose subject and check both name `subject`, so a test can tell entries apart.
    private static func entry(_ subject: Int64) -> CallerIDHint.Entry {
        CallerIDHint.Entry(subject: SubjectID(rawValue: subject), check: InlineArray(repeating: UInt8(truncatingIfNeeded: subject)))
    }

    /// The subjects of the rows `table` holds under `tag`.
    private static func subjects(_ table: CallerIDHintTable, _ tag: Int64) -> [Int64] {
        table[tag].map(\.subject.rawValue)
    }

    @Test("rows given in tag order or in any order are found under their tags, each tag's rows in the order given")
    func groupsByTag() {
        // Five groups make a table of 16 slots: tags 3, 19 and 35 share their low four bits, so they
        // collide and are found by probing past one another; 31 collides with 15 in the last slot and
        // is found after wrapping around to the first.
        let rows: [(Int64, Int64)] = [(3, 30), (3, 31), (15, 150), (19, 190), (19, 191), (19, 192), (31, 310), (35, 350)]
        for shuffled in [rows, rows.reversed(), [rows[4], rows[0], rows[7], rows[2], rows[6], rows[1], rows[5], rows[3]]] {
            let table = CallerIDHintTable(tags: shuffled.map(\.0), entries: shuffled.map { Self.entry($0.1) })
            #expect(Self.subjects(table, 3).sorted() == [30, 31])
            #expect(Self.subjects(table, 15) == [150])
            #expect(Self.subjects(table, 19).sorted() == [190, 191, 192])
            #expect(Self.subjects(table, 31) == [310])
            #expect(Self.subjects(table, 35) == [350])
            // Tags no row has, colliding with held ones or not: nothing, and the probe ends.
            for absent: Int64 in [0, 1, 47, 51, 63, 1 << 40] { #expect(table[absent].isEmpty) }
            // An entry keeps its check.
            #expect(table[15].first?.check[15] == 150)
        }
        let inOrder = CallerIDHintTable(tags: rows.map(\.0), entries: rows.map { Self.entry($0.1) })
        #expect(Self.subjects(inOrder, 19) == [190, 191, 192], "rows read in tag order are kept as read")
    }

    @Test("an empty index gives an empty table, which holds nothing under any tag")
    func empty() {
        let table = CallerIDHintTable(tags: [], entries: [])
        for tag: Int64 in [0, 1, 12_345] { #expect(table[tag].isEmpty) }
    }

    @Test("every tag of a full-size index is found among thousands, with the rows it holds")
    func manyTags() {
        // 19-bit tags at random, about 1.4 rows each, as at a planned population's size.
        var generator = SystemRandomNumberGenerator()
        let tags = (0..<20_000).map { _ in Int64.random(in: 0..<(1 << 19), using: &generator) }
        let table = CallerIDHintTable(tags: tags, entries: tags.indices.map { Self.entry(Int64($0)) })
        var expected: [Int64: [Int64]] = [:]
        for (index, tag) in tags.enumerated() { expected[tag, default: []].append(Int64(index)) }
        for (tag, subjects) in expected { #expect(Self.subjects(table, tag).sorted() == subjects) }
        let absent = (0..<(1 << 19)).first { expected[Int64($0)] == nil }.map(Int64.init)
        if let absent { #expect(table[absent].isEmpty) }
    }
}
