import Foundation
import StrongroomCrypto
import StrongroomPhone
import StrongroomStorage
import Synchronization

/// An encrypted store of leads and contacts: in one folder (`data.sqlite`, `keys.sqlite`, `audit/`),
/// or in PostgreSQL for several service instances (see `StoreLocation`).
///
/// Every personal field is sealed with AES-256-GCM under its subject's own key; all plaintext comes out
/// of one function that audits before it returns (see `AccessContext`).
///
/// Thread safety: a `Store` may be shared by any number of threads and tasks. Several processes may
/// open the same store: SQLite's locks and the audit log's file lock, or PostgreSQL's transactions and
/// advisory locks, keep them consistent.
public final class Store: Sendable {
    /// Where the store is.
    public let location: StoreLocation
    /// The default region for phone numbers written without a country code.
    public let defaultRegion: String
    /// The most UTF-8 bytes a personal text value may have (`StoreConfiguration.maxFieldBytes`).
    public let maxFieldBytes: Int
    /// What this store's location does its own way (`StoreLocation.backend`).
    let backend: any StoreBackend
    let keyring: Keyring
    let data: Mutex<any Database>
    let auditTrail: any AuditTrail
    /// Whether events go to `auditTrail` (`StoreConfiguration.auditLogFile`), before any other hook.
    let recordsToAuditTrail: Bool
    /// The hooks after the trail (`StoreConfiguration.additionalAuditHooks`). Kept apart from the trail
    /// at open, so that reporting an event tests no hook's type (a dynamic cast per decrypt).
    let additionalAuditHooks: [any AuditHook]
    let phoneNormalizer: PhoneNormalizer
    let faultInjection: (@Sendable (String, Int) throws -> Void)?
    /// The declared purposes, read at open, kept current by `declarePurpose` and re-read when stale (`PurposeCache`).
    let purposeCache: Mutex<PurposeCache>
    /// The caller-ID probe's statement, set up once at open for the backend.
    let callerIDProbe: CallerIDProbe
    /// The data version (`StoreBackend.dataVersion`) of the last caller-ID miss that had the keys
    /// checked for a change: a miss on the same data needs no second check (`subjectsHolding`).
    let keysCheckedAtDataVersion = Mutex<UInt32?>(nil)
    /// The blind index's rows kept in the process, where caller ID answers in one round trip (`CallerIDHint`).
    let callerIDHint = Mutex<CallerIDHint?>(nil)
    /// The blind index's rows kept in the process on SQLite, exact by data version (`SQLiteCallerIDHint`).
    let sqliteCallerIDHint = Mutex<SQLiteCallerIDHint?>(nil)

    private init(location: StoreLocation, backend: any StoreBackend, defaultRegion: String, keyring: Keyring,
                 data: consuming sending any Database, configuration: StoreConfiguration) throws(StoreError) {
        self.location = location
        self.backend = backend
        self.defaultRegion = defaultRegion
        maxFieldBytes = configuration.maxFieldBytes
        self.keyring = keyring
        // Before the connection goes behind its lock (`withData`), where its failures are converted once.
        do throws(DatabaseError) {
            purposeCache = Mutex(try Store.loadPurposes(from: data))
            callerIDProbe = CallerIDProbe(exactCheck: try backend.prepareCallerIDProbe(on: data, keyring: keyring))
        } catch {
            throw .database(error)
        }
        self.data = Mutex(data)
        do { phoneNormalizer = try PhoneNormalizer(defaultRegion: defaultRegion) } catch {
            throw .unsupportedRegion(defaultRegion)
        }
        auditTrail = try backend.openAuditTrail(mac: keyring.auditMAC, storeID: keyring.storeID,
                                                durability: configuration.auditDurability ?? keyring.auditDurability(),
                                                segmentByteLimit: configuration.auditSegmentByteLimit,
                                                lockTimeout: configuration.auditLockTimeout, headStore: keyring)
        guard configuration.auditLogFile || !configuration.additionalAuditHooks.isEmpty else {
            throw .noAuditHook
        }
        recordsToAuditTrail = configuration.auditLogFile
        additionalAuditHooks = configuration.additionalAuditHooks
        faultInjection = configuration.faultInjection
    }

    /// Creates a new store in `directory` (made if absent; it must not hold a store yet), locked with
    /// the master key from `keyProvider`.
    public static func create(at directory: String, keyProvider: any KeyProvider,
                              configuration: StoreConfiguration = StoreConfiguration()) throws(StoreError) -> Store {
        try create(at: .directory(directory), keyProvider: keyProvider, configuration: configuration)
    }

    /// Opens the store in `directory` with the master key from `keyProvider`.
    public static func open(at directory: String, keyProvider: any KeyProvider,
                            configuration: StoreConfiguration = StoreConfiguration()) throws(StoreError) -> Store {
        try open(at: .directory(directory), keyProvider: keyProvider, configuration: configuration)
    }

    /// Creates a new store at `location` (which must not hold a store yet), locked with the master key
    /// from `keyProvider`.
    public static func create(at location: StoreLocation, keyProvider: any KeyProvider,
                              configuration: StoreConfiguration = StoreConfiguration()) throws(StoreError) -> Store {
        let region = configuration.defaultRegion.uppercased()
        guard PhoneNormalizer.supportedRegions.contains(region) else {
            throw .unsupportedRegion(configuration.defaultRegion)
        }
        let master: SecretKey
        do throws(KeyProviderError) { master = try keyProvider.masterKey() } catch { throw .keyProvider(error) }
        let backend = location.backend
        let storeID: [UInt8]
        do throws(CryptoError) { storeID = try SecureRandom.bytes(count: 16) } catch { throw .crypto(error) }
        let connection = try backend.connect(keys: false, existing: false)
        let keyring = try Keyring.create(database: try backend.connect(keys: true, existing: false), backend: backend, master: master, storeID: storeID,
                                         auditDurability: configuration.auditDurability ?? .written,
                                         indexBits: BlindIndexPlan.bits(forPopulation: configuration.plannedPhoneNumbers),
                                         plannedPopulation: configuration.plannedPhoneNumbers,
                                         cacheCapacity: configuration.subjectKeyCacheCapacity,
                                         nonceBudget: configuration.nonceBudget, erasureWait: configuration.erasureWait)
        do throws(MigrationError) { try connection.migrate(type(of: backend).dataMigrations) } catch { throw StoreError(error) }
        do throws(DatabaseError) {
            try connection.run(EmailIndexStatements.backfillDone)
            try connection.run("INSERT INTO store (id, store_id, default_region, created_at) VALUES (1, ?, ?, ?)",
                               [.blob(storeID), .text(region), .integer(Int64(Date().timeIntervalSince1970 * 1000))])
        } catch {
            throw .database(error)
        }
        let store = try Store(location: location, backend: backend, defaultRegion: region, keyring: keyring, data: connection,
                              configuration: configuration)
        try store.audit([AuditEvent(time: Date(), action: .initialize, actor: ProcessInfo.processInfo.userName,
                                    purpose: Purpose.admin.rawValue, subject: nil)])
        return store
    }

    /// Opens the store at `location` with the master key from `keyProvider`. A wrong master key is
    /// reported as `wrongMasterKey` before any data is read.
    public static func open(at location: StoreLocation, keyProvider: any KeyProvider,
                            configuration: StoreConfiguration = StoreConfiguration()) throws(StoreError) -> Store {
        // Connected before the master key is asked for, so a missing store is reported as such first.
        let backend = location.backend
        let keys = try backend.connect(keys: true, existing: true)
        let connection = try backend.connect(keys: false, existing: true)
        let master: SecretKey
        do throws(KeyProviderError) { master = try keyProvider.masterKey() } catch { throw .keyProvider(error) }
        let keyring = try Keyring.open(database: keys, backend: backend, master: master, cacheCapacity: configuration.subjectKeyCacheCapacity,
                                       nonceBudget: configuration.nonceBudget, erasureWait: configuration.erasureWait)
        do throws(MigrationError) { try connection.migrate(type(of: backend).dataMigrations) } catch { throw StoreError(error) }
        let identity: (storeID: [UInt8], region: String)?
        do throws(DatabaseError) {
            identity = try connection.firstRow("SELECT store_id, default_region FROM store WHERE id = 1", [], {
                ($0.blob(0) ?? [], $0.text(1) ?? "US")
            })
        } catch {
            throw .database(error)
        }
        guard let (storeID, region) = identity, storeID == keyring.storeID else { throw .storeMismatch }
        let store = try Store(location: location, backend: backend, defaultRegion: region, keyring: keyring, data: connection,
                              configuration: configuration)
        // A build the audit log cannot take (a gap to acknowledge first) must not keep the store shut:
        // the marker stays, and `find` by e-mail builds the index, or reports why it cannot.
        try? store.backfillEmailIndex()
        return store
    }

    /// Saves the audit chain head and lets go of the audit log's files (a folder store's last process
    /// cuts the newest segment to its entries). Call before the process ends; a store that is simply
    /// dropped does the same, and one never closed leaves at most the last second of entries outside
    /// the signed head. A closed store still works: its next audited call takes the log up again.
    public func close() {
        auditTrail.close()
    }

    deinit {
        auditTrail.close()
    }

    /// Runs `body` on the data connection, under its lock; a database failure is `StoreError.database`.
    /// The closure says `throws(DatabaseError)`: Swift 6.3 infers `any Error` for an unannotated one.
    func withData<Result: Sendable>(_ body: (any Database) throws(DatabaseError) -> Result) throws(StoreError) -> Result {
        do { return try lockedData(body) } catch { throw .database(error) }
    }

    /// Runs `body` in a write transaction on the data connection, under its lock: for a body that also
    /// audits or refuses, so throws `StoreError`, converting its statements' `DatabaseError`s itself
    /// (`do throws(DatabaseError)` around them: Swift has no implicit conversion between thrown types).
    func withDataTransaction<Result: Sendable>(_ body: (any Database) throws(StoreError) -> Result) throws(StoreError) -> Result {
        try lockedData { (connection) throws(StoreError) in
            try connection.transaction { () throws(StoreError) in try body(connection) }
        }
    }

    /// Runs `body` on the data connection under its lock, throwing what it throws.
    private func lockedData<Result: Sendable, Failure: Error>(_ body: (any Database) throws(Failure) -> Result) throws(Failure) -> Result {
        try data.withLock { (connection) throws(Failure) -> Result in try body(connection) }
    }

    /// Runs the fault-injection hook (`StoreConfiguration.faultInjection`) at `point`, after `count`
    /// items; what it throws stops the operation as `StoreError.injectedFault`.
    func injectFault(_ point: String, _ count: Int) throws(StoreError) {
        guard let faultInjection else { return }
        do { try faultInjection(point, count) } catch { throw .injectedFault(point: point, error: error) }
    }

    /// Reports `events` to every audit hook; the first failure refuses the operation (fail closed).
    /// Returns the sequence number the store's own audit log gave the last of them (nil without one).
    /// With `skippingTrail`, to every hook but the audit trail, which has them already.
    @discardableResult
    func audit(_ events: [AuditEvent], skippingTrail: Bool = false) throws(StoreError) -> UInt64? {
        var sequence: UInt64?
        if recordsToAuditTrail, !skippingTrail {
            sequence = try reportingAuditFailure(of: auditTrail) { try auditTrail.append(events) }
        }
        for hook in additionalAuditHooks {
            try reportingAuditFailure(of: hook) { try hook.record(events) }
        }
        return sequence
    }

    /// What `body`, a report to `hook`, returns; its failure kept as a value: the audit log's own
    /// (`StoreError(AuditLogError)`), a database's, or an added hook's (`auditHookFailed`).
    func reportingAuditFailure<T>(of hook: any AuditHook, _ body: () throws -> T) throws(StoreError) -> T {
        do { return try body() } catch let error as AuditLogError {
            throw StoreError(error)
        } catch let error as DatabaseError {
            throw .auditFailed(.database(error))
        } catch {
            throw .auditHookFailed(hook: "\(type(of: hook))", error: error)
        }
    }

    /// Checks the audit log's chain and its signed head, and lists the gaps acknowledged in it.
    public func verifyAuditLog() throws(StoreError) -> AuditVerification {
        let verifier = try auditVerifier()
        return try verifier.verify()
    }

    /// A verifier of the log against the head saved now (saved first, so that it covers this
    /// process's own last entries).
    func auditVerifier() throws(StoreError) -> AuditVerifier {
        auditTrail.flushHead()
        let genesis: [UInt8]
        do throws(CryptoError) { genesis = try AuditLineFormat.genesis(mac: keyring.auditMAC, storeID: keyring.storeID) } catch {
            throw .crypto(error)
        }
        return AuditVerifier(trail: auditTrail, mac: keyring.auditMAC, genesis: genesis, head: try keyring.auditHead())
    }

    /// Records, for ever, that the audit log lost entries at its end (`StoreError.auditGap`): appends
    /// a signed `acknowledge-gap` entry naming the gap (the lost head's sequence number and MAC, the
    /// last entry left), `context`'s actor and `reason`, after the log's real last entry, and moves the
    /// signed head to it, so that reads and writes work again. `verifyAuditLog` goes on listing the
    /// gap. Additional audit hooks receive the entry too. Throws `noAuditGap` when the log's end
    /// matches its head. Keep personal data out of `reason`: it is kept in clear in the log.
    @discardableResult
    public func acknowledgeAuditGap(reason: String, context: AccessContext) throws(StoreError) -> AuditGap {
        guard !reason.allSatisfy(\.isWhitespace) else { throw .invalidReason(.auditGapAcknowledgement, maxCharacters: nil) }
        var event: AuditEvent?
        let gap = try reportingAuditFailure(of: auditTrail) {
            try auditTrail.acknowledgeGap { gap, headMAC in
                let made = AuditEvent(.acknowledgeGap, context, subject: nil,
                                      detail: gap.acknowledgementDetail(headMAC: headMAC, reason: reason))
                event = made
                return made
            }
        }
        if let event {
            for hook in additionalAuditHooks {
                do { try hook.record([event]) } catch { throw .auditHookFailed(hook: "\(type(of: hook))", error: error) }
            }
        }
        return gap
    }
}

extension Store {
    /// The default phone region of the store at `location`, read without its key (it is not secret).
    public static func defaultRegion(at location: StoreLocation) throws(StoreError) -> String {
        let connection = try location.backend.connect(keys: false, existing: true)
        do throws(DatabaseError) { return try connection.scalarText("SELECT default_region FROM store WHERE id = 1") ?? "US" } catch { throw .database(error) }
    }
}
