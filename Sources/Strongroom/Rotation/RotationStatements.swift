import Foundation

/// The statements a rotation runs once per subject or per batch, shared with the tests that pin their
/// query plans (QueryPlanTests): each must find its rows through an index, whatever the store's size.
enum RotationStatements {
    /// A subject's rows of the index version being built, dropped before they are written again (a
    /// batch run twice): through `phone_index_by_subject (subject_id, key_version)`.
    static let dropSubjectIndexRows = "DELETE FROM phone_index WHERE subject_id = ? AND key_version = ?"

    /// A subject's `updated_at` now, read before its rows are written: through the primary key.
    static let subjectUpdatedAt = "SELECT updated_at FROM subjects WHERE id = ?"

    /// A batch's staged rows (subjects ?1 to ?2), dropped before it stages them (a batch run again
    /// after a crash): through `phone_index_building_by_subject`.
    static let dropStagedIndexRows = "DELETE FROM phone_index_building WHERE subject_id BETWEEN ? AND ?"

    /// `rows` staged blind-index rows in one statement (four values each: subject, its `updated_at`,
    /// tag, check), appended in subject order.
    static func stageIndexRows(_ rows: Int) -> String {
        "INSERT INTO phone_index_building (subject_id, updated_at, tag, check_mac) VALUES "
            + Array(repeating: "(?, ?, ?, ?)", count: rows).joined(separator: ", ")
    }

    /// The staged rows of subjects that a writer indexed under the version being built (?) while the
    /// walk ran: the writer's rows are newer. Only that version's few rows are read (before the copy
    /// it holds only writers' rows).
    static let dropStagedRowsOfIndexedSubjects = """
        DELETE FROM phone_index_building WHERE subject_id IN (SELECT subject_id FROM phone_index WHERE key_version = ?)
        """

    /// The staged rows, as the rows of index version ?, inserted in subject order (as they were staged),
    /// so that the table, `phone_index_by_subject` and the foreign key's probes of `subjects` meet them
    /// page after page; those of a subject changed since its numbers were read (`updated_at` moved)
    /// are left out. `phone_index_by_tag`, which meets them at random, is built again around it where
    /// the backend says so (`StoreBackend.rebuildsTagIndexForBulkChanges`).
    static let copyStagedIndexRows = """
        INSERT INTO phone_index (key_version, tag, subject_id, check_mac)
        SELECT ?, b.tag, b.subject_id, b.check_mac FROM phone_index_building b
        JOIN subjects s ON s.id = b.subject_id AND s.updated_at = b.updated_at
        ORDER BY b.subject_id
        """

    /// `phone_index_by_tag` dropped, to be built again (`Schema.phoneIndexByTag`) in the same transaction.
    static let dropTagIndex = "DROP INDEX phone_index_by_tag"

    /// Every staged row, dropped in the transaction that copied them.
    static let dropAllStagedIndexRows = "DELETE FROM phone_index_building"

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
    static let onceOverTheWholeTable = [KeyDatabase.subjectKeysLeftBehind, subjectsLeftBehind, dropOldIndexRows,
                                        dropStagedRowsOfIndexedSubjects, copyStagedIndexRows, dropAllStagedIndexRows]
}
