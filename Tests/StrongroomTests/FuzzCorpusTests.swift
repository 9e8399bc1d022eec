import Foundation
import Strongroom
import StrongroomTestSupport
import Testing

/// Replays every input of `Fixtures/fuzz-corpus/<target>/` — the seeds, and whatever once crashed or
/// hung the fuzzer (`.ci/fuzz`) — through the same entry points the fuzzer drives (`FuzzEntryPoints`),
/// so a fixed bug stays fixed. A crash stops the test process; a hang fails the time bound.
@Suite("Fuzz corpus replay")
struct FuzzCorpusTests {
    /// Generous for a debug build on a shared machine; the fuzzer's own hang limit is 5 s in release.
    static let timeLimit: TimeInterval = 10

    @Test("every corpus input of every target runs to the end, each within the time bound",
          arguments: FuzzEntryPoints.targets.keys.sorted())
    func replay(target: String) throws {
        let folder = Fixture.url("fuzz-corpus/\(target)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }.sorted()
        #expect(files.contains { $0.hasPrefix("seed-") }, "no seed inputs for \(target)")
        let run = try #require(FuzzEntryPoints.targets[target])
        for file in files {
            let input = [UInt8](try Data(contentsOf: folder.appendingPathComponent(file)))
            let start = Date()
            run(input)
            let elapsed = Date().timeIntervalSince(start)
            #expect(elapsed < Self.timeLimit, "\(target)/\(file) took \(elapsed) s")
        }
    }

    @Test("every corpus folder belongs to a fuzz target")
    func foldersMatchTargets() throws {
        let folders = try FileManager.default.contentsOfDirectory(atPath: Fixture.url("fuzz-corpus").path)
            .filter { !$0.hasPrefix(".") }
        #expect(Set(folders) == Set(FuzzEntryPoints.targets.keys))
    }
}
