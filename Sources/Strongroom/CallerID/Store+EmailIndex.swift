import Foundation
import StrongroomCrypto
import StrongroomStorage

extension Store {
    /// The statements of the e-mail index, on both backends.
    enum EmailIndexStatements {
        /// Adds a row (key version, truncated tag, subject, check).
        /// Drops a subject's rows of every version (its addresses changed).
        static let dropSubject = "DELETE FROM email_index WHERE subject_id = ?"
        /// Drops the rows of index version ? of `count` subjects (their ids follow), re-indexed under it in
        /// one batch: through `email_index_by_subject`, by subject alone. The unary `+` keeps the version
        /// out of every index's search (SQLite documents it for that; PostgreSQL matches no index to the
        /// expression), so `email_index_by_tag`, which leads with the version, is never a choice: with
        /// statistics gathered before the rotation, PostgreSQL's planner took the version being built
        /// for a rare value and walked all of its rows through that index for each batch's 128 ids, a
        /// pass over the growing version per statement (quadratic).
        /// Related SQLite documentation: <https://www.sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_>
        static func dropVersionOfSubjects(_ count: Int) -> String {
            "DELETE FROM email_index WHERE +key_version = ? AND subject_id IN (" + Array(repeating: "?", count: count).joined(separator: ", ") + ")"
        }
        /// The `updated_at` of a batch's subjects (`MultiRowStatements.forEachRow` appends the id list),
        /// read again in the transaction that writes their index rows: through the primary key.
        static let subjectsUpdatedAt = "SELECT id, updated_at FROM subjects WHERE id IN"
        /// The candidates of one version and truncated tag, with the clear columns an answer needs and the
        /// checks (the index is named `p`, as `CallerCandidate.columns` reads the phone index's).
        static let probe = """
            SELECT \(CallerCandidate.columns), p.check_mac FROM email_index p JOIN subjects s ON s.id = p.subject_id
            WHERE p.key_version = ? AND p.tag = ?
            """
        /// A batch of subjects holding e-mail addresses, by id in (?1, ?2], at most ?3.
        static let subjectsWithAddresses = """
            SELECT \(Store.summaryColumns), emails_ct FROM subjects
            WHERE id > ?1 AND id <= ?2 AND emails_ct IS NOT NULL ORDER BY id LIMIT ?3
            """
        /// Subjects holding addresses but no row of index version ?1, once an index rotation's walk is
        /// through (written by a process that had not seen the new key): one pass over the table.
        static let leftBehind = """
            SELECT \(Store.summaryColumns), emails_ct FROM subjects s WHERE emails_ct IS NOT NULL AND NOT EXISTS
                (SELECT 1 FROM email_index n WHERE n.subject_id = s.id AND n.key_version = ?1) ORDER BY id
            """
        /// The old index versions' rows, dropped once when the new version answers alone.
        static let dropOldVersions = "DELETE FROM email_index WHERE key_version <> ?"
        /// The first build's cursor: the last subject id indexed by it (no row: the build is done).
        static let backfillCursor = "SELECT cursor FROM email_index_backfill WHERE id = 1"
        /// Ends the first build (and a new store's, which has nothing to build).
        static let backfillDone = "DELETE FROM email_index_backfill WHERE id = 1"
    }

    /// Adds e-mail index rows for `emails` to every answering index version (two while an index rotation
    /// builds the new one). An address that does not normalise is stored, encrypted, but not indexed
    /// (`subject find --email` cannot find it), as an invalid phone number is.
    func indexEmails(_ emails: [String], of id: SubjectID, in connection: any Database) throws(StoreError) {
        let rows: [[SQLValue]]
        do throws(CryptoError) { rows = try emailIndexRows(emails, of: id, into: keyring.keys.emailIndexes) } catch { throw .crypto(error) }
        do throws(DatabaseError) { try backend.insert(rows, into: "email_index", columns: Store.blindIndexColumns, conflict: "", on: connection) } catch {
            throw .database(error)
        }
    }

    /// The e-mail index rows of `emails` (each distinct normalised address once) under each of `indexes`,
    /// in `blindIndexColumns` order: an import writes a whole batch's in one statement (`insertNew`).
    func emailIndexRows(_ emails: [String], of id: SubjectID, into indexes: [EmailBlindIndex]) throws(CryptoError) -> [[SQLValue]] {
        try emailIndexEntries(emails, of: id, into: indexes).map { Store.phoneIndexRow($0, of: id) }
    }

    /// The e-mail index entries of `emails` (each distinct normalised address once) under each of
    /// `indexes`; an address that does not normalise has none.
    func emailIndexEntries(_ emails: [String], of id: SubjectID, into indexes: [EmailBlindIndex]) throws(CryptoError) -> [BlindIndexEntry] {
        var entries: [BlindIndexEntry] = []
        for address in Set(emails.compactMap({ try? EmailAddress($0) })) {
            for index in indexes {
                let tags = try index.tags(for: address)
                entries.append(BlindIndexEntry(version: index.version, tag: tags.truncated, check: try index.check(tags, subject: id)))
            }
        }
        return entries
    }

    /// Replaces a subject's e-mail index rows by those of `emails` (an update or rectification).
    func reindexEmails(_ emails: [String], of id: SubjectID, in connection: any Database) throws(StoreError) {
        do throws(DatabaseError) { try connection.run(EmailIndexStatements.dropSubject, [.integer(id.rawValue)]) } catch { throw .database(error) }
        try indexEmails(emails, of: id, in: connection)
    }

    /// The subjects whose e-mail index rows seal exactly `address`, under every answering index version.
    /// A miss may mean an index rotation finished in another process: then, if the key database changed
    /// since the keys were loaded, they are reloaded and the index probed again.
    func subjectsHolding(_ address: EmailAddress) throws(StoreError) -> [CallerCandidate] {
        let tags = try emailTags(address)
        let found = try withData { (connection) throws(DatabaseError) in try matchingSubjects(tags, in: connection) }
        guard found.isEmpty, try keyring.reloadIfChanged() else { return found }
        let reloadedTags = try emailTags(address)
        return try withData { (connection) throws(DatabaseError) in try matchingSubjects(reloadedTags, in: connection) }
    }

    /// The tags of `address` under each answering e-mail index version.
    private func emailTags(_ address: EmailAddress) throws(StoreError) -> [(index: EmailBlindIndex, tags: PhoneBlindIndex.Tags)] {
        var tags: [(index: EmailBlindIndex, tags: PhoneBlindIndex.Tags)] = []
        for index in keyring.keys.emailIndexes {
            do throws(CryptoError) { tags.append((index, try index.tags(for: address))) } catch { throw .crypto(error) }
        }
        return tags
    }

    /// The probe of each index version: candidates by truncated tag, kept only when their check matches.
    private func matchingSubjects(_ probes: [(index: EmailBlindIndex, tags: PhoneBlindIndex.Tags)],
                                  in connection: any Database) throws(DatabaseError) -> [CallerCandidate] {
        var matches: [CallerCandidate] = []
        for (index, tags) in probes {
            try connection.forEachRow(EmailIndexStatements.probe, [.int(Int(index.version)), .integer(tags.truncated)]) { row in
                let candidate = CallerCandidate(row)
                guard let check = row.blob(CallerCandidate.columnCount),
                      index.matches(check, subject: candidate.id, tags: tags),
                      !matches.contains(where: { $0.id == candidate.id }) else { return }
                matches.append(candidate)
            }
        }
        return matches
    }

    /// Indexes under `indexes` the addresses of the subjects `select` reads (`summaryColumns` and
    /// `emails_ct`, in id order); returns the last id read (nil: none).
    ///
    /// The batch moves in sets, a few round trips per 128 subjects (PostgreSQL): one read, the
    /// subjects' keys in one key-database query, the addresses decrypted through the audited path
    /// (`context`, purpose `key-rotation`) outside the transaction that writes the rows, then in that
    /// transaction the subjects' `updated_at` read again, their rows of `indexes` dropped and the new
    /// ones written, each in multi-row statements (`MultiRowStatements.rotation`; the rows by the
    /// backend's bulk insert). A subject changed meanwhile (its `updated_at` moved) makes the batch
    /// roll back and run again, at most five times, as the phone index's rotation does: its writer
    /// re-indexes only the fields it changed, so a subject renamed during the first build would
    /// otherwise be left out of the index. One deleted meanwhile is skipped. The write transaction
    /// holds the store's write lock on both backends (`Database.transaction`), so nothing changes a
    /// subject between that check and the writes. `advance` runs in that transaction with the last id
    /// (the first build keeps its cursor there).
    @discardableResult
    func indexEmailsOfSubjects(_ select: String, _ values: [SQLValue], into indexes: [EmailBlindIndex], context: AccessContext,
                               advance: (@Sendable (Int64, any Database) throws(DatabaseError) -> Void)? = nil) throws(StoreError) -> Int64? {
        var attempt = 0
        while true {
            let rows = try withData { (connection) throws(DatabaseError) in
                try connection.rows(select, values) { Store.encryptedSubject(from: $0, fields: [.emails]) }
            }
            guard let last = rows.last?.id.rawValue else { return nil }
            try keyring.cacheSubjectKeys(Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0.keyVersion) }))
            let personal = try decrypt(rows, fields: [.emails], detail: "e-mail index", context: context).personal
            try injectFault("email-index.decrypted", attempt)
            var readAt: [SubjectID: Int64] = [:]
            var indexRows: [SubjectID: [[SQLValue]]] = [:]
            for (row, opened) in zip(rows, personal) {
                readAt[row.summary.id] = Store.milliseconds(row.summary.updatedAt)
                do throws(CryptoError) { indexRows[row.summary.id] = try emailIndexRows(opened.emails ?? [], of: row.summary.id, into: indexes) } catch {
                    throw .crypto(error)
                }
            }
            do throws(StoreError) {
                try withDataTransaction { (connection) throws(StoreError) in
                    var stored: [(id: SubjectID, updatedAt: Int64)] = []
                    do throws(DatabaseError) {
                        try MultiRowStatements.rotation.forEachRow(EmailIndexStatements.subjectsUpdatedAt, in: rows.map { .integer($0.id.rawValue) },
                                                                   on: connection) { row in stored.append((SubjectID(rawValue: row.int64(0)), row.int64(1))) }
                    } catch {
                        throw .database(error)
                    }
                    if let changed = stored.first(where: { readAt[$0.id] != $0.updatedAt }) { throw .concurrentChange(changed.id) }
                    let present = stored.map(\.id).sorted()
                    do throws(DatabaseError) {
                        for index in indexes {
                            try connection.runInRows(present.map { .integer($0.rawValue) }, valuesPerRow: 1, leading: [.int(Int(index.version))],
                                                     statement: EmailIndexStatements.dropVersionOfSubjects)
                        }
                        try backend.insert(present.flatMap { indexRows[$0] ?? [] }, into: "email_index", columns: Store.blindIndexColumns,
                                           conflict: "", on: connection)
                        try advance?(last, connection)
                    } catch {
                        throw .database(error)
                    }
                }
                return last
            } catch .concurrentChange where attempt < 5 {
                attempt += 1
            }
        }
    }

    /// Builds the e-mail index of a store made before it had one (schema version 6): every subject's
    /// addresses, under every answering index version, in batches from the cursor the migration left,
    /// which each batch moves on in its own transaction (a build stopped midway resumes at the next
    /// open); then the marker goes. Runs at open; a store without the marker costs one query.
    ///
    /// Chosen over waiting for the next `keys rotate-index`: a requester must be findable by e-mail
    /// from the first open of the upgraded store. Audited as a rotation's reads are: one decrypt entry
    /// per subject, purpose `key-rotation`, detail "e-mail index". If the build fails at open (the audit
    /// log refuses its entries until a gap is acknowledged), the open goes on and `find` by e-mail runs
    /// it again, reporting the error.
    func backfillEmailIndex(batchSize: Int = 500) throws(StoreError) {
        let context = AccessContext(actor: ProcessInfo.processInfo.userName, purpose: .keyRotation)
        while let cursor = try withData({ (connection) throws(DatabaseError) in try connection.scalarInteger(EmailIndexStatements.backfillCursor) }) {
            let advanced = try indexEmailsOfSubjects(EmailIndexStatements.subjectsWithAddresses,
                                                     [.integer(cursor), .integer(.max), .int(batchSize)],
                                                     into: keyring.keys.emailIndexes, context: context) { (last, connection) throws(DatabaseError) in
                try connection.run("UPDATE email_index_backfill SET cursor = ? WHERE id = 1", [.integer(last)])
            }
            if advanced == nil {
                try withData { (connection) throws(DatabaseError) in try connection.run(EmailIndexStatements.backfillDone) }
            }
        }
    }
}
