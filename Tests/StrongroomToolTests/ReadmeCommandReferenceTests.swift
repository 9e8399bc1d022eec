import Foundation
import StrongroomTestSupport
import Testing
@testable import StrongroomTool

/// README.md's "Command reference" kept in step with the tool's `--help`: the reference is the
/// contract a newcomer reads, the help is what the tool says.
@Suite("README command reference and the tool's help")
struct ReadmeCommandReferenceTests {
    /// README.md's "Command reference" section, up to the next heading of its level.
    static func referenceSection() throws -> Substring {
        let readme = String(decoding: try Data(contentsOf: Fixture.directory.deletingLastPathComponent().appendingPathComponent("README.md")),
                            as: UTF8.self)
        let start = try #require(readme.range(of: "\n## Command reference\n"), "README.md has no \"## Command reference\"")
        let end = readme.range(of: "\n## ", range: start.upperBound..<readme.endIndex)?.lowerBound ?? readme.endIndex
        return readme[start.upperBound..<end]
    }

    /// The reference's table rows, each with the command line of its first cell (what is inside its backticks).
    static func rows(_ section: Substring) -> [(command: String, row: String)] {
        section.split(separator: "\n").filter { $0.hasPrefix("| `") }.compactMap { line in
            let cell = line.dropFirst(3)
            return cell.firstIndex(of: "`").map { (String(cell[..<$0]), String(line)) }
        }
    }

    /// The usage lines of a command's help: from "Usage:" to the first empty line.
    static func usage(_ help: String) -> String {
        help.components(separatedBy: "\n\n").first { $0.contains("Usage: ") } ?? ""
    }

    /// The long options (`--name`) and environment variables (`STRONGROOM_...`) named in `text`.
    static func names(in text: String) -> Set<String> {
        let pattern = /--[a-z][a-z0-9-]*|STRONGROOM_[A-Z_]+/
        return Set(text.matches(of: pattern).map { String($0.output) })
    }

    @Test("every command of the tool has one row, and every row names a command of the tool")
    func commandsMatch() throws {
        let rows = Self.rows(try Self.referenceSection())
        let names = StrongroomCLI.commands.map { $0.name }
        for name in names {
            let matching = rows.filter { $0.command == name || $0.command.hasPrefix(name + " ") }
            #expect(matching.count == 1, "\(name): \(matching.count) rows in README's command reference")
        }
        for (command, _) in rows {
            #expect(names.contains { command == $0 || command.hasPrefix($0 + " ") }, "README lists \(command), which the tool lacks")
        }
    }

    @Test("every option in a command's usage is in its row", arguments: StrongroomCLI.commands.map { $0.name })
    func optionsMatch(command name: String) throws {
        let command = try #require(StrongroomCLI.commands.first { $0.name == name })
        let row = try #require(Self.rows(try Self.referenceSection()).first { $0.command == name || $0.command.hasPrefix(name + " ") })
        let usage = Self.usage(command.help)
        #expect(usage.contains("Usage: strongroom \(name)"))
        for option in Self.names(in: usage).sorted() {
            #expect(row.row.contains(option), "\(name): README's row lacks \(option) of its usage")
        }
    }

    @Test("the common options and variables of `strongroom --help` are in the reference's common options")
    func commonOptions() throws {
        let section = try Self.referenceSection()
        let common = section[..<(section.range(of: "\n| command |")?.lowerBound ?? section.endIndex)]
        for name in Self.names(in: StoreOptions.help).sorted() {
            #expect(common.contains(name), "README's common options lack \(name)")
        }
        for word in ["--json", "--help", "Exit status", "`3`"] { #expect(common.contains(word)) }
    }

    @Test("strongroom --help says how to choose a store and key, once; each command's help points to it")
    func storeOptionsSaidOnce() {
        let overview = ToolRun()
        #expect(overview.run(["--help"]) == .success)
        for name in ["--store", "--key-file", "--key-command", "STRONGROOM_STORE", "STRONGROOM_KEY_FILE", "STRONGROOM_MASTER_KEY"] {
            #expect(overview.out.contains(name), "strongroom --help lacks \(name)")
        }
        for command in StrongroomCLI.commands {
            let tool = ToolRun()
            #expect(tool.run(command.name.split(separator: " ").map(String.init) + ["--help"]) == .success)
            #expect(!tool.out.contains(StoreOptions.help), "\(command.name) repeats the store options")
            // demo makes its own store; phone normalize reads only --store, and says so itself.
            #expect(tool.out.contains(StoreOptions.helpPointer) || ["demo", "phone normalize"].contains(command.name),
                    "\(command.name) does not point to strongroom --help")
            // What the environment can supply is never shown as required.
            let usage = Self.usage(command.help)
            for option in ["--store", "--key-file"] where usage.contains(option) {
                #expect(usage.contains("[\(option)"), "\(command.name)'s usage shows \(option) as required")
            }
        }
    }
}
