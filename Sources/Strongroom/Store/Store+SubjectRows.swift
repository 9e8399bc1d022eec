import Foundation
import StrongroomCrypto
import StrongroomPhone
import StrongroomStorage

/// How a subject becomes rows (sealed fields, index entries, metadata values) and rows a subject again:
/// the internals the write paths share.
extension Store {

    /// The random bytes `sealedFields` may take from its draw: a nonce for every field.
    static let sealedFieldsDrawByteCount = PersonalField.allCases.count * AES256GCM.nonceByteCount

    /// Every present field of `personal`, sealed under the subject's key, in `PersonalField` order, each
    /// with a fresh random nonce of its own taken from `nonces` (SP 800-38D §8.2.2).
    func sealedFields(_ personal: PersonalData, of id: SubjectID, under key: KeyHandle,
                      nonces: inout RandomDraw) throws(StoreError) -> [(field: PersonalField, ciphertext: [UInt8])] {
        try personal.checkValueSizes(limit: maxFieldBytes)
        var sealed: [(field: PersonalField, ciphertext: [UInt8])] = []
        sealed.reserveCapacity(PersonalField.allCases.count)
        for field in PersonalField.allCases {
            guard let plaintext = FieldCodec.encode(field, of: personal) else { continue }
            sealed.append((field, try Envelope.seal(plaintext, at: EnvelopeLocation(slot: .field(field), recordID: id.rawValue),
                                                    under: key, storeID: keyring.storeID, nonces: &nonces)))
        }
        return sealed
    }

    /// Seals every present field of `personal` into an existing subject's row; returns the fields written.
    func seal(_ personal: PersonalData, of id: SubjectID, under key: KeyHandle,
                      in connection: any Database) throws(StoreError) -> [PersonalField] {
        var nonces = try Envelope.randomDraw(byteCount: Store.sealedFieldsDrawByteCount)
        let sealed = try sealedFields(personal, of: id, under: key, nonces: &nonces)
        guard !sealed.isEmpty else { return [] }
        // Counted in the statement that stores the ciphertexts, and refused past the budget: the
        // ciphertexts just made are then never stored, so their nonces were never seen.
        let used: UInt64?
        do throws(DatabaseError) {
            try connection.run("""
                UPDATE subjects SET \(sealed.map { "\($0.field.column) = ?" }.joined(separator: ", ")), seal_count = seal_count + ?
                WHERE id = ? AND seal_count + ? <= ?
                """, sealed.map { .blob($0.ciphertext) }
                    + [.int(sealed.count), .integer(id.rawValue), .int(sealed.count), .integer(Int64(keyring.nonceBudget))])
            used = connection.changes == 1 ? nil
                : UInt64(try connection.scalarInteger("SELECT seal_count FROM subjects WHERE id = ?", [.integer(id.rawValue)]) ?? 0)
        } catch {
            throw .database(error)
        }
        if let used {
            throw .keyBudgetExhausted(key: "subject:\(id.rawValue):\(key.version)", used: used, budget: keyring.nonceBudget)
        }
        return sealed.map(\.field)
    }

    /// `write`'s result; a unique violation, which on `subjects` only its external id can cause, is
    /// reported as `duplicateExternalID`.
    static func refusingDuplicate<T>(_ externalID: String?, _ write: () throws(DatabaseError) -> T) throws(StoreError) -> T {
        do { return try write() } catch {
            throw error.isUniqueViolation ? .duplicateExternalID(externalID ?? "") : .database(error)
        }
    }

    /// Updates metadata and the given fields of an existing subject under its current key; changed phone
    /// numbers and e-mail addresses are re-indexed.
    func replace(_ id: SubjectID, keyVersion: UInt32, metadata: SubjectMetadata, personal: PersonalData,
                 normalizer: PhoneNormalizer, now: Int64,
                 in connection: any Database) throws(StoreError) -> (written: [PersonalField], unindexed: Int) {
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
            do throws(DatabaseError) { try connection.run("DELETE FROM phone_index WHERE subject_id = ?", [.integer(id.rawValue)]) } catch {
                throw .database(error)
            }
            unindexed = try index(phones, of: id, normalizer: normalizer, in: connection)
            do throws(DatabaseError) {
                try connection.run("UPDATE subjects SET unindexed_phones = ? WHERE id = ?", [.int(unindexed), .integer(id.rawValue)])
            } catch {
                throw .database(error)
            }
        }
        if let emails = personal.emails { try reindexEmails(emails, of: id, in: connection) }
        return (written, unindexed)
    }

    /// Adds blind-index rows for `phones` to every answering index version (two while an index
    /// rotation builds the new one), or to `indexes`; returns how many numbers could not be normalised
    /// (they are stored, encrypted, but not indexed).
    func index(_ phones: [LabeledPhone], of id: SubjectID, normalizer: PhoneNormalizer, in connection: any Database,
               into indexes: [PhoneBlindIndex]? = nil) throws(StoreError) -> Int {
        let (entries, unindexed): ([BlindIndexEntry], Int)
        do throws(CryptoError) {
            (entries, unindexed) = try blindIndexEntries(phones, of: id, normalizer: normalizer, into: indexes ?? keyring.keys.phoneIndexes)
        } catch {
            throw .crypto(error)
        }
        do throws(DatabaseError) {
            try backend.insert(entries.map { Store.phoneIndexRow($0, of: id) }, into: "phone_index", columns: Store.blindIndexColumns,
                               conflict: "", on: connection)
        } catch {
            throw .database(error)
        }
        return unindexed
    }

    /// The columns of a blind-index row (`phone_index` and `email_index` alike), in the order
    /// `phoneIndexRow` and `emailIndexRows` give their values.
    static let blindIndexColumns = [BulkColumn("key_version", .integer), BulkColumn("tag", .integer), BulkColumn("subject_id", .integer),
                                    BulkColumn("check_mac", .blob)]

    /// The values of `entry`'s row in `phone_index` (or `email_index`: `emailIndexRows`), for `blindIndexColumns`.
    static func phoneIndexRow(_ entry: BlindIndexEntry, of id: SubjectID) -> [SQLValue] {
        [.int(Int(entry.version)), .integer(entry.tag), .integer(id.rawValue), .blob(entry.check)]
    }

    /// The blind-index rows of `phones` (each distinct normalised number once) under each of `indexes`,
    /// and how many numbers could not be normalised. `numbers`, when given, holds `phones`' numbers
    /// already normalised by `normalizer` (nil for one that cannot be), in order.
    func blindIndexEntries(_ phones: [LabeledPhone], numbers: [String?]? = nil, of id: SubjectID, normalizer: PhoneNormalizer,
                           into indexes: [PhoneBlindIndex]) throws(CryptoError) -> (entries: [BlindIndexEntry], unindexed: Int) {
        var entries: [BlindIndexEntry] = []
        var unindexed = 0
        var seen = Set<String>()
        let numbers = numbers?.count == phones.count ? numbers : nil
        for (position, phone) in phones.enumerated() {
            let normalized = numbers.map { $0[position] } ?? (try? normalizer.normalize(phone.number))?.e164
            guard let e164 = normalized else {
                unindexed += 1
                continue
            }
            guard seen.insert(e164).inserted else { continue }
            for index in indexes {
                let tags = try index.tags(for: e164)
                entries.append(BlindIndexEntry(version: index.version, tag: tags.truncated, check: try index.check(tags, subject: id)))
            }
        }
        return (entries, unindexed)
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

extension SubjectMetadata {
    /// These values written over `stored` by a re-import: a value left `nil` keeps the stored one, the
    /// last contact is the later of the two (it never moves backwards: caller ID's answer and retention
    /// rules read it), and a contact stays a contact (a lead becomes one by conversion, never back).
    func merged(onto stored: SubjectMetadata) -> SubjectMetadata {
        SubjectMetadata(kind: stored.kind == .contact ? .contact : kind, externalID: externalID ?? stored.externalID,
                        owner: owner ?? stored.owner, status: status ?? stored.status, source: source ?? stored.source,
                        lastContactedAt: SubjectMetadata.later(lastContactedAt, stored.lastContactedAt))
    }

    /// The later of two contact times; nil only when both are.
    static func later(_ first: Date?, _ second: Date?) -> Date? {
        guard let first, let second else { return first ?? second }
        return max(first, second)
    }
}

extension Subject {
    init(summary: SubjectSummary, personal: PersonalData) {
        self.init(id: summary.id, metadata: summary.metadata, createdAt: summary.createdAt, updatedAt: summary.updatedAt,
                  isRestricted: summary.isRestricted, personal: personal)
    }
}
