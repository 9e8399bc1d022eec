import StrongroomStorage

/// A folder store's two schemas, as migrations: SQLite stores grew through data versions 1–7, 9, 10, 12 and 13 (8 was never used, 11 is PostgreSQL's) and key
/// versions 1–6 (`PRAGMA user_version` counts them). Tables shared word for word with PostgreSQL are in `Schema`.
enum SQLiteSchema {
    /// `data.sqlite`: ciphertext, clear operational fields, the blind index.
    static let data: [Migration] = [
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
            \(Schema.phoneIndexByTag);
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
            \(Schema.builtInPurposes)
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
        Migration(version: 5, sql: Schema.phoneIndexBySubjectAndVersion),
        Migration(version: 6, sql: Schema.emailIndex(blobType: "BLOB")),
        Migration(version: 7, sql: """
            -- Which staff member or service made each consent change, sealed with the entry's facts
            -- (ConsentActorSeal); entries from before this version have none and read as "unknown".
            ALTER TABLE consent_ledger ADD COLUMN actor_ct BLOB;
            -- The sealed actor changes, like the other sealed parts, only under a newer key.
            CREATE TRIGGER consent_ledger_actor_reseal_only
            BEFORE UPDATE OF actor_ct ON consent_ledger
            WHEN NEW.key_version <= OLD.key_version
            BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only: sealed parts change only under a newer key'); END;
            """),
        Migration(version: 9, sql: Schema.stagedIndexRows(of: "phone_index", bytes: "BLOB")),
        Migration(version: 10, sql: Schema.stagedIndexRows(of: "email_index", bytes: "BLOB")),
        // Version 11 is PostgreSQL's alone. `subjects_by_last_contacted` is read through by no statement
        // (the retention and list filters test `coalesce(last_contacted_at, created_at)`, which it does
        // not hold: `QueryPlanTests` pins their plans), yet every new subject inserted an entry in it at a
        // random place, and every call record moved one: dropped, as on PostgreSQL.
        Migration(version: 12, sql: "DROP INDEX subjects_by_last_contacted"),
        Migration(version: 13, sql: """
            DROP INDEX phone_index_by_tag;
            \(phoneIndexByTag);
            DROP INDEX email_index_by_tag;
            \(emailIndexByTag);
            """),
    ]

    /// The phone blind index's tag index from data version 13: the version and the tag, no more (a row's
    /// subject and check are read from the table by rowid). An import's rows land in it at random
    /// places, so each batch's commit writes every page of it the batch touched: the covering index
    /// (`Schema.phoneIndexByTag`, ~35 bytes an entry with its 16-byte check) made those pages three times
    /// as many, most of the WAL an import wrote (2,675 bytes a row at 30,000 rows; 1,414 with this one).
    /// A lookup rarely reads it: the hint (`SQLiteCallerIDHint`) holds the pairs in the process, and the
    /// probe, when the hint cannot answer, reads its few candidates' rows by rowid. Built again by index
    /// rotations (`StoreBackend.rebuildsTagIndexForBulkChanges`).
    static let phoneIndexByTag = "CREATE INDEX phone_index_by_tag ON phone_index (key_version, tag)"
    /// The e-mail blind index's tag index from data version 13, narrow as the phone index's.
    static let emailIndexByTag = "CREATE INDEX email_index_by_tag ON email_index (key_version, tag)"

    /// `keys.sqlite`: every key of the hierarchy, wrapped; the audit chain head; erasure tombstones.
    static let keys: [Migration] = [
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
        Migration(version: 5, sql: Schema.erasureTracking),
        Migration(version: 6, sql: Schema.tombstones(binary: "BLOB")),
    ]
}
