import Foundation
import StrongroomTestSupport
import Testing

/// README.md's library tour, taken from README.md itself: compiled as a program against the library
/// this test run was built with, then run twice (a newcomer runs it more than once).
@Suite("README library tour")
struct ReadmeTourTests {
    /// The test's files: the program, its binary, and the temporary folder the tour works in.
    let scratch = TemporaryDirectory("strongroom-readme-tour")

    @Test("the tour compiles as written and runs twice, printing what its comments say")
    func tour() throws {
        let code = try Self.tourCode()
        // What each `print(...)` line's trailing comment says it prints.
        let expected = code.split(separator: "\n").filter { $0.contains("print(") }.map { line in
            line.range(of: "// ").map { String(line[$0.upperBound...]).trimmingCharacters(in: .whitespaces) } ?? "(no comment)"
        }
        #expect(!expected.isEmpty && !expected.contains("(no comment)"), "every print of the tour says in a comment what it prints")

        let source = scratch.path("main.swift"), binary = scratch.path("tour"), tourTemporary = scratch.path("tmp")
        try Data(code.utf8).write(to: URL(fileURLWithPath: source))
        try FileManager.default.createDirectory(atPath: tourTemporary, withIntermediateDirectories: false)
        let compiled = try Self.run("/usr/bin/env", ["swiftc", source, "-o", binary] + Self.libraryFlags())
        try #require(compiled.status == 0, "the README tour does not compile:\n\(compiled.output)")

        for run in 1...2 {
            let result = try Self.run(binary, [], environment: ["TMPDIR": tourTemporary])
            #expect(result.status == 0, "run \(run) failed:\n\(result.output)")
            #expect(result.output.split(separator: "\n").map(String.init) == expected, "run \(run)")
            // The tour removes its scratch folder: nothing is left for the next run to trip over.
            #expect(try FileManager.default.contentsOfDirectory(atPath: tourTemporary).isEmpty, "run \(run) left files")
        }
    }

    /// The first `swift` code block after README.md's "Five-minute tour: the library" heading.
    static func tourCode() throws -> String {
        let readme = String(decoding: try Data(contentsOf: Fixture.directory.deletingLastPathComponent().appendingPathComponent("README.md")),
                            as: UTF8.self)
        let section = try #require(readme.range(of: "## Five-minute tour: the library"))
        let start = try #require(readme.range(of: "```swift\n", range: section.upperBound..<readme.endIndex))
        let end = try #require(readme.range(of: "\n```", range: start.upperBound..<readme.endIndex))
        return String(readme[start.upperBound..<end.lowerBound]) + "\n"
    }

    /// `swiftc` flags that build against the library modules of this test run: their interfaces, the
    /// C modules' maps, and their object files (the build folder is the one this test binary is in;
    /// the C libraries are linked through the module maps' `link` lines).
    static func libraryFlags() throws -> [String] {
        let products = try #require(Bundle.main.executableURL).resolvingSymlinksInPath().deletingLastPathComponent()
        let sources = Fixture.directory.deletingLastPathComponent().appendingPathComponent("Sources")
        var flags = ["-I", products.appendingPathComponent("Modules").path]
        for module in ["COpenSSL", "CSQLite", "CPostgreSQL"] { flags += ["-I", sources.appendingPathComponent(module).path] }
        for module in ["Strongroom", "StrongroomCrypto", "StrongroomStorage", "StrongroomPhone"] {
            // The objects of the module's current sources, as its build's output file map names them (the
            // folder may also hold objects of sources since moved or deleted).
            let map = products.appendingPathComponent("\(module).build/output-file-map.json")
            let entries = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: map)) as? [String: Any])
            flags += entries.values.compactMap { ($0 as? [String: String])?["object"] }.sorted()
        }
        return flags
    }

    /// Runs `executable` with `arguments` and returns its exit status and its standard output and error.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}
