import Foundation
import Strongroom
import StrongroomStorage
import StrongroomTestSupport
import Testing
@testable import StrongroomTool

/// `subject erase` receipts, `audit receipt`, erased ids on re-import, and `retention apply`, through the tool.
@Suite("The tool's erasure receipts, tombstones and retention")
struct ErasureReceiptToolTests {
    /// The JSON object printed on `out`'s first line.
    static func object(_ out: String) throws -> [String: Any] {
        let line = try #require(out.split(separator: "\n").first)
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test("subject erase --json prints the receipt; audit receipt finds it by id or external id and verifies it (exit 0), an edited one exit 1; a re-import skips the id, --strict exits 2")
    func receipts() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let (erased, out, _) = store.run(["subject", "erase", "crm-4242-2", "--reason", "Art. 17 request 2026-114", "--json"])
        #expect(erased == .success)
        let receipt = try Self.object(out)
        #expect(Set(receipt.keys) == ["receipt", "id", "external_id", "erased_at", "actor", "reason", "destroyed", "audit_sequence", "mac"])
        #expect(receipt["external_id"] as? String == "crm-4242-2" && receipt["reason"] as? String == "Art. 17 request 2026-114")
        let destroyed = try #require(receipt["destroyed"] as? [String: Int])
        #expect(destroyed == ["subject_keys": 1, "rows": 1, "index_entries": 3, "consent_entries": 0, "calls": 0])
        // The number's last digits as written or normalised: long enough that the receipt's random
        // hexadecimal MAC cannot hold them by chance (four digits did, about one run in sixteen).
        for personal in ["Ivo", "Rossi", "ivo.2@example.org", "2429247", "242 9247"] { #expect(!out.contains(personal)) }
        let id = try #require(receipt["id"] as? String)

        let (byExternal, byExternalOut, _) = store.run(["audit", "receipt", "crm-4242-2", "--json"])
        #expect(byExternal == .success)
        let found = try Self.object(byExternalOut)
        #expect(found["verified"] as? Bool == true && found["problem"] is NSNull && found["mac"] as? String == receipt["mac"] as? String)
        let (byID, byIDOut, _) = store.run(["audit", "receipt", id])
        #expect(byID == .success && byIDOut.contains("erasure receipt verified") && byIDOut.contains("not kept in clear"))
        let byIDJSON = try Self.object(store.run(["audit", "receipt", id, "--json"]).1)
        #expect(byIDJSON["external_id"] is NSNull && byIDJSON["verified"] as? Bool == true)
        #expect(store.run(["audit", "receipt", "crm-4242-5"]).0 == .failure)
        let (missing, _, missingErr) = store.run(["audit", "receipt", "crm-nobody-9"])
        #expect(missing == .failure && missingErr.contains("no erasure receipt") && !missingErr.contains("crm-nobody-9"))

        // Re-import of the whole sample: the erased row is skipped and reported by line and day.
        let sample = Fixture.url("contacts-sample.csv").path
        let (imported, importOut, importErr) = store.run(["import", sample])
        #expect(imported == .success && importOut.contains("0 created"))
        #expect(importErr.contains("line 4: skipped: erased on ") && !importErr.contains("Ivo"), "\(importErr)")
        #expect(store.run(["import", "--strict", sample]).0 == .usage)
        #expect(store.run(["lookup", "0121-242-9247"]).0 == .failure)

        // An edited receipt is not verified, and says why.
        let keys = try SQLiteConnection(path: store.store + "/keys.sqlite", create: false)
        try keys.run("UPDATE tombstones SET actor = 'mallory'")
        let (edited, editedOut, _) = store.run(["audit", "receipt", "crm-4242-2"])
        #expect(edited == .failure && editedOut.contains("NOT verified") && editedOut.contains("MAC does not verify"))
        // Second act: other subjects work on, and the audit log itself is intact.
        #expect(store.run(["lookup", "+447400142870"]).0 == .success)
        #expect(store.run(["audit", "verify"]).0 == .success)
    }

    @Test("retention apply: a bad duration exits 2 saying what is accepted; --dry-run lists and changes nothing; the run erases with receipts")
    func retention() throws {
        let store = try ToolStore(importSample: false)
        defer { store.cleanUp() }
        let csv = store.directory + "/retention.csv"
        try """
            external_id,kind,name,phone,last_contacted
            crm-old-1,lead,Old Lead,+44 20 7946 0111,2001-01-01
            crm-old-2,contact,Old Contact,+44 20 7946 0222,2001-01-02
            crm-old-3,contact,Old Restricted,+44 20 7946 0333,2001-01-03
            crm-new-4,lead,New Lead,+44 20 7946 0444,2099-01-01

            """.write(toFile: csv, atomically: true, encoding: .utf8)
        #expect(store.run(["import", csv]).0 == .success)
        #expect(store.run(["subject", "restrict", "crm-old-3"]).0 == .success)

        for bad in ["2w", "90", "x"] {
            let (status, _, err) = store.run(["retention", "apply", "--untouched-for", bad])
            #expect(status == .usage && err.contains("90d, 24m or 2y"))
        }
        #expect(store.run(["retention", "apply"]).0 == .usage)
        #expect(store.run(["retention", "apply", "--untouched-for", "1y", "--kind", "person"]).0 == .usage)

        let (dry, dryOut, _) = store.run(["retention", "apply", "--untouched-for", "1y", "--dry-run", "--json"])
        #expect(dry == .success)
        let plan = try Self.object(dryOut)
        #expect(plan["dry_run"] as? Bool == true && plan["erased"] as? Int == 0 && plan["skipped_restricted"] as? Int == 1)
        #expect((plan["subjects"] as? [[String: Any]])?.compactMap { $0["external_id"] as? String } == ["crm-old-1", "crm-old-2"])
        #expect(!dryOut.contains("Old Lead"))
        #expect(store.run(["lookup", "+44 20 7946 0111"]).0 == .success)

        let (leads, leadsOut, _) = store.run(["retention", "apply", "--untouched-for", "1y", "--kind", "lead"])
        #expect(leads == .success && leadsOut.contains("erased 1 subject(s)"), "\(leadsOut)")
        let (all, allOut, _) = store.run(["retention", "apply", "--untouched-for", "1y", "--reason", "retention rule R-7", "--json"])
        #expect(all == .success)
        let done = try Self.object(allOut)
        #expect(done["erased"] as? Int == 1 && (done["receipts"] as? [[String: Any]])?.first?["reason"] as? String == "retention rule R-7")
        // Second act: the erased are gone for caller ID and verified by receipt; the rest answer.
        #expect(store.run(["lookup", "+44 20 7946 0111"]).0 == .failure)
        #expect(store.run(["audit", "receipt", "crm-old-1"]).0 == .success)
        #expect(store.run(["audit", "receipt", "crm-old-2"]).0 == .success)
        #expect(store.run(["lookup", "+44 20 7946 0444"]).0 == .success)
        #expect(store.run(["subject", "export", "crm-old-3", "--purpose", "legal-claims"]).0 == .success)
    }
}
