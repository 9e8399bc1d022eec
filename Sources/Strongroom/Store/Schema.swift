import StrongroomStorage

/// The schemas of a store's two databases, as migrations, for each backend.
///
/// SQLite stores grew through versions 1–5 (`PRAGMA user_version` counts them); PostgreSQL stores
/// start at version 4 with the same tables in one step. A later version adds a migration to both.
enum Schema {
    /// The data database's migrations in `dialect`.
    static func data(_ dialect: SQLDialect) -> [Migration] {
        dialect == .sqlite ? sqliteData : postgresData
    }

    /// The key database's migrations in `dialect`.
    static func keys(_ dialect: SQLDialect) -> [Migration] {
        dialect == .sqlite ? sqliteKeys : postgresKeys
    }

    /// A query whose integer result changes whenever another connection changed the upper keys or
    /// erased a subject, so a process notices a rotation or an erasure made by another without
    /// re-reading the keys every time. SQLite's `data_version` changes with any commit by another
    /// connection; PostgreSQL's counter is kept by triggers on the tables of the upper keys and on
    /// `erased_subjects`.
    /// Related SQLite documentation: <https://www.sqlite.org/pragma.html#pragma_data_version>
    static func keyChangeCounter(_ dialect: SQLDialect) -> String {
        dialect == .sqlite ? "PRAGMA data_version" : "SELECT counter FROM key_changes WHERE id = 1"
    }

    /// A query for the id the next consent ledger entry takes (it is sealed into the entry's AAD
    /// before the insert): SQLite's AUTOINCREMENT counter plus one; PostgreSQL's identity sequence,
    /// whose value is then taken (a rolled-back entry leaves a gap, never a reused id).
    static func nextConsentEntryID(_ dialect: SQLDialect) -> String {
        dialect == .sqlite
            ? "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'consent_ledger'), 0) + 1"
            : "SELECT nextval(pg_get_serial_sequence('consent_ledger', 'id'))"
    }

    /// `data.sqlite`: ciphertext, clear operational fields, the blind index.
    private static let sqliteData: [Migration] = [
        Migration(version: 1, sql: """
            CREATE TABLE store (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                store_id BLOB NOT NULL,
                default_region TEXT NOT NULL,
                created_at INTEGER NOT NULL
            );
            -- AUTOINCREMENT: a committed id is never reused, so an erased subject's id (and its tombstone)
            -- never names someone else. (An id whose insert rolled back is reused; a key written for it
            -- before the rollback is an orphan that the next write of that id replaces.)
            CREATE TABLE subjects (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL CHECK (kind IN ('lead', 'contact')),
                external_id TEXT UNIQUE,
                owner TEXT,
                status TEXT,
                source TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                last_contacted_at INTEGER,
                restricted INTEGER NOT NULL DEFAULT 0,
                key_version INTEGER NOT NULL,
                unindexed_phones INTEGER NOT NULL DEFAULT 0,
                name_ct BLOB, company_ct BLOB, emails_ct BLOB, phones_ct BLOB,
                address_ct BLOB, notes_ct BLOB, photo_ct BLOB, custom_fields_ct BLOB
            );
            CREATE INDEX subjects_by_kind ON subjects (kind, id);
            CREATE INDEX subjects_by_last_contacted ON subjects (last_contacted_at);
            -- Blind index: truncated HMAC-SHA256 tags of normalised phone numbers, several per subject.
            CREATE TABLE phone_index (
                key_version INTEGER NOT NULL,
                tag INTEGER NOT NULL,
                subject_id INTEGER NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
                -- HMAC(check key, subject id ‖ full tag) cut to 128 bits: lets a lookup drop truncation
                -- collisions exactly, and differs between subjects holding the same number.
                check_mac BLOB NOT NULL
            );
            -- Covering: a lookup reads candidates and their checks from the index alone.
            CREATE INDEX phone_index_by_tag ON phone_index (key_version, tag, subject_id, check_mac);
            CREATE INDEX phone_index_by_subject ON phone_index (subject_id);
            -- Calls logged by `recordCall`: the key is a keyed MAC of number, time and direction, so
            -- logging the same call twice is a no-op, and the number is not stored in clear.
            CREATE TABLE calls (
                call_key BLOB PRIMARY KEY,
                subject_id INTEGER NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
                at INTEGER NOT NULL,
                direction TEXT NOT NULL CHECK (direction IN ('in', 'out'))
            ) WITHOUT ROWID;
            CREATE INDEX calls_by_subject ON calls (subject_id, at);
            """),
        Migration(version: 2, sql: """
            -- Purposes of processing and their lawful basis (GDPR Art. 6). Built-ins run on legitimate
            -- interest or legal obligation, so they need no consent; restriction still limits them.
            CREATE TABLE purposes (
                name TEXT PRIMARY KEY,
                description TEXT NOT NULL,
                lawful_basis TEXT NOT NULL CHECK (lawful_basis IN ('consent', 'contract', 'legitimate-interest', 'legal-obligation')),
                double_opt_in INTEGER NOT NULL DEFAULT 0
            );
            INSERT INTO purposes (name, description, lawful_basis) VALUES
                ('caller-id', 'Identifying an incoming caller', 'legitimate-interest'),
                ('admin', 'Administration of the store: imports, exports, corrections', 'legitimate-interest'),
                ('subject-request', 'Answering the data subject''s own request', 'legal-obligation'),
                ('legal-claims', 'Establishing, exercising or defending legal claims', 'legal-obligation'),
                ('key-rotation', 'Re-encrypting stored data under new keys', 'legitimate-interest');
            -- The consent ledger: append-only, one entry per change. The client address and the
            -- evidence are sealed under the subject's key (slots 16 and 17, record id = entry id); a
            -- double opt-in token is kept only as its SHA-256 hash.
            CREATE TABLE consent_ledger (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                subject_id INTEGER NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
                purpose TEXT NOT NULL REFERENCES purposes (name),
                state TEXT NOT NULL CHECK (state IN ('granted', 'withdrawn', 'pending', 'confirmed')),
                at INTEGER NOT NULL,
                initiator TEXT NOT NULL CHECK (initiator IN ('subject', 'staff', 'import')),
                key_version INTEGER NOT NULL,
                client_ct BLOB,
                evidence_ct BLOB,
                token_hash BLOB,
                token_expires_at INTEGER,
                confirms INTEGER REFERENCES consent_ledger (id)
            );
            CREATE INDEX consent_by_subject ON consent_ledger (subject_id, purpose, id);
            -- Append-only: an entry's facts never change. Only its sealed parts may be re-encrypted,
            -- when the subject's data key is rotated.
            CREATE TRIGGER consent_ledger_append_only
            BEFORE UPDATE OF subject_id, purpose, state, at, initiator, token_hash, token_expires_at, confirms ON consent_ledger
            BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END;
            """),
        Migration(version: 3, sql: """
            -- Encryptions made under the subject's current key: its nonce budget (NIST SP 800-38D §8.3),
            -- counted in the same statement that stores the ciphertexts, so the count is exact.
            ALTER TABLE subjects ADD COLUMN seal_count INTEGER NOT NULL DEFAULT 0;
            """),
        Migration(version: 4, sql: """
            -- The consent ledger stays append-only against deletion too: an entry goes only with its
            -- subject (erasure or deletion, through the subjects row's ON DELETE CASCADE, which runs once
            -- that row is gone).
            CREATE TRIGGER consent_ledger_no_delete
            BEFORE DELETE ON consent_ledger
            WHEN EXISTS (SELECT 1 FROM subjects WHERE id = OLD.subject_id)
            BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only: entries are deleted only with their subject'); END;
            -- The sealed parts change only when they are re-encrypted under a newer subject key.
            CREATE TRIGGER consent_ledger_reseal_only
            BEFORE UPDATE OF key_version, client_ct, evidence_ct ON consent_ledger
            WHEN NEW.key_version <= OLD.key_version
            BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only: sealed parts change only under a newer key'); END;
            """),
        Migration(version: 5, sql: phoneIndexBySubjectAndVersion),
    ]

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
    private static let phoneIndexBySubjectAndVersion = """
        DROP INDEX phone_index_by_subject;
        CREATE INDEX phone_index_by_subject ON phone_index (subject_id, key_version);
        """

    /// `keys.sqlite`: every key of the hierarchy, wrapped; the audit chain head; erasure tombstones.
    private static let sqliteKeys: [Migration] = [
        Migration(version: 1, sql: """
            CREATE TABLE store (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                store_id BLOB NOT NULL,
                master_generation INTEGER NOT NULL,
                created_at INTEGER NOT NULL
            );
            -- The key-encryption key, wrapped under the master key. One row is current.
            CREATE TABLE kek (
                version INTEGER PRIMARY KEY,
                key_id INTEGER NOT NULL,
                wrapped BLOB NOT NULL,
                created_at INTEGER NOT NULL,
                current INTEGER NOT NULL DEFAULT 0
            );
            CREATE TABLE subject_keys (
                subject_id INTEGER NOT NULL,
                version INTEGER NOT NULL,
                key_id INTEGER NOT NULL,
                kek_version INTEGER NOT NULL,
                wrapped BLOB NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (subject_id, version)
            ) WITHOUT ROWID;
            CREATE TABLE index_keys (
                field TEXT NOT NULL,
                version INTEGER NOT NULL,
                key_id INTEGER NOT NULL,
                kek_version INTEGER NOT NULL,
                wrapped BLOB NOT NULL,
                bits INTEGER NOT NULL,
                planned_population INTEGER NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('active', 'building', 'retired')),
                created_at INTEGER NOT NULL,
                PRIMARY KEY (field, version)
            ) WITHOUT ROWID;
            CREATE TABLE audit_keys (
                version INTEGER PRIMARY KEY,
                key_id INTEGER NOT NULL,
                kek_version INTEGER NOT NULL,
                wrapped BLOB NOT NULL,
                created_at INTEGER NOT NULL
            );
            CREATE TABLE audit_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                sequence INTEGER NOT NULL,
                entry_mac BLOB NOT NULL,
                time INTEGER NOT NULL,
                head_mac BLOB NOT NULL
            );
            -- Erased subjects: the key is gone, this row says so, so that a data row restored from a
            -- backup is reported as erased rather than as damaged.
            CREATE TABLE erased_subjects (
                subject_id INTEGER PRIMARY KEY,
                erased_at INTEGER NOT NULL
            );
            """),
        Migration(version: 2, sql: """
            -- A rotation in progress, one row per kind ('kek', 'data', 'index'): its target key version,
            -- how far it got (the last subject id done, for the kinds that walk subjects) and its size.
            -- Progress is committed with each batch, so a rotation killed at any point resumes.
            CREATE TABLE rotations (
                kind TEXT PRIMARY KEY CHECK (kind IN ('kek', 'data', 'index')),
                target_version INTEGER NOT NULL,
                cursor INTEGER NOT NULL DEFAULT 0,
                done INTEGER NOT NULL DEFAULT 0,
                total INTEGER NOT NULL,
                started_at INTEGER NOT NULL
            );
            """),
        Migration(version: 3, sql: """
            -- Encryptions reserved under each shared key ("kek:2", "index:1", "master:3"), in blocks,
            -- before they are made: the nonce budget of NIST SP 800-38D §8.3, counted durably.
            CREATE TABLE key_usage (
                key TEXT PRIMARY KEY,
                reserved INTEGER NOT NULL
            ) WITHOUT ROWID;
            """),
        Migration(version: 4, sql: """
            -- The store's audit durability: 'written' (each entry reaches the OS before plaintext is
            -- returned) or 'synced' (each entry is also on stable storage first).
            ALTER TABLE store ADD COLUMN audit_durability TEXT NOT NULL DEFAULT 'written'
                CHECK (audit_durability IN ('written', 'synced'));
            """),
        Migration(version: 5, sql: erasureTracking),
    ]

    /// Version 5 of the key database, the same on both backends: each erasure gets a number, so that
    /// another process learns which of its cached subject keys to drop (`Keyring.noticeErasures`); and
    /// the store row says since when an erasure's old pages wait to be overwritten (a reader of an older
    /// snapshot held them), so that the next open or `keys compact` finishes the job. Erasures made
    /// before this version have no number: no process running this version cached their keys.
    private static let erasureTracking = """
        ALTER TABLE erased_subjects ADD COLUMN erasure_number BIGINT;
        CREATE UNIQUE INDEX erased_subjects_by_number ON erased_subjects (erasure_number);
        ALTER TABLE store ADD COLUMN erased_pages_since BIGINT;
        """

    /// The PostgreSQL notification channel on which an erasure is announced when it commits (one for
    /// every store on the server: another store's erasure only costs a listener one needless check).
    static let erasureChannel = "strongroom_erasures"

    /// A query for the number of the latest erasure (0 when none has one).
    static let latestErasureNumber = "SELECT coalesce(max(erasure_number), 0) FROM erased_subjects"

    /// The data schema on PostgreSQL: the SQLite tables at version 4 (see there for what each holds),
    /// with identity columns for AUTOINCREMENT (never reused, not even after a rollback), plpgsql
    /// triggers for the consent ledger's guards, and the audit log's table.
    private static let postgresData: [Migration] = [
        Migration(version: 4, sql: """
            CREATE TABLE store (
                id BIGINT PRIMARY KEY CHECK (id = 1),
                store_id BYTEA NOT NULL,
                default_region TEXT NOT NULL,
                created_at BIGINT NOT NULL
            );
            CREATE TABLE subjects (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                kind TEXT NOT NULL CHECK (kind IN ('lead', 'contact')),
                external_id TEXT UNIQUE,
                owner TEXT,
                status TEXT,
                source TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                last_contacted_at BIGINT,
                restricted BIGINT NOT NULL DEFAULT 0,
                key_version BIGINT NOT NULL,
                unindexed_phones BIGINT NOT NULL DEFAULT 0,
                name_ct BYTEA, company_ct BYTEA, emails_ct BYTEA, phones_ct BYTEA,
                address_ct BYTEA, notes_ct BYTEA, photo_ct BYTEA, custom_fields_ct BYTEA,
                seal_count BIGINT NOT NULL DEFAULT 0
            );
            CREATE INDEX subjects_by_kind ON subjects (kind, id);
            CREATE INDEX subjects_by_last_contacted ON subjects (last_contacted_at);
            CREATE TABLE phone_index (
                key_version BIGINT NOT NULL,
                tag BIGINT NOT NULL,
                subject_id BIGINT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
                check_mac BYTEA NOT NULL
            );
            CREATE INDEX phone_index_by_tag ON phone_index (key_version, tag, subject_id, check_mac);
            CREATE INDEX phone_index_by_subject ON phone_index (subject_id);
            CREATE TABLE calls (
                call_key BYTEA PRIMARY KEY,
                subject_id BIGINT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
                at BIGINT NOT NULL,
                direction TEXT NOT NULL CHECK (direction IN ('in', 'out'))
            );
            CREATE INDEX calls_by_subject ON calls (subject_id, at);
            CREATE TABLE purposes (
                name TEXT PRIMARY KEY,
                description TEXT NOT NULL,
                lawful_basis TEXT NOT NULL CHECK (lawful_basis IN ('consent', 'contract', 'legitimate-interest', 'legal-obligation')),
                double_opt_in BIGINT NOT NULL DEFAULT 0
            );
            INSERT INTO purposes (name, description, lawful_basis) VALUES
                ('caller-id', 'Identifying an incoming caller', 'legitimate-interest'),
                ('admin', 'Administration of the store: imports, exports, corrections', 'legitimate-interest'),
                ('subject-request', 'Answering the data subject''s own request', 'legal-obligation'),
                ('legal-claims', 'Establishing, exercising or defending legal claims', 'legal-obligation'),
                ('key-rotation', 'Re-encrypting stored data under new keys', 'legitimate-interest');
            CREATE TABLE consent_ledger (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                subject_id BIGINT NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
                purpose TEXT NOT NULL REFERENCES purposes (name),
                state TEXT NOT NULL CHECK (state IN ('granted', 'withdrawn', 'pending', 'confirmed')),
                at BIGINT NOT NULL,
                initiator TEXT NOT NULL CHECK (initiator IN ('subject', 'staff', 'import')),
                key_version BIGINT NOT NULL,
                client_ct BYTEA,
                evidence_ct BYTEA,
                token_hash BYTEA,
                token_expires_at BIGINT,
                confirms BIGINT REFERENCES consent_ledger (id)
            );
            CREATE INDEX consent_by_subject ON consent_ledger (subject_id, purpose, id);
            -- The ledger's three guards of the SQLite schema in one trigger function; the search path is
            -- pinned so the function reads this schema's subjects whatever the session's path.
            CREATE FUNCTION consent_ledger_guard() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    IF EXISTS (SELECT 1 FROM subjects WHERE id = OLD.subject_id) THEN
                        RAISE EXCEPTION 'the consent ledger is append-only: entries are deleted only with their subject';
                    END IF;
                    RETURN OLD;
                END IF;
                IF (NEW.subject_id, NEW.purpose, NEW.state, NEW.at, NEW.initiator, NEW.token_hash, NEW.token_expires_at, NEW.confirms)
                    IS DISTINCT FROM (OLD.subject_id, OLD.purpose, OLD.state, OLD.at, OLD.initiator, OLD.token_hash, OLD.token_expires_at, OLD.confirms) THEN
                    RAISE EXCEPTION 'the consent ledger is append-only';
                END IF;
                IF (NEW.key_version, NEW.client_ct, NEW.evidence_ct) IS DISTINCT FROM (OLD.key_version, OLD.client_ct, OLD.evidence_ct)
                    AND NEW.key_version <= OLD.key_version THEN
                    RAISE EXCEPTION 'the consent ledger is append-only: sealed parts change only under a newer key';
                END IF;
                RETURN NEW;
            END
            $$;
            CREATE TRIGGER consent_ledger_append_only BEFORE UPDATE OR DELETE ON consent_ledger
                FOR EACH ROW EXECUTE FUNCTION consent_ledger_guard();
            -- The audit log (PostgresAuditLog): one MAC-chained JSON line per entry, in sequence order.
            CREATE TABLE audit_log (
                sequence BIGINT PRIMARY KEY,
                line BYTEA NOT NULL
            );
            """),
        Migration(version: 5, sql: phoneIndexBySubjectAndVersion),
    ]

    /// The key schema on PostgreSQL: the SQLite tables at version 4, and the change counter that
    /// `keyChangeCounter` reads, bumped by any statement that changes the upper keys.
    private static let postgresKeys: [Migration] = [
        Migration(version: 4, sql: """
            CREATE TABLE store (
                id BIGINT PRIMARY KEY CHECK (id = 1),
                store_id BYTEA NOT NULL,
                master_generation BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                audit_durability TEXT NOT NULL DEFAULT 'written' CHECK (audit_durability IN ('written', 'synced'))
            );
            CREATE TABLE kek (
                version BIGINT PRIMARY KEY,
                key_id BIGINT NOT NULL,
                wrapped BYTEA NOT NULL,
                created_at BIGINT NOT NULL,
                current BIGINT NOT NULL DEFAULT 0
            );
            CREATE TABLE subject_keys (
                subject_id BIGINT NOT NULL,
                version BIGINT NOT NULL,
                key_id BIGINT NOT NULL,
                kek_version BIGINT NOT NULL,
                wrapped BYTEA NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (subject_id, version)
            );
            CREATE TABLE index_keys (
                field TEXT NOT NULL,
                version BIGINT NOT NULL,
                key_id BIGINT NOT NULL,
                kek_version BIGINT NOT NULL,
                wrapped BYTEA NOT NULL,
                bits BIGINT NOT NULL,
                planned_population BIGINT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('active', 'building', 'retired')),
                created_at BIGINT NOT NULL,
                PRIMARY KEY (field, version)
            );
            CREATE TABLE audit_keys (
                version BIGINT PRIMARY KEY,
                key_id BIGINT NOT NULL,
                kek_version BIGINT NOT NULL,
                wrapped BYTEA NOT NULL,
                created_at BIGINT NOT NULL
            );
            CREATE TABLE audit_head (
                id BIGINT PRIMARY KEY CHECK (id = 1),
                sequence BIGINT NOT NULL,
                entry_mac BYTEA NOT NULL,
                time BIGINT NOT NULL,
                head_mac BYTEA NOT NULL
            );
            CREATE TABLE erased_subjects (
                subject_id BIGINT PRIMARY KEY,
                erased_at BIGINT NOT NULL
            );
            CREATE TABLE rotations (
                kind TEXT PRIMARY KEY CHECK (kind IN ('kek', 'data', 'index')),
                target_version BIGINT NOT NULL,
                cursor BIGINT NOT NULL DEFAULT 0,
                done BIGINT NOT NULL DEFAULT 0,
                total BIGINT NOT NULL,
                started_at BIGINT NOT NULL
            );
            CREATE TABLE key_usage (
                key TEXT PRIMARY KEY,
                reserved BIGINT NOT NULL
            );
            CREATE TABLE key_changes (
                id BIGINT PRIMARY KEY CHECK (id = 1),
                counter BIGINT NOT NULL
            );
            INSERT INTO key_changes (id, counter) VALUES (1, 1);
            CREATE FUNCTION count_key_change() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
            BEGIN
                UPDATE key_changes SET counter = counter + 1 WHERE id = 1;
                RETURN NULL;
            END
            $$;
            CREATE TRIGGER store_changes AFTER INSERT OR UPDATE OR DELETE ON store FOR EACH STATEMENT EXECUTE FUNCTION count_key_change();
            CREATE TRIGGER kek_changes AFTER INSERT OR UPDATE OR DELETE ON kek FOR EACH STATEMENT EXECUTE FUNCTION count_key_change();
            CREATE TRIGGER index_key_changes AFTER INSERT OR UPDATE OR DELETE ON index_keys FOR EACH STATEMENT EXECUTE FUNCTION count_key_change();
            CREATE TRIGGER audit_key_changes AFTER INSERT OR UPDATE OR DELETE ON audit_keys FOR EACH STATEMENT EXECUTE FUNCTION count_key_change();
            """),
        // An erasure moves the change counter too, so that every process's next check notices it, and
        // is announced on `erasureChannel` when it commits, so that processes know when to check.
        Migration(version: 5, sql: erasureTracking + """
            CREATE TRIGGER erasure_changes AFTER INSERT OR UPDATE OR DELETE ON erased_subjects FOR EACH STATEMENT EXECUTE FUNCTION count_key_change();
            CREATE FUNCTION announce_erasure() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('\(erasureChannel)', '');
                RETURN NULL;
            END
            $$;
            CREATE TRIGGER erasure_announcement AFTER INSERT ON erased_subjects FOR EACH STATEMENT EXECUTE FUNCTION announce_erasure();
            """),
    ]
}
