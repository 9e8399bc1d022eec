import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import StrongroomTestSupport
import Testing
@testable import StrongroomTool

/// The tool's exit status (Swift Testing has an `ExitStatus` of its own).
typealias ToolStatus = StrongroomTool.ExitStatus

/// Runs `strongroom` in-process with captured streams.
final class ToolRun {
    private(set) var out = ""
    private(set) var err = ""
    private var input: [String]
    let environment: [String: String]

    init(environment: [String: String] = [:], input: [String] = []) {
        self.environment = environment
        self.input = input
    }

    func run(_ words: [String]) -> ToolStatus {
        let console = Console(environment: environment, isTerminal: false,
                              out: { [unowned self] in self.out += $0 }, error: { [unowned self] in self.err += $0 },
                              input: { [unowned self] in self.input.isEmpty ? nil : self.input.removeFirst() })
        return StrongroomCLI.run(words, console)
    }
}

/// A store folder and key file made through `strongroom init`.
struct ToolStore {
    let directory: String
    var store: String { directory + "/store" }
    var key: String { directory + "/master.key" }
    var environment: [String: String] { ["STRONGROOM_STORE": store, "STRONGROOM_KEY_FILE": key] }

    init(importSample: Bool = true) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-tool-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let run = ToolRun(environment: environment)
        guard run.run(["init", "--region", "GB"]) == .success else { throw ToolError(message: run.err, status: .failure) }
        if importSample {
            guard run.run(["import", Fixture.url("contacts-sample.csv").path]) == .success else {
                throw ToolError(message: run.err, status: .failure)
            }
        }
    }

    func run(_ words: [String], input: [String] = []) -> (ToolStatus, String, String) {
        let tool = ToolRun(environment: environment, input: input)
        let status = tool.run(words)
        return (status, tool.out, tool.err)
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: directory) }
}

@Suite("The strongroom tool")
struct ToolTests {
    @Test("every subcommand answers --help with usage and an example", arguments: StrongroomCLI.commands.map { $0.name })
    func help(command: String) {
        let tool = ToolRun()
        #expect(tool.run(command.split(separator: " ").map(String.init) + ["--help"]) == .success)
        #expect(tool.out.contains("Usage: strongroom \(command)") || command == "demo")
        #expect(tool.out.contains("Example"))
    }

    @Test("unknown commands and options are usage errors")
    func usage() {
        #expect(ToolRun().run(["frobnicate"]) == .usage)
        #expect(ToolRun().run(["audit"]) == .usage)
        let tool = ToolRun(environment: ["STRONGROOM_STORE": "/nonexistent", "STRONGROOM_KEY_FILE": "/nonexistent.key"])
        #expect(tool.run(["lookup", "--bogus", "+441212429247"]) == .usage)
        #expect(tool.err.contains("unknown option --bogus"))
        #expect(tool.err.split(separator: "\n").count == 1)
    }

    @Test("init makes a 0600 key file and refuses a second store in the same folder")
    func initialise() throws {
        let store = try ToolStore(importSample: false)
        defer { store.cleanUp() }
        let attributes = try FileManager.default.attributesOfItem(atPath: store.key)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(store.run(["init"]).0 == .usage)
    }

    @Test("import, lookup as JSON, and the exit statuses of lookup")
    func lookup() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let (status, out, _) = store.run(["lookup", "--json", "+44 121 242 9247"])
        #expect(status == .success)
        let matches = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]])
        #expect(matches.count == 1)
        #expect(Set(matches[0].keys).isSuperset(of: ["id", "external_id", "kind", "name", "last_contacted", "source"]))
        #expect(matches[0]["external_id"] as? String == "crm-4242-2")
        #expect(matches[0]["name"] as? String == "Ivo Rossi-2")
        #expect(store.run(["lookup", "+33 6 12 34 56 78"]).0 == .failure)
        #expect(store.run(["lookup", "12"]).0 == .usage)
    }

    @Test("a header that does not parse is a bad header (exit 2), naming its line; the store imports a good file after it")
    func malformedHeader() throws {
        let store = try ToolStore(importSample: false)
        defer { store.cleanUp() }
        let file = store.directory + "/bad-header.csv"
        try Data("external_id,na\"me,phone\ncrm-1,Ann,+44 121 242 9000\n".utf8).write(to: URL(fileURLWithPath: file))
        let (status, _, err) = store.run(["import", file])
        #expect(status == .usage)
        #expect(err.contains("bad header: line 1"))
        // Second act: nothing was written, and a good file imports and is found.
        #expect(store.run(["lookup", "+44 121 242 9000"]).0 == .failure)
        try Data("external_id,name,phone\ncrm-1,Ann,+44 121 242 9000\n".utf8).write(to: URL(fileURLWithPath: file))
        #expect(store.run(["import", file]).0 == .success)
        #expect(store.run(["lookup", "+44 121 242 9000"]).0 == .success)
    }

    @Test("a wrong key or a key file readable by others is a key error (exit 3), and says so")
    func keyErrors() throws {
        let store = try ToolStore(importSample: false)
        defer { store.cleanUp() }
        let other = store.directory + "/other.key"
        #expect(ToolRun().run(["init", "--store", store.directory + "/other-store", "--key-file", other]) == .success)
        let wrong = ToolRun()
        #expect(wrong.run(["keys", "status", "--store", store.store, "--key-file", other]) == .integrity)
        #expect(wrong.err.contains("wrong master key"))
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: store.key)
        let (status, _, err) = store.run(["keys", "status"])
        #expect(status == .integrity)
        #expect(err.contains("must not be readable by group or others"))
    }

    @Test("phone normalize: one line per number, in order, from arguments or standard input")
    func normalize() {
        let tool = ToolRun()
        #expect(tool.run(["phone", "normalize", "--region", "GB", "020 7946 0958", "+1 (415) 555-2671"]) == .success)
        #expect(tool.out == "+442079460958\n+14155552671\n")
        let piped = ToolRun(input: ["(415) 555-2671", "", "abc"])
        #expect(piped.run(["phone", "normalize", "--region", "US"]) == .usage)
        #expect(piped.out == "+14155552671\ninvalid: empty\ninvalid: no-digits\n")
    }

    @Test("subject export, restrict, erase; audit show and verify; keys status")
    func subjectLifecycle() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let (exportStatus, exported, _) = store.run(["subject", "export", "crm-4242-2", "--purpose", "subject-request"])
        #expect(exportStatus == .success)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(exported.utf8)) as? [String: Any])
        #expect(json["format"] as? String == "strongroom.subject-export")
        #expect((json["personal"] as? [String: Any])?["name"] as? String == "Ivo Rossi-2")
        #expect(store.run(["subject", "restrict", "crm-4242-2"]).0 == .success)
        #expect(store.run(["lookup", "+441212429247"]).0 == .failure)
        #expect(store.run(["subject", "unrestrict", "crm-4242-2"]).0 == .success)
        #expect(store.run(["subject", "erase", "crm-4242-2"]).0 == .usage)
        #expect(store.run(["subject", "erase", "crm-4242-2", "--reason", "Art. 17 request 1"]).0 == .success)
        #expect(store.run(["lookup", "+441212429247"]).0 == .failure)
        #expect(store.run(["subject", "export", "crm-4242-2"]).0 == .failure)
        let (_, shown, _) = store.run(["audit", "show", "--subject", "3"])
        #expect(shown.contains("erase ok") && shown.contains("restrict ok"))
        let (_, jsonl, _) = store.run(["audit", "export", "--format", "jsonl"])
        #expect(jsonl.split(separator: "\n").allSatisfy { $0.hasPrefix("{\"seq\":") && $0.hasSuffix("\"}") })
        #expect(store.run(["audit", "verify"]).0 == .success)
        let (statusCode, status, _) = store.run(["keys", "status", "--json"])
        #expect(statusCode == .success && status.contains("\"subject_keys\":991"))
    }

    @Test("audit verify exits 1 and names the entry after the log is edited")
    func tamperedAudit() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let segment = store.store + "/audit/00000001.jsonl"
        var text = try String(contentsOfFile: segment, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"seq\":5,", with: "\"seq\":5,\"x\":1,")
        try text.write(toFile: segment, atomically: false, encoding: .utf8)
        let (status, out, _) = store.run(["audit", "verify"])
        #expect(status == .failure)
        #expect(out.contains("entry 5"))
    }

    @Test("init refuses a folder open to others with one line saying what to do (exit 3); chmod 700, and it works")
    func initUnfitFolder() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-tool-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = directory + "/store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o777])
        let tool = ToolRun(environment: ["STRONGROOM_STORE": store, "STRONGROOM_KEY_FILE": directory + "/master.key"])
        #expect(tool.run(["init"]) == .integrity)
        #expect(tool.err.split(separator: "\n").count == 1 && tool.err.contains("open to group or others") && tool.err.contains("chmod 700"),
                "\(tool.err)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: store).isEmpty, "nothing written in the refused folder")
        chmod(store, 0o700)
        let again = ToolRun(environment: tool.environment)
        #expect(again.run(["init"]) == .success)
        #expect(notPrivate(modes(under: store)) == [])
        #expect(again.run(["audit", "verify"]) == .success)
    }

    @Test("audit verify and show end at once with exit 3 on a FIFO where a segment belongs; removed, verify passes")
    func fifoSegment() throws {
        let store = try ToolStore(importSample: false)
        defer { store.cleanUp() }
        let fifo = store.store + "/audit/00000002.jsonl"
        #expect(mkfifo(fifo, 0o600) == 0)
        for words in [["audit", "verify"], ["audit", "show"]] {
            let start = Date()
            let (status, _, err) = store.run(words)
            #expect(status == .integrity, "\(words)")
            #expect(err.contains("FIFO") && err.split(separator: "\n").count == 1, "\(err)")
            #expect(Date().timeIntervalSince(start) < 5, "\(words)")
        }
        try FileManager.default.removeItem(atPath: fifo)
        #expect(store.run(["audit", "verify"]).0 == .success)
    }

    @Test("call record makes a lead for an unknown number, as JSON")
    func callRecord() throws {
        let store = try ToolStore(importSample: false)
        defer { store.cleanUp() }
        let (status, out, _) = store.run(["call", "record", "--json", "--at", "2026-11-23T09:15:00Z", "07700 900123"])
        #expect(status == .success)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        #expect(json["created_lead"] as? Bool == true)
        #expect(json["source"] as? String == "Call log")
        #expect(json["last_contacted"] as? String == "2026-11-23T09:15:00Z")
    }

    @Test("call record for a restricted subject exits 3 and changes nothing; the refusal is in the audit log; other calls still work")
    func restrictedCallRecord() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        #expect(store.run(["subject", "restrict", "crm-4242-0"]).0 == .success)
        func state() throws -> [String] {
            let data = try SQLiteConnection(path: store.store + "/data.sqlite")
            return [try data.scalarText("SELECT coalesce(last_contacted_at, 0) || '' FROM subjects WHERE external_id = 'crm-4242-0'") ?? "",
                    String(try data.scalarInteger("SELECT count(*) FROM calls") ?? -1),
                    String(try data.scalarInteger("SELECT count(*) FROM subjects") ?? -1)]
        }
        let before = try state()
        let (status, out, err) = store.run(["call", "record", "--at", "2026-12-01T09:00:00Z", "+447400142870"])
        #expect(status == .integrity && out.isEmpty && err.contains("restricted"))
        #expect(try state() == before)
        let (shown, log, _) = store.run(["audit", "show", "--subject", "crm-4242-0"])
        #expect(shown == .success && log.contains("update refused"))

        // Second act: another caller is logged; the restricted one stays refused until the restriction is lifted.
        #expect(store.run(["call", "record", "--at", "2026-12-01T09:05:00Z", "+821020007045"]).0 == .success)
        #expect(store.run(["call", "record", "--at", "2026-12-01T09:10:00Z", "+447400142870"]).0 == .integrity)
        #expect(try state()[0] == before[0])
        #expect(store.run(["subject", "unrestrict", "crm-4242-0"]).0 == .success)
        #expect(store.run(["call", "record", "--at", "2026-12-01T09:15:00Z", "+447400142870"]).0 == .success)
        #expect(try state()[0] != before[0])
        #expect(store.run(["audit", "verify"]).0 == .success)
    }

    @Test("the demo runs end to end, the DPO's day included: the erased subject's receipt verifies and a re-import skips it",
          arguments: [true, false])
    func demo(withSampleFile: Bool) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-demo-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tool = ToolRun()
        let sample = withSampleFile ? ["--sample", Fixture.url("contacts-sample.csv").path] : ["--sample", directory + "/none.csv"]
        #expect(tool.run(["demo", "--dir", directory] + sample) == .success)
        #expect(tool.out.contains("find by e-mail (blind index, audited) -> "))
        #expect(tool.out.contains("rectified subject 1: company"))
        #expect(tool.out.contains("MAC and audit entry verified"))
        #expect(tool.out.contains("0 created") && tool.out.contains("1 erased row(s) skipped, never re-created"))
        #expect(tool.out.contains("audit verify: intact"))
    }
}

@Suite("Master key files replaced by rotation")
struct KeyFileRotationToolTests {
    @Test("rotate-master onto the current key file replaces it atomically, and finishes after a crash that left FILE.new")
    func inPlace() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let (status, out, _) = store.run(["keys", "rotate-master", "--new-key-file", store.key])
        #expect(status == .success && out.contains("replaced atomically"))
        #expect(!FileManager.default.fileExists(atPath: store.key + ".new"))
        #expect(store.run(["lookup", "+441212429247"]).0 == .success)

        // A crash after the store switched keys but before the rename: FILE.new holds the key in use.
        let staged = try KeyFile.create(at: store.key + ".new")
        let library = try Store.open(at: store.store, keyProvider: KeyFileProvider(path: store.key))
        _ = try library.rotateMasterKey(to: staged, context: AccessContext(actor: "test", purpose: .admin))
        library.close()
        #expect(store.run(["lookup", "+441212429247"]).0 == .integrity)
        let (again, message, _) = store.run(["keys", "rotate-master", "--new-key-file", store.key])
        #expect(again == .success && message.contains("already opens"))
        #expect(try KeyFile.load(from: store.key) == staged)
        #expect(store.run(["lookup", "+441212429247"]).0 == .success)
        let attributes = try FileManager.default.attributesOfItem(atPath: store.key)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }
}
