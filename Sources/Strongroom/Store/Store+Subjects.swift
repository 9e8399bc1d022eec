import Foundation
import StrongroomCrypto
import StrongroomPhone
import StrongroomStorage

/// A new lead or contact: clear metadata and the personal data to encrypt.
public struct NewSubject: Sendable, Hashable {
    /// Clear operational fields.
    public var metadata: SubjectMetadata
    /// Personal fields to encrypt.
    public var personal: PersonalData

    /// Creates a new subject's content.
    public init(metadata: SubjectMetadata, personal: PersonalData) {
        self.metadata = metadata
        self.personal = personal
    }
}

/// What writing a subject did.
public struct WriteResult: Sendable, Hashable {
    /// The subject written.
    public let id: SubjectID
    /// Whether it was created (false: an existing subject was updated, or its update was refused).
    public let created: Bool
    /// Whether the update was refused and nothing of it written (a restricted subject, with
    /// `skippingRefused`; the refusal is in the audit log).
    public let refused: Bool
    /// How many of its phone numbers could not be normalised: they are stored, encrypted, but caller
    /// ID cannot find them.
    public let unindexedPhoneNumbers: Int

    init(id: SubjectID, created: Bool, refused: Bool = false, unindexedPhoneNumbers: Int) {
        self.id = id
        self.created = created
        self.refused = refused
        self.unindexedPhoneNumbers = unindexedPhoneNumbers
    }
}

extension Store {
    /// The clear columns every subject query reads, in this order.
    static let summaryColumns = "id, kind, external_id, owner, status, source, created_at, updated_at, last_contacted_at, restricted, key_version"

    /// Creates a lead or contact; its personal fields are sealed under a fresh subject key.
    ///
    /// - Parameter region: the region for phone numbers written without a country code (default: the store's).
    public func create(_ subject: NewSubject, region: String? = nil, context: AccessContext) throws(StoreError) -> SubjectID {
        try write([subject], region: region, context: context)[0].id
    }

    /// Creates or, where the external id is already known, updates each subject, in one transaction.
    /// Used by the importer: a re-import of the same external ids updates rather than duplicates. An
    /// update of a restricted subject is refused (see `SubjectWriteKind`): for the whole batch, or with
    /// `skippingRefused` for that subject alone (its result says `refused`; the rest is written, and the
    /// refusal audited with them), so that one restricted person does not stop a nightly sync.
    public func write(_ subjects: [NewSubject], region: String? = nil, skippingRefused: Bool = false,
                      context: AccessContext) throws(StoreError) -> [WriteResult] {
        let normalizer = try normalizer(for: region)
        return try writeSubjects(context: context) { write in
            try createOrUpdate(subjects, normalizer: normalizer, skippingRefused: skippingRefused, in: write)
        }
    }

    /// The body of `write`, inside a write-path transaction (also used by `recordCall` for a new lead).
    func createOrUpdate(_ subjects: [NewSubject], normalizer: PhoneNormalizer, skippingRefused: Bool = false,
                        in write: SubjectWriteTransaction) throws -> [WriteResult] {
        let connection = write.connection
        // Another process may have started or finished a key rotation: write under the keys it
        // left, read inside the transaction so an index rotation's last step cannot pass it by.
        _ = try keyring.reloadIfChanged()
        var results: [WriteResult] = []
        var created: [(SubjectID, NewSubject)] = []
        let now = Store.milliseconds(Date())
        for subject in subjects {
            if let externalID = subject.metadata.externalID,
               let existing = try connection.firstRow("SELECT id, key_version FROM subjects WHERE external_id = ?",
                                                      [.text(externalID)], { (SubjectID(rawValue: $0.int64(0)), UInt32($0.int64(1))) }) {
                if skippingRefused {
                    guard try write.admits(existing.0, .update) else {
                        results.append(WriteResult(id: existing.0, created: false, refused: true, unindexedPhoneNumbers: 0))
                        continue
                    }
                } else {
                    try write.require(existing.0, .update)
                }
                let fields = try replace(existing.0, keyVersion: existing.1, metadata: subject.metadata,
                                         personal: subject.personal, normalizer: normalizer, now: now, in: connection)
                results.append(WriteResult(id: existing.0, created: false, unindexedPhoneNumbers: fields.unindexed))
                write.record(existing.0, .update, fields: fields.written)
            } else {
                // Another process may have given a subject this external id since the look-up above.
                let id = try Store.refusingDuplicate(subject.metadata.externalID) { () throws(DatabaseError) in
                    try connection.scalarInteger("""
                        INSERT INTO subjects (kind, external_id, owner, status, source, created_at, updated_at, last_contacted_at, key_version)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id
                        """, Store.metadataValues(subject.metadata) + [.integer(now), .integer(now),
                                                                        .integer(subject.metadata.lastContactedAt.map(Store.milliseconds))])
                }
                created.append((SubjectID(rawValue: id ?? 0), subject))
                results.append(WriteResult(id: created.last!.0, created: true, unindexedPhoneNumbers: 0))
            }
        }
        try faultInjection?("write.rows", subjects.count)
        let keys = try keyring.createSubjectKeys(for: created.map(\.0))
        try faultInjection?("write.keys", subjects.count)
        var createdIndex = 0
        for (position, result) in results.enumerated() where result.created {
            let (id, subject) = created[createdIndex]
            let written = try seal(subject.personal, of: id, under: keys[createdIndex], in: connection)
            let unindexed = try index(subject.personal.phones ?? [], of: id, normalizer: normalizer, in: connection)
            if unindexed > 0 { try connection.run("UPDATE subjects SET unindexed_phones = ? WHERE id = ?", [.int(unindexed), .integer(id.rawValue)]) }
            results[position] = WriteResult(id: id, created: true, unindexedPhoneNumbers: unindexed)
            write.record(id, .create, fields: written)
            createdIndex += 1
        }
        try faultInjection?("write.sealed", subjects.count)
        return results
    }

    /// Replaces the given personal fields of a subject (rectification) and, when given, its metadata.
    /// Fields left `nil` in `personal` are kept; changed phone numbers are re-indexed. A restricted
    /// subject is rectified only on its own request or for legal claims (purpose `subject-request`
    /// or `legal-claims`); for any other purpose the update is refused (`SubjectWriteKind`).
    public func update(_ id: SubjectID, metadata: SubjectMetadata? = nil, personal: PersonalData,
                       region: String? = nil, context: AccessContext) throws(StoreError) {
        let normalizer = try normalizer(for: region)
        try writeSubjects(context: context) { write in
            let connection = write.connection
            _ = try keyring.reloadIfChanged()
            guard let (keyVersion, current) = try connection.firstRow(
                "SELECT key_version, \(Store.summaryColumns) FROM subjects WHERE id = ?", [.integer(id.rawValue)], {
                    (UInt32($0.int64(0)), Store.summary(from: $0, offset: 1).metadata)
                }) else { throw try notFoundOrErased(id) }
            try write.require(id, .update)
            let fields = try replace(id, keyVersion: keyVersion, metadata: metadata ?? current, personal: personal,
                                     normalizer: normalizer, now: Store.milliseconds(Date()), in: connection)
            write.record(id, .update, fields: fields.written)
        }
    }

    /// Deletes a subject: destroys its key first (so copies of its ciphertext in backups of the data
    /// file become unreadable), then its row and index entries.
    public func delete(_ id: SubjectID, context: AccessContext) throws(StoreError) {
        try remove(id, .delete, context: context)
    }

    /// Removes a subject for `delete` and `erase` through the write path (a restricted subject may be
    /// erased, not deleted). Order: audit, destroy the key (the decisive step, committed in the key
    /// database), then delete the rows. A crash after the key is gone leaves rows nobody can read,
    /// reported as erased; running the removal again deletes them.
    func remove(_ id: SubjectID, _ kind: SubjectWriteKind, detail: String? = nil, context: AccessContext) throws(StoreError) {
        try writeSubjects(context: context) { write in
            let connection = write.connection
            guard try connection.scalarInteger("SELECT 1 FROM subjects WHERE id = ?", [.integer(id.rawValue)]) != nil else {
                throw try notFoundOrErased(id)
            }
            try write.require(id, kind)
            write.record(id, kind, detail: detail)
            // Audited before the key is destroyed: a removal the log cannot take never starts.
            try write.auditNow()
            try faultInjection?("erase.audited", 1)
            try keyring.destroySubjectKeys(of: id, tombstone: true)
            try faultInjection?("erase.key-destroyed", 1)
            try connection.run("DELETE FROM subjects WHERE id = ?", [.integer(id.rawValue)])
        }
    }

    /// Turns a lead into a contact, keeping its id, fields, history and consents.
    public func convertToContact(_ id: SubjectID, context: AccessContext) throws(StoreError) {
        try writeSubjects(context: context) { write in
            let connection = write.connection
            guard let kind = try connection.scalarText("SELECT kind FROM subjects WHERE id = ?", [.integer(id.rawValue)]) else {
                throw try notFoundOrErased(id)
            }
            guard kind == SubjectKind.lead.rawValue else { throw StoreError.wrongSubjectKind(id, expected: .lead) }
            try write.require(id, .convert)
            try connection.run("UPDATE subjects SET kind = 'contact', updated_at = ? WHERE id = ?",
                               [.integer(Store.milliseconds(Date())), .integer(id.rawValue)])
            write.record(id, .convert, detail: "lead to contact")
        }
    }

    /// Reads a subject: clear fields, and the requested personal fields decrypted through the audited path.
    public func read(_ id: SubjectID, fields: Set<PersonalField> = .all, context: AccessContext) throws(StoreError) -> Subject {
        let requested = fields.sorted()
        let encrypted = try withData { (connection) throws(DatabaseError) in
            try connection.firstRow(
                "SELECT \(Store.summaryColumns), \(requested.map(\.column).joined(separator: ", ")) FROM subjects WHERE id = ?",
                [.integer(id.rawValue)]) { row in
                    Store.encryptedSubject(from: row, fields: requested)
                }
        }
        guard let encrypted else { throw try notFoundOrErased(id) }
        let personal = try decrypt([encrypted], fields: requested, context: context).personal[0]
        return Subject(summary: encrypted.summary, personal: personal)
    }

    /// Lists subjects by id, without decrypting anything: clear fields only.
    ///
    /// - Parameters:
    ///   - kind: only leads or only contacts; nil for both.
    ///   - after: the last id of the previous page (keyset paging).
    ///   - limit: the page size.
    public func list(kind: SubjectKind? = nil, after: SubjectID? = nil, limit: Int = 100) throws(StoreError) -> [SubjectSummary] {
        try withData { (connection) throws(DatabaseError) in
            try connection.rows("""
                SELECT \(Store.summaryColumns) FROM subjects
                WHERE id > ? AND (kind = ?2 OR ?2 IS NULL) ORDER BY id LIMIT ?
                """, [.integer(after?.rawValue ?? 0), .text(kind?.rawValue), .int(limit)]) { Store.summary(from: $0, offset: 0) }
        }
    }

    /// The number of subjects in the store.
    public func count() throws(StoreError) -> Int {
        try withData { (connection) throws(DatabaseError) in Int(try connection.scalarInteger("SELECT count(*) FROM subjects") ?? 0) }
    }

    /// Finds a subject by the store's id or by its external id (numbers are tried as ids first).
    public func resolve(_ reference: String) throws(StoreError) -> SubjectID {
        let found = try withData { (connection) throws(DatabaseError) -> SubjectID? in
            if let number = Int64(reference),
               try connection.scalarInteger("SELECT id FROM subjects WHERE id = ?", [.integer(number)]) != nil {
                return SubjectID(rawValue: number)
            }
            return try connection.scalarInteger("SELECT id FROM subjects WHERE external_id = ?", [.text(reference)])
                .map(SubjectID.init(rawValue:))
        }
        if let found { return found }
        if let number = Int64(reference), try keyring.isErased(SubjectID(rawValue: number)) {
            throw .subjectErased(SubjectID(rawValue: number))
        }
        throw .subjectNotFound(reference)
    }

    // MARK: - Internals shared by the write paths

    /// Seals every present field of `personal` into the subject's row; returns the fields written.
    private func seal(_ personal: PersonalData, of id: SubjectID, under key: KeyHandle,
                      in connection: any Database) throws -> [PersonalField] {
        try personal.checkValueSizes(limit: maxFieldBytes)
        var assignments: [String] = []
        var values: [SQLValue] = []
        var written: [PersonalField] = []
        for field in PersonalField.allCases {
            guard let plaintext = FieldCodec.encode(field, of: personal) else { continue }
            assignments.append("\(field.column) = ?")
            values.append(.blob(try Envelope.seal(plaintext, at: EnvelopeLocation(slot: .field(field), recordID: id.rawValue),
                                                  under: key, storeID: keyring.storeID)))
            written.append(field)
        }
        guard !assignments.isEmpty else { return [] }
        // Counted in the statement that stores the ciphertexts, and refused past the budget: the
        // ciphertexts just made are then never stored, so their nonces were never seen.
        try connection.run("""
            UPDATE subjects SET \(assignments.joined(separator: ", ")), seal_count = seal_count + ?
            WHERE id = ? AND seal_count + ? <= ?
            """, values + [.int(written.count), .integer(id.rawValue), .int(written.count), .integer(Int64(keyring.nonceBudget))])
        guard connection.changes == 1 else {
            let used = UInt64(try connection.scalarInteger("SELECT seal_count FROM subjects WHERE id = ?", [.integer(id.rawValue)]) ?? 0)
            throw StoreError.keyBudgetExhausted(key: "subject:\(id.rawValue):\(key.version)", used: used, budget: keyring.nonceBudget)
        }
        return written
    }

    /// `write`'s result; a unique violation, which on `subjects` only its external id can cause, is
    /// reported as `duplicateExternalID`.
    static func refusingDuplicate<T>(_ externalID: String?, _ write: () throws(DatabaseError) -> T) throws(StoreError) -> T {
        do { return try write() } catch {
            throw error.isUniqueViolation ? .duplicateExternalID(externalID ?? "") : .database(error)
        }
    }

    /// Updates metadata and the given fields of an existing subject under its current key.
    private func replace(_ id: SubjectID, keyVersion: UInt32, metadata: SubjectMetadata, personal: PersonalData,
                         normalizer: PhoneNormalizer, now: Int64,
                         in connection: any Database) throws -> (written: [PersonalField], unindexed: Int) {
        try Store.refusingDuplicate(metadata.externalID) { () throws(DatabaseError) in
            try connection.run("""
                UPDATE subjects SET kind = ?, external_id = ?, owner = ?, status = ?, source = ?, updated_at = ?, last_contacted_at = ?
                WHERE id = ?
                """, Store.metadataValues(metadata) + [.integer(now), .integer(metadata.lastContactedAt.map(Store.milliseconds)),
                                                        .integer(id.rawValue)])
        }
        let key = try keyring.subjectKey(for: id, version: keyVersion)
        let written = try seal(personal, of: id, under: key, in: connection)
        var unindexed = 0
        if let phones = personal.phones {
            try connection.run("DELETE FROM phone_index WHERE subject_id = ?", [.integer(id.rawValue)])
            unindexed = try index(phones, of: id, normalizer: normalizer, in: connection)
            try connection.run("UPDATE subjects SET unindexed_phones = ? WHERE id = ?", [.int(unindexed), .integer(id.rawValue)])
        }
        return (written, unindexed)
    }

    /// Adds blind-index rows for `phones` to every answering index version (two while an index
    /// rotation builds the new one), or to `indexes`; returns how many numbers could not be normalised
    /// (they are stored, encrypted, but not indexed).
    func index(_ phones: [LabeledPhone], of id: SubjectID, normalizer: PhoneNormalizer, in connection: any Database,
               into indexes: [PhoneBlindIndex]? = nil) throws -> Int {
        let indexes = indexes ?? keyring.keys.phoneIndexes
        var unindexed = 0
        var seen = Set<String>()
        for phone in phones {
            guard let number = try? normalizer.normalize(phone.number) else {
                unindexed += 1
                continue
            }
            guard seen.insert(number.e164).inserted else { continue }
            for index in indexes {
                let tags = try index.tags(for: number.e164)
                try connection.run("INSERT INTO phone_index (key_version, tag, subject_id, check_mac) VALUES (?, ?, ?, ?)",
                                   [.int(Int(index.version)), .integer(tags.truncated), .integer(id.rawValue),
                                    .blob(try index.check(tags, subject: id))])
            }
        }
        return unindexed
    }

    /// The normaliser for `region`, or the store's own when nil.
    func normalizer(for region: String?) throws(StoreError) -> PhoneNormalizer {
        guard let region, region.uppercased() != defaultRegion else { return phoneNormalizer }
        do { return try PhoneNormalizer(defaultRegion: region) } catch {
            throw .unsupportedRegion(region)
        }
    }

    /// `subjectErased` when the id belonged to an erased subject, else `subjectNotFound`.
    func notFoundOrErased(_ id: SubjectID) throws(StoreError) -> StoreError {
        try keyring.isErased(id) ? .subjectErased(id) : .subjectNotFound(String(id.rawValue))
    }

    static func metadataValues(_ metadata: SubjectMetadata) -> [SQLValue] {
        [.text(metadata.kind.rawValue), .text(metadata.externalID), .text(metadata.owner), .text(metadata.status),
         .text(metadata.source)]
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    static func date(milliseconds: Int64) -> Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }

    /// Maps the `summaryColumns` of a row, starting at column `offset`.
    static func summary(from row: any Row, offset: Int) -> SubjectSummary {
        SubjectSummary(
            id: SubjectID(rawValue: row.int64(offset)),
            metadata: SubjectMetadata(kind: SubjectKind(rawValue: row.text(offset + 1) ?? "") ?? .lead,
                                      externalID: row.text(offset + 2), owner: row.text(offset + 3),
                                      status: row.text(offset + 4), source: row.text(offset + 5),
                                      lastContactedAt: row.isNull(offset + 8) ? nil : date(milliseconds: row.int64(offset + 8))),
            createdAt: date(milliseconds: row.int64(offset + 6)),
            updatedAt: date(milliseconds: row.int64(offset + 7)),
            isRestricted: row.int64(offset + 9) != 0)
    }

    /// Maps a row of `summaryColumns` followed by the ciphertext columns of `fields`.
    static func encryptedSubject(from row: any Row, fields: [PersonalField]) -> EncryptedSubject {
        var ciphertexts = [PersonalField: [UInt8]](minimumCapacity: fields.count)
        for (position, field) in fields.enumerated() {
            if let blob = row.blob(11 + position) { ciphertexts[field] = blob }
        }
        return EncryptedSubject(summary: summary(from: row, offset: 0),
                                keyVersion: UInt32(truncatingIfNeeded: row.int64(10)), ciphertexts: ciphertexts)
    }
}

extension Subject {
    init(summary: SubjectSummary, personal: PersonalData) {
        self.init(id: summary.id, metadata: summary.metadata, createdAt: summary.createdAt, updatedAt: summary.updatedAt,
                  isRestricted: summary.isRestricted, personal: personal)
    }
}
