import Foundation
import StrongroomCrypto
import StrongroomStorage

/// Why a store operation failed. Carries identifiers, paths and codes to act on; never key bytes or
/// personal data.
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
    /// The audit record could not be written, so the operation was refused (fail closed).
    case auditFailed(String)
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
    /// Input the store cannot take, with the reason.
    case invalidInput(String)
    /// A personal text value is longer than the store's limit (`StoreConfiguration.maxFieldBytes`):
    /// names the field (for a custom field, its name) and the sizes, never the value.
    case fieldTooLarge(field: String, bytes: Int, limit: Int)
    /// A failure of the database backend (SQLite or PostgreSQL): its code and message, no values.
    case database(any DatabaseError)
    /// A cryptographic failure.
    case crypto(CryptoError)
    /// A file could not be read or written.
    case file(FileError)
    /// The store was written by a newer version of Strongroom.
    case schemaTooNew(found: Int, supported: Int)

    public var description: String {
        switch self {
        case .storeNotFound(let path): return "no store at \(path) (create one with `strongroom init`)"
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
        case .auditFailed(let reason): return "the audit record could not be written, so the operation was refused: \(reason)"
        case .auditGap(let gap):
            return "\(gap); nothing is read or written until the gap is recorded (strongroom audit verify, then strongroom audit acknowledge-gap --reason TEXT)"
        case .noAuditGap: return "no gap to acknowledge: the audit log's end matches its signed head"
        case .auditLogUnverified(let problem):
            return "the audit log does not verify, so no entries are shown: \(problem) (strongroom audit verify)"
        case .consentTokenRejected(let reason): return "consent confirmation refused: \(reason)"
        case .concurrentChange(let id): return "subject \(id) changed during its key rotation; nothing was changed: run the rotation again"
        case .duplicateExternalID(let id): return "external id \(id) is already in use"
        case .externalIDErased(let erasedAt):
            return "this external id belonged to a subject erased on \(Timestamp.day(erasedAt)): it is never re-created (a new subject needs a new external id)"
        case .noErasureReceipt: return "no erasure receipt under that id (not erased, or erased before receipts were kept)"
        case .keyBudgetExhausted(let key, let used, let budget):
            return "key \(key) has made \(used) of its \(budget) encryptions: rotate it (strongroom keys rotate-…) to go on"
        case .invalidPhoneNumber(let reason): return "invalid phone number: \(reason)"
        case .purposeWeakened(let purpose, let reason):
            return "purpose \(purpose) has consent-ledger entries and cannot be weakened (\(reason)): declare a new purpose instead"
        case .invalidInput(let reason): return "invalid input: \(reason)"
        case .fieldTooLarge(let field, let bytes, let limit):
            return "field \(field) is \(bytes) bytes, over the limit of \(limit) bytes per value: nothing was written"
        case .database(let error): return error.description
        case .crypto(let error): return "cryptographic failure: \(error)"
        case .file(let error): return error.description
        case .schemaTooNew(let found, let supported):
            return "the store has schema version \(found); this build reads up to \(supported): upgrade Strongroom"
        }
    }
}

extension StoreError {
    /// Wraps any lower-layer error in the matching case (already-typed store errors pass through).
    static func wrap(_ error: any Error) -> StoreError {
        switch error {
        case let error as StoreError: return error
        case let error as any DatabaseError: return .database(error)
        case let error as CryptoError: return .crypto(error)
        case let error as FileError: return .file(error)
        case let error as KeyProviderError: return .keyProvider(error)
        case AuditLogError.gap(let gap): return .auditGap(gap)
        case AuditLogError.noGap: return .noAuditGap
        case let error as AuditLogError: return .auditFailed("\(error)")
        case let error as MigrationError:
            if case .schemaNewerThanBuild(let found, let supported) = error { return .schemaTooNew(found: found, supported: supported) }
            return .invalidInput("\(error)")
        default: return .auditFailed(String(describing: type(of: error)))
        }
    }
}

/// Runs `body`, turning any error into a `StoreError`.
func storeErrors<T>(_ body: () throws -> T) throws(StoreError) -> T {
    do { return try body() } catch { throw StoreError.wrap(error) }
}
