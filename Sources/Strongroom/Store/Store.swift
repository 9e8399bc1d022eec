import Foundation
import StrongroomCrypto
import StrongroomStorage
import Synchronization

/// An encrypted store of leads and contacts in one folder: `data.sqlite` (ciphertext and clear
/// operational fields), `keys.sqlite` (the wrapped key hierarchy) and `audit/` (the access log).
///
/// Every personal field is sealed with AES-256-GCM under its subject's own key; all plaintext comes out
/// of one function that audits before it returns (see `AccessContext`).
///
/// Thread safety: a `Store` may be shared by any number of threads and tasks. Several processes may
/// open the same store folder; SQLite's locks and the audit log's file lock keep them consistent.
public final class Store: Sendable {
    /// The store's folder.
    public let directory: String
    /// The default region for phone numbers written without a country code.
    public let defaultRegion: String
    let keyring: Keyring
    let data: Mutex<Connection>
    let auditLog: AuditLog
    let auditHooks: [any AuditHook]
    let phoneNormalizer: PhoneNormalizer
    let faultInjection: (@Sendable (String, Int) throws -> Void)?
    /// The declared purposes, read at open, kept current by `declarePurpose` and re-read when stale (`PurposeCache`).
    let purposeCache: Mutex<PurposeCache>

    /// The paths of a store's files.
    struct Layout {
        let directory: String
        var data: String { directory + "/data.sqlite" }
        var keys: String { directory + "/keys.sqlite" }
        var audit: String { directory + "/audit" }
    }

    private init(directory: String, defaultRegion: String, keyring: Keyring, data: consuming sending Connection,
                 configuration: StoreConfiguration) throws(StoreError) {
        self.directory = directory
        self.defaultRegion = defaultRegion
        self.keyring = keyring
        purposeCache = Mutex(try storeErrors { try Store.loadPurposes(from: data) })
        self.data = Mutex(data)
        do { phoneNormalizer = try PhoneNormalizer(defaultRegion: defaultRegion) } catch {
            throw .invalidInput("unsupported default region \(defaultRegion)")
        }
        auditLog = try storeErrors {
            try AuditLog(directory: Layout(directory: directory).audit, mac: keyring.auditMAC, storeID: keyring.storeID,
                         durability: configuration.auditDurability ?? keyring.auditDurability(),
                         segmentByteLimit: configuration.auditSegmentByteLimit,
                         saveHead: { [keyring] head in keyring.saveAuditHead(head) })
        }
        guard configuration.auditLogFile || !configuration.additionalAuditHooks.isEmpty else {
            throw .invalidInput("a store needs an audit hook: keep the audit log file or add a hook")
        }
        auditHooks = (configuration.auditLogFile ? [auditLog] : []) + configuration.additionalAuditHooks
        faultInjection = configuration.faultInjection
    }

    /// Opens the data database with the settings every data connection uses.
    ///
    /// WAL lets readers work while a writer commits; `synchronous = NORMAL` in WAL mode survives a
    /// process crash and loses at most the last commits on power loss; `secure_delete` overwrites
    /// deleted content so an erased subject's ciphertext does not linger in free pages.
    private static func connectData(path: String, create: Bool) throws -> Connection {
        let connection = try Connection(path: path, create: create)
        try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA secure_delete = ON; PRAGMA mmap_size = 1073741824")
        return connection
    }

    /// Creates a new store in `directory` (made if absent; it must not hold a store yet), locked with
    /// the master key from `keyProvider`.
    public static func create(at directory: String, keyProvider: any KeyProvider,
                              configuration: StoreConfiguration = StoreConfiguration()) throws(StoreError) -> Store {
        let layout = Layout(directory: directory)
        if FileManager.default.fileExists(atPath: layout.keys) || FileManager.default.fileExists(atPath: layout.data) {
            throw .storeAlreadyExists(path: directory)
        }
        let region = configuration.defaultRegion.uppercased()
        guard PhoneNormalizer.supportedRegions.contains(region) else {
            throw .invalidInput("unsupported default region \(configuration.defaultRegion)")
        }
        let master: SecretKey
        do { master = try keyProvider.masterKey() } catch { throw .keyProvider(error) }
        return try storeErrors {
            try createDirectory(directory)
            let storeID = try SecureRandom.bytes(count: 16)
            let keyring = try Keyring.create(path: layout.keys, master: master, storeID: storeID,
                                             auditDurability: configuration.auditDurability ?? .written,
                                             indexBits: BlindIndexPlan.bits(forPopulation: configuration.plannedPhoneNumbers),
                                             plannedPopulation: configuration.plannedPhoneNumbers,
                                             cacheCapacity: configuration.subjectKeyCacheCapacity,
                                             nonceBudget: configuration.nonceBudget)
            let connection = try connectData(path: layout.data, create: true)
            try connection.migrate(Schema.data)
            try connection.run("INSERT INTO store (id, store_id, default_region, created_at) VALUES (1, ?, ?, ?)",
                               [.blob(storeID), .text(region), .integer(Int64(Date().timeIntervalSince1970 * 1000))])
            let store = try Store(directory: directory, defaultRegion: region, keyring: keyring, data: connection,
                                  configuration: configuration)
            try store.audit([AuditEvent(time: Date(), action: .initialize, actor: ProcessInfo.processInfo.userName,
                                        purpose: Purpose.admin.rawValue, subject: nil)])
            return store
        }
    }

    /// Opens the store in `directory` with the master key from `keyProvider`. A wrong master key is
    /// reported as `wrongMasterKey` before any data is read.
    public static func open(at directory: String, keyProvider: any KeyProvider,
                            configuration: StoreConfiguration = StoreConfiguration()) throws(StoreError) -> Store {
        let layout = Layout(directory: directory)
        guard FileManager.default.fileExists(atPath: layout.keys), FileManager.default.fileExists(atPath: layout.data) else {
            throw .storeNotFound(path: directory)
        }
        let master: SecretKey
        do { master = try keyProvider.masterKey() } catch { throw .keyProvider(error) }
        return try storeErrors {
            let keyring = try Keyring.open(path: layout.keys, master: master,
                                           cacheCapacity: configuration.subjectKeyCacheCapacity,
                                           nonceBudget: configuration.nonceBudget)
            let connection = try connectData(path: layout.data, create: false)
            try connection.migrate(Schema.data)
            guard let (storeID, region) = try connection.firstRow("SELECT store_id, default_region FROM store WHERE id = 1", [], {
                ($0.blob(0) ?? [], $0.text(1) ?? "US")
            }), storeID == keyring.storeID else { throw StoreError.storeMismatch }
            return try Store(directory: directory, defaultRegion: region, keyring: keyring, data: connection,
                             configuration: configuration)
        }
    }

    /// Saves the audit chain head. Call before the process ends; a store that is simply dropped
    /// leaves at most the last second of entries outside the signed head.
    public func close() {
        auditLog.flushHead()
    }

    deinit {
        auditLog.flushHead()
    }

    /// Reports `events` to every audit hook; the first failure refuses the operation (fail closed).
    func audit(_ events: [AuditEvent]) throws(StoreError) {
        for hook in auditHooks {
            do { try hook.record(events) } catch {
                throw .auditFailed(error is AuditLogError ? "\(error)" : "hook \(type(of: hook)) failed")
            }
        }
    }

    /// Checks the audit log's chain and its signed head.
    public func verifyAuditLog() throws(StoreError) -> AuditVerification {
        auditLog.flushHead()
        return try storeErrors {
            try AuditVerifier(directory: auditLog.directory, mac: keyring.auditMAC,
                              genesis: AuditLineFormat.genesis(mac: keyring.auditMAC, storeID: keyring.storeID),
                              head: keyring.auditHead()).verify()
        }
    }
}

extension Store {
    /// The default phone region of the store in `directory`, read without its key (it is not secret).
    public static func defaultRegion(at directory: String) throws(StoreError) -> String {
        let path = Layout(directory: directory).data
        guard FileManager.default.fileExists(atPath: path) else { throw .storeNotFound(path: directory) }
        return try storeErrors {
            try Connection(path: path, create: false, readOnly: true).scalarText("SELECT default_region FROM store WHERE id = 1") ?? "US"
        }
    }
}
