import Foundation
import Strongroom
import StrongroomStorage
import Testing
@testable import StrongroomTool

@Suite("The tool's erasure: every file, and the old key after a seal")
struct ErasureToolTests {
    /// `needle` (or its last 16 bytes, the GCM tag) in keys.sqlite, its WAL or its journal.
    static func keyFilesHold(_ needle: [UInt8], _ store: ToolStore) throws -> Bool {
        try ["", "-wal", "-journal"].map { store.store + "/keys.sqlite" + $0 }.filter { FileManager.default.fileExists(atPath: $0) }
            .contains { path in
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
                return [needle, Array(needle.suffix(16))].contains { contains(bytes, $0) }
            }
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { haystack[$0] == needle[0] && haystack[$0..<$0 + needle.count].elementsEqual(needle) }
    }

    /// The wrapped key of the subject with `externalID`, read raw.
    static func wrappedKey(_ externalID: String, _ store: ToolStore) throws -> [UInt8] {
        let id = try #require(try SQLiteConnection(path: store.store + "/data.sqlite", create: false)
            .scalarInteger("SELECT id FROM subjects WHERE external_id = ?", [.text(externalID)]))
        return try #require(try SQLiteConnection(path: store.store + "/keys.sqlite", create: false)
            .firstRow("SELECT wrapped FROM subject_keys WHERE subject_id = ?", [.integer(id)]) { $0.blob(0) } ?? nil)
    }

    @Test("subject erase under a keys.sqlite reader exits 1 naming the old pages; keys compact finishes once the reader ends; a free erase exits 0 with no copy")
    func eraseUnderReader() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let held = try Self.wrappedKey("crm-4242-2", store)
        let reader = try SQLiteConnection(path: store.store + "/keys.sqlite", create: false)
        try reader.execute("BEGIN")
        _ = try reader.scalarInteger("SELECT count(*) FROM subject_keys")

        let (status, out, err) = store.run(["subject", "erase", "crm-4242-2", "--reason", "Art. 17 request 9", "--wait", "0.2"])
        #expect(status == .failure)
        #expect(out.contains("key destroyed"))
        #expect(err.contains("old pages of keys.sqlite") && err.contains("keys compact") && err.split(separator: "\n").count == 1, "\(err)")
        #expect(try Self.keyFilesHold(held, store))
        let (stillHeld, heldJSON, _) = store.run(["keys", "compact", "--wait", "0.1", "--json"])
        #expect(stillHeld == .failure && heldJSON.contains("\"complete\":false"), "\(heldJSON)")
        // The key is gone all the same; keys status names the waiting pages.
        #expect(store.run(["subject", "export", "crm-4242-2"]).0 == .failure)
        #expect(store.run(["keys", "status"]).1.contains("old pages wait for a reader of keys.sqlite"))

        try reader.execute("COMMIT")
        let (compacted, compactOut, _) = store.run(["keys", "compact"])
        #expect(compacted == .success, "\(compactOut)")
        #expect(try !Self.keyFilesHold(held, store))
        #expect(!store.run(["keys", "status"]).1.contains("old pages"))

        // Without a reader: exit 0 and no copy at once.
        let free = try Self.wrappedKey("crm-4242-3", store)
        #expect(store.run(["subject", "erase", "crm-4242-3", "--reason", "Art. 17 request 10"]).0 == .success)
        #expect(try !Self.keyFilesHold(free, store))
        // Second act: other subjects answer, the erased stay erased, another compaction has nothing to do.
        #expect(store.run(["lookup", "+447400142870"]).0 == .success)
        #expect(store.run(["subject", "export", "crm-4242-3"]).0 == .failure)
        #expect(store.run(["keys", "compact"]).0 == .success)
        #expect(store.run(["subject", "erase", "crm-4242-2", "--reason", "x", "--wait", "-1"]).0 == .usage)
    }

    @Test("keys seal-erasures says the old key must be destroyed, and --destroy-old-key-file destroys the file; the old key is refused")
    func sealDestroysOldKeyFile() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let oldKey = try Data(contentsOf: URL(fileURLWithPath: store.key))
        let copy = store.directory + "/old-copy.key"
        #expect(FileManager.default.createFile(atPath: copy, contents: oldKey, attributes: [.posixPermissions: 0o600]))

        // A key given in the environment cannot be destroyed by the tool: refused before anything changes.
        let environmentKey = ToolRun(environment: ["STRONGROOM_STORE": store.store,
                                                   "STRONGROOM_MASTER_KEY": String(decoding: oldKey, as: UTF8.self)
                                                       .trimmingCharacters(in: .whitespacesAndNewlines)])
        #expect(environmentKey.run(["keys", "seal-erasures", "--new-key-file", store.directory + "/unused.key", "--destroy-old-key-file"]) == .usage)
        #expect(environmentKey.err.contains("STRONGROOM_MASTER_KEY"))
        #expect(store.run(["keys", "status"]).0 == .success)

        // Without the flag: said plainly.
        let second = store.directory + "/second.key"
        let (sealed, sealedOut, _) = store.run(["keys", "seal-erasures", "--new-key-file", second])
        #expect(sealed == .success)
        #expect(sealedOut.contains("must now be destroyed") && sealedOut.contains("--destroy-old-key-file"), "\(sealedOut)")

        // With it: the old file is gone, the new key opens, the old one is refused.
        let third = store.directory + "/third.key"
        let run = ToolRun(environment: ["STRONGROOM_STORE": store.store, "STRONGROOM_KEY_FILE": second])
        #expect(run.run(["keys", "seal-erasures", "--new-key-file", third, "--destroy-old-key-file"]) == .success, "\(run.err)")
        #expect(run.out.contains("old key file \(second) destroyed"), "\(run.out)")
        #expect(!FileManager.default.fileExists(atPath: second))
        let withThird = ToolRun(environment: ["STRONGROOM_STORE": store.store, "STRONGROOM_KEY_FILE": third])
        #expect(withThird.run(["lookup", "+447400142870"]) == .success)
        #expect(ToolRun(environment: ["STRONGROOM_STORE": store.store, "STRONGROOM_KEY_FILE": copy]).run(["keys", "status"]) == .integrity)

        // In place (the new key file is the current one): the old key in it is overwritten, the new one put there.
        let before = try Data(contentsOf: URL(fileURLWithPath: third))
        #expect(withThird.run(["keys", "seal-erasures", "--new-key-file", third, "--destroy-old-key-file"]) == .success)
        #expect(try Data(contentsOf: URL(fileURLWithPath: third)) != before)
        #expect(!FileManager.default.fileExists(atPath: third + ".new"))
        // Second act: the store works with the file's new key, and a lookup and a status run again.
        let after = ToolRun(environment: ["STRONGROOM_STORE": store.store, "STRONGROOM_KEY_FILE": third])
        #expect(after.run(["lookup", "+447400142870"]) == .success)
        #expect(after.run(["keys", "status"]) == .success)
    }
}
