import Foundation
import StrongroomCrypto
import StrongroomPhone
import StrongroomStorage
import Synchronization

/// A new lead or contact: clear metadata and the personal data to encrypt.
public struct NewSubject: Sendable, Hashable {
    /// Clear operational fields.
    public var metadata: SubjectMetadata {
        get { contents.metadata }
        set { contents = Contents(metadata: newValue, personal: contents.personal) }
    }
    /// Personal fields to encrypt.
    public var personal: PersonalData {
        get { contents.personal }
        set { contents = Contents(metadata: contents.metadata, personal: newValue) }
    }

    /// Both, held once and shared by every copy: an import hands each row's subject through several
    /// arrays (read, sealed ahead, written), and copying the two structs retained each of their strings
    /// and arrays where copying this retains one reference (copying and releasing new subjects was
    /// 7–10% of a PostgreSQL import's client samples, 2026-12-07). Immutable: a change makes new
    /// contents, so no copy ever sees another's change.
    private var contents: Contents

    /// Creates a new subject's content.
    public init(metadata: SubjectMetadata, personal: PersonalData) {
        contents = Contents(metadata: metadata, personal: personal)
    }

    /// Whether both have the same metadata and personal data (at once when they share their contents).
    public static func == (lhs: NewSubject, rhs: NewSubject) -> Bool {
        lhs.contents === rhs.contents || (lhs.metadata == rhs.metadata && lhs.personal == rhs.personal)
    }

    /// Hashes the metadata and the personal data, as `==` compares them.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(metadata)
        hasher.combine(personal)
    }

    /// A new subject's metadata and personal data, never changed once made.
    private final class Contents: Sendable {
        let metadata: SubjectMetadata
        let personal: PersonalData

        init(metadata: SubjectMetadata, personal: PersonalData) {
            self.metadata = metadata
            self.personal = personal
        }
    }
}

/// What writing a subject did.
public struct WriteResult: Sendable, Hashable {
    /// The subject written.
    public let id: SubjectID
    /// Whether it was created (false: an existing subject was updated, or its update was refused).
    public let created: Bool
    /// Whether the update was refused and nothing of it written (a restricted subject, with
    /// `skippingRefused`; the refusal is in the audit log), or the row skipped (`erasedAt`).
    public let refused: Bool
    /// When the external id's subject was erased, if it was: the row was skipped, nothing written
    /// (`skippingRefused`), and `id` is the erased subject's.
    public let erasedAt: Date?
    /// How many of its phone numbers could not be normalised: they are stored, encrypted, but caller
    /// ID cannot find them.
    public let unindexedPhoneNumbers: Int

    init(id: SubjectID, created: Bool, refused: Bool = false, erasedAt: Date? = nil, unindexedPhoneNumbers: Int) {
        self.id = id
        self.created = created
        self.refused = refused
        self.erasedAt = erasedAt
        self.unindexedPhoneNumbers = unindexedPhoneNumbers
    }
}

extension Store {
    /// The clear columns every subject query reads, in this order.
    static let summaryColumns = "id, kind, external_id, owner, status, source, created_at, updated_at, last_contacted_at, restricted, key_version"

    /// Creates a lead or contact; its personal fields are sealed under a fresh subject key. An external
    /// id whose subject was erased is refused (`externalIDErased`): a new subject needs a new one.
    ///
    /// - Parameter region: the region for phone numbers written without a country code (default: the store's).
    public func create(_ subject: NewSubject, region: String? = nil, context: AccessContext) throws(StoreError) -> SubjectID {
        try write([subject], region: region, context: context)[0].id
    }

    /// Creates or, where the external id is already known, updates each subject, in one transaction.
    /// Used by the importer: a re-import of the same external ids updates rather than duplicates, and
    /// changes only what it carries: a personal field or metadata value left `nil` keeps the stored one,
    /// `lastContactedAt` only moves forward, and a contact stays a contact. An
    /// update of a restricted subject is refused (see `SubjectWriteKind`): for the whole batch, or with
    /// `skippingRefused` for that subject alone (its result says `refused`; the rest is written, and the
    /// refusal audited with them), so that one restricted person does not stop a nightly sync. An
    /// external id whose subject was erased is never re-created: `externalIDErased` for the batch, or
    /// with `skippingRefused` that row alone skipped (its result has `erasedAt`).
    public func write(_ subjects: [NewSubject], region: String? = nil, skippingRefused: Bool = false,
                      context: AccessContext) throws(StoreError) -> [WriteResult] {
        let normalizer = try normalizer(for: region)
        return try writeSubjects(context: context) { (write) throws(StoreError) in
            try createOrUpdate(subjects, normalizer: normalizer, skippingRefused: skippingRefused, in: write)
        }
    }

    /// `write`, given the E.164 form of the subjects' numbers where the caller has them (the importer
    /// normalises on its reading thread): `numbers[i]`, when there is one and it is not nil, holds
    /// `subjects[i].personal.phones`' numbers in order, normalised by the normaliser for `region`
    /// (nil for a number that cannot be); the others are normalised here. With `cachingNewKeys` false
    /// (the importer) the new subjects' keys stay out of the key cache (`insertNew`). `sealedAhead[i]`,
    /// when there is one, holds `subjects[i]` sealed ahead (`sealAhead`), used if it is created.
    /// `unlessStored`: external ids whose stored subject the caller would have merged its row over,
    /// without having read it; if one of them is stored, nothing is written and nil is returned (the
    /// importer then reads the stored rows, merges and writes again).
    func write(_ subjects: [NewSubject], numbers: [[String?]?], sealedAhead: [SealedNewSubject?] = [], region: String?, skippingRefused: Bool,
               cachingNewKeys: Bool = true, unlessStored mergingUnread: Set<String> = [], context: AccessContext) throws(StoreError) -> [WriteResult]? {
        let normalizer = try normalizer(for: region)
        let results = try writeSubjects(context: context) { (write) throws(StoreError) in
            try createOrUpdate(subjects, numbers: numbers, sealedAhead: sealedAhead, normalizer: normalizer, skippingRefused: skippingRefused,
                               cachingNewKeys: cachingNewKeys, unlessStored: mergingUnread, in: write)
        }
        return results.isEmpty && !subjects.isEmpty ? nil : results
    }

    /// The body of `write`, inside a write-path transaction (also used by `recordCall` for a new lead).
    /// Updates run one subject at a time; the new subjects are written together (`insertNew`).
    /// `numbers`, `sealedAhead`, `cachingNewKeys` and `unlessStored`: as
    /// `write(_:numbers:sealedAhead:region:skippingRefused:cachingNewKeys:unlessStored:context:)` takes them;
    /// no results (nothing written, nothing recorded) when one of `mergingUnread` is stored.
    func createOrUpdate(_ subjects: [NewSubject], numbers: [[String?]?] = [], sealedAhead: [SealedNewSubject?] = [], normalizer: PhoneNormalizer,
                        skippingRefused: Bool = false, cachingNewKeys: Bool = true, unlessStored mergingUnread: Set<String> = [],
                        in write: SubjectWriteTransaction) throws(StoreError) -> [WriteResult] {
        for subject in subjects { try subject.metadata.checkTexts() }
        let connection = write.connection
        let now = Store.milliseconds(Date())
        // A subject sealed ahead brings its external id's tag, hashed on another thread.
        let taggedAhead = subjects.indices.compactMap { (input) -> (id: String, tag: [UInt8]?)? in
            guard let externalID = subjects[input].metadata.externalID, sealedAhead.indices.contains(input),
                  let sealed = sealedAhead[input], sealed.subject.metadata.externalID == externalID, let tag = sealed.externalIDTag else { return nil }
            return (externalID, tag)
        }
        // Another process may have started or finished a key rotation: write under the keys it
        // left, read inside the transaction so an index rotation's last step cannot pass it by. On
        // the key connection, beside the lookup of stored external ids on the data connection (for a
        // batch sealed ahead: one round trip's wait, not three), with the tombstones of the ids sealed
        // ahead (an import's rows expected new; any other id found not stored is probed after).
        let erasedAhead = Mutex<[String: ErasureReceipt]>([:])
        let reloadAndProbeAhead = { @Sendable [self] () throws(StoreError) in
            _ = try keyring.reloadIfChanged()
            let found = try tombstones(ofExternalIDs: taggedAhead)
            erasedAhead.withLock { $0 = found }
        }
        var known: [String: (id: SubjectID, keyVersion: UInt32, metadata: SubjectMetadata)] = [:]
        let lookUpKnown = { () throws(StoreError) in
            do throws(DatabaseError) { known = try self.knownSubjects(withExternalIDs: subjects.compactMap(\.metadata.externalID), in: connection) } catch {
                throw .database(error)
            }
        }
        if taggedAhead.isEmpty {
            try reloadAndProbeAhead()
            try lookUpKnown()
        } else {
            try Store.alongside(reloadAndProbeAhead, lookUpKnown)
        }
        // Found by the lookup above, in this transaction: no second probe of the batch's external ids.
        if mergingUnread.contains(where: { known[$0] != nil }) { return [] }
        let probedAhead = Set(taggedAhead.map(\.id))
        let erased = try erasedAhead.withLock { $0 }.merging(tombstones(ofExternalIDs: subjects.compactMap { (subject) -> (String, [UInt8]?)? in
            guard let externalID = subject.metadata.externalID, known[externalID] == nil, !probedAhead.contains(externalID) else { return nil }
            return (externalID, nil)
        })) { ahead, _ in ahead }
        var results: [WriteResult] = []
        var creating: [(position: Int, input: Int, subject: NewSubject)] = []
        var creatingExternalIDs = Set<String>()
        /// Writes the new subjects met so far, and fills in their results.
        func createPending() throws(StoreError) {
            let created = try insertNew(creating.map(\.subject), numbers: creating.map { numbers.indices.contains($0.input) ? numbers[$0.input] : nil },
                                        sealedAhead: creating.map { sealedAhead.indices.contains($0.input) ? sealedAhead[$0.input] : nil },
                                        normalizer: normalizer, now: now, cachingKeys: cachingNewKeys, in: write)
            for ((position, _, subject), (id, unindexed)) in zip(creating, created) {
                results[position] = WriteResult(id: id, created: true, unindexedPhoneNumbers: unindexed)
                if let externalID = subject.metadata.externalID { known[externalID] = (id, 1, subject.metadata) }
            }
            creating.removeAll()
            creatingExternalIDs.removeAll()
        }
        for (input, subject) in subjects.enumerated() {
            let externalID = subject.metadata.externalID
            // The same external id twice in one batch: the first row's subject is written before the
            // second row updates it, as if the rows had come in batches of their own.
            if let externalID, creatingExternalIDs.contains(externalID) { try createPending() }
            guard let externalID, let existing = known[externalID] else {
                // An erased external id is never brought back (its tombstone, probed with the batch's): refused,
                // or with `skippingRefused` (an import) skipped and reported.
                if let externalID, let erased = erased[externalID] {
                    guard skippingRefused else { throw .externalIDErased(erasedAt: erased.erasedAt) }
                    results.append(WriteResult(id: erased.id, created: false, refused: true, erasedAt: erased.erasedAt,
                                               unindexedPhoneNumbers: 0))
                    continue
                }
                creating.append((results.count, input, subject))
                if let externalID { creatingExternalIDs.insert(externalID) }
                results.append(WriteResult(id: SubjectID(rawValue: 0), created: true, unindexedPhoneNumbers: 0))
                continue
            }
            if skippingRefused {
                guard try write.admits(existing.id, .update) else {
                    results.append(WriteResult(id: existing.id, created: false, refused: true, unindexedPhoneNumbers: 0))
                    continue
                }
            } else {
                try write.require(existing.id, .update)
            }
            let fields = try replace(existing.id, keyVersion: existing.keyVersion, metadata: subject.metadata.merged(onto: existing.metadata),
                                     personal: subject.personal, normalizer: normalizer, now: now, in: connection)
            results.append(WriteResult(id: existing.id, created: false, unindexedPhoneNumbers: fields.unindexed))
            write.record(existing.id, .update, fields: fields.written)
        }
        try createPending()
        return results
    }

    /// The subjects with these external ids, by external id, found in as few statements as the backend can.
    private func knownSubjects(withExternalIDs externalIDs: [String], in connection: any Database) throws(DatabaseError)
        -> [String: (id: SubjectID, keyVersion: UInt32, metadata: SubjectMetadata)] {
        var known: [String: (id: SubjectID, keyVersion: UInt32, metadata: SubjectMetadata)] = [:]
        try backend.forEachRow("SELECT external_id, \(Store.summaryColumns) FROM subjects WHERE external_id", matchingAny: Array(Set(externalIDs)),
                               on: connection) {
            known[$0.text(0) ?? ""] = (SubjectID(rawValue: $0.int64(1)), UInt32($0.int64(11)), Store.summary(from: $0, offset: 1).metadata)
        }
        return known
    }

    /// The tombstones of those of `externalIDs` whose subjects were erased, by external id: probed by
    /// their keyed hashes in as few statements as the backend can (`KeyTables.tombstones(externalIDTags:)`), not one per id.
    /// Each id comes with its keyed hash where it was made ahead (`SealedNewSubject.externalIDTag`:
    /// the tombstone key, derived from the audit key, is never replaced), else it is made here.
    private func tombstones(ofExternalIDs externalIDs: [(id: String, tag: [UInt8]?)]) throws(StoreError) -> [String: ErasureReceipt] {
        guard !externalIDs.isEmpty else { return [:] }
        var byTag: [[UInt8]: String] = [:]
        do throws(CryptoError) {
            for (externalID, tag) in externalIDs {
                if let tag { byTag[tag] = externalID } else { byTag[try keyring.erasureKeys.tag(externalID: externalID)] = externalID }
            }
        } catch {
            throw .crypto(error)
        }
        let receipts = try keyring.database.read { (tables) throws(DatabaseError) in try tables.tombstones(externalIDTags: Array(byTag.keys)) }
        var erased: [String: ErasureReceipt] = [:]
        for receipt in receipts {
            if let externalID = byTag[receipt.externalIDTag ?? []] { erased[externalID] = receipt.with(externalID: externalID) }
        }
        return erased
    }

    /// Replaces the given personal fields of a subject (rectification) and, when given, its metadata.
    /// Fields left `nil` in `personal` are kept; changed phone numbers are re-indexed; `lastContactedAt`
    /// never moves backwards (the later of the stored and the given time is kept). A restricted
    /// subject is rectified only on its own request or for legal claims (purpose `subject-request`
    /// or `legal-claims`); for any other purpose the update is refused (`SubjectWriteKind`).
    public func update(_ id: SubjectID, metadata: SubjectMetadata? = nil, personal: PersonalData,
                       region: String? = nil, context: AccessContext) throws(StoreError) {
        try metadata?.checkTexts()
        let normalizer = try normalizer(for: region)
        try writeSubjects(context: context) { (write) throws(StoreError) in
            let connection = write.connection
            _ = try keyring.reloadIfChanged()
            let stored: (keyVersion: UInt32, metadata: SubjectMetadata)?
            do throws(DatabaseError) {
                stored = try connection.firstRow("SELECT key_version, \(Store.summaryColumns) FROM subjects WHERE id = ?", [.integer(id.rawValue)], {
                    (UInt32($0.int64(0)), Store.summary(from: $0, offset: 1).metadata)
                })
            } catch {
                throw .database(error)
            }
            guard let (keyVersion, current) = stored else { throw try notFoundOrErased(id) }
            try write.require(id, .update)
            // Nor may an update give a subject an erased external id.
            if let externalID = metadata?.externalID, externalID != current.externalID, let erased = try tombstone(ofExternalID: externalID) {
                throw .externalIDErased(erasedAt: erased.erasedAt)
            }
            var metadata = metadata ?? current
            metadata.lastContactedAt = SubjectMetadata.later(metadata.lastContactedAt, current.lastContactedAt)
            let fields = try replace(id, keyVersion: keyVersion, metadata: metadata, personal: personal,
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
    /// database, with an erasure's tombstone and receipt), then delete the rows. A crash after the key
    /// is gone leaves rows nobody can read, reported as erased; running the removal again deletes them
    /// (and an erasure returns the receipt kept the first time). Returns an erasure's receipt.
    @discardableResult
    func remove(_ id: SubjectID, _ kind: SubjectWriteKind, detail: String? = nil, onlyIfUntouchedBefore cutoff: Date? = nil,
                context: AccessContext) throws(StoreError) -> ErasureReceipt? {
        try writeSubjects(context: context) { (write) throws(StoreError) in
            let connection = write.connection
            let row: (externalID: String?, touched: Int64)?
            do throws(DatabaseError) {
                row = try connection.firstRow("SELECT external_id, coalesce(last_contacted_at, created_at) FROM subjects WHERE id = ?",
                                              [.integer(id.rawValue)], { ($0.text(0), $0.int64(1)) })
            } catch {
                throw .database(error)
            }
            guard let (externalID, touched) = row else { throw try notFoundOrErased(id) }
            // A retention rule's erasure: a subject contacted since the rule selected it is kept (checked
            // here, in the transaction that would erase it, so no call recorded meanwhile is overlooked).
            if let cutoff, touched >= Store.milliseconds(cutoff) { return nil }
            try write.require(id, kind)
            write.record(id, kind, detail: detail)
            let content: ErasureReceipt.Destroyed?
            do throws(DatabaseError) { content = kind == .erase ? try erasedContent(of: id, in: connection) : nil } catch {
                throw .database(error)
            }
            // Audited before the key is destroyed: a removal the log cannot take never starts.
            let sequence = try write.auditNow()
            try injectFault("erase.audited", 1)
            let erasureKeys = keyring.erasureKeys
            let receipt = try keyring.destroySubjectKeys(of: id, tombstone: true, receipt: content.map { content in
                ErasureReceipt.Draft(id: id, externalID: externalID, actor: context.actor, reason: detail ?? "",
                                     destroyed: content, auditSequence: sequence, keys: erasureKeys)
            }).receipt
            try injectFault("erase.key-destroyed", 1)
            do throws(DatabaseError) { try connection.run("DELETE FROM subjects WHERE id = ?", [.integer(id.rawValue)]) } catch {
                throw .database(error)
            }
            return receipt?.with(externalID: externalID)
        }
    }

    /// Turns a lead into a contact, keeping its id, fields, history and consents.
    public func convertToContact(_ id: SubjectID, context: AccessContext) throws(StoreError) {
        try writeSubjects(context: context) { (write) throws(StoreError) in
            let connection = write.connection
            let kind: String?
            do throws(DatabaseError) { kind = try connection.scalarText("SELECT kind FROM subjects WHERE id = ?", [.integer(id.rawValue)]) } catch {
                throw .database(error)
            }
            guard let kind else { throw try notFoundOrErased(id) }
            guard kind == SubjectKind.lead.rawValue else { throw .wrongSubjectKind(id, expected: .lead) }
            try write.require(id, .convert)
            do throws(DatabaseError) {
                try connection.run("UPDATE subjects SET kind = 'contact', updated_at = ? WHERE id = ?",
                                   [.integer(Store.milliseconds(Date())), .integer(id.rawValue)])
            } catch {
                throw .database(error)
            }
            write.record(id, .convert, detail: "lead to contact")
        }
    }

    /// Reads a subject: clear fields, and the requested personal fields decrypted through the audited path.
    public func read(_ id: SubjectID, fields: Set<PersonalField> = .all, context: AccessContext) throws(StoreError) -> Subject {
        let requested = fields.sorted()
        return try rereadingAfterKeyRotation { () throws(StoreError) in
            let encrypted = try withData { (connection) throws(DatabaseError) in
                try connection.firstRow(
                    "SELECT \(Store.summaryColumns), \(requested.map(\.column).joined(separator: ", ")) FROM subjects WHERE id = ?",
                    [.integer(id.rawValue)]) { row in
                        Store.encryptedSubject(from: row, fields: requested)
                    }
            }
            guard let encrypted else { throw try notFoundOrErased(id) }
            try injectFault("read.rows", 1)
            let personal = try decrypt([encrypted], fields: requested, context: context).personal[0]
            return Subject(summary: encrypted.summary, personal: personal)
        }
    }

    /// Lists subjects by id, without decrypting anything: clear fields only.
    ///
    /// - Parameters:
    ///   - kind: only leads or only contacts; nil for both.
    ///   - after: the last id of the previous page (keyset paging).
    ///   - limit: the page size.
    public func list(kind: SubjectKind? = nil, after: SubjectID? = nil, limit: Int = 100) throws(StoreError) -> [SubjectSummary] {
        try page(SubjectListFilter(kind: kind), after: after, limit: limit)
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
}
