import Foundation

/// The schema text that both backends share word for word (each backend's migrations are in its own
/// folder under Backends/), and the queries the engine runs on either.
///
/// A later schema version adds a migration to every backend.
enum Schema {
    /// Version 5 of the data schema, the same on both backends: a subject's blind-index rows are found
    /// by subject *and* index version.
    ///
    /// How plans are kept: the store never runs `ANALYZE`. Without `sqlite_stat1` SQLite chooses by the
    /// schema alone, so the plan of each statement is the same in every store, at ten rows or a
    /// billion, and the tests pin it (QueryPlanTests: every statement of a per-subject path, on both
    /// backends). Statistics gathered on a young store would instead choose for its size and keep that
    /// choice as it grows. So the indexes are shaped to leave the planner no worse choice: a statement
    /// that names a subject and an index version must find an index with both in front. With only
    /// `(subject_id)` here, SQLite took `phone_index_by_tag (key_version=?)` for
    /// `DELETE FROM phone_index WHERE subject_id = ? AND key_version = ?` and walked every row of the
    /// version for each subject: the blind-index rotation was quadratic (10k subjects 8.8 s, 20k 33 s).
    /// PostgreSQL keeps its statistics by itself (autovacuum's ANALYZE) and gets the same index.
    /// The blind index's lookup index, covering: a lookup reads candidates and their checks from the
    /// index alone (version 1 on SQLite, 4 on PostgreSQL). PostgreSQL keeps it (its caller-ID statement
    /// reads it index-only); SQLite replaced it with `SQLiteSchema.phoneIndexByTag` in data version 13.
    static let phoneIndexByTag = "CREATE INDEX phone_index_by_tag ON phone_index (key_version, tag, subject_id, check_mac)"
    /// The e-mail index's probe index, covering like the phone index's (PostgreSQL's; SQLite's until data
    /// version 13, `SQLiteSchema.emailIndexByTag`).
    static let emailIndexByTag = "CREATE INDEX email_index_by_tag ON email_index (key_version, tag, subject_id, check_mac)"

    static let phoneIndexBySubjectAndVersion = """
        DROP INDEX phone_index_by_subject;
        CREATE INDEX phone_index_by_subject ON phone_index (subject_id, key_version);
        """

    /// Versions 9 and 10 of the data schema (`index`: `phone_index` for 9, `email_index` for 10;
    /// `bytes`: the backend's type for bytes): the rows of blind index `index` that an index rotation
    /// builds, kept apart in `<index>_building` until its walk is through, then copied in one statement
    /// (`IndexStaging.copyStagedRows`). Written into the index as the walk went (in subject order, so
    /// in random tag order), they landed all over the growing `<index>_by_tag`: every batch rewrote
    /// pages spread over the whole new version, and the cost per subject grew with the store (index
    /// rotation at 200k subjects 2.55× its cost per subject at 10k before the phone rows were staged,
    /// 1.65× at a million before the e-mail rows were). Here they are appended in subject order
    /// instead. `updated_at` is the subject's when its fields were read: a subject changed since is not
    /// copied (its writer indexed it, or the rotation's catch-up does). Rows go with their subject
    /// (erasure) through the cascade (on PostgreSQL from version 11 through a trigger:
    /// `PostgresSchema.blindIndexRowsGoWithTheirSubjects`).
    static func stagedIndexRows(of index: String, bytes: String) -> String {
        """
        CREATE TABLE \(index)_building (
            subject_id BIGINT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
            updated_at BIGINT NOT NULL,
            tag BIGINT NOT NULL,
            check_mac \(bytes) NOT NULL
        );
        CREATE INDEX \(index)_building_by_subject ON \(index)_building (subject_id);
        """
    }

    /// Version 6 of the data schema: the e-mail blind index (`EmailBlindIndex`), shaped as the phone
    /// index is (a covering index for the probe, one by subject and version for maintenance), and the
    /// marker of its first build. A store made before version 6 holds e-mail addresses that are not
    /// indexed yet: the migration leaves `email_index_backfill` with cursor 0, and the next open indexes
    /// every subject's addresses from there (`Store.backfillEmailIndex`, resumable by that cursor) and
    /// drops the marker. A new store drops it when it is made.
    static func emailIndex(blobType: String) -> String {
        """
        CREATE TABLE email_index (
            key_version BIGINT NOT NULL,
            tag BIGINT NOT NULL,
            subject_id BIGINT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
            check_mac \(blobType) NOT NULL
        );
        \(emailIndexByTag);
        CREATE INDEX email_index_by_subject ON email_index (subject_id, key_version);
        CREATE TABLE email_index_backfill (
            id BIGINT PRIMARY KEY CHECK (id = 1),
            cursor BIGINT NOT NULL
        );
        INSERT INTO email_index_backfill (id, cursor) VALUES (1, 0);
        """
    }

    /// Version 5 of the key database, the same on both backends: each erasure gets a number, so that
    /// another process learns which of its cached subject keys to drop (`Keyring.noticeErasures`); and
    /// the store row says since when an erasure's old pages wait to be overwritten (a reader of an older
    /// snapshot held them), so that the next open or `keys compact` finishes the job. Erasures made
    /// before this version have no number: no process running this version cached their keys.
    static let erasureTracking = """
        ALTER TABLE erased_subjects ADD COLUMN erasure_number BIGINT;
        CREATE UNIQUE INDEX erased_subjects_by_number ON erased_subjects (erasure_number);
        ALTER TABLE store ADD COLUMN erased_pages_since BIGINT;
        """

    /// Version 6 of the key database, the same on both backends but for the name of the byte-string
    /// type (`binary`: BLOB in SQLite, BYTEA in PostgreSQL): one tombstone per erasure, holding its
    /// receipt (`ErasureReceipt`). The erased subject's external id is kept only as a keyed hash
    /// (`ErasureKeys.tag`), found through its own unique index, so that a re-import, `create` or call
    /// record probes it once per row; a subject erased without an external id has none (NULL, which a
    /// unique index allows many times). `audit_sequence` is NULL where the store keeps no audit log of
    /// its own (only additional hooks).
    static func tombstones(binary: String) -> String {
        """
        CREATE TABLE tombstones (
            subject_id BIGINT PRIMARY KEY,
            receipt TEXT NOT NULL,
            external_id_tag \(binary),
            erased_at BIGINT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            destroyed_keys BIGINT NOT NULL,
            destroyed_rows BIGINT NOT NULL,
            destroyed_index_entries BIGINT NOT NULL,
            destroyed_consent_entries BIGINT NOT NULL,
            destroyed_calls BIGINT NOT NULL,
            audit_sequence BIGINT,
            mac \(binary) NOT NULL
        );
        CREATE UNIQUE INDEX tombstones_by_external_id ON tombstones (external_id_tag);
        """
    }

    /// The PostgreSQL notification channel on which an erasure is announced when it commits (one for
    /// every store on the server: another store's erasure only costs a listener one needless check).
    static let erasureChannel = "strongroom_erasures"

    /// A query for the number of the latest erasure (0 when none has one).
    static let latestErasureNumber = "SELECT coalesce(max(erasure_number), 0) FROM erased_subjects"

    /// The statement that seeds a new store's `purposes` table with `PurposeDeclaration.builtIns` (both
    /// backends; the values are constants of the source, quoted as SQL string literals).
    static let builtInPurposes = "INSERT INTO purposes (name, description, lawful_basis) VALUES "
        + PurposeDeclaration.builtIns.map { purpose in
            "(" + [purpose.name.rawValue, purpose.description, purpose.lawfulBasis.rawValue].map(sqlLiteral).joined(separator: ", ") + ")"
        }.joined(separator: ", ") + ";"

    /// `text` as an SQL string literal (a quote doubled, SQL-92).
    private static func sqlLiteral(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
