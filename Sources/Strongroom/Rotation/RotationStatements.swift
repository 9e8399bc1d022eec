import Foundation

/// The statements a rotation runs once per subject or per batch, shared with the tests that pin their
/// query plans (QueryPlanTests): each must find its rows through an index, whatever the store's size.
enum RotationStatements {
    /// A subject's rows of the index version being built, dropped before they are written again (a
    /// batch run twice): through `phone_index_by_subject (subject_id, key_version)`.
    static let dropSubjectIndexRows = "DELETE FROM phone_index WHERE subject_id = ? AND key_version = ?"

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
}
