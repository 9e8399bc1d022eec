import Foundation
import Strongroom
import StrongroomTestSupport
import Testing

/// Replays every input of `Fixtures/fuzz-corpus/<target>/` — seeds, and whatever once crashed or hung
/// the fuzzer (`.ci/fuzz`) — through the same entry points the fuzzer drives.
@Suite("Fuzz corpus replay")
struct FuzzCorpusTests {
    @Test("every corpus input of every target runs to the end without crashing", arguments: FuzzEntryPoints.targets.keys.sorted())
    func replay(target: String) throws {
        let folder = Fixture.url("fuzz-corpus/\(target)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }
        #expect(!files.isEmpty, "no corpus for \(target)")
        let run = try #require(FuzzEntryPoints.targets[target])
        for file in files {
            let start = Date()
            run([UInt8](try Data(contentsOf: folder.appendingPathComponent(file))))
            #expect(Date().timeIntervalSince(start) < 5, "\(target)/\(file) took too long")
        }
    }
}
