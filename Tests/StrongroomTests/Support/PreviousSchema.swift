@testable import Strongroom
import StrongroomStorage

/// Takes a store's databases back to an earlier schema version, as an older build left them, by
/// undoing each later migration, newest first. The tests that open a store made by a previous version
/// share it, so a new migration is undone here, once, and every such test keeps working.
enum PreviousSchema {
    /// Undoes the data database's migrations after `version` and marks it as that version.
    static func rewindData(_ raw: any Database, to version: Int, _ backend: TestBackend) throws {
        try rewind(raw, to: version, undoing: dataUndo(backend))
    }

    /// Undoes the key database's migrations after `version` and marks it as that version.
    static func rewindKeys(_ raw: any Database, to version: Int, _ backend: TestBackend) throws {
        try rewind(raw, to: version, undoing: keyUndo(backend))
    }

    private static func rewind(_ raw: any Database, to version: Int, undoing steps: [Int: String]) throws {
        try raw.transaction { () throws(DatabaseError) in
            for (step, sql) in steps.sorted(by: { $0.key > $1.key }) where step > version {
                try raw.execute(sql)
            }
            try raw.setSchemaVersion(version)
        }
    }

    /// The undo of each data migration, by the version it brought the database to.
    private static func dataUndo(_ backend: TestBackend) -> [Int: String] {
        [
            // SQLite's alone: the covering tag indexes back (PostgreSQL keeps them).
            13: backend == .sqlite ? """
                DROP INDEX phone_index_by_tag; \(Schema.phoneIndexByTag); DROP INDEX email_index_by_tag; \(Schema.emailIndexByTag)
                """ : "",
            // SQLite's alone (PostgreSQL's version 11 dropped the same index).
            12: backend == .sqlite ? "CREATE INDEX subjects_by_last_contacted ON subjects (last_contacted_at)" : "",
            10: "DROP TABLE email_index_building",
            9: "DROP TABLE phone_index_building",
            7: (backend == .sqlite ? "DROP TRIGGER consent_ledger_actor_reseal_only;"
                : "DROP TRIGGER consent_ledger_actor_reseal_only ON consent_ledger; DROP FUNCTION consent_actor_guard();")
                + "ALTER TABLE consent_ledger DROP COLUMN actor_ct",
            6: "DROP TABLE email_index; DROP TABLE email_index_backfill",
            5: "DROP INDEX phone_index_by_subject; CREATE INDEX phone_index_by_subject ON phone_index (subject_id)",
            // PostgreSQL's alone (SQLite has no version 11): the blind-index rows' foreign keys and two
            // indexes of `subjects` back, the trigger gone.
            11: backend == .sqlite ? "" : """
                DROP TRIGGER blind_index_rows_go_with_their_subjects ON subjects;
                DROP FUNCTION drop_blind_index_rows_of_deleted_subjects();
                CREATE INDEX subjects_by_kind ON subjects (kind, id);
                CREATE INDEX subjects_by_last_contacted ON subjects (last_contacted_at);
                """ + PostgresSchema.blindIndexTables.map {
                    "ALTER TABLE \($0) ADD CONSTRAINT \($0)_subject_id_fkey FOREIGN KEY (subject_id) REFERENCES subjects (id) ON DELETE CASCADE;\n"
                }.joined(),
        ]
    }

    /// The undo of each key migration, by the version it brought the database to.
    private static func keyUndo(_ backend: TestBackend) -> [Int: String] {
        [
            6: "DROP TABLE tombstones",
            5: (backend == .sqlite ? "" : """
                DROP TRIGGER erasure_changes ON erased_subjects; DROP TRIGGER erasure_announcement ON erased_subjects;
                DROP FUNCTION announce_erasure();
                """) + """
                DROP INDEX erased_subjects_by_number; ALTER TABLE erased_subjects DROP COLUMN erasure_number;
                ALTER TABLE store DROP COLUMN erased_pages_since
                """,
        ]
    }

    /// The newest data schema version of this build.
    static func latestData(_ backend: TestBackend) -> Int {
        (backend == .sqlite ? SQLiteSchema.data : PostgresSchema.data).map(\.version).max() ?? 0
    }

    /// The newest key schema version of this build.
    static func latestKeys(_ backend: TestBackend) -> Int {
        (backend == .sqlite ? SQLiteSchema.keys : PostgresSchema.keys).map(\.version).max() ?? 0
    }
}
