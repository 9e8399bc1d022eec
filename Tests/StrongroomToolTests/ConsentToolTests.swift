import Foundation
import Strongroom
import StrongroomTestSupport
import Testing
@testable import StrongroomTool

/// The JSON object or array a command printed.
func json(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8))
}

/// Every audit log line of a tool store, as text.
private func auditText(_ store: ToolStore) throws -> String {
    let folder = store.store + "/audit"
    return try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".jsonl") }.sorted()
        .map { try String(contentsOfFile: folder + "/" + $0, encoding: .utf8) }.joined()
}

@Suite("Consent through the tool")
struct ConsentToolTests {
    @Test("declare a double opt-in purpose, grant (token printed), confirm, show, withdraw; exports obey the ledger; exit statuses")
    func consentFlow() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        #expect(store.run(["purpose", "declare", "newsletter", "--basis", "consent", "--double-opt-in", "--description", "Monthly"]).0 == .success)
        let (_, listed, _) = store.run(["purpose", "list", "--json"])
        let purposes = try #require(try json(listed) as? [[String: Any]])
        let newsletter = try #require(purposes.first { $0["name"] as? String == "newsletter" })
        #expect(newsletter["lawful_basis"] as? String == "consent" && newsletter["requires_double_opt_in"] as? Bool == true)
        #expect(purposes.contains { $0["name"] as? String == "caller-id" && $0["lawful_basis"] as? String == "legitimate-interest" })

        // Imported contacts are exported for the built-in purposes without any consent entry.
        let (plainStatus, plain, _) = store.run(["subject", "export", "crm-4242-2", "--purpose", "subject-request"])
        #expect(plainStatus == .success)
        #expect((try json(plain) as? [String: Any])?["consents"] as? [Any] != nil)
        #expect(((try json(plain) as? [String: Any])?["consents"] as? [Any])?.isEmpty == true)

        // No evidence, no consent (a consent cannot be pre-ticked); undeclared or non-consent purposes; unknown subjects.
        #expect(store.run(["consent", "grant", "crm-4242-2", "--purpose", "newsletter"]).0 == .usage)
        #expect(store.run(["consent", "grant", "crm-4242-2", "--purpose", "newsletter", "--evidence", " "]).0 == .usage)
        #expect(store.run(["consent", "grant", "crm-4242-2", "--purpose", "profiling", "--evidence", "form"]).0 == .usage)
        #expect(store.run(["consent", "grant", "crm-4242-2", "--purpose", "caller-id", "--evidence", "form"]).0 == .usage)
        #expect(store.run(["consent", "grant", "crm-4242-2", "--purpose", "newsletter", "--evidence", "form", "--initiator", "robot"]).0 == .usage)
        let (unknownStatus, _, unknownError) = store.run(["consent", "grant", "no-such-subject", "--purpose", "newsletter", "--evidence", "form"])
        #expect(unknownStatus == .failure && unknownError.split(separator: "\n").count == 1)

        // A grant for a double opt-in purpose is pending and prints its token, once.
        let (grantStatus, grant, _) = store.run(["consent", "grant", "crm-4242-2", "--purpose", "newsletter", "--initiator", "subject",
                                                 "--client", "203.0.113.7", "--evidence", "form v3: Quetzal box ticked", "--json"])
        #expect(grantStatus == .success)
        let granted = try #require(try json(grant) as? [String: Any])
        #expect(granted["state"] as? String == "pending" && granted["purpose"] as? String == "newsletter")
        #expect(granted["token_expires_at"] is String)
        let token = try #require(granted["confirmation_token"] as? String)

        // Pending is not consent: an export for the purpose is refused (exit 3) with one line naming the refusal.
        let (refusedStatus, _, refusedError) = store.run(["subject", "export", "crm-4242-2", "--purpose", "newsletter"])
        #expect(refusedStatus == .integrity)
        #expect(refusedError.contains("refused: no consent for newsletter") && refusedError.split(separator: "\n").count == 1)

        // Wrong and reused tokens are input errors (exit 2); the right one confirms.
        let (wrongStatus, _, wrongError) = store.run(["consent", "confirm", "crm-4242-2", "--token", "wrong"])
        #expect(wrongStatus == .usage && wrongError.contains("consent confirmation refused"))
        let (confirmStatus, confirmed, _) = store.run(["consent", "confirm", "crm-4242-2", "--token", token, "--client", "203.0.113.8"])
        #expect(confirmStatus == .success && confirmed.contains("newsletter confirmed"))
        #expect(store.run(["consent", "confirm", "crm-4242-2", "--token", token]).0 == .usage)

        // Now the export for the purpose works, and carries the ledger, decrypted.
        let (exportStatus, exported, _) = store.run(["subject", "export", "crm-4242-2", "--purpose", "newsletter"])
        #expect(exportStatus == .success)
        let consents = try #require((try json(exported) as? [String: Any])?["consents"] as? [[String: Any]])
        #expect(consents.map { $0["state"] as? String } == ["pending", "confirmed"])
        #expect(consents[0]["client_address"] as? String == "203.0.113.7" && consents[0]["evidence"] as? String == "form v3: Quetzal box ticked")
        #expect(consents[1]["confirms"] as? Int == consents[0]["id"] as? Int)

        let (_, shown, _) = store.run(["consent", "show", "crm-4242-2"])
        #expect(shown.contains("newsletter  pending") && shown.contains("newsletter  confirmed") && shown.contains("from 203.0.113.7"))
        #expect(shown.contains("evidence: form v3: Quetzal box ticked"))
        let (_, shownJSON, _) = store.run(["consent", "show", "crm-4242-2", "--json"])
        #expect((try json(shownJSON) as? [[String: Any]])?.count == 2)

        // Withdrawal: the export for the purpose is refused again.
        let (withdrawStatus, withdrawn, _) = store.run(["consent", "withdraw", "crm-4242-2", "--purpose", "newsletter", "--initiator", "subject"])
        #expect(withdrawStatus == .success && withdrawn.contains("newsletter withdrawn"))
        #expect(store.run(["subject", "export", "crm-4242-2", "--purpose", "newsletter"]).0 == .integrity)
        #expect(store.run(["consent", "withdraw", "crm-4242-2", "--purpose", "caller-id"]).0 == .usage)

        // The audit log has each change and each refusal, and never the subject's address or the evidence.
        let (_, audit, _) = store.run(["audit", "show", "--subject", "crm-4242-2"])
        #expect(audit.contains("newsletter: pending (subject)") && audit.contains("newsletter: confirmed (subject)"))
        #expect(audit.contains("refused"))
        let log = try auditText(store)
        #expect(!log.contains("203.0.113.7") && !log.contains("203.0.113.8") && !log.contains("Quetzal"))
        #expect(store.run(["audit", "verify"]).0 == .success)
    }

    @Test("show of a subject without consents; erasure takes the ledger with it; unknown subjects exit 1 with one clear line")
    func erasureAndUnknownSubjects() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        #expect(store.run(["purpose", "declare", "marketing-email", "--basis", "consent", "--description", "Offers"]).0 == .success)
        let (emptyStatus, empty, _) = store.run(["consent", "show", "crm-4242-2"])
        #expect(emptyStatus == .success && empty.contains("no consent entries"))
        let (grantStatus, grant, _) = store.run(["consent", "grant", "crm-4242-2", "--purpose", "marketing-email", "--evidence", "phone call, script v2"])
        #expect(grantStatus == .success && grant.contains("marketing-email granted") && !grant.contains("token"))
        #expect(store.run(["subject", "export", "crm-4242-2", "--purpose", "marketing-email"]).0 == .success)
        #expect(store.run(["subject", "erase", "crm-4242-2", "--reason", "Art. 17 request 7"]).0 == .success)
        for words in [["consent", "show", "crm-4242-2"], ["subject", "export", "crm-4242-2"],
                      ["subject", "erase", "crm-4242-2", "--reason", "again"],
                      ["consent", "grant", "crm-4242-2", "--purpose", "marketing-email", "--evidence", "form"],
                      ["subject", "export", "999999"], ["subject", "erase", "999999", "--reason", "Art. 17 request 8"],
                      ["consent", "confirm", "999999", "--token", "abc"]] {
            let (status, out, err) = store.run(words)
            #expect(status == .failure, "\(words)")
            #expect(out.isEmpty && err.split(separator: "\n").count == 1, "\(words)")
            #expect(err.contains("no subject") || err.contains("was erased"), "\(words): \(err)")
        }
        #expect(store.run(["audit", "verify"]).0 == .success)
    }

    @Test("consent and purpose commands explain their options and give an example")
    func help() {
        for (command, options) in [("consent grant", ["--purpose", "--evidence", "--initiator", "--client", "never written to the audit log"]),
                                   ("consent withdraw", ["--purpose", "--evidence"]), ("consent confirm", ["--token", "exit status 2"]),
                                   ("consent show", ["--json"]), ("purpose declare", ["--basis", "--double-opt-in"]),
                                   ("purpose list", ["--json"])] {
            let tool = ToolRun()
            #expect(tool.run(command.split(separator: " ").map(String.init) + ["--help"]) == .success)
            #expect(tool.out.contains("Usage: strongroom \(command)") && tool.out.contains("Example"))
            for option in options { #expect(tool.out.contains(option), "\(command) --help lacks \(option)") }
        }
        let overview = ToolRun()
        #expect(overview.run(["--help"]) == .success)
        for command in ["consent grant", "consent withdraw", "consent confirm", "consent show", "purpose declare", "purpose list"] {
            #expect(overview.out.contains(command))
        }
    }

    @Test("the demo shows a consent change with double opt-in")
    func demo() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-demo-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tool = ToolRun()
        #expect(tool.run(["demo", "--dir", directory, "--sample", Fixture.url("contacts-sample.csv").path]) == .success)
        #expect(tool.out.contains("double opt-in") && tool.out.contains("granted: pending") && tool.out.contains("confirmed:"))
        #expect(tool.out.contains("the mailer is refused"))
    }
}
