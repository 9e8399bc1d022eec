import Foundation
import StrongroomStorage

/// One entry of the audit log, as read back for people and tools.
public struct AuditEntry: Sendable, Equatable, Codable {
    /// Position in the chain, from 1.
    public let seq: UInt64
    /// RFC 3339 UTC time.
    public let time: String
    /// What was done (`AuditEvent.Action`).
    public let action: String
    /// Who.
    public let actor: String
    /// Why.
    public let purpose: String
    /// Whose data (the store's subject id), if any.
    public let subject: String?
    /// Which personal fields.
    public let fields: [String]
    /// ok, refused or failed.
    public let outcome: String
    /// The client's address, if given.
    public let client: String?
    /// A short non-personal detail.
    public let detail: String?
    /// The entry's chain MAC (hex).
    public let mac: String
}

/// Which audit entries to read.
public struct AuditFilter: Sendable {
    /// Only entries about this subject.
    public var subject: SubjectID?
    /// Only entries by this actor.
    public var actor: String?
    /// Only entries at or after this time.
    public var since: Date?
    /// Only entries at or before this time.
    public var until: Date?
    /// Only entries of this action.
    public var action: AuditEvent.Action?

    /// Creates a filter; nil members match everything.
    public init(subject: SubjectID? = nil, actor: String? = nil, since: Date? = nil, until: Date? = nil,
                action: AuditEvent.Action? = nil) {
        self.subject = subject
        self.actor = actor
        self.since = since
        self.until = until
        self.action = action
    }
}

extension Store {
    /// The audit entries that pass `filter`, oldest first, with each entry's line as written — only
    /// from a log that verifies: every entry's MAC and chain, and its end against the signed head
    /// (acknowledged gaps are accepted; their `acknowledge-gap` entries are entries like any other).
    /// Otherwise `StoreError.auditLogUnverified` names the first bad entry and no entry is passed on:
    /// a partial or forged list could mislead (an access report built from forged lines is worse than
    /// none). The log is read twice, each time in order: once to verify it, once to pass on the
    /// entries, each checked again before it is (linear in the log's length).
    public func auditEntries(_ filter: AuditFilter = AuditFilter(),
                             _ body: (AuditEntry, ArraySlice<UInt8>) throws(StoreError) -> Void) throws(StoreError) {
        if let problem = try verifyAuditLog().problem { throw .auditLogUnverified(problem) }
        let decoder = JSONDecoder()
        let subject = filter.subject.map { Array("\"subject\":\"\($0.rawValue)\"".utf8) }
        // The second pass verifies again (the log may have changed in between), entry by entry.
        let verification = try auditVerifier().verify { (place, number, line) throws(StoreError) in
            // A cheap textual pre-filter before decoding: most lines of a busy log are about other subjects.
            if let subject, AuditLineFormat.firstRange(of: subject, in: line) == nil { return }
            guard let entry = try? decoder.decode(AuditEntry.self, from: Data(line)) else {
                let sequence = AuditLineFormat.split(line)?.sequence ?? 0
                throw .auditLogUnverified(.badEntry(sequence: sequence, segment: place, line: number,
                                                              reason: "its MAC verifies but it is not a readable entry"))
            }
            if let actor = filter.actor, entry.actor != actor { return }
            if let since = filter.since, let time = Timestamp.parse(entry.time), time < since { return }
            if let until = filter.until, let time = Timestamp.parse(entry.time), time > until { return }
            if let action = filter.action, entry.action != action.rawValue { return }
            try body(entry, line)
        }
        if let problem = verification.problem { throw .auditLogUnverified(problem) }
    }
}
