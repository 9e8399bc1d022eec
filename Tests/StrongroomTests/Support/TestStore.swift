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
         hooks: [any AuditHook] = [], durability: AuditDurability = .written) throws {
        self.backend = backend
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-test-\(UUID().uuidString)").path
        location = try TestStore.location(backend, directory: directory)
        key = try SecretKey.random()
        var configuration = StoreConfiguration()
        configuration.defaultRegion = region
        configuration.plannedPhoneNumbers = plannedPhoneNumbers
        configuration.additionalAuditHooks = hooks
        configuration.auditDurability = durability
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
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
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
            return try PostgresConnection(url: PostgresTestServer.url(url, schema: role == .data ? schema : schema + "_keys"),
                                          create: false, writeLock: "test")
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

    var events: [AuditEvent] { lock.withLock { stored } }
    func fail(_ value: Bool) { lock.withLock { failing = value } }

    struct Refused: Error {}

    func record(_ events: [AuditEvent]) throws {
        try lock.withLock {
            if failing { throw Refused() }
            stored.append(contentsOf: events)
        }
    }
}
