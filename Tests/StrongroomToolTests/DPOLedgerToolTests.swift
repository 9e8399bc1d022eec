import Foundation
import Strongroom
import StrongroomTestSupport
import Testing
@testable import StrongroomTool

/// Each line a command printed, as a JSON object.
private func jsonLines(_ text: String) throws -> [[String: Any]] {
    try text.split(separator: "\n").map { try #require(try json(String($0)) as? [String: Any]) }
}

/// The DPO's smaller needs through the tool (issue #19): `--json` where it was missing, `audit show`
/// filters, purposes that cannot undo consent, partial re-imports.
@Suite("DPO ledger and smaller commands through the tool")
struct DPOLedgerToolTests {
    @Test("subject restrict|unrestrict --json; a restricted export names --purpose subject-request; exit statuses")
    func restriction() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let (status, out, _) = store.run(["subject", "restrict", "crm-4242-2", "--json"])
        #expect(status == .success)
        let restricted = try #require(try json(out) as? [String: Any])
        #expect(restricted["restricted"] as? Bool == true && restricted["id"] is String)
        #expect(store.run(["subject", "restrict", "no-such-subject", "--json"]).0 == .failure)

        let (refused, refusedOut, refusedError) = store.run(["subject", "export", "crm-4242-2"])
        #expect(refused == .integrity && refusedOut.isEmpty)
        #expect(refusedError.contains("--purpose subject-request") && refusedError.split(separator: "\n").count == 1)
        #expect(!refusedError.contains("Ivo"))
        // Second act: the subject's own request is answered while restricted; once lifted, admin exports again.
        #expect(store.run(["subject", "export", "crm-4242-2", "--purpose", "subject-request"]).0 == .success)
        let (lifted, liftedOut, _) = store.run(["subject", "unrestrict", "crm-4242-2", "--json"])
        #expect(lifted == .success)
        #expect((try json(liftedOut) as? [String: Any])?["restricted"] as? Bool == false)
        #expect(store.run(["subject", "export", "crm-4242-2"]).0 == .success)
    }

    @Test("phone normalize --json: one object per number, null and the reason when invalid; exit 2 when any is")
    func normalizeJSON() throws {
        let tool = ToolRun()
        #expect(tool.run(["phone", "normalize", "--json", "--region", "GB", "020 7946 0958"]) == .success)
        #expect(try jsonLines(tool.out).map { $0["e164"] as? String } == ["+442079460958"])
        let piped = ToolRun(input: ["(415) 555-2671", "abc"])
        #expect(piped.run(["phone", "normalize", "--region", "US", "--json"]) == .usage)
        let lines = try jsonLines(piped.out)
        #expect(lines.count == 2 && lines[0]["e164"] as? String == "+14155552671")
        #expect(lines[1]["e164"] is NSNull && lines[1]["invalid"] as? String == "no-digits")
    }

    @Test("call record --json has every key lookup --json has, null where none, for a new lead and a known caller")
    func callRecordKeys() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let keys: Set<String> = ["id", "external_id", "kind", "name", "last_contacted", "source"]
        let (status, out, _) = store.run(["call", "record", "--json", "--at", "2026-12-06T10:00:00Z", "+44 20 7946 0000"])
        #expect(status == .success)
        let lead = try #require(try json(out) as? [String: Any])
        #expect(Set(lead.keys).isSuperset(of: keys.union(["created_lead", "logged"])))
        #expect(lead["name"] is NSNull && lead["external_id"] is NSNull && lead["created_lead"] as? Bool == true)
        // Second act: the next call from the number finds the lead; lookup prints the same keys.
        let (_, again, _) = store.run(["call", "record", "--json", "--at", "2026-12-06T11:00:00Z", "+44 20 7946 0000"])
        let known = try #require(try json(again) as? [String: Any])
        #expect(known["id"] as? String == lead["id"] as? String && known["created_lead"] as? Bool == false)
        let (_, looked, _) = store.run(["lookup", "--json", "+44 20 7946 0000"])
        let match = try #require((try json(looked) as? [[String: Any]])?.first)
        #expect(Set(match.keys) == keys && match["name"] is NSNull)
        #expect(store.run(["call", "record", "--json", "12"]).0 == .usage)
    }

    @Test("audit show --until and --action filter; an unknown action or time is exit 2 naming the valid ones")
    func auditShowFilters() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        #expect(store.run(["lookup", "+44 121 242 9247"]).0 == .success)
        let (status, out, _) = store.run(["audit", "show", "--action", "decrypt", "--json"])
        #expect(status == .success)
        let decrypts = try jsonLines(out)
        #expect(!decrypts.isEmpty && decrypts.allSatisfy { $0["action"] as? String == "decrypt" })
        let (_, all, _) = store.run(["audit", "show", "--json"])
        #expect(try jsonLines(all).count > decrypts.count)
        // Before the store existed: nothing; a whole day given as a date includes today's entries.
        #expect(store.run(["audit", "show", "--until", "2000-01-01"]).1 == "no matching entries\n")
        let today = String(ISO8601DateFormatter().string(from: Date()).prefix(10))
        let (_, untilToday, _) = store.run(["audit", "show", "--until", today, "--action", "decrypt", "--json"])
        #expect(try jsonLines(untilToday).count == decrypts.count)

        let (unknown, _, unknownError) = store.run(["audit", "show", "--action", "peek"])
        #expect(unknown == .usage && unknownError.contains("decrypt") && unknownError.contains("erase"))
        #expect(unknownError.split(separator: "\n").count == 1)
        #expect(store.run(["audit", "show", "--until", "yesterday"]).0 == .usage)
        // Second act: the log still verifies and shows after the refused commands.
        #expect(store.run(["audit", "verify"]).0 == .success)
    }

    @Test("purpose declare refuses to weaken a purpose with ledger entries (exit 2); list and export show the declarations")
    func purposeWeakening() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        #expect(store.run(["purpose", "declare", "marketing-email", "--basis", "consent", "--double-opt-in", "--description", "Offers"]).0
                == .success)
        let (_, granted, _) = store.run(["consent", "grant", "crm-4242-2", "--purpose", "marketing-email", "--evidence", "form v3",
                                         "--initiator", "subject", "--actor", "alice", "--json"])
        let token = try #require((try json(granted) as? [String: Any])?["confirmation_token"] as? String)
        #expect(store.run(["consent", "confirm", "crm-4242-2", "--token", token]).0 == .success)

        let (weakened, _, weakenedError) = store.run(["purpose", "declare", "marketing-email", "--basis", "legitimate-interest",
                                                      "--description", "Offers"])
        #expect(weakened == .usage && weakenedError.contains("declare a new purpose"))
        let (dropped, _, droppedError) = store.run(["purpose", "declare", "marketing-email", "--basis", "consent", "--description", "Offers"])
        #expect(dropped == .usage && droppedError.contains("double opt-in"))
        #expect(store.run(["purpose", "declare", "marketing-email", "--basis", "consent", "--double-opt-in", "--description", "Offers"]).0
                == .success)

        // Second act: the declaration is unchanged in the list, and the export names it with the consent's actor.
        let (_, listed, _) = store.run(["purpose", "list", "--json"])
        let marketing = try #require((try json(listed) as? [[String: Any]])?.first { $0["name"] as? String == "marketing-email" })
        #expect(marketing["lawful_basis"] as? String == "consent" && marketing["requires_double_opt_in"] as? Bool == true)
        let (_, exported, _) = store.run(["subject", "export", "crm-4242-2", "--purpose", "subject-request"])
        let export = try #require(try json(exported) as? [String: Any])
        let purposes = try #require(export["purposes"] as? [[String: Any]])
        #expect(purposes.map { $0["name"] as? String } == ["marketing-email"])
        #expect(purposes.first?["lawful_basis"] as? String == "consent")
        let consents = try #require(export["consents"] as? [[String: Any]])
        #expect(consents.first?["actor"] as? String == "alice")
        let (_, shown, _) = store.run(["consent", "show", "crm-4242-2"])
        #expect(shown.contains("alice"))
    }

    @Test("a re-import with only external_id,name,notes keeps the phones (caller ID still finds), source and owner")
    func partialReimport() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let file = store.directory + "/rectify.csv"
        try "external_id,name,notes\ncrm-4242-2,Ivo Rossi-Rectified,called back\n".write(toFile: file, atomically: true, encoding: .utf8)
        let (status, out, _) = store.run(["import", file, "--json"])
        #expect(status == .success)
        #expect((try json(out) as? [String: Any])?["updated"] as? Int == 1)
        let (found, looked, _) = store.run(["lookup", "--json", "+44 121 242 9247"])
        #expect(found == .success)
        let match = try #require((try json(looked) as? [[String: Any]])?.first)
        #expect(match["name"] as? String == "Ivo Rossi-Rectified" && match["source"] as? String == "Google Ads")
        #expect(match["last_contacted"] is String)
        // Second act: the same file again changes nothing more; the other numbers still find the person.
        #expect(store.run(["import", file]).0 == .success)
        #expect(store.run(["lookup", "+972 50-273-7319"]).0 == .success)
    }
}
