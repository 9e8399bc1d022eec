import Foundation

/// The statements a rotation runs once per subject or per batch, shared with the tests that pin their
/// query plans (QueryPlanTests): each must find its rows through an index, whatever the store's size.
enum RotationStatements {
    // MARK: Data rotation, once per batch

    /// A batch of the data rotation: the subjects after the cursor, with every field's ciphertext, in
    /// id order: the primary key's range.
    static let subjectsToReencrypt = "SELECT \(Store.summaryColumns), \(ciphertextColumns) FROM subjects WHERE id > ? ORDER BY id LIMIT ?"

    /// One subject, with every field's ciphertext, for the rotation of its data key alone: by primary key.
    static let subjectToReencrypt = "SELECT \(Store.summaryColumns), \(ciphertextColumns) FROM subjects WHERE id = ?"

    /// A batch of the data rotation read again after a concurrent change rolled it back: the subjects of
    /// its id range (?1 to ?2), in id order: the primary key's range.
    static let subjectsToReencryptAgain = "SELECT \(Store.summaryColumns), \(ciphertextColumns) FROM subjects WHERE id >= ? AND id <= ? ORDER BY id"

    /// Every field's ciphertext column, in `PersonalField.allCases` order.
    private static let ciphertextColumns = PersonalField.allCases.map(\.column).joined(separator: ", ")

    /// `rows` subjects re-encrypted in one statement, each found by primary key and written only if its
    /// key version and `updated_at` are still those read (a rectification made meanwhile is not
    /// overwritten): a VALUES row per subject of its id, key version and `updated_at` as read, new key
    /// version, new seal count and each field's new ciphertext (NULL where it has none, the column then
    /// kept). `bytes`: the backend's `bytesParameter`.
    static func reencryptSubjects(_ rows: Int, bytes: String) -> String {
        let fields = PersonalField.allCases
        let assignments = fields.enumerated().map { position, field in
            "\(field.column) = coalesce(reencrypted.column\(position + 6), subjects.\(field.column))"
        }
        return "UPDATE subjects SET key_version = reencrypted.column4, seal_count = reencrypted.column5, "
            + assignments.joined(separator: ", ") + " FROM (VALUES "
            + MultiRowStatements.valuesList(rows, row: Array(repeating: "CAST(? AS BIGINT)", count: 5) + Array(repeating: bytes, count: fields.count))
            + ") AS reencrypted WHERE subjects.id = reencrypted.column1 AND subjects.key_version = reencrypted.column2"
            + " AND subjects.updated_at = reencrypted.column3"
    }

    /// `rows` consent ledger entries sealed again under their subject's new key in one statement, each
    /// found by primary key: a VALUES row per entry of its id, client address, evidence and actor
    /// (NULL where it has none) and new key version.
    static func resealLedgerEntries(_ rows: Int, bytes: String) -> String {
        "UPDATE consent_ledger SET client_ct = resealed.column2, evidence_ct = resealed.column3, actor_ct = resealed.column4, "
            + "key_version = resealed.column5 FROM (VALUES "
            + MultiRowStatements.valuesList(rows, row: ["CAST(? AS BIGINT)", bytes, bytes, bytes, "CAST(? AS BIGINT)"])
            + ") AS resealed WHERE consent_ledger.id = resealed.column1"
    }

    /// The key version of every ledger entry of the batch's subjects (?1 to ?2), read before its commit
    /// to find an entry appended since the ledger was read: through `consent_by_subject`.
    static let ledgerKeyVersions = "SELECT subject_id, key_version FROM consent_ledger WHERE subject_id >= ? AND subject_id <= ?"

    /// The key versions of the batch's subjects (?1 to ?2), read when one of them was not written, to
    /// name it, and by an index rotation's staging, to stage rows only for subjects still there: the
    /// primary key's range.
    static let subjectKeyVersions = "SELECT id, key_version FROM subjects WHERE id >= ? AND id <= ?"

    // MARK: Index rotation

    /// A subject's rows of the index version being built, dropped before they are written again (a
    /// batch run twice): through `phone_index_by_subject (subject_id, key_version)`.
    static let dropSubjectIndexRows = "DELETE FROM phone_index WHERE subject_id = ? AND key_version = ?"

    /// A subject's `updated_at` now, read before its rows are written: through the primary key.
    static let subjectUpdatedAt = "SELECT updated_at FROM subjects WHERE id = ?"

    /// Subjects indexed under an old index version but not the new (?1), once the walk is through: a few
    /// passes over the blind index at the end of an index rotation.
    static let subjectsLeftBehind = """
        SELECT \(Store.summaryColumns), phones_ct FROM subjects WHERE id IN (
            SELECT o.subject_id FROM phone_index o WHERE o.key_version <> ?1 AND NOT EXISTS
                (SELECT 1 FROM phone_index n WHERE n.subject_id = o.subject_id AND n.key_version = ?1))
        ORDER BY id LIMIT ?2
        """
    /// The old index versions' rows, dropped once when the new version answers alone.
    static let dropOldIndexRows = "DELETE FROM phone_index WHERE key_version <> ?"
    /// The statements that read or change a whole table on purpose: each runs once (or a few times) per
    /// rotation, never per subject, so the rotation stays linear.
    static let onceOverTheWholeTable = [KeyDatabase.subjectKeysLeftBehind, subjectsLeftBehind, dropOldIndexRows]
        + [IndexStaging.phones, .emails].flatMap { [$0.dropStagedRowsOfIndexedSubjects, $0.copyStagedRows, $0.dropAllStagedRows] }
}

/// One of the two blind indexes an index rotation builds again (`phone_index`, `email_index`), with
/// the statements that stage its new rows apart during the walk and copy them in at its end: the same
/// for both indexes but for the tables' names (`Schema.stagedIndexRows`).
struct IndexStaging: Sendable {
    /// The blind index's table.
    let table: String
    /// The statement that creates its tag index, `<table>_by_tag`, as SQLite has it: only SQLite builds
    /// it again (`StoreBackend.rebuildsTagIndexForBulkChanges`).
    let createTagIndex: String

    /// The phone numbers' blind index.
    static let phones = IndexStaging(table: "phone_index", createTagIndex: SQLiteSchema.phoneIndexByTag)
    /// The e-mail addresses' blind index.
    static let emails = IndexStaging(table: "email_index", createTagIndex: SQLiteSchema.emailIndexByTag)

    /// The table its new rows are staged in.
    var staging: String { table + "_building" }

    /// A batch's staged rows (subjects ?1 to ?2), dropped before it stages them (a batch run again
    /// after a crash): through `<staging>_by_subject`.
    var dropStagedRows: String { "DELETE FROM \(staging) WHERE subject_id BETWEEN ? AND ?" }

    /// `rows` staged rows in one statement (four values each: subject, its `updated_at`, tag, check),
    /// appended in subject order.
    func stageRows(_ rows: Int) -> String {
        "INSERT INTO \(staging) (subject_id, updated_at, tag, check_mac) VALUES " + Array(repeating: "(?, ?, ?, ?)", count: rows).joined(separator: ", ")
    }

    /// The staged rows of subjects that a writer indexed under the version being built (?) while the
    /// walk ran: the writer's rows are newer. Only that version's few rows are read (before the copy
    /// it holds only writers' rows).
    var dropStagedRowsOfIndexedSubjects: String {
        "DELETE FROM \(staging) WHERE subject_id IN (SELECT subject_id FROM \(table) WHERE key_version = ?)"
    }

    /// The staged rows, as the rows of index version ?, inserted in subject order (as they were staged),
    /// so that the table, `<table>_by_subject` and the probes of `subjects` (the join below, and on SQLite
    /// the foreign key's) meet them page after page; those of a subject changed since its fields were read (`updated_at` moved)
    /// are left out. `<table>_by_tag`, which meets them at random, is built again around it where the
    /// backend says so (`StoreBackend.rebuildsTagIndexForBulkChanges`).
    var copyStagedRows: String {
        """
        INSERT INTO \(table) (key_version, tag, subject_id, check_mac)
        SELECT ?, b.tag, b.subject_id, b.check_mac FROM \(staging) b
        JOIN subjects s ON s.id = b.subject_id AND s.updated_at = b.updated_at
        ORDER BY b.subject_id
        """
    }

    /// Every staged row, dropped in the transaction that copied them.
    var dropAllStagedRows: String { "DELETE FROM \(staging)" }

    /// `<table>_by_tag` dropped, to be built again (`createTagIndex`) in the same transaction.
    var dropTagIndex: String { "DROP INDEX \(table)_by_tag" }
}
