import Foundation
import Strongroom
import StrongroomStorage
import StrongroomTestSupport
import Testing
@testable import StrongroomTool

/// What one tool command did: its exit status and its two streams.
private struct Outcome: Equatable, CustomStringConvertible {
    let status: ToolStatus
    let out: String
    let err: String

    var description: String { "exit \(status.rawValue)\nout: \(out)\nerr: \(err)" }
}

/// The test server's URL for a fresh schema; nil when the PostgreSQL half is off or the variable is missing
/// (then an issue says what to do).
private func freshURL() -> String? {
    guard let url = PostgresTestServer.url(schema: PostgresTestServer.uniqueSchema()) else {
        if let message = PostgresTestServer.missingMessage { Issue.record(Comment(rawValue: message)) }
        PostgresTestServer.announceIfOff()
        return nil
    }
    return url
}

/// A fresh schema on the test server and a scratch folder, for a PostgreSQL store and a folder store
/// compared side by side; nil when the PostgreSQL half is off.
private struct ScratchPlace {
    let url: String
    let schema: String
    let directory: String

    init?() throws {
        guard let url = freshURL() else { return nil }
        self.url = url
        schema = try PostgresConnection.split(url).schema
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-tool-pg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Drops the schemas and removes the folder.
    func cleanUp() {
        dropSchemas([schema, schema + "_keys"], on: url)
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Drops the schemas a test made on the server.
private func dropSchemas(_ names: [String], on url: String) {
    guard let connection = try? PostgresConnection(url: url, create: false, writeLock: "test") else { return }
    for name in names { try? connection.execute("DROP SCHEMA IF EXISTS \"\(name)\" CASCADE") }
}

/// A raw connection to `schema` on the server of `url`.
private func connection(_ url: String, schema: String) throws -> PostgresConnection {
    try PostgresConnection(url: PostgresConnection.url(url, schema: schema), create: false, writeLock: "test")
}

/// The tables of `schema`, by name.
private func tables(_ url: String, schema: String) throws -> Set<String> {
    Set(try connection(url, schema: schema).rows(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = ?", [.text(schema)]) { $0.text(0) ?? "" })
}

/// An export's JSON without the fields that differ from one run to the next (times, entry MACs).
private func stable(_ json: Any) -> Any {
    if let object = json as? [String: Any] {
        return object.filter { !["time", "mac", "exported_at", "created_at", "updated_at"].contains($0.key) }.mapValues(stable)
    }
    if let array = json as? [Any] { return array.map(stable) }
    return json
}

@Suite("The strongroom tool on PostgreSQL", .enabled(if: !PostgresTestServer.isOff, "STRONGROOM_TEST_POSTGRES=off"))
struct PostgresToolTests {
    /// The commands of a session, before and after a key-encryption key rotation.
    static let commands: [[String]] = [
        ["init", "--region", "GB"],
        ["import", Fixture.url("contacts-sample.csv").path],
        ["lookup", "+44 121 242 9247"],
        ["lookup", "--json", "+44 121 242 9247"],
        ["lookup", "+33 6 12 34 56 78"],
        ["call", "record", "--at", "2026-11-23T09:15:00Z", "07700 900123"],
        ["call", "record", "--json", "--at", "2026-11-23T09:15:00Z", "07700 900123"],
        ["subject", "export", "crm-4242-2", "--purpose", "subject-request"],
        ["keys", "status"],
        ["audit", "verify"],
    ]
    static let rotation: [[String]] = [["keys", "rotate-kek"], ["keys", "status"], ["audit", "verify"], ["lookup", "+44 121 242 9247"]]

    /// Runs `commands` on one store with `--store store` (and `--keys-store`), naming the store and key
    /// file `STORE` and `KEY` in the outcomes so that two stores' sessions compare.
    private func session(_ commands: [[String]], store: String, keysStore: String? = nil, key: String) -> [(String, Outcome)] {
        let storeOptions = ["--store", store] + (keysStore.map { ["--keys-store", $0] } ?? []) + ["--key-file", key]
        return commands.map { command in
            let tool = ToolRun()
            let status = tool.run(command + storeOptions)
            func named(_ text: String) -> String {
                text.replacingOccurrences(of: StoreLocation(store).description, with: "STORE").replacingOccurrences(of: key, with: "KEY")
            }
            return (command.joined(separator: " "), Outcome(status: status, out: named(tool.out), err: named(tool.err)))
        }
    }

    /// Expects the PostgreSQL session's outcomes to be the folder session's: the same exit statuses and
    /// lines (a subject export: the same JSON but for times and entry MACs).
    private func compare(_ postgres: [(String, Outcome)], with folder: [(String, Outcome)]) throws {
        #expect(folder.count == postgres.count)
        for ((command, expected), (_, actual)) in zip(folder, postgres) {
            #expect(actual.status == expected.status, "\(command): exit \(actual.status) on PostgreSQL, \(expected.status) on a folder\n\(actual)")
            if command.hasPrefix("subject export") {
                let mine = try JSONSerialization.jsonObject(with: Data(actual.out.utf8))
                let theirs = try JSONSerialization.jsonObject(with: Data(expected.out.utf8))
                #expect(NSDictionary(dictionary: stable(mine) as? [String: Any] ?? [:])
                            .isEqual(to: stable(theirs) as? [String: Any] ?? [:]), "\(command):\n\(actual.out)\nversus\n\(expected.out)")
                #expect((mine as? [String: Any])?["format"] as? String == "strongroom.subject-export")
            } else {
                #expect(actual.out == expected.out, "\(command): standard output differs")
                #expect(actual.err == expected.err, "\(command): standard error differs")
            }
        }
    }

    @Test("init, import, lookup (text and JSON), call record, subject export, keys rotate-kek, keys status, audit verify: the same exits and lines as a folder store")
    func endToEnd() throws {
        guard let place = try ScratchPlace() else { return }
        defer { place.cleanUp() }
        let (url, schema, directory) = (place.url, place.schema, place.directory)
        let folderStore = directory + "/store", folderKey = directory + "/folder.key", postgresKey = directory + "/postgres.key"

        let postgres = session(Self.commands, store: url, key: postgresKey)
        try compare(postgres, with: session(Self.commands, store: folderStore, key: folderKey))
        // The outcomes are the ones wanted, not only equal.
        let outcomes = Dictionary(postgres, uniquingKeysWith: { first, _ in first })
        #expect(outcomes.values.filter { $0.status != .success }.count == 1)
        #expect(outcomes["lookup +33 6 12 34 56 78"]?.status == .failure)
        #expect(outcomes["init --region GB"]?.out.hasPrefix("created store STORE (default region GB") == true)
        #expect(outcomes["import \(Fixture.url("contacts-sample.csv").path)"]?.out.contains(": 992 created, 0 updated") == true)
        #expect(outcomes["lookup +44 121 242 9247"]?.out.hasPrefix("Ivo Rossi-2  lead 3 (crm-4242-2)") == true)
        let matches = try #require(try JSONSerialization.jsonObject(with: Data((outcomes["lookup --json +44 121 242 9247"]?.out ?? "").utf8))
                                   as? [[String: Any]])
        #expect(matches.count == 1 && matches.first?["external_id"] as? String == "crm-4242-2")
        #expect(outcomes["call record --at 2026-11-23T09:15:00Z 07700 900123"]?.out.contains("created lead 993 (source Call log)") == true)
        let again = try #require(try JSONSerialization.jsonObject(
            with: Data((outcomes["call record --json --at 2026-11-23T09:15:00Z 07700 900123"]?.out ?? "").utf8)) as? [String: Any])
        #expect(again["created_lead"] as? Bool == false && again["logged"] as? Bool == false)
        #expect(outcomes["keys status"]?.out.contains("key-encryption key    version 1, wraps 993 subject keys") == true)
        #expect(outcomes["audit verify"]?.out.hasPrefix("audit log intact: ") == true)

        // Then a key-encryption key rotation, and the store after it.
        let rotated = session(Self.rotation, store: url, key: postgresKey)
        let folderRotated = session(Self.rotation, store: folderStore, key: folderKey)
        try compare(rotated, with: folderRotated)
        let after = Dictionary(rotated, uniquingKeysWith: { first, _ in first })
        #expect(after["keys rotate-kek"]?.out == "key-encryption key rotated: version 1 -> 2, 993 subject keys re-wrapped, old KEK destroyed\n")
        #expect(after["keys status"]?.out.contains("key-encryption key    version 2, wraps 993 subject keys") == true)
        #expect(after["audit verify"]?.status == .success)

        // The store is in the schema the URL names, its keys beside it in <schema>_keys, nothing in the folder.
        #expect(try tables(url, schema: schema).isSuperset(of: ["store", "subjects", "phone_index", "audit_log"]))
        #expect(try tables(url, schema: schema).isDisjoint(with: ["subject_keys", "kek"]))
        #expect(try tables(url, schema: schema + "_keys").isSuperset(of: ["store", "subject_keys", "kek", "audit_head"]))
        #expect(try connection(url, schema: schema + "_keys").scalarInteger("SELECT count(*) FROM subject_keys") == 993)
        #expect(try connection(url, schema: schema).scalarInteger("SELECT count(*) FROM audit_log") ?? 0 > 993)
    }

    @Test("call record for a restricted subject exits 3 and changes nothing, as on a folder store; other calls go on")
    func restrictedCallRecord() throws {
        guard let place = try ScratchPlace() else { return }
        defer { place.cleanUp() }
        let (url, schema, directory) = (place.url, place.schema, place.directory)
        let commands: [[String]] = [
            ["init", "--region", "GB"], ["import", Fixture.url("contacts-sample.csv").path], ["subject", "restrict", "crm-4242-0"],
            ["call", "record", "--at", "2026-12-01T09:00:00Z", "+447400142870"],
            ["call", "record", "--at", "2026-12-01T09:05:00Z", "+821020007045"],
            ["subject", "unrestrict", "crm-4242-0"],
            ["call", "record", "--at", "2026-12-01T09:15:00Z", "+447400142870"], ["audit", "verify"],
        ]
        let postgres = session(commands, store: url, key: directory + "/postgres.key")
        try compare(postgres, with: session(commands, store: directory + "/store", key: directory + "/folder.key"))
        #expect(postgres.map(\.1.status) == [.success, .success, .success, .integrity, .success, .success, .success, .success])
        let data = try connection(url, schema: schema)
        #expect(try data.scalarInteger("SELECT count(*) FROM calls") == 2)
        #expect(try data.scalarInteger("SELECT count(*) FROM audit_log WHERE position('\"refused\"' in convert_from(line, 'UTF8')) > 0") == 1)
    }

    @Test("--keys-store puts the key tables in another schema: there, and not in the data schema nor in <schema>_keys")
    func keysStore() throws {
        guard let url = freshURL(), let other = freshURL() else { return }
        let schema = try PostgresConnection.split(url).schema
        let keysSchema = try PostgresConnection.split(other).schema
        defer { dropSchemas([schema, schema + "_keys", keysSchema], on: url) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-tool-pg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = directory + "/master.key"

        let outcomes = Dictionary(session(Self.commands, store: url, keysStore: other, key: key), uniquingKeysWith: { first, _ in first })
        #expect(outcomes.values.filter { $0.status != .success }.count == 1, "\(outcomes)")
        #expect(outcomes["lookup +44 121 242 9247"]?.out.hasPrefix("Ivo Rossi-2  lead 3 (crm-4242-2)") == true)
        #expect(outcomes["audit verify"]?.status == .success)

        #expect(try tables(url, schema: keysSchema).isSuperset(of: ["store", "kek", "subject_keys", "index_keys", "audit_keys", "audit_head"]))
        #expect(try connection(url, schema: keysSchema).scalarInteger("SELECT count(*) FROM subject_keys") == 993)
        #expect(try connection(url, schema: keysSchema).scalarInteger("SELECT count(*) FROM kek") == 1)
        #expect(try tables(url, schema: schema).isDisjoint(with: ["kek", "subject_keys", "index_keys", "audit_keys", "audit_head"]))
        #expect(try tables(url, schema: schema).isSuperset(of: ["subjects", "phone_index", "audit_log"]))
        #expect(try tables(url, schema: schema + "_keys").isEmpty)

        // Without --keys-store the tool looks in <schema>_keys, finds no store there, and says so; with
        // STRONGROOM_KEYS_STORE it finds the keys again.
        let lost = ToolRun()
        #expect(lost.run(["lookup", "+44 121 242 9247", "--store", url, "--key-file", key]) != .success)
        #expect(lost.out.isEmpty && !lost.err.isEmpty)
        let found = ToolRun(environment: ["STRONGROOM_STORE": url, "STRONGROOM_KEYS_STORE": other, "STRONGROOM_KEY_FILE": key])
        #expect(found.run(["lookup", "+44 121 242 9247"]) == .success)
        #expect(found.out.hasPrefix("Ivo Rossi-2  lead 3 (crm-4242-2)"))
        // --keys-store is for PostgreSQL stores only.
        let folder = ToolRun()
        #expect(folder.run(["keys", "status", "--store", directory + "/store", "--keys-store", other, "--key-file", key]) == .usage)
    }
}
