import Foundation
import StrongroomStorage

/// What `Store.find` looks subjects up by.
public enum SubjectLookupKey: Sendable, Hashable {
    /// An e-mail address, through the e-mail blind index (trimmed, lower-cased, IDNA domain).
    case email(String)
    /// A phone number, through the phone blind index (normalised under `region`, default the store's).
    case phone(String, region: String?)
    /// The CRM's id, as given at import.
    case externalID(String)
}

/// Which subjects `Store.listSubjects` lists.
public struct SubjectListFilter: Sendable, Hashable {
    /// Only leads or only contacts; nil for both.
    public var kind: SubjectKind?
    /// Only subjects whose last contact (or creation, when never contacted) is before this time.
    public var untouchedSince: Date?
    /// Only subjects whose processing is restricted.
    public var restrictedOnly: Bool

    /// A filter; by default every subject.
    public init(kind: SubjectKind? = nil, untouchedSince: Date? = nil, restrictedOnly: Bool = false) {
        self.kind = kind
        self.untouchedSince = untouchedSince
        self.restrictedOnly = restrictedOnly
    }
}

extension Store {
    /// Finds the subjects holding an e-mail address, a phone number or an external id, as caller ID
    /// answers (`CallerMatch`, newest activity first): candidates from the blind index checked exactly,
    /// the name decrypted through the audited path, a subject the purpose may not process left out.
    /// Errors never carry what was searched for.
    public func find(_ key: SubjectLookupKey, context: AccessContext) throws(StoreError) -> [CallerMatch] {
        switch key {
        case .phone(let number, let region):
            return try callerID(number: number, region: region, context: context)
        case .email(let text):
            let address: EmailAddress
            do { address = try EmailAddress(text) } catch {
                throw .invalidEmailAddress(reason: error.reason)
            }
            // Finishes a first build that could not run at open (`backfillEmailIndex`); one query otherwise.
            try backfillEmailIndex()
            return try rereadingAfterKeyRotation { () throws(StoreError) in try answer(try subjectsHolding(address), context: context) }
        case .externalID(let externalID):
            let candidates = try withData { (connection) throws(DatabaseError) in
                try connection.rows(Store.subjectByExternalID, [.text(externalID)]) { CallerCandidate($0) }
            }
            return try answer(candidates, context: context)
        }
    }

    /// The subject holding an external id, in the columns `CallerCandidate` reads (the subject row is
    /// also named `p`, whose `subject_id` they read first).
    static let subjectByExternalID = """
        SELECT \(CallerCandidate.columns) FROM (SELECT id AS subject_id FROM subjects WHERE external_id = ?) p
        JOIN subjects s ON s.id = p.subject_id
        """

    /// Calls `body` with the clear operational fields of every subject `filter` selects, in id order,
    /// decrypting nothing. Streams: one page of `pageSize` rows at a time, each page a probe of the
    /// primary key after the last id (keyset paging), so memory stays constant and the whole listing
    /// is one pass over the table.
    ///
    /// Audited as one listing entry (who, why, which filter), not one per subject: nothing personal is
    /// decrypted, so there is no access to a subject's personal data to record, and a million entries
    /// per listing would bury the accesses that matter. Audited before the first row is returned.
    public func listSubjects(_ filter: SubjectListFilter = SubjectListFilter(), pageSize: Int = 1000, context: AccessContext,
                             _ body: (SubjectSummary) throws -> Void) throws {
        try audit([AuditEvent(.list, context, subject: nil, detail: "subject list: \(filter.auditDescription)")])
        var after: SubjectID?
        while true {
            let page = try self.page(filter, after: after, limit: pageSize)
            try page.forEach(body)
            guard page.count == pageSize, let last = page.last else { return }
            after = last.id
        }
    }

    /// One page of `listSubjects` (and of `list`): the subjects after `after` that `filter` selects.
    func page(_ filter: SubjectListFilter, after: SubjectID?, limit: Int) throws(StoreError) -> [SubjectSummary] {
        try withData { (connection) throws(DatabaseError) in
            try connection.rows(Store.listPage, [.integer(after?.rawValue ?? 0), .text(filter.kind?.rawValue),
                                                 .integer(filter.untouchedSince.map(Store.milliseconds)),
                                                 .int(filter.restrictedOnly ? 1 : 0), .int(limit)]) {
                Store.summary(from: $0, offset: 0)
            }
        }
    }

    /// A page of subjects by id after ?1: of kind ?2 (NULL: any), last touched before ?3 (NULL: any
    /// time), restricted only when ?4 is 1; at most ?5.
    static let listPage = """
        SELECT \(Store.summaryColumns) FROM subjects
        WHERE id > ?1 AND (kind = ?2 OR ?2 IS NULL)
            AND (coalesce(last_contacted_at, created_at) < ?3 OR ?3 IS NULL) AND (restricted = 1 OR ?4 = 0)
        ORDER BY id LIMIT ?5
        """
}

extension SubjectListFilter {
    /// The filter as the audit log records it (no personal data: kinds, a time, a flag).
    var auditDescription: String {
        var parts: [String] = []
        if let kind { parts.append("kind \(kind.rawValue)") }
        if let untouchedSince { parts.append("untouched since \(Int64(untouchedSince.timeIntervalSince1970))") }
        if restrictedOnly { parts.append("restricted") }
        return parts.isEmpty ? "all" : parts.joined(separator: ", ")
    }
}
