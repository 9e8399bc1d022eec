import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage

/// A store in a fresh temporary folder, with a master key the test holds, removed by `cleanUp`.
struct TestStore {
    let directory: String
    let key: SecretKey
    let store: Store

    static let admin = AccessContext(actor: "test-admin", purpose: .admin)
    static let caller = AccessContext(actor: "test-pbx", purpose: .callerID)

    init(region: String = "GB", plannedPhoneNumbers: Int = 1_000_000, hooks: [any AuditHook] = [],
         durability: AuditDurability = .written) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-test-\(UUID().uuidString)").path
        key = try SecretKey.random()
        var configuration = StoreConfiguration()
        configuration.defaultRegion = region
        configuration.plannedPhoneNumbers = plannedPhoneNumbers
        configuration.additionalAuditHooks = hooks
        configuration.auditDurability = durability
        store = try Store.create(at: directory, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
    }

    /// Opens the same folder again (another "process" view of the store).
    func reopen(hooks: [any AuditHook] = []) throws -> Store {
        var configuration = StoreConfiguration()
        configuration.additionalAuditHooks = hooks
        return try Store.open(at: directory, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
    }

    /// A raw SQLite connection to one of the store's databases, for attacks.
    func database(_ name: String) throws -> Connection {
        try Connection(path: directory + "/" + name)
    }

    /// Every file under the store folder.
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
