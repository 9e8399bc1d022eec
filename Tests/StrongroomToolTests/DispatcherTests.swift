import Foundation
import Testing
@testable import StrongroomTool

/// The dispatcher's contract: a command is parsed whole (its own words, then the store options, then
/// nothing left over) before any store or key file is opened or created.
@Suite("The dispatcher parses, then runs")
struct DispatcherTests {
    /// The commands that take the store options.
    static let storeCommandNames = StrongroomCLI.commands.compactMap { ($0 as? any StoreOptionsCommand.Type)?.name }

    @Test("a bad option is a usage error (exit 2) before anything opens: a missing store or key file is never reached, nor created",
          arguments: storeCommandNames)
    func usageBeforeOpening(command: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-dispatch-\(UUID().uuidString)").path
        let store = directory + "/store"
        let key = directory + "/master.key"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tool = ToolRun()
        let words = command.split(separator: " ").map(String.init) + ["--store", store, "--key-file", key, "--bogus"]
        #expect(tool.run(words) == .usage)
        #expect(tool.err.hasSuffix("(see strongroom \(command) --help)\n"))
        #expect(!tool.err.contains("no store"))
        #expect(tool.err.split(separator: "\n").count == 1)
        // Nothing was opened or made: init did not create the folder or the key file.
        #expect(!FileManager.default.fileExists(atPath: directory))
    }

    @Test("the store options' values are never taken for a command's positional words, wherever they stand")
    func storeOptionsBeforePositionals() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let options = ["--store", store.store, "--key-file", store.key, "--actor", "agent-7", "--purpose", "caller-id"]
        let lookup = ToolRun()
        #expect(lookup.run(["lookup"] + options + ["+44 121 242 9247"]) == .success)
        #expect(lookup.out.contains("Ivo Rossi-2"))
        let restrict = ToolRun()
        #expect(restrict.run(["subject", "restrict", "--store", store.store, "--key-file", store.key, "crm-4242-2"]) == .success)
        // Second act: the store, closed by the dispatcher after each command, opens again and obeys the
        // restriction (caller ID finds no restricted subject).
        let restricted = ToolRun()
        #expect(restricted.run(["lookup"] + options + ["+44 121 242 9247"]) == .failure)
        #expect(restricted.out == "no match\n")
        #expect(store.run(["subject", "unrestrict", "crm-4242-2"]).0 == .success)
        #expect(store.run(["lookup", "+44 121 242 9247"]).0 == .success)
        #expect(store.run(["audit", "verify"]).0 == .success)
    }

    @Test("no store named: a usage error once the command's own words parse; named, the same words run")
    func noStore() throws {
        let tool = ToolRun()
        #expect(tool.run(["lookup", "+44 121 242 9247"]) == .usage)
        #expect(tool.err.contains("no store: give --store DIR|URL or set STRONGROOM_STORE"))
        let store = try ToolStore()
        defer { store.cleanUp() }
        #expect(store.run(["lookup", "+44 121 242 9247"]).0 == .success)
    }
}
