import Foundation
import Strongroom
import StrongroomStorage
import StrongroomTestSupport
import Testing
@testable import StrongroomTool

/// `strongroom subject export --all` on both backends: its lines against `subject export ID`, --kind,
/// --out's mode, and the restricted subjects it skips, counts and names the way around.
@Suite("The tool's bulk export")
struct BulkExportToolTests {
    /// The sample contacts imported into a new store: a folder, or a fresh schema on the test server.
    /// Runs commands against it; `cleanUp` removes it.
    struct SampleStore {
        let directory: String
        let store: String
        var key: String { directory + "/master.key" }
        let schema: String?

        init?(_ backend: String) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-bulk-\(UUID().uuidString)").path
            if backend == "postgres" {
                guard let url = PostgresTestServer.url(schema: PostgresTestServer.uniqueSchema()) else {
                    if let message = PostgresTestServer.missingMessage { Issue.record(Comment(rawValue: message)) }
                    PostgresTestServer.announceIfOff()
                    return nil
                }
                store = url
                schema = try PostgresConnection.split(url).schema
            } else {
                store = directory + "/store"
                schema = nil
            }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for command in [["init", "--region", "GB"], ["import", Fixture.url("contacts-sample.csv").path]] {
                let (status, _, err) = run(command)
                guard status == .success else { throw ToolError(message: err, status: status) }
            }
        }

        func run(_ words: [String]) -> (ToolStatus, String, String) {
            let tool = ToolRun()
            let status = tool.run(words + ["--store", store, "--key-file", key])
            return (status, tool.out, tool.err)
        }

        func cleanUp() {
            if let schema, let connection = try? PostgresConnection(url: store, create: false, writeLock: "test") {
                try? connection.execute("DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE; DROP SCHEMA IF EXISTS \"\(schema)_keys\" CASCADE")
            }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// The backends to run on: both, unless the PostgreSQL half is off.
    static let backends = PostgresTestServer.isOff ? ["sqlite"] : ["sqlite", "postgres"]

    /// A JSON object's members, without `exported_at` and `access_log` (they differ between two exports made one after the other).
    static func stableMembers(_ json: String) throws -> NSDictionary {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        object["exported_at"] = nil
        object["access_log"] = nil
        return object as NSDictionary
    }

    @Test("--all: one line per subject, each the JSON `subject export ID` prints; --kind; --out is 0600; restricted subjects skipped, counted, exit 3, and exported with --purpose subject-request",
          arguments: backends)
    func exportAll(backend: String) throws {
        guard let sample = try SampleStore(backend) else { return }
        defer { sample.cleanUp() }
        let (status, out, err) = sample.run(["subject", "export", "--all"])
        #expect(status == .success && err.isEmpty, "\(err)")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.count == 992)
        let externalIDs = try lines.map { try #require(((try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["subject"]
                as? [String: Any])?["external_id"] as? String) }
        #expect(Set(externalIDs).count == 992)
        for index in [0, 1, 500, 991] {
            let (singleStatus, single, _) = sample.run(["subject", "export", externalIDs[index]])
            #expect(singleStatus == .success)
            #expect(try Self.stableMembers(single) == Self.stableMembers(lines[index]), "\(externalIDs[index])")
        }

        // --kind: the sample's leads only (its kind column), and none of them a contact.
        let (leadStatus, leads, _) = sample.run(["subject", "export", "--all", "--kind", "lead"])
        #expect(leadStatus == .success && !leads.isEmpty)
        let leadLines = leads.split(separator: "\n")
        #expect(leadLines.allSatisfy { $0.contains("\"kind\":\"lead\"") } && leadLines.count < 992)
        #expect(sample.run(["subject", "export", "--all", "--kind", "prospect"]).0 == .usage)
        #expect(sample.run(["subject", "export", "crm-4242-1", "--kind", "lead"]).0 == .usage)

        // Restricted: skipped, counted on one line that names --purpose subject-request, exit 3; --out is 0600.
        #expect(sample.run(["subject", "restrict", "crm-4242-2"]).0 == .success)
        #expect(sample.run(["subject", "restrict", "crm-4242-3"]).0 == .success)
        let file = sample.directory + "/all.jsonl"
        #expect(FileManager.default.createFile(atPath: file, contents: Data("old\n".utf8), attributes: [.posixPermissions: 0o644]))
        let (refusedStatus, refusedOut, refusedErr) = sample.run(["subject", "export", "--all", "--out", file])
        #expect(refusedStatus == .integrity)
        #expect(refusedErr.split(separator: "\n").count == 1 && refusedErr.contains("2 subjects not exported")
                && refusedErr.contains("--purpose subject-request"), "\(refusedErr)")
        #expect(refusedOut.contains("exported 990 subjects to"))
        let written = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        #expect(written.count == 990 && !written.contains { $0.contains("\"external_id\":\"crm-4242-2\"") })
        #expect((try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? NSNumber)?.intValue == 0o600)

        // Second act: for the subject's own request the restricted are exported too, and the log verifies.
        let (requestStatus, requestOut, _) = sample.run(["subject", "export", "--all", "--purpose", "subject-request"])
        #expect(requestStatus == .success && requestOut.split(separator: "\n").count == 992)
        #expect(sample.run(["subject", "erase", "crm-4242-4", "--reason", "Art. 17 request 1"]).0 == .success)
        let (afterStatus, afterOut, _) = sample.run(["subject", "export", "--all", "--purpose", "subject-request"])
        #expect(afterStatus == .success && afterOut.split(separator: "\n").count == 991 && !afterOut.contains("\"crm-4242-4\""))
        #expect(sample.run(["audit", "verify"]).0 == .success)
    }

    @Test("an export --all that fails (an audit log that does not verify) exits 1 and leaves no partial file; once fixed, it exports")
    func failedExportLeavesNoFile() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let segment = store.store + "/audit/00000001.jsonl"
        let original = try Data(contentsOf: URL(fileURLWithPath: segment))
        var lines = String(decoding: original, as: UTF8.self).components(separatedBy: "\n")
        lines[1] = lines[1].replacingOccurrences(of: "\"purpose\":\"admin\"", with: "\"purpose\":\"adm1n\"")
        try Data(lines.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: segment))
        let file = store.directory + "/all.jsonl"
        let (status, _, err) = store.run(["subject", "export", "--all", "--out", file])
        #expect(status == .failure && err.contains("entry 2"), "\(err)")
        #expect(!FileManager.default.fileExists(atPath: file))
        // Second act: the log restored, the export runs and writes every subject.
        try original.write(to: URL(fileURLWithPath: segment))
        #expect(store.run(["subject", "export", "--all", "--out", file]).0 == .success)
        #expect(try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").count == 992)
    }
}
