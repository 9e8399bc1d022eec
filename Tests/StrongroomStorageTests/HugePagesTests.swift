import Foundation
import StrongroomStorage
import Testing

@Suite("Huge pages for large tables: advised, contents untouched")
struct HugePagesTests {
    /// Whether this kernel has transparent huge pages at all (the advice is refused without them).
    static let kernelHasHugePages = FileManager.default.fileExists(atPath: "/sys/kernel/mm/transparent_hugepage/enabled")

    /// The `VmFlags` of the mapping holding `address`, from /proc/self/smaps.
    static func mappingFlags(holding address: UInt) throws -> [Substring] {
        // Read to its end: /proc files report a size of 0, and a read by size stops at the first page.
        let file = try #require(FileHandle(forReadingAtPath: "/proc/self/smaps"))
        let smaps = String(decoding: try file.readToEnd() ?? Data(), as: UTF8.self)
        var inside = false
        for line in smaps.split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "), dash < space,
               let start = UInt(line[..<dash], radix: 16), let end = UInt(line[line.index(after: dash)..<space], radix: 16) {
                inside = (start..<end).contains(address)
            } else if inside, line.hasPrefix("VmFlags:") {
                return line.dropFirst("VmFlags:".count).split(separator: " ")
            }
        }
        return []
    }

    @Test("a 24 MB table keeps every element through the collapse, and a copy changed afterwards is a copy")
    func contentsSurvive() throws {
        let count = 3 << 20
        let table = (0..<count).map { UInt64($0) &* 0x9E37_79B9_7F4A_7C15 }
        preferHugePages(for: table)
        let intact = table.indices.allSatisfy { table[$0] == UInt64($0) &* 0x9E37_79B9_7F4A_7C15 }
        #expect(intact)
        // The ordinary use after: a changed copy leaves the advised table as it was.
        var copy = table
        copy[12345] = 0
        let (original, changed) = (table[12345], copy[12345])
        #expect(original == 12345 &* 0x9E37_79B9_7F4A_7C15 && changed == 0)
    }

    @Test("the table's mapping is marked for huge pages where the kernel has them", .enabled(if: kernelHasHugePages))
    func mappingAdvised() throws {
        let table = [UInt64](repeating: 7, count: 4 << 20)
        preferHugePages(for: table)
        let middle = table.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) + UInt($0.count / 2) }
        let flags = try Self.mappingFlags(holding: middle)
        #expect(flags.contains("hg"), "VmFlags: \(flags.joined(separator: " "))")
        #expect(table.allSatisfy { $0 == 7 })
    }

    @Test("tables under 2 MiB, and empty ones, are left as they are")
    func smallTables() throws {
        let small = [UInt8](repeating: 1, count: 4096)
        preferHugePages(for: small)
        preferHugePages(for: [UInt64]())
        #expect(small.allSatisfy { $0 == 1 })
    }
}
