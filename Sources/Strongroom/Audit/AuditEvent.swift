import Foundation

/// One access or change, reported to every audit hook before its result is returned.
///
/// Carries identifiers and field names only: never a field's value, not even hashed.
public struct AuditEvent: Sendable, Equatable {
    /// What was done.
    public enum Action: String, Sendable, CaseIterable, Codable {
        /// Personal fields were decrypted.
        case decrypt
        /// A subject was created.
        case create
        /// A subject's fields were changed.
        case update
        /// A subject was deleted.
        case delete
        /// A subject was erased by crypto-shredding.
        case erase
        /// A lead was converted into a contact.
        case convert
        /// Processing of a subject was restricted or the restriction lifted.
        case restrict
        /// A key was created, rotated or re-wrapped.
        case keys
        /// A consent was granted, confirmed or withdrawn.
        case consent
        /// A purpose of processing was declared.
        case purpose
        /// The store was created.
        case initialize = "init"
        /// The audit log's segment file ended; the chain continues in the next one.
        case segmentEnd = "segment-end"
        /// An operator acknowledged entries lost from the log's end (`Store.acknowledgeAuditGap`): the
        /// detail names the gap and the signed head it replaces, and the reason.
        case acknowledgeGap = "acknowledge-gap"
        /// Subjects' clear operational fields were listed (`Store.listSubjects`): one entry per listing.
        case list
        /// An erasure receipt was looked up and checked (`Store.checkErasureReceipt`); the detail says
        /// whether it verified.
        case receipt
    }

    /// How it ended.
    public enum Outcome: String, Sendable, Codable {
        /// Done.
        case ok
        /// Refused by policy (restriction, consent).
        case refused
        /// Failed (tampered or unreadable ciphertext, missing key).
        case failed
    }

    /// When.
    public let time: Date
    /// What.
    public let action: Action
    /// Who.
    public let actor: String
    /// Why.
    public let purpose: String
    /// Whose data, when a subject is concerned.
    public let subject: SubjectID?
    /// Which personal fields (names only).
    public let fields: [PersonalField]
    /// How it ended.
    public let outcome: Outcome
    /// The client's address, when given.
    public let clientAddress: String?
    /// A short non-personal detail: an error kind, a key version, a count.
    public let detail: String?

    /// Creates an event.
    public init(time: Date = Date(), action: Action, actor: String, purpose: String, subject: SubjectID?,
                fields: [PersonalField] = [], outcome: Outcome = .ok, clientAddress: String? = nil, detail: String? = nil) {
        self.time = time
        self.action = action
        self.actor = actor
        self.purpose = purpose
        self.subject = subject
        self.fields = fields
        self.outcome = outcome
        self.clientAddress = clientAddress
        self.detail = detail
    }

    /// An event for `context`.
    init(_ action: Action, _ context: AccessContext, subject: SubjectID?, fields: [PersonalField] = [],
         outcome: Outcome = .ok, detail: String? = nil, time: Date = Date()) {
        self.init(time: time, action: action, actor: context.actor, purpose: context.purpose.rawValue, subject: subject,
                  fields: fields, outcome: outcome, clientAddress: context.clientAddress, detail: detail)
    }
}

/// Receives every audit event before the operation that caused it returns.
///
/// Contract: `record` returns only once the events are kept to the hook's own standard (written to a
/// file, sent to a SIEM). If it throws, the operation fails closed: no plaintext is returned and a
/// write is rolled back. Hooks are called with events in the order they happened, possibly from
/// several threads at once.
public protocol AuditHook: Sendable {
    /// Keeps `events`, or throws to refuse the operation.
    func record(_ events: [AuditEvent]) throws
}
