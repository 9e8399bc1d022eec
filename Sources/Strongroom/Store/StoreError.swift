import Foundation
import StrongroomCrypto
import StrongroomStorage

/// Why a store operation failed. Carries identifiers, paths and codes to act on; never key bytes or
/// personal data.
///
/// Errors keep their type on the way up: the storage layer throws `DatabaseError`, the crypto layer
/// `CryptoError`, the audit log `AuditLogError`, and each becomes a `StoreError` case once, where its
/// owner hands it to the engine: the key database in `KeyDatabase.read`/`transaction`, the data
/// connection in `Store.withData`/`withDataTransaction` (which `Store.writeSubjects`, the write path,
/// runs its body in), the place in `StoreBackend.connect`, the audit log in `Store.audit`. The
/// closures given to them say their thrown type (`{ (tables) throws(DatabaseError) in … }`): Swift
/// 6.3 never infers a closure's thrown type, from its body or from context. A body that mixes
/// statements with sealing, unwrapping or auditing throws `StoreError` and converts its statements'
/// errors in `do throws(DatabaseError)` blocks (a keyed hash's `CryptoError` likewise, to `crypto`).
public enum StoreError: Error, Sendable, CustomStringConvertible {
    /// No store at the path (`strongroom init` creates one).
    case storeNotFound(path: String)
    /// A store already exists at the path.
    case storeAlreadyExists(path: String)
    /// The master key given is not the one this store's key-encryption key is wrapped under.
    case wrongMasterKey
    /// The key database and the data database belong to different stores.
    case storeMismatch
    /// The master key could not be obtained from its provider.
    case keyProvider(KeyProviderError)
    /// No subject with this id or external id.
    case subjectNotFound(String)
    /// The subject was erased or deleted: its key is destroyed and its data can never be read again.
    case subjectErased(SubjectID)
    /// The subject's key for the version its data names is missing from the key database.
    case keyUnavailable(SubjectID, version: UInt32)
    /// Reading for this purpose is refused (restriction of processing, missing consent). Audited as refused.
    case accessRefused(SubjectID, purpose: Purpose, reason: String)
    /// A stored ciphertext did not open: tampered, moved, or made under another key. Audited as failed.
    case unreadableField(SubjectID, field: String, EnvelopeError)
    /// A key of the hierarchy did not unwrap: the key database was altered or belongs to another store.
    case unreadableKey(String, EnvelopeError)
    /// The audit record could not be written, so the operation was refused (fail closed): the audit
    /// log's own error (a lock still held names its holder: `AuditLogError.unavailable` with
    /// `FileProblem.lockHeld`).
    case auditFailed(AuditLogError)
    /// An additional audit hook (`StoreConfiguration.additionalAuditHooks`) threw, so the operation
    /// was refused (fail closed): the hook's type and its error as it threw it.
    case auditHookFailed(hook: String, error: any Error)
    /// The audit log's end does not match its signed head (entries cut off, head deleted or
    /// replaced): nothing is read or written until an operator records the gap
    /// (`acknowledgeAuditGap`, `strongroom audit acknowledge-gap`).
    case auditGap(AuditGap)
    /// `acknowledgeAuditGap` found nothing to acknowledge: the log's end matches its signed head.
    case noAuditGap
    /// The audit log does not verify, so its entries are not shown (a partial or forged list could
    /// mislead): the first problem, naming the bad entry's place and sequence number.
    case auditLogUnverified(AuditVerification.Problem)
    /// A double opt-in confirmation token was wrong, already used, expired, or overtaken by a later change.
    case consentTokenRejected(reason: String)
    /// The subject was changed by another writer while a key rotation was re-encrypting it; the rotation
    /// step was rolled back and can simply run again.
    case concurrentChange(SubjectID)
    /// Another subject already has this external id.
    case duplicateExternalID(String)
    /// The external id belonged to a subject erased at this time (its tombstone): it is never
    /// re-created; a new subject, after a new consent, needs a new external id.
    case externalIDErased(erasedAt: Date)
    /// No erasure receipt is kept under the id or external id given (not erased, or erased before
    /// receipts were kept).
    case noErasureReceipt
    /// A shared key reached its encryption budget (NIST SP 800-38D §8.3): rotate it (`keys rotate-kek`,
    /// `keys rotate-index`, `keys rotate-master`) before anything more is encrypted under it.
    case keyBudgetExhausted(key: String, used: UInt64, budget: UInt64)
    /// A phone number that cannot be normalised to E.164 (the reason names no digits).
    case invalidPhoneNumber(reason: String)
    /// A re-declaration would weaken a purpose subjects consented to (its lawful basis away from consent,
    /// or double opt-in dropped): refused, so a declaration can never undo a consent or its withdrawal.
    case purposeWeakened(Purpose, reason: String)
    /// A phone region (ISO 3166-1 alpha-2) the phone normaliser has no plan for.
    case unsupportedRegion(String)
    /// A blind-index length outside the lengths the store supports.
    case blindIndexBitsOutOfRange(bits: Int, supported: ClosedRange<Int>)
    /// A new master key of the wrong length.
    case masterKeyWrongLength(bytes: Int, expected: Int)
    /// Keys were wrapped under the old KEK while its rotation ran, so the old KEK was kept: nothing is
    /// lost; run the rotation again.
    case keyEncryptionKeyRotationOvertaken
    /// The subject is not of the kind the operation needs (only a lead converts to a contact).
    case wrongSubjectKind(SubjectID, expected: SubjectKind)
    /// A store configuration with neither the audit log file nor an additional audit hook.
    case noAuditHook
    /// A reason that is empty (or only spaces), or longer than `maxCharacters`.
    case invalidReason(ReasonedOperation, maxCharacters: Int?)
    /// A purpose name that is empty or longer than `maxCharacters`.
    case invalidPurposeName(characters: Int, maxCharacters: Int)
    /// A built-in purpose that restriction of processing still allows declared to rest on consent,
    /// which would let a withdrawal stop it.
    case builtInPurposeOnConsent(Purpose)
    /// A purpose that is not declared in the store.
    case undeclaredPurpose(Purpose)
    /// A consent given or withdrawn for a purpose that rests on another lawful basis.
    case purposeNotOnConsent(Purpose, lawfulBasis: LawfulBasis)
    /// A consent without evidence of how it was given (the form, the text shown).
    case consentEvidenceMissing
    /// A confirmation token lifetime that is not more than 0 and at most `maxSeconds` seconds.
    case invalidTokenLifetime(seconds: Double, maxSeconds: Double)
    /// A rectification that names no field.
    case noFieldsToRectify
    /// A field named that the subject cannot have (the name is the caller's, never a value).
    case unknownField(String)
    /// A field named twice in one rectification.
    case fieldNamedTwice(String)
    /// A text that is not an e-mail address (the reason quotes nothing of it).
    case invalidEmailAddress(reason: String)
    /// A personal text value is longer than the store's limit (`StoreConfiguration.maxFieldBytes`):
    /// names the field (for a custom field, its name) and the sizes, never the value.
    case fieldTooLarge(field: String, bytes: Int, limit: Int)
    /// A text kept in clear (an external id, owner, status or source) holds a NUL character (U+0000),
    /// which neither backend keeps whole in a text column: names the field, never the value.
    case textHoldsNUL(field: String)
    /// A failure of the database backend (SQLite or PostgreSQL): its code and message, no values.
    case database(DatabaseError)
    /// A cryptographic failure.
    case crypto(CryptoError)
    /// A file could not be read or written.
    case file(FileError)
    /// The store was written by a newer version of Strongroom.
    case schemaTooNew(found: Int, supported: Int)
    /// The fault-injection hook (`StoreConfiguration.faultInjection`, for tests) threw at `point`: the
    /// operation stopped there, as a crash would stop it.
    case injectedFault(point: String, error: any Error)

    public var description: String {
        switch self {
        case .storeNotFound(let path): return "no store at \(path)"
        case .storeAlreadyExists(let path): return "a store already exists at \(path)"
        case .wrongMasterKey: return "wrong master key: it is not the key this store is locked with (an old key after rotation is refused)"
        case .storeMismatch: return "the key database belongs to a different store than the data database"
        case .keyProvider(let error): return error.description
        case .subjectNotFound(let id): return "no subject \(id)"
        case .subjectErased(let id): return "subject \(id) was erased; its key is destroyed and its data cannot be read"
        case .keyUnavailable(let id, let version): return "the key (version \(version)) of subject \(id) is missing from the key database"
        case .accessRefused(let id, let purpose, let reason): return "access to subject \(id) for purpose \(purpose) refused: \(reason)"
        case .unreadableField(let id, let field, let error): return "field \(field) of subject \(id) is unreadable: \(error)"
        case .unreadableKey(let what, let error): return "\(what) did not unwrap: \(error)"
        case .auditFailed(let error): return "the audit record could not be written, so the operation was refused: \(error)"
        case .auditHookFailed(let hook, _): return "audit hook \(hook) failed, so the operation was refused"
        case .auditGap(let gap):
            return "\(gap); nothing is read or written until the gap is acknowledged"
        case .noAuditGap: return "no gap to acknowledge: the audit log's end matches its signed head"
        case .auditLogUnverified(let problem):
            return "the audit log does not verify, so no entries are shown: \(problem)"
        case .consentTokenRejected(let reason): return "consent confirmation refused: \(reason)"
        case .concurrentChange(let id): return "subject \(id) changed during its key rotation; nothing was changed: run the rotation again"
        case .duplicateExternalID(let id): return "external id \(id) is already in use"
        case .externalIDErased(let erasedAt):
            return "this external id belonged to a subject erased on \(Timestamp.day(erasedAt)): it is never re-created (a new subject needs a new external id)"
        case .noErasureReceipt: return "no erasure receipt under that id (not erased, or erased before receipts were kept)"
        case .keyBudgetExhausted(let key, let used, let budget):
            return "key \(key) has made \(used) of its \(budget) encryptions: rotate it to go on"
        case .invalidPhoneNumber(let reason): return "invalid phone number: \(reason)"
        case .purposeWeakened(let purpose, let reason):
            return "purpose \(purpose) has consent-ledger entries and cannot be weakened (\(reason)): declare a new purpose instead"
        case .unsupportedRegion(let region): return "unsupported phone region \(region)"
        case .blindIndexBitsOutOfRange(let bits, let supported):
            return "a blind index of \(bits) bits is not supported: \(supported.lowerBound) to \(supported.upperBound) bits"
        case .masterKeyWrongLength(let bytes, let expected): return "a master key has \(expected) bytes, not \(bytes)"
        case .keyEncryptionKeyRotationOvertaken:
            return "keys were wrapped under the old KEK during the rotation, so it was kept: run the rotation again"
        case .wrongSubjectKind(let id, let expected): return "subject \(id) is not a \(expected.rawValue)"
        case .noAuditHook: return "a store needs an audit hook: keep the audit log file or add a hook"
        case .invalidReason(let operation, let maxCharacters):
            return "\(operation.rawValue) needs a reason" + (maxCharacters.map { " of 1 to \($0) characters" } ?? "")
        case .invalidPurposeName(let characters, let maxCharacters):
            return "a purpose needs a name of 1 to \(maxCharacters) characters, not \(characters)"
        case .builtInPurposeOnConsent(let purpose): return "purpose \(purpose) is built in and cannot rest on consent"
        case .undeclaredPurpose(let purpose): return "purpose \(purpose) is not declared"
        case .purposeNotOnConsent(let purpose, let basis): return "purpose \(purpose) rests on \(basis.rawValue), not on consent"
        case .consentEvidenceMissing: return "a consent needs evidence of how it was given (form, text shown): none was given"
        case .invalidTokenLifetime(_, let maxSeconds):
            return "a confirmation token's lifetime must be more than 0 seconds and at most \(Int(maxSeconds)) seconds"
        case .noFieldsToRectify: return "name at least one FIELD=VALUE to rectify"
        case .unknownField(let field):
            return "unknown field \(field): rectify changes name, company, email, phone, mobile, work_phone, address, notes or a custom field the subject has"
        case .fieldNamedTwice(let field): return "field \(field) is named twice"
        case .invalidEmailAddress(let reason): return "not a valid e-mail address: \(reason)"
        case .fieldTooLarge(let field, let bytes, let limit):
            return "field \(field) is \(bytes) bytes, over the limit of \(limit) bytes per value: nothing was written"
        case .textHoldsNUL(let field):
            return "\(field) holds a NUL character (U+0000), which a stored text cannot: nothing was written"
        case .database(let error): return error.description
        case .crypto(let error): return "cryptographic failure: \(error)"
        case .file(let error): return error.description
        case .schemaTooNew(let found, let supported):
            return "the store has schema version \(found); this build reads up to \(supported): upgrade Strongroom"
        case .injectedFault(let point, _): return "stopped by the fault-injection hook at \(point)"
        }
    }
}

/// An operation that must say why it is done (the reason is kept in clear in the audit log).
public enum ReasonedOperation: String, Sendable {
    /// `Store.erase`.
    case erasure = "an erasure"
    /// `Store.acknowledgeAuditGap`.
    case auditGapAcknowledgement = "acknowledging an audit gap"
}

extension StoreError: DatabaseFailure {
    /// A database failure.
    public init(_ error: DatabaseError) { self = .database(error) }

    /// An audit log failure: a gap (or none to acknowledge) as its own case, any other as `auditFailed`.
    init(_ error: AuditLogError) {
        switch error {
        case .gap(let gap): self = .auditGap(gap)
        case .noGap: self = .noAuditGap
        default: self = .auditFailed(error)
        }
    }

    /// A schema migration's failure.
    init(_ error: MigrationError) {
        switch error {
        case .schemaNewerThanBuild(let found, let supported): self = .schemaTooNew(found: found, supported: supported)
        case .database(let error): self = .database(error)
        }
    }
}
