import Foundation
import StrongroomTestSupport
import Testing
@testable import StrongroomTool

@Suite("subject find, subject list and subject rectify", .serialized)
struct SubjectFindToolTests {
    @Test("find by e-mail, phone and external id prints as lookup does; none is exit 1; bad input exit 2 without echo")
    func find() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let (status, out, err) = store.run(["subject", "find", "--email", "  IVO.2@Example.ORG "])
        #expect(status == .success, "\(err)")
        #expect(out.hasPrefix("Ivo Rossi-2  lead ") && out.contains("(crm-4242-2)"))
        let (jsonStatus, json, _) = store.run(["subject", "find", "--external-id", "crm-4242-2", "--json"])
        #expect(jsonStatus == .success)
        let matches = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        #expect(matches.count == 1 && matches[0]["external_id"] as? String == "crm-4242-2" && matches[0]["name"] as? String == "Ivo Rossi-2")
        let (phoneStatus, phone, _) = store.run(["subject", "find", "--phone", "121 242 9247", "--region", "GB"])
        #expect(phoneStatus == .success && phone.contains("Ivo Rossi-2"))
        #expect(store.run(["subject", "find", "--email", "nobody.here@example.org"]) == (.failure, "no match\n", ""))
        #expect(store.run(["subject", "find", "--external-id", "crm-nobody", "--json"]) == (.failure, "[]\n", ""))
        for words in [["--email", "ivo.2-at-example.org"], ["--phone", "ivo.2 12"]] {
            let (badStatus, badOut, badErr) = store.run(["subject", "find"] + words)
            #expect(badStatus == .usage && badOut.isEmpty && !badErr.isEmpty && !badErr.contains("ivo.2"), "\(badErr)")
        }
        #expect(store.run(["subject", "find"]).0 == .usage)
        #expect(store.run(["subject", "find", "--email", "a@example.org", "--external-id", "x"]).0 == .usage)
        // Second act: the audit log holds the decrypts under subject-request, and the log verifies.
        let (_, audit, _) = store.run(["audit", "show", "--subject", "crm-4242-2", "--json"])
        #expect(audit.contains("\"purpose\":\"subject-request\""))
        #expect(store.run(["audit", "verify"]).0 == .success)
    }

    @Test("list prints every subject's clear fields, one JSON object per line, filtered, decrypting nothing")
    func list() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let (status, out, _) = store.run(["subject", "list", "--json"])
        #expect(status == .success)
        let lines = out.split(separator: "\n")
        #expect(lines.count == 992)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(Set(first.keys) == ["id", "external_id", "kind", "source", "owner", "created", "last_contacted", "restricted"])
        #expect(first["external_id"] as? String == "crm-4242-0" && first["restricted"] as? Bool == false
                && first["last_contacted"] as? String == "2026-05-03T15:49:00Z")
        #expect(!out.contains("Eriksen") && !out.contains("@example.org"))
        #expect(store.run(["subject", "list", "--kind", "lead", "--json"]).1.split(separator: "\n").count == 500)
        let (_, old, _) = store.run(["subject", "list", "--untouched-since", "2026-05-04", "--json"])
        #expect(old.contains("\"crm-4242-0\"") && !old.contains("\"crm-4242-2\""))
        #expect(store.run(["subject", "list", "--kind", "person"]).0 == .usage)
        #expect(store.run(["subject", "list", "--untouched-since", "yesterday"]).0 == .usage)
        // Second act: a restriction shows in the listing, alone under --restricted.
        #expect(store.run(["subject", "restrict", "crm-4242-3"]).0 == .success)
        let (_, restricted, _) = store.run(["subject", "list", "--restricted"])
        #expect(restricted.split(separator: "\n").count == 1 && restricted.contains("crm-4242-3") && restricted.hasSuffix("restricted\n"))
    }

    @Test("rectify changes the named fields, moves a number to another subject, and refuses bad input without echo")
    func rectify() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        #expect(store.run(["lookup", "07400 123538"]).1.contains("crm-4242-2"))
        #expect(store.run(["subject", "rectify", "crm-4242-2", "work_phone="]) == (.success, "rectified subject 3: work_phone\n", ""))
        let (status, out, err) = store.run(["subject", "rectify", "crm-4242-3", "work_phone=07400 123538", "email=Bruno@Acme.example", "notes="])
        #expect(status == .success && out == "rectified subject 4: work_phone, email, notes\n", "\(err)")
        let (_, lookup, _) = store.run(["lookup", "--json", "07400 123538"])
        let matches = try #require(try JSONSerialization.jsonObject(with: Data(lookup.utf8)) as? [[String: Any]])
        #expect(matches.map { $0["external_id"] as? String } == ["crm-4242-3"])
        #expect(store.run(["subject", "find", "--email", "bruno@acme.example"]).1.contains("crm-4242-3"))
        #expect(store.run(["subject", "find", "--email", "bruno.3@example.org"]).0 == .failure)
        for change in ["colour=Vermilion Secret", "mobile=Secret 99", "email=Secret", "owner=Secret", "Secret"] {
            let (badStatus, badOut, badErr) = store.run(["subject", "rectify", "crm-4242-2", change])
            #expect(badStatus == .usage && badOut.isEmpty && !badErr.contains("Secret") && !badErr.contains("Vermilion"), "\(change): \(badErr)")
        }
        // Second act: a restricted subject is rectified for its own request only; the export shows the rest kept.
        #expect(store.run(["subject", "restrict", "crm-4242-3"]).0 == .success)
        #expect(store.run(["subject", "rectify", "crm-4242-3", "name=Bruno T."]).0 == .integrity)
        #expect(store.run(["subject", "rectify", "crm-4242-3", "name=Bruno T.", "--purpose", "subject-request"]).0 == .success)
        let (_, export, _) = store.run(["subject", "export", "crm-4242-3", "--purpose", "subject-request"])
        #expect(export.contains("\"Bruno T.\"") && export.contains("Acme Realty") && export.contains("+41 78 173 65 32"))
        #expect(store.run(["audit", "verify"]).0 == .success)
    }
}
