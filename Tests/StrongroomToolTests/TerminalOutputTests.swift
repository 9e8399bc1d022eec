import Foundation
import Strongroom
import Testing
@testable import StrongroomTool

/// A name as a hostile CSV carries it: ESC[2J (clear screen), CR, a C1 CSI (U+009B), DEL, a
/// right-to-left override (CVE-2021-42574) and a line separator.
private let hostileName = "Mallory\u{1B}[2J\rEve\u{202E}gnp.exe\u{9B}31m\u{7F}\u{2028}end"
/// How a text line shows it.
private let hostileNameShown = #"Mallory\u{1B}[2J\u{D}Eve\u{202E}gnp.exe\u{9B}31m\u{7F}\u{2028}end"#
/// An OSC sequence that would set the terminal's title, ended by BEL.
private let hostileSource = "Web\u{1B}]0;owned\u{7}"
private let hostileSourceShown = #"Web\u{1B}]0;owned\u{7}"#
/// Every control character above, each of which must never reach the terminal raw.
private let hostileScalars: Set<Unicode.Scalar> = ["\u{1B}", "\r", "\u{9B}", "\u{7F}", "\u{202E}", "\u{2028}", "\u{7}"]

/// The raw terminal control characters in `output` (the line breaks ending its lines aside).
private func rawControls(_ output: String) -> [Unicode.Scalar] {
    output.unicodeScalars.filter { hostileScalars.contains($0) }
}

/// Checks that `output` is JSON, holds no raw control character of the attack (not even the UTF-8
/// bytes of ESC or of U+009B), and returns it parsed.
private func parsedJSON(_ output: String) throws -> Any {
    #expect(rawControls(output).isEmpty)
    let bytes = Array(output.utf8)
    #expect(!bytes.contains(0x1B))
    #expect(!zip(bytes, bytes.dropFirst()).contains { $0 == 0xC2 && $1 == 0x9B })
    return try JSONSerialization.jsonObject(with: Data(output.utf8))
}

@Suite("Control characters of stored data never reach the terminal")
struct TerminalOutputTests {
    @Test("escaping: every C0, DEL, C1, line separator and bidi control is shown as \\u{HEX}; other text is kept")
    func escaping() {
        #expect(TerminalText.escaping("Zoë Ñandú 山田 +44 121 496 0123") == "Zoë Ñandú 山田 +44 121 496 0123")
        #expect(TerminalText.escaping(hostileName) == hostileNameShown)
        #expect(TerminalText.escaping("\u{0}\t\n\u{1F}\u{80}\u{9F}\u{A0}\u{2029}\u{202A}\u{202D}\u{2069}\u{200F}")
                == #"\u{0}\u{9}\u{A}\u{1F}\u{80}\u{9F}"# + "\u{A0}" + #"\u{2029}\u{202A}\u{202D}\u{2069}"# + "\u{200F}")
        let json = #"{"a": "x\u001b"}"# + "\n\t{\"b\":\"\u{9B}\u{202E}\u{2028}\u{7F}\"}"
        #expect(TerminalText.escapingJSON(json) == #"{"a": "x\u001b"}"# + "\n\t{\"b\":\"\\u009b\\u202e\\u2028\\u007f\"}")
    }

    @Test("a hostile name from a CSV is escaped by lookup, call record, subject export, consent show, audit show and export")
    func hostileImport() throws {
        let store = try ToolStore(importSample: false)
        defer { store.cleanUp() }
        let csv = store.directory + "/hostile.csv"
        try "external_id,name,phone,source\nevil-1,\"\(hostileName)\",+44 121 496 0123,\"\(hostileSource)\"\n"
            .write(toFile: csv, atomically: true, encoding: .utf8)
        let (imported, _, importErrors) = store.run(["import", csv])
        #expect(imported == .success && importErrors.isEmpty)

        // lookup and call record: one line, the name and source shown escaped; JSON holds them exactly.
        let (found, line, _) = store.run(["lookup", "+44 121 496 0123"])
        #expect(found == .success && rawControls(line).isEmpty && line.split(separator: "\n").count == 1)
        #expect(line.contains(hostileNameShown) && line.contains(hostileSourceShown))
        let matches = try #require(try parsedJSON(store.run(["lookup", "--json", "+44 121 496 0123"]).1) as? [[String: Any]])
        #expect(matches.first?["name"] as? String == hostileName && matches.first?["source"] as? String == hostileSource)
        let (called, callLine, _) = store.run(["call", "record", "--at", "2026-11-23T09:15:00Z", "+44 121 496 0123"])
        #expect(called == .success && rawControls(callLine).isEmpty && callLine.contains(hostileNameShown))
        let call = try #require(try parsedJSON(store.run(["call", "record", "--json", "+44 121 496 0123"]).1) as? [String: Any])
        #expect(call["name"] as? String == hostileName)

        // subject export, to standard output and to a file.
        let export = try #require(try parsedJSON(store.run(["subject", "export", "evil-1"]).1) as? [String: Any])
        #expect((export["personal"] as? [String: Any])?["name"] as? String == hostileName)
        let file = store.directory + "/export.json"
        #expect(store.run(["subject", "export", "evil-1", "--out", file]).0 == .success)
        let exported = try #require(try parsedJSON(String(contentsOfFile: file, encoding: .utf8)) as? [String: Any])
        #expect((exported["personal"] as? [String: Any])?["name"] as? String == hostileName)

        // consent show: the evidence is stored text too.
        #expect(store.run(["purpose", "declare", "newsletter", "--basis", "consent", "--description", "Monthly"]).0 == .success)
        #expect(store.run(["consent", "grant", "evil-1", "--purpose", "newsletter", "--evidence", hostileSource]).0 == .success)
        let (shownStatus, consentLine, _) = store.run(["consent", "show", "evil-1"])
        #expect(shownStatus == .success && rawControls(consentLine).isEmpty && consentLine.contains(hostileSourceShown))
        let consents = try #require(try parsedJSON(store.run(["consent", "show", "evil-1", "--json"]).1) as? [[String: Any]])
        #expect(consents.first?["evidence"] as? String == hostileSource)

        // The audit log: an actor and a client address holding the same characters.
        #expect(store.run(["lookup", "--actor", hostileName, "--client", hostileSource, "+44 121 496 0123"]).0 == .success)
        let (auditStatus, auditText, _) = store.run(["audit", "show", "--subject", "evil-1"])
        #expect(auditStatus == .success && rawControls(auditText).isEmpty)
        #expect(auditText.contains("\(hostileNameShown) for caller-id") && auditText.contains("from \(hostileSourceShown)"))
        let (_, auditJSON, _) = store.run(["audit", "show", "--subject", "evil-1", "--json"])
        let (_, jsonl, _) = store.run(["audit", "export", "--format", "jsonl"])
        for output in [auditJSON, jsonl] {
            let lines = output.split(separator: "\n").map(String.init)
            let actors = try lines.map { try #require(try parsedJSON($0) as? [String: Any])["actor"] as? String }
            #expect(actors.contains(hostileName))
        }

        // An error line naming hostile input shows it escaped, on one line.
        let (missing, _, missingError) = store.run(["subject", "export", hostileName])
        #expect(missing == .failure && rawControls(missingError).isEmpty && missingError.split(separator: "\n").count == 1)

        // Second act: an ordinary import and lookup work, the hostile subject still prints escaped, the log is intact.
        let plain = store.directory + "/plain.csv"
        try "external_id,name,phone\nok-1,Ann Example,+44 121 496 0124\n".write(toFile: plain, atomically: true, encoding: .utf8)
        #expect(store.run(["import", plain]).0 == .success)
        #expect(store.run(["lookup", "+44 121 496 0124"]).1.contains("Ann Example  lead"))
        let (_, again, _) = store.run(["lookup", "+44 121 496 0123"])
        #expect(rawControls(again).isEmpty && again.contains(hostileNameShown))
        #expect(store.run(["audit", "verify"]).0 == .success)
    }

    @Test("a 30 MB field is a row error (line and column, no content), nothing of it stored, the rest imported; --strict refuses the file")
    func oversizedField() throws {
        let store = try ToolStore(importSample: false)
        defer { store.cleanUp() }
        let huge = String(repeating: "Q", count: 30 << 20)
        let csv = store.directory + "/big.csv"
        try "external_id,name,phone,notes\nok-1,Ann,+44 121 496 0001,short\nbig-1,Bob,+44 121 496 0002,\(huge)\nok-2,Cy,+44 121 496 0003,short\n"
            .write(toFile: csv, atomically: true, encoding: .utf8)

        // --strict: the whole file is refused (exit 2), nothing is stored.
        let (strict, _, strictError) = store.run(["import", "--strict", csv])
        #expect(strict == .usage && strictError.contains("line 3") && strictError.contains("notes"))
        #expect(strictError.count < 500 && !strictError.contains("QQQ"))
        #expect(store.run(["lookup", "+44 121 496 0001"]).0 == .failure)

        // Without it: the row is reported and skipped, the others land.
        let (status, out, err) = store.run(["import", "--json", csv])
        #expect(status == .success)
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        #expect(summary["created"] as? Int == 2)
        let rejected = try #require(summary["rejected"] as? [[String: Any]])
        #expect(rejected.count == 1 && rejected.first?["line"] as? Int == 3 && rejected.first?["column"] as? String == "notes")
        #expect((rejected.first?["reason"] as? String)?.contains("over the limit of 65536 bytes") == true)
        #expect(out.count < 500 && err.isEmpty)
        #expect(store.run(["lookup", "+44 121 496 0002"]).0 == .failure)
        #expect(store.run(["subject", "export", "big-1"]).0 == .failure)
        let dataFile = try FileManager.default.attributesOfItem(atPath: store.store + "/data.sqlite")
        #expect(((dataFile[.size] as? NSNumber)?.intValue ?? 0) < 1 << 20)

        // --max-field-bytes sets the limit: a usage error when it is not a positive number.
        #expect(store.run(["import", "--max-field-bytes", "0", csv]).0 == .usage)
        #expect(store.run(["import", "--max-field-bytes", "lots", csv]).0 == .usage)
        let small = store.directory + "/small.csv"
        try "external_id,name,phone,notes\nok-3,Dee,+44 121 496 0004,short\nok-4,Eve,+44 121 496 0005,notes longer than twenty\n"
            .write(toFile: small, atomically: true, encoding: .utf8)
        let (smallStatus, smallOut, smallError) = store.run(["import", "--max-field-bytes", "20", small])
        #expect(smallStatus == .success && smallOut.contains("1 created") && smallError.contains("line 3: skipped: notes is 24 bytes"))

        // Second act: the earlier rows and the new one are found; an ordinary import goes on working.
        for number in ["+44 121 496 0001", "+44 121 496 0003", "+44 121 496 0004"] {
            #expect(store.run(["lookup", number]).0 == .success)
        }
        #expect(store.run(["lookup", "+44 121 496 0005"]).0 == .failure)
        #expect(store.run(["import", small]).0 == .success)
        #expect(store.run(["lookup", "+44 121 496 0005"]).1.contains("Eve"))
        #expect(store.run(["audit", "verify"]).0 == .success)
    }
}
