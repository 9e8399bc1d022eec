/// How a store is created and opened. The defaults suit an embedded CRM store.
public struct StoreConfiguration: Sendable {
    /// The default region (ISO 3166 alpha-2) for phone numbers written without a country code.
    /// Used when the store is created; an existing store keeps the region it was created with.
    public var defaultRegion: String = "US"
    /// How many phone numbers the store is planned for; the blind index's tag length is chosen from it
    /// (see `BlindIndexPlan`). Used when the store is created.
    public var plannedPhoneNumbers: Int = 1_000_000
    /// How many encryptions each shared key (master, KEK, index check key) may make before it must be
    /// rotated: 2^28, well inside the 2^32 of NIST SP 800-38D §8.3 for random 96-bit nonces.
    public var nonceBudget: UInt64 = 1 << 28
    /// How many unwrapped subject keys stay in memory at most (rounded up to a power of two), so that
    /// reading a subject seen before costs no key-database read and no unwrap. The cache takes 56 bytes
    /// a slot: 4,096 slots at first, doubling as keys fill three quarters of it, up to this many.
    public var subjectKeyCacheCapacity: Int = 1 << 20
    /// The most UTF-8 bytes a personal text value may have: a name, company, address or notes, each
    /// e-mail address, phone number and custom field (name and value). A longer value is refused
    /// (`StoreError.fieldTooLarge`) on create and update, and the importer reports its row instead of
    /// writing it. Photos are bytes, not text, and are not limited by it. Default 64 KiB; per process.
    public var maxFieldBytes: Int = 64 << 10
    /// When an audit entry counts as kept.
    ///
    /// Recorded in the store when it is created (default `.written`); when opening, nil means the
    /// store's own setting, and a value overrides it for this process only.
    public var auditDurability: AuditDurability?
    /// Size at which the audit log starts a new segment file.
    public var auditSegmentByteLimit: Int64 = 64 << 20
    /// How long, in seconds, an audited operation waits for the audit log's locks (a folder store's
    /// append lock, and the join lock of its first append) while another process holds them. Past it,
    /// the operation fails closed (`StoreError.auditFailed`, naming the holding process where known):
    /// a process stopped or stuck holding the lock cannot block every decrypt of every process.
    public var auditLockTimeout: Double = 10

    /// Whether the built-in, hash-chained log file in `audit/` records events. Turning it off leaves
    /// only `additionalAuditHooks`, of which there must then be at least one: for services that audit
    /// to a system of their own, and to measure what the file log costs. Every decrypt is still audited.
    public var auditLogFile = true
    /// How long an erasure waits for readers of an older snapshot of `keys.sqlite` (an online backup,
    /// another process's long read) to end, so that the destroyed key's old pages can be overwritten.
    /// Past it the key is still destroyed, and `erase` reports that old pages remain
    /// (`ErasureCompletion.oldPagesRemain`).
    public var erasureWait: Duration = .seconds(5)
    /// Hooks called with every audit event after the built-in log (a SIEM forwarder, syslog, …).
    public var additionalAuditHooks: [any AuditHook] = []

    /// Called at named points of long operations with a count of batches: after a batch commits
    /// ("rotate-kek.batch", "rotate-data.batch", "rotate-index.batch"), inside a batch's transaction
    /// before it commits ("rotate-kek.in-batch", "rotate-data.in-batch", "rotate-index.in-batch") and at
    /// the index switch ("rotate-index.switch"); between an index rotation batch's decrypt and its staging
    /// ("rotate-index.decrypted"), in the copy of its staged rows before it commits ("rotate-index.copy");
    /// between an e-mail index batch's decrypt and its write
    /// ("email-index.decrypted", with the batch's attempt number); in a write ("write.rows", "write.keys", "write.sealed",
    /// each before the commit), after the audit entries of any write-path transaction ("write.audited",
    /// before its commit, with the count of entries), in an erasure or deletion ("erase.audited",
    /// "erase.key-destroyed") and in a master-key rotation ("rotate-master.in-transaction", before its commit). For fault-injection tests only: a test throws or kills the process here
    /// to prove the store stays consistent and the work can be finished.
    public var faultInjection: (@Sendable (String, Int) throws -> Void)?

    /// The default configuration.
    public init() {}
}
