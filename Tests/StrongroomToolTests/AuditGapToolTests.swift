import Foundation
import Strongroom
import Testing
@testable import StrongroomTool

@Suite("The tool on an audit log that lost its end or holds a forged line")
struct AuditGapToolTests {
    /// The store's only segment, as lines without their newlines.
    func lines(_ store: ToolStore) throws -> [String] {
        try String(contentsOfFile: store.store + "/audit/00000001.jsonl", encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func write(_ lines: [String], _ store: ToolStore) throws {
        try (lines.joined(separator: "\n") + "\n").write(toFile: store.store + "/audit/00000001.jsonl", atomically: false, encoding: .utf8)
    }

    @Test("a cut tail: lookups exit 3 and verify 1 until acknowledge-gap records it; verify then exits 1, or 0 with --accept-acknowledged")
    func acknowledgeGap() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        try write(try lines(store).dropLast(3), store)
        for _ in 0..<4 { #expect(store.run(["lookup", "+441212429247"]).0 == .integrity) }
        let (cutStatus, cutOut, _) = store.run(["audit", "verify"])
        #expect(cutStatus == .failure && cutOut.contains("entries missing from the end"))
        #expect(store.run(["audit", "verify", "--accept-acknowledged"]).0 == .failure)

        #expect(store.run(["audit", "acknowledge-gap"]).0 == .usage)
        let (status, out, _) = store.run(["audit", "acknowledge-gap", "--reason", "incident 7: cut", "--actor", "dpo"])
        #expect(status == .success && out.contains("cut off the end"), "\(out)")
        let (againStatus, _, againError) = store.run(["audit", "acknowledge-gap", "--reason", "again"])
        #expect(againStatus == .failure && againError.contains("no gap to acknowledge"))

        for _ in 0..<4 { #expect(store.run(["lookup", "+441212429247"]).0 == .success) }
        let (verifyStatus, verifyOut, _) = store.run(["audit", "verify"])
        #expect(verifyStatus == .failure)
        #expect(verifyOut.contains("acknowledged gap") && verifyOut.contains("by dpo") && verifyOut.contains("incident 7: cut"))
        #expect(store.run(["audit", "verify", "--accept-acknowledged"]).0 == .success)
        let (jsonStatus, json, _) = store.run(["audit", "verify", "--accept-acknowledged", "--json"])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(jsonStatus == .success && (report["acknowledged_gaps"] as? [String])?.count == 1, "\(json)")
        let (showStatus, shown, _) = store.run(["audit", "show", "--actor", "dpo"])
        #expect(showStatus == .success && shown.contains("acknowledge-gap ok"))
    }

    @Test("audit show, audit export and subject export refuse a log with a forged line (exit 1), printing none of it")
    func forgedLine() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        var entries = try lines(store)
        let genuine = entries
        entries.insert(#"{"seq":3,"time":"2026-11-23T07:30:00.000000Z","action":"decrypt","actor":"mallory","purpose":"admin","subject":"3","fields":["name"],"outcome":"ok","mac":""#
                       + String(repeating: "0", count: 64) + #""}"#, at: 2)
        try write(entries, store)
        for command in [["audit", "show", "--subject", "3"], ["audit", "export", "--format", "jsonl"], ["audit", "show", "--json"]] {
            let (status, out, error) = store.run(command)
            #expect(status == .failure, "\(command)")
            #expect(out.isEmpty && !error.contains("mallory"), "\(command)")
            #expect(error.contains("00000001.jsonl line 3") && error.split(separator: "\n").count == 1, "\(command): \(error)")
        }
        #expect(store.run(["subject", "export", "crm-4242-2", "--purpose", "subject-request"]).0 == .failure)
        // The forged line removed, the same store shows its entries again (the refused export's decrypt among them).
        var repaired = try lines(store)
        repaired.remove(at: 2)
        #expect(Array(repaired.prefix(genuine.count)) == genuine)
        try write(repaired, store)
        let (status, shown, _) = store.run(["audit", "show", "--subject", "3"])
        #expect(status == .success && !shown.contains("mallory") && shown.contains("decrypt"))
    }
}
