import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage
import StrongroomTestSupport
import Testing

/// The database backend a test runs against: every store, caller-ID, rotation, GDPR and audit test
/// takes one as its argument, so the two backends cannot drift.
enum TestBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    /// The backends to test: both, unless STRONGROOM_TEST_POSTGRES=off (announced loudly). When the
    /// variable is unset, the PostgreSQL cases still run and fail with a message saying what to do.
    static let all: [TestBackend] = {
        if PostgresTestServer.isOff {
            PostgresTestServer.announceIfOff()
            return [.sqlite]
        }
        return allCases
    }()

    var testDescription: String { rawValue }
}

/// Why a PostgreSQL test store could not be made.
struct PostgresUnavailable: Error, CustomStringConvertible {
    let description: String
}

/// A store in a fresh temporary folder or PostgreSQL schema, with a master key the test holds,
/// removed by `cleanUp`.
struct TestStore {
    let backend: TestBackend
    /// The folder (SQLite) or a scratch folder for the test's own files (PostgreSQL).
    let directory: String
    let location: StoreLocation
    let key: SecretKey
    let store: Store

    static let admin = AccessContext(actor: "test-admin", purpose: .admin)
    static let caller = AccessContext(actor: "test-pbx", purpose: .callerID)

    init(_ backend: TestBackend = .sqlite, region: String = "GB", plannedPhoneNumbers: Int = 1_000_000,
         hooks: [any AuditHook] = [], durability: AuditDurability = .written,
         configure: (inout StoreConfiguration) -> Void = { _ in }) throws {
        self.backend = backend
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-test-\(UUID().uuidString)").path
        location = try TestStore.location(backend, directory: directory)
        // On PostgreSQL the folder holds only the test's own files (key files, exports, barriers).
        if backend == .postgres { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        key = try SecretKey.random()
        var configuration = StoreConfiguration()
        configuration.defaultRegion = region
        configuration.plannedPhoneNumbers = plannedPhoneNumbers
        configuration.additionalAuditHooks = hooks
        configuration.auditDurability = durability
        configure(&configuration)
        store = try Store.create(at: location, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
    }

    /// A new, empty location on `backend`: a folder path, or a unique schema on the test server.
    static func location(_ backend: TestBackend, directory: String) throws -> StoreLocation {
        switch backend {
        case .sqlite:
            return .directory(directory)
        case .postgres:
            guard let url = PostgresTestServer.url(schema: PostgresTestServer.uniqueSchema()) else {
                throw PostgresUnavailable(description: PostgresTestServer.missingMessage ?? "STRONGROOM_TEST_POSTGRES is off")
            }
            return .postgres(url: url, keysURL: nil)
        }
    }

    /// The location as the tool's `--store` takes it (a folder path or a URL), for child processes.
    var locationText: String {
        switch location {
        case .directory(let path): return path
        case .postgres(let url, _): return url
        }
    }

    /// Opens the same store again (another "process" view of the store).
    func reopen(hooks: [any AuditHook] = []) throws -> Store {
        var configuration = StoreConfiguration()
        configuration.additionalAuditHooks = hooks
        return try Store.open(at: location, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
    }

    /// Which of a store's two databases to open raw.
    enum DatabaseRole {
        case data
        case keys
    }

    /// A raw connection to one of the store's databases, for attacks.
    func database(_ role: DatabaseRole) throws -> any Database {
        try TestStore.database(role, at: location)
    }

    /// A raw connection to one of the databases of the store at `location`.
    static func database(_ role: DatabaseRole, at location: StoreLocation) throws -> any Database {
        switch location {
        case .directory(let directory):
            return try SQLiteConnection(path: directory + (role == .data ? "/data.sqlite" : "/keys.sqlite"))
        case .postgres(let url, _):
            let schema = try PostgresConnection.split(url).schema
            return try PostgresConnection(url: PostgresConnection.url(url, schema: role == .data ? schema : schema + "_keys"),
                                          create: false, writeLock: "test")
        }
    }

    /// The schema of the store's data (PostgreSQL; nil for a folder store).
    var dataSchema: String? {
        guard case .postgres(let url, _) = location else { return nil }
        return try? PostgresConnection.split(url).schema
    }

    /// The schema of the store's key tables (PostgreSQL: `<schema>_keys`; nil for a folder store).
    var keysSchema: String? { dataSchema.map { $0 + "_keys" } }

    /// A location on `backend` that holds no store: a folder path that does not exist, or a schema
    /// never created on the test server.
    static func missingLocation(_ backend: TestBackend) throws -> StoreLocation {
        try location(backend, directory: FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-missing-\(UUID().uuidString)").path)
    }

    /// Everything the store keeps, as places and their bytes, for scans for plaintext: every file under
    /// the folder (SQLite: databases, their WAL, the audit segments), or every row of every table of
    /// the data and key schemas rendered as text (PostgreSQL: `SELECT t::text FROM schema.table t`,
    /// so `bytea` columns, the audit log's lines among them, appear as lower-case hex digits; see
    /// `PlaintextScan.needles`). PostgreSQL's own files (dead row versions before VACUUM, WAL) are the
    /// server's, outside what a test can read.
    func storedContent() throws -> [(place: String, bytes: [UInt8])] {
        switch location {
        case .directory:
            return try files().map { ($0, [UInt8](try Data(contentsOf: URL(fileURLWithPath: $0)))) }
        case .postgres:
            let schemas = [dataSchema ?? "", keysSchema ?? ""]
            let connection = try database(.data)
            let tables = try connection.rows("""
                SELECT table_schema::text, table_name::text FROM information_schema.tables
                WHERE table_schema IN (?, ?) ORDER BY 1, 2
                """, schemas.map { .text($0) }) { ($0.text(0) ?? "", $0.text(1) ?? "") }
            return try tables.map { schema, table in
                let rows = try connection.rows("SELECT t::text FROM \"\(schema)\".\"\(table)\" t") { $0.text(0) ?? "" }
                return ("\(schema).\(table)", Array(rows.joined(separator: "\n").utf8))
            }
        }
    }

    /// Every file under the test's folder.
    func files() -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: directory)
        var paths: [String] = []
        while let relative = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            let path = directory + "/" + relative
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue { paths.append(path) }
        }
        return paths
    }

    func cleanUp() {
        store.close()
        try? FileManager.default.removeItem(atPath: directory)
        TestStore.dropSchemas(of: location)
    }

    /// Drops a PostgreSQL location's data and key schemas (and anything in them); nothing for a folder.
    static func dropSchemas(of location: StoreLocation) {
        if case .postgres(let url, _) = location, let schema = try? PostgresConnection.split(url).schema,
           let connection = try? PostgresConnection(url: url, create: false, writeLock: "test") {
            try? connection.execute("DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE; DROP SCHEMA IF EXISTS \"\(schema)_keys\" CASCADE")
        }
    }
}

/// A subject with distinctive personal data, for tests that look for it on disk.
func sampleSubject(_ tag: String, kind: SubjectKind = .contact, phones: [String] = ["+44 20 7946 0958"]) -> NewSubject {
    NewSubject(
        metadata: SubjectMetadata(kind: kind, externalID: "ext-\(tag)", owner: "agent-1", status: "new", source: "Website form",
                                  lastContactedAt: Date(timeIntervalSince1970: 1_790_000_000)),
        personal: PersonalData(name: "Zebedee Quixotic-\(tag)", company: "Quasar Widgets \(tag)",
                               emails: ["zebedee.\(tag)@example.org"],
                               phones: phones.enumerated().map { LabeledPhone(label: "phone\($0.offset)", number: $0.element) },
                               address: "17 Xylophone Lane \(tag), Springfield", notes: "Prefers ultramarine \(tag)",
                               photo: Array("PHOTO-\(tag)".utf8), customFields: ["favourite": "Kumquat-\(tag)"]))
}

/// An audit hook that keeps events in memory, or refuses them when told to.
final class RecordingHook: AuditHook, @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [AuditEvent] = []
    private var failing = false
    private var failingWrites = false

    var events: [AuditEvent] { lock.withLock { stored } }
    func fail(_ value: Bool) { lock.withLock { failing = value } }
    /// Refuses every batch holding more than decrypts while set: a write's own entry fails after the
    /// reads it needs went through.
    func failWrites(_ value: Bool) { lock.withLock { failingWrites = value } }

    struct Refused: Error {}

    func record(_ events: [AuditEvent]) throws {
        try lock.withLock {
            if failing || (failingWrites && events.contains(where: { $0.action != .decrypt })) { throw Refused() }
            stored.append(contentsOf: events)
        }
    }
}

/// Looks for values in what a store keeps (`TestStore.storedContent`).
enum PlaintextScan {
    /// Whether `needle` occurs in `haystack`.
    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        let first = needle[0]
        var index = 0
        while let start = haystack[index...].firstIndex(of: first), start + needle.count <= haystack.count {
            if haystack[start..<start + needle.count].elementsEqual(needle) { return true }
            index = start + 1
        }
        return false
    }

    /// `text` in UTF-8, UTF-16LE and UTF-16BE.
    static func encodings(_ text: String) -> [(String, [UInt8])] {
        var little: [UInt8] = []
        var big: [UInt8] = []
        for unit in text.utf16 {
            little += [UInt8(unit & 0xFF), UInt8(unit >> 8)]
            big += [UInt8(unit >> 8), UInt8(unit & 0xFF)]
        }
        return [("UTF-8", Array(text.utf8)), ("UTF-16LE", little), ("UTF-16BE", big)]
    }

    /// Lower-case hex digits of `bytes`, as PostgreSQL renders a `bytea` value as text.
    static func hex(_ bytes: [UInt8]) -> [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        return bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] }
    }

    /// The forms in which `bytes` would show in a store's content on `backend`: as they are, and on
    /// PostgreSQL also as the hex digits of a `bytea` column.
    static func needles(_ name: String, _ bytes: [UInt8], backend: TestBackend) -> [(String, [UInt8])] {
        backend == .postgres ? [(name, bytes), (name + " as bytea hex", hex(bytes))] : [(name, bytes)]
    }

    /// The forms in which `text` would show on `backend`: UTF-8 and UTF-16 in both byte orders, each
    /// also as `bytea` hex on PostgreSQL.
    static func needles(_ text: String, backend: TestBackend) -> [(String, [UInt8])] {
        encodings(text).flatMap { needles($0.0, $0.1, backend: backend) }
    }

    /// Records an issue for each `secret` found anywhere in `content`, in any of its forms.
    static func expectAbsent(_ secrets: [String], from content: [(place: String, bytes: [UInt8])], backend: TestBackend,
                             sourceLocation: SourceLocation = #_sourceLocation) {
        for (place, bytes) in content {
            for secret in secrets {
                for (form, needle) in needles(secret, backend: backend) {
                    #expect(!contains(bytes, needle), "\(place) holds \(secret.debugDescription) in \(form)", sourceLocation: sourceLocation)
                }
            }
        }
    }
}
