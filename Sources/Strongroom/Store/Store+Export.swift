import Foundation
import StrongroomPhone
import StrongroomStorage

/// Everything a store holds on one subject, in the stable export layout (version 1): the answer to a
/// right-of-access or portability request (GDPR Art. 15 and 20).
///
/// JSON keys: `format` ("strongroom.subject-export"), `version` (1), `exported_at`, `subject` (clear
/// fields), `personal` (every personal field decrypted; phone numbers with their E.164 form),
/// `calls`, `consents` (the consent ledger, oldest first, client addresses and evidence decrypted),
/// `purposes` (the declaration — lawful basis, double opt-in — of each purpose the subject ever
/// consented to, withdrawn since or not), `access_log` (every audit entry about the subject: who
/// accessed what, when and why).
public struct SubjectExport: Sendable, Codable, Equatable {
    /// The subject's clear fields.
    public struct Record: Sendable, Codable, Equatable {
        public let id: String
        public let externalID: String?
        public let kind: String
        public let owner: String?
        public let status: String?
        public let source: String?
        public let createdAt: String
        public let updatedAt: String
        public let lastContactedAt: String?
        public let restricted: Bool
    }

    /// A phone number as stored, with its normalised form when it has one.
    public struct Phone: Sendable, Codable, Equatable {
        public let label: String
        public let number: String
        public let e164: String?
    }

    /// The decrypted personal fields.
    public struct Personal: Sendable, Codable, Equatable {
        public let name: String?
        public let company: String?
        public let emails: [String]
        public let phones: [Phone]
        public let address: String?
        public let notes: String?
        public let photoBase64: String?
        public let customFields: [String: String]
    }

    /// A logged call.
    public struct Call: Sendable, Codable, Equatable {
        public let at: String
        public let direction: String
    }

    /// "strongroom.subject-export".
    public let format: String
    /// The layout's version: 1.
    public let version: Int
    /// When the export was made.
    public let exportedAt: String
    /// Clear fields.
    public let subject: Record
    /// Personal fields.
    public let personal: Personal
    /// Logged calls, oldest first.
    public let calls: [Call]
    /// The consent ledger, oldest first.
    public let consents: [ConsentEntry]
    /// The declarations of the purposes the subject ever consented to, by name.
    public let purposes: [PurposeDeclaration]
    /// Audit entries about the subject, oldest first.
    public let accessLog: [AuditEntry]

    /// The export as JSON, keys sorted and snake_case, pretty-printed.
    public func jsonData() throws -> Data {
        try SubjectExport.encoder(outputFormatting: [.prettyPrinted]).encode(self)
    }

    /// The export as one line of JSON, without its newline: the same keys and values as `jsonData`,
    /// for JSON Lines (`Store.exportAll`).
    public func jsonLine() throws -> Data {
        try SubjectExport.encoder(outputFormatting: []).encode(self)
    }

    /// The exports' encoder: keys sorted and snake_case, slashes as they are, plus `outputFormatting`.
    private static func encoder(outputFormatting: JSONEncoder.OutputFormatting) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = outputFormatting.union([.sortedKeys, .withoutEscapingSlashes])
        return encoder
    }
}

/// What `Store.exportAll` did besides the exports it passed on.
public struct BulkExportSummary: Sendable, Equatable {
    /// How many subjects were exported.
    public let exported: Int
    /// The subjects whose export the purpose was refused for (restricted, or without consent to a
    /// consent-based purpose), in id order; each refusal is in the audit log, as a single export's is.
    public let refused: [SubjectID]
}

extension Store {
    /// How many subjects `exportAll` reads, decrypts and audits at a time: large enough that a batch's
    /// queries (rows, calls, consent ledger, keys) cost little per subject, small enough to keep the
    /// plaintext in memory at any time to a few hundred subjects.
    static let exportBatchSize = 256

    /// The ids of the subjects a bulk export exports: read once per export, a walk over the table (or
    /// over `subjects_by_kind`) by nature, pinned as such by `QueryPlanTests`.
    static let exportedSubjects = "SELECT id FROM subjects WHERE kind = ?1 OR ?1 IS NULL"

    /// Exports everything held on `id` (decrypted through the audited path, so the export itself is
    /// in the access log it returns).
    public func export(_ id: SubjectID, context: AccessContext) throws(StoreError) -> SubjectExport {
        let subject = try read(id, fields: .all, context: context)
        let calls = try withData { (connection) throws(DatabaseError) in
            try connection.rows("SELECT at, direction FROM calls WHERE subject_id = ? ORDER BY at", [.integer(id.rawValue)]) {
                Store.exportedCall(from: $0)
            }
        }
        let consents = try consentLedger(of: id, context: context)
        var accessLog: [AuditEntry] = []
        try auditEntries(AuditFilter(subject: id)) { entry, _ in accessLog.append(entry) }
        return subjectExport(subject, calls: calls, consents: consents, accessLog: accessLog, at: Date())
    }

    /// Exports every subject (only those of `kind` when given) that exists when the call starts, in id
    /// order, passing each export to `body` as soon as it is made: in the layout of `export`, each
    /// subject's decrypt audited by one entry of its own (action `decrypt`, every field, detail
    /// `export, consent ledger: N`). A subject the purpose may not process (restricted, or without
    /// consent to a consent-based purpose) is skipped, its refusal audited, and listed in the summary;
    /// one erased while the export runs is left out.
    ///
    /// The bulk path: one query per batch of `exportBatchSize` subjects for their rows, calls and
    /// consent ledgers each, their keys unwrapped from one key-database query per batch (or taken from
    /// the cache), one decrypt and one audit append per batch. The audit log is read once, before the
    /// first batch, verified like `auditEntries` does (nothing is exported from a log that does not
    /// verify): its entries about the exported subjects are kept until their subject is exported, so
    /// memory grows with those entries' lines (about 250 bytes each), not with the exports, which are
    /// never held together. Each export's `access_log` is therefore the log as the call found it: the
    /// entries this call appends (its own decrypts) are in the log, and in the next export, not in
    /// this one's lines. Entries that other processes append meanwhile are likewise left for the next.
    public func exportAll(kind: SubjectKind? = nil, context: AccessContext,
                          _ body: (SubjectExport) throws -> Void) throws -> BulkExportSummary {
        guard purposeDeclaration(context.purpose) != nil else {
            throw StoreError.undeclaredPurpose(context.purpose)
        }
        let exported = try withData { (connection) throws(DatabaseError) in
            Set(try connection.rows(Store.exportedSubjects, [.text(kind?.rawValue)]) { $0.int64(0) })
        }
        guard let last = exported.max() else { return BulkExportSummary(exported: 0, refused: []) }
        var accessLogs = try accessLogLines(of: exported)
        var cursor: Int64 = 0
        var count = 0
        var refused: [SubjectID] = []
        let decoder = JSONDecoder()
        while true {
            // Read and opened together, so that a batch whose keys a data rotation replaced meanwhile is read again.
            let read = try rereadingAfterKeyRotation { () throws(StoreError) -> OpenedExportBatch? in
                var batch = try exportBatch(after: cursor, through: last, kind: kind)
                guard let lastInBatch = batch.subjects.last?.summary.id.rawValue else { return nil }
                // A subject made since the start under a reused id (its row's predecessor deleted) waits for the next export.
                batch.subjects.removeAll { !exported.contains($0.summary.id.rawValue) }
                try injectFault("export.rows", count)
                return (batch, lastInBatch, try decryptForExport(batch, context: context))
            }
            guard let (batch, lastInBatch, (opened, refusedInBatch)) = read else { break }
            cursor = lastInBatch
            refused += refusedInBatch
            let now = Date()
            for (subject, consents) in opened {
                let id = subject.id.rawValue
                let accessLog = try (accessLogs.removeValue(forKey: id) ?? []).split(separator: UInt8(ascii: "\n")).map { line in
                    guard let entry = try? decoder.decode(AuditEntry.self, from: Data(line)) else {
                        throw StoreError.auditLogUnverified(.badEntry(sequence: AuditLineFormat.split(line)?.sequence ?? 0, segment: "audit log",
                                                                      line: 0, reason: "its MAC verifies but it is not a readable entry"))
                    }
                    return entry
                }
                try body(subjectExport(subject, calls: batch.calls[subject.id] ?? [], consents: consents, accessLog: accessLog, at: now))
                count += 1
            }
        }
        return BulkExportSummary(exported: count, refused: refused)
    }

    /// A batch of the bulk export read and opened: as stored, its last subject's id (the next cursor), and
    /// the subjects opened with their consent ledgers and those refused.
    private typealias OpenedExportBatch = (ExportBatch, Int64, (opened: [(subject: Subject, consents: [ConsentEntry])], refused: [SubjectID]))

    /// One batch of the bulk export as stored: the subjects' rows, their calls and their consent ledgers.
    private struct ExportBatch {
        var subjects: [EncryptedSubject] = []
        var calls: [SubjectID: [SubjectExport.Call]] = [:]
        var consents: [SubjectID: [ConsentRow]] = [:]
    }

    /// The next `exportBatchSize` subjects after id `cursor` up to id `last` (of `kind` when given),
    /// read in three queries over their id range.
    private func exportBatch(after cursor: Int64, through last: Int64, kind: SubjectKind?) throws(StoreError) -> ExportBatch {
        let fields = PersonalField.allCases
        return try withData { (connection) throws(DatabaseError) in
            var batch = ExportBatch()
            batch.subjects = try connection.rows("""
                SELECT \(Store.summaryColumns), \(fields.map(\.column).joined(separator: ", ")) FROM subjects
                WHERE id > ? AND id <= ? AND (kind = ?3 OR ?3 IS NULL) ORDER BY id LIMIT ?
                """, [.integer(cursor), .integer(last), .text(kind?.rawValue), .int(Store.exportBatchSize)]) {
                Store.encryptedSubject(from: $0, fields: fields)
            }
            guard let first = batch.subjects.first?.summary.id, let lastInBatch = batch.subjects.last?.summary.id else { return batch }
            let ids = batch.subjects.map(\.summary.id)
            let wanted = Set(ids)
            try connection.forEachRow("""
                SELECT at, direction, subject_id FROM calls WHERE subject_id >= ? AND subject_id <= ? ORDER BY subject_id, at
                """, [.integer(first.rawValue), .integer(lastInBatch.rawValue)]) { row in
                let subject = SubjectID(rawValue: row.int64(2))
                if wanted.contains(subject) { batch.calls[subject, default: []].append(Store.exportedCall(from: row)) }
            }
            batch.consents = try consentRows(of: ids, in: connection)
            return batch
        }
    }

    /// Decrypts a batch through the audited path, each subject's fields and consent ledger under one
    /// audit entry. Refused subjects are taken out (their refusal audited by `decrypt`, as a single
    /// export's is) and returned; erased ones are left out. Returns the subjects decrypted, in order,
    /// with their consent ledgers.
    private func decryptForExport(_ batch: ExportBatch, context: AccessContext) throws(StoreError)
        -> (opened: [(subject: Subject, consents: [ConsentEntry])], refused: [SubjectID]) {
        try keyring.cacheSubjectKeys(Dictionary(uniqueKeysWithValues: batch.subjects.map { ($0.summary.id, $0.keyVersion) }))
        var pending = batch.subjects
        // Every subject gets its ledger's sealed values (none for an empty ledger), so every entry has the same detail.
        let sealed = Dictionary(uniqueKeysWithValues: pending.map { subject in
            (subject.summary.id, (batch.consents[subject.summary.id] ?? []).flatMap(\.sealedValues))
        })
        var refused: [SubjectID] = []
        while !pending.isEmpty {
            do {
                let (personal, opened) = try decrypt(pending, fields: PersonalField.allCases, extra: sealed,
                                                     detail: "export, consent ledger", context: context)
                let exports = try zip(pending, personal).map { subject, personal throws(StoreError) in
                    (Subject(summary: subject.summary, personal: personal),
                     try Store.consentEntries(of: subject.summary.id, batch.consents[subject.summary.id] ?? [],
                                              opened: opened[subject.summary.id] ?? []))
                }
                return (exports, refused)
            } catch {
                // One refused (or meanwhile erased) subject does not end the export: it is taken out and
                // the rest decrypted again (nothing of it was returned or audited as read).
                let left = pending.count
                switch error {
                case .accessRefused(let id, _, _):
                    refused.append(id)
                    pending.removeAll { $0.summary.id == id }
                case .subjectErased(let id):
                    pending.removeAll { $0.summary.id == id }
                default:
                    throw error
                }
                if pending.count == left { throw error }
            }
        }
        return ([], refused)
    }

    /// Reads the audit log once, verifying it as `auditEntries` does, and keeps the lines of the entries
    /// about `subjects`, by subject, each line followed by a newline.
    private func accessLogLines(of subjects: Set<Int64>) throws(StoreError) -> [Int64: [UInt8]] {
        // The writer escapes every quote inside a string value, so this text only ever matches the member itself.
        let marker = Array(",\"subject\":\"".utf8)
        var lines: [Int64: [UInt8]] = [:]
        let verification = try auditVerifier().verify { _, _, line in
            guard let found = AuditLineFormat.firstRange(of: marker, in: line) else { return }
            var subject: Int64 = 0
            var index = found.upperBound
            while index < line.endIndex, (48...57).contains(line[index]), subject < Int64.max / 10 {
                subject = subject * 10 + Int64(line[index] - 48)
                index += 1
            }
            guard subjects.contains(subject) else { return }
            lines[subject, default: []].append(contentsOf: line)
            lines[subject, default: []].append(UInt8(ascii: "\n"))
        }
        if let problem = verification.problem { throw .auditLogUnverified(problem) }
        return lines
    }

    /// A call as exported, from a row that starts with `at, direction`.
    private static func exportedCall(from row: any Row) -> SubjectExport.Call {
        SubjectExport.Call(at: Timestamp.format(Store.date(milliseconds: row.int64(0))), direction: row.text(1) ?? "")
    }

    /// The export of a decrypted subject, made `at`.
    private func subjectExport(_ subject: Subject, calls: [SubjectExport.Call], consents: [ConsentEntry], accessLog: [AuditEntry],
                               at time: Date) -> SubjectExport {
        let personal = subject.personal
        let metadata = subject.metadata
        return SubjectExport(
            format: "strongroom.subject-export", version: 1, exportedAt: Timestamp.format(time),
            subject: .init(id: String(subject.id.rawValue), externalID: metadata.externalID, kind: metadata.kind.rawValue,
                           owner: metadata.owner, status: metadata.status, source: metadata.source,
                           createdAt: Timestamp.format(subject.createdAt), updatedAt: Timestamp.format(subject.updatedAt),
                           lastContactedAt: metadata.lastContactedAt.map(Timestamp.format), restricted: subject.isRestricted),
            personal: .init(name: personal.name, company: personal.company, emails: personal.emails ?? [],
                            phones: (personal.phones ?? []).map {
                                .init(label: $0.label, number: $0.number, e164: try? phoneNormalizer.normalize($0.number).e164)
                            },
                            address: personal.address, notes: personal.notes,
                            photoBase64: personal.photo.map { Data($0).base64EncodedString() },
                            customFields: personal.customFields ?? [:]),
            calls: calls, consents: consents,
            purposes: Set(consents.filter { $0.state.allowsProcessing }.map(\.purpose)).sorted()
                .compactMap { purposeDeclaration(Purpose(rawValue: $0)) },
            accessLog: accessLog)
    }
}
