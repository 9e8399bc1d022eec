import Foundation
@testable import Strongroom
import StrongroomCrypto
@testable import StrongroomStorage
import Testing

/// The query plan of every statement a per-subject path runs, on both backends: a schema or planner
/// change that turns a probe into a walk over a table fails here, not at a million subjects.
///
/// The statements are not copied into the test: each path runs once on a real store, and the test asks
/// each connection which statements it prepared (SQLite's `sqlite_stmt` table, PostgreSQL's
/// `pg_prepared_statements`), so a statement added to a path later is checked too. The tables are then
/// filled (20,000 subjects, their index rows, keys, calls and ledger entries; PostgreSQL analyses them)
/// and each statement's plan is asked for.
@Suite("Query plans: every per-subject statement finds its rows through an index", .serialized)
struct QueryPlanTests {
    /// Tables that grow with the subjects: a full scan of one of them per subject is quadratic.
    static let growingTables: Set<String> = ["subjects", "phone_index", "phone_index_building", "email_index", "email_index_building", "calls", "consent_ledger",
                                             "subject_keys", "erased_subjects", "tombstones", "audit_log"]

    /// Subjects in the store when plans are asked for.
    static let plannedSubjects = 20_000

    @Test("every statement of create, update, erase, caller ID, call record, consent and each rotation uses an index",
          arguments: TestBackend.all)
    func perSubjectStatementsUseIndexes(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        try runEveryPerSubjectPath(test.store)
        // Run only when a read or a rotation batch meets a concurrent change, or (the last) when a lookup on
        // SQLite finds its hint emptied by another process's write: prepared here as those paths would.
        try test.store.data.withLock { (connection) throws(DatabaseError) in
            _ = try connection.scalarInteger(Store.currentKeyVersion, [.integer(1)])
            _ = try connection.rows(CallerIDHint.candidatesAndNewestVersion, [.int(1), .integer(1)]) { $0.isNull(0) }
            _ = try connection.rows(RotationStatements.subjectsToReencryptAgain, [.integer(1), .integer(2)]) { $0.int64(0) }
        }
        if backend == .postgres {
            // Subject keys go by COPY, and their upsert runs only when a key is in the way: one is put there.
            let next = try test.database(.data).scalarInteger(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence('subjects', 'id')::regclass) + 1") ?? 1
            try test.database(.keys).run("INSERT INTO subject_keys (subject_id, version, key_id, kek_version, wrapped, created_at) VALUES (?, 1, 1, 1, ?, 0)",
                                         [.integer(next), .blob([1])])
            _ = try test.store.create(sampleSubject("orphan-key"), context: TestStore.admin)
        }
        let statements = try preparedStatements(of: test.store)
        // The rotation's own statements are among them (the code and this test share the constants).
        let rewrapSubjectKeys = KeyDatabase.rewrapSubjectKeys(2, bytes: backend == .sqlite ? SQLiteBackend.bytesParameter : PostgresBackend.bytesParameter)
        let staging = [IndexStaging.phones, .emails].flatMap { [$0.dropStagedRows, $0.dropStagedRowsOfIndexedSubjects, $0.copyStagedRows] }
        for pinned in [KeyDatabase.subjectKeysToRewrap, rewrapSubjectKeys, RotationStatements.dropSubjectIndexRows,
                       RotationStatements.subjectUpdatedAt] + staging {
            #expect(statements.contains { $0.matches(pinned) }, "not run by the paths: \(pinned)")
        }
        #expect(statements.count > 40, "only \(statements.count) statements were seen: the paths did not run")
        try fillGrowingTables(of: test, subjects: Self.plannedSubjects)

        var checked = 0
        for statement in statements where statement.touchesGrowingTable && !statement.isSchemaChange {
            let plan = try statement.plan()
            checked += 1
            if (RotationStatements.onceOverTheWholeTable + [Store.EmailIndexStatements.leftBehind, Store.EmailIndexStatements.dropOldVersions,
                                                             Store.exportedSubjects, CallerIDHint.readAll, SQLiteCallerIDHint.readAll,
                                                             CallerIDHint.candidatesAndNewestVersion, CallerIDHint.entriesAndNewestVersion])
                .contains(where: statement.matches)
                || statement.isWholeTableCount { continue }
            let scans = plan.filter(backend == .sqlite ? Self.isSQLiteScanOfGrowingTable : Self.isPostgresScanOfGrowingTable)
            #expect(scans.isEmpty, "\(backend): \(statement.sql)\nplan:\n\(plan.joined(separator: "\n"))")
        }
        #expect(checked > 30)

        // The statements whose index matters most, pinned by name.
        let expected: [(sql: String, sqlite: String, postgres: String)] = [
            (RotationStatements.dropSubjectIndexRows, "phone_index_by_subject (subject_id=? AND key_version=?)",
             "phone_index_by_subject"),
            (RotationStatements.subjectUpdatedAt, "USING INTEGER PRIMARY KEY (rowid=?)", "subjects_pkey"),
            (IndexStaging.phones.dropStagedRows, "phone_index_building_by_subject (subject_id>? AND subject_id<?)",
             "phone_index_building_by_subject"),
            (IndexStaging.emails.dropStagedRows, "email_index_building_by_subject (subject_id>? AND subject_id<?)",
             "email_index_building_by_subject"),
            // Once per rotation, over the staged rows: SQLite reads the version being built through the
            // blind index (before the copy it holds only the rows writers added) and finds each staged
            // row's subject by primary key; PostgreSQL hashes one side and reads the other once (a
            // nested loop over a scan here would be quadratic).
            (IndexStaging.phones.dropStagedRowsOfIndexedSubjects, "phone_index_by_tag (key_version=?)", "Hash Semi Join"),
            (IndexStaging.phones.copyStagedRows, "USING INTEGER PRIMARY KEY (rowid=?)", "Hash Join"),
            (IndexStaging.emails.dropStagedRowsOfIndexedSubjects, "email_index_by_tag (key_version=?)", "Hash Semi Join"),
            (IndexStaging.emails.copyStagedRows, "USING INTEGER PRIMARY KEY (rowid=?)", "Hash Join"),
            (KeyDatabase.subjectKeysToRewrap, "USING PRIMARY KEY (subject_id>?)", "subject_keys_pkey"),
            (rewrapSubjectKeys, "USING PRIMARY KEY (subject_id=? AND version=?)", "subject_keys_pkey"),
        ]
        for (sql, sqlitePlan, postgresIndex) in expected {
            let statement = try #require(statements.first { $0.matches(sql) })
            let plan = try statement.plan().joined(separator: "\n")
            #expect(plan.contains(backend == .sqlite ? sqlitePlan : postgresIndex), "\(backend): \(sql)\nplan:\n\(plan)")
        }
        // The tombstone probe of the rows a write would create (an erased external id is never
        // re-created), the batch's keyed hashes compared as the backend compares a set of keys (SQLite:
        // each `IN` list size the paths prepared; PostgreSQL: `= ANY` of one array, one round trip).
        let tombstoneProbes = statements.filter { $0.sql.hasPrefix(KeyDatabase.tombstonesByExternalIDs + " ") }
        #expect(!tombstoneProbes.isEmpty, "not run by the paths: \(KeyDatabase.tombstonesByExternalIDs)")
        for probe in tombstoneProbes {
            let plan = try probe.plan().joined(separator: "\n")
            #expect(plan.contains(backend == .sqlite ? "USING INDEX tombstones_by_external_id (external_id_tag=?)" : "tombstones_by_external_id"),
                    "\(backend): \(probe.sql)\nplan:\n\(plan)")
        }
        // An erasure's trigger on PostgreSQL (`PostgresSchema.blindIndexRowsGoWithTheirSubjects`) deletes the
        // erased subject's rows of the blind indexes and their staging tables by subject: each statement,
        // planned for the erased subject's id as the trigger plans it, probes by subject.
        if backend == .postgres {
            let data = try test.database(.data)
            try data.execute("SET plan_cache_mode = force_custom_plan")
            for (number, table) in PostgresSchema.blindIndexTables.enumerated() {
                try data.execute("PREPARE drop_rows_\(number) (BIGINT[]) AS " + PostgresSchema.dropRows(from: table, ofSubjectsIn: "$1"))
                let plan = try data.rows("EXPLAIN EXECUTE drop_rows_\(number)('{1}')") { $0.text(0) ?? "" }
                let text = plan.joined(separator: "\n")
                #expect(text.contains("\(table)_by_subject") && text.contains("Index Cond: (subject_id = ANY ('{1}'::bigint[]))"), "\(text)")
                #expect(plan.filter(Self.isPostgresScanOfGrowingTable).isEmpty, "\(text)")
            }
        }
        // An import taking ids ahead for its next batch (SQLite: AUTOINCREMENT's counter moved in a
        // transaction of its own) reads the counters' table of two rows, nothing that grows.
        if backend == .sqlite {
            let statement = try #require(statements.first { $0.matches(SQLiteBackend.moveSubjectCounter) })
            #expect(try statement.plan() == ["SCAN sqlite_sequence"], "\(SQLiteBackend.moveSubjectCounter)")
        }
        // The data rotation's batch: its reads by primary key or the ledger's subject index, its multi-row
        // writes (every size the paths prepared, matched up to their VALUES list) by primary key.
        let bytes = backend == .sqlite ? SQLiteBackend.bytesParameter : PostgresBackend.bytesParameter
        let dataRotationPlans: [(sql: String, sqlite: String, postgres: String)] = [
            (RotationStatements.subjectsToReencrypt, "INTEGER PRIMARY KEY (rowid>?)", "subjects_pkey"),
            (RotationStatements.subjectToReencrypt, "INTEGER PRIMARY KEY (rowid=?)", "subjects_pkey"),
            (RotationStatements.subjectsToReencryptAgain, "INTEGER PRIMARY KEY (rowid>? AND rowid<?)", "subjects_pkey"),
            (Store.currentKeyVersion, "INTEGER PRIMARY KEY (rowid=?)", "subjects_pkey"),
            (RotationStatements.reencryptSubjects(1, bytes: bytes), "INTEGER PRIMARY KEY (rowid=?)", "subjects_pkey"),
            (RotationStatements.resealLedgerEntries(1, bytes: bytes), "INTEGER PRIMARY KEY (rowid=?)", "consent_ledger_pkey"),
            (RotationStatements.ledgerKeyVersions, "consent_by_subject (subject_id>? AND subject_id<?)", "consent_by_subject"),
            (KeyDatabase.subjectKeyVersionsInRange, "PRIMARY KEY (subject_id>? AND subject_id<?)", "subject_keys_pkey"),
            // The batch's range: found by primary key whatever the planner makes of the VALUES list.
            (KeyDatabase.deleteSubjectKeyVersions(1), "SEARCH subject_keys USING PRIMARY KEY (subject_id", "subject_keys_pkey"),
            // The e-mail index's batch (rotation and first build): its subjects' `updated_at` read again and
            // their rows dropped, by id lists (every size the paths prepared, matched up to the list).
            (Store.EmailIndexStatements.subjectsUpdatedAt + " (?)", "INTEGER PRIMARY KEY (rowid=?)", "subjects_pkey"),
            (Store.EmailIndexStatements.dropVersionOfSubjects(1), "email_index_by_subject (subject_id=?)", "email_index_by_subject"),
        ]
        for (sql, sqlitePlan, postgresIndex) in dataRotationPlans {
            let head = sql.components(separatedBy: "(VALUES").first.flatMap { $0.components(separatedBy: " IN (").first } ?? sql
            let prepared = statements.filter {
                head == sql ? $0.matches(sql) : $0.sql.hasPrefix(head) || $0.sql.hasPrefix(PostgresConnection.numberedParameters(head))
            }
            #expect(!prepared.isEmpty, "not run by the paths: \(sql)")
            for statement in prepared {
                let plan = try statement.plan().joined(separator: "\n")
                #expect(plan.contains(backend == .sqlite ? sqlitePlan : postgresIndex), "\(backend): \(statement.sql)\nplan:\n\(plan)")
            }
        }
        // The e-mail index's statements, and those of find, list and rectify.
        let emailIndexPlans: [(sql: String, sqlite: String, postgres: String)] = [
            (Store.EmailIndexStatements.probe, "email_index_by_tag (key_version=? AND tag=?)", "email_index_by_tag"),
            (Store.EmailIndexStatements.dropSubject, "email_index_by_subject (subject_id=?)", "email_index_by_subject"),
            (Store.EmailIndexStatements.subjectsWithAddresses, "INTEGER PRIMARY KEY (rowid>? AND rowid<?)", "subjects_pkey"),
            (Store.subjectByExternalID, "sqlite_autoindex_subjects_1 (external_id=?)", "subjects_external_id_key"),
            (Store.listPage, "INTEGER PRIMARY KEY (rowid>?)", "subjects_pkey"),
        ]
        for (sql, sqlitePlan, postgresIndex) in emailIndexPlans {
            let statement = try #require(statements.first { $0.matches(sql) }, "not run by the paths: \(sql)")
            let plan = try statement.plan().joined(separator: "\n")
            #expect(plan.contains(backend == .sqlite ? sqlitePlan : postgresIndex), "\(backend): \(sql)\nplan:\n\(plan)")
        }
        // A write of several new subjects looks the batch's external ids up in one statement, and
        // writes subject keys in sets whose conflict check goes by primary key.
        // An import batch reads the stored rows its rows merge numbers and custom fields over in one statement too.
        let lookups = statements.filter { $0.sql.hasPrefix("SELECT external_id, \(Store.summaryColumns) FROM subjects WHERE external_id") }
        let mergeReads = statements.filter { $0.sql.hasPrefix(CSVImporter.storedRowsByExternalID) }
        #expect(!lookups.isEmpty && !mergeReads.isEmpty)
        for lookup in lookups + mergeReads {
            let plan = try lookup.plan().joined(separator: "\n")
            #expect(plan.contains(backend == .sqlite ? "USING INDEX sqlite_autoindex_subjects_1 (external_id=?)" : "subjects_external_id_key"),
                    "\(backend): \(lookup.sql)\nplan:\n\(plan)")
        }
        let keyInserts = statements.filter { $0.sql.hasPrefix("INSERT INTO subject_keys") }
        #expect(!keyInserts.isEmpty)
        if backend == .postgres {
            for insert in keyInserts {
                let plan = try insert.plan().joined(separator: "\n")
                #expect(plan.contains("Conflict Arbiter Indexes: subject_keys_pkey"), "\(insert.sql)\nplan:\n\(plan)")
            }
        }
        // The SQLite hint's reads (`SQLiteCallerIDHint`): a match's row by primary key, the newest index
        // version from the end of the blind index (SQLite's min/max optimisation: one probe, no walk), and,
        // refilling a tag, its rows by the probe's (version, tag) with that newest version, each candidate's
        // subject and check read from the table by rowid (the tag index holds only version and tag since
        // data version 13); the whole hint, once, by a walk of the table, not row by row through that index.
        if backend == .sqlite {
            for (sql, sqlitePlan) in [(SQLiteCallerIDHint.candidateByID, "USING INTEGER PRIMARY KEY (rowid=?)"),
                                      (SQLiteCallerIDHint.newestIndexVersion, "SEARCH phone_index USING COVERING INDEX phone_index_by_tag"),
                                      (CallerIDHint.candidatesAndNewestVersion, "SEARCH p USING INDEX phone_index_by_tag (key_version=? AND tag=?)"),
                                      (Store.EmailIndexStatements.probe, "SEARCH p USING INDEX email_index_by_tag (key_version=? AND tag=?)")] {
                let statement = try #require(statements.first { $0.matches(sql) }, "not run by the paths: \(sql)")
                let plan = try statement.plan().joined(separator: "\n")
                #expect(plan.contains(sqlitePlan), "\(sql)\nplan:\n\(plan)")
            }
            let readAll = try #require(statements.first { $0.matches(SQLiteCallerIDHint.readAll) }, "not run by the paths")
            #expect(try readAll.plan() == ["SCAN phone_index"])
        }
        // The caller-ID probe reads candidates through the blind index's tag index.
        let probes = statements.filter {
            $0.sql.contains("FROM phone_index") && $0.sql.contains("tag") && !$0.sql.contains("DELETE") && !$0.sql.contains("phone_index_building")
                && !$0.matches(CallerIDHint.readAll) && !$0.matches(SQLiteCallerIDHint.readAll)
        }
        #expect(!probes.isEmpty)
        for probe in probes {
            let plan = try probe.plan().joined(separator: "\n")
            #expect(plan.contains("phone_index_by_tag"), "\(backend): \(probe.sql)\nplan:\n\(plan)")
        }
    }

    @Test("PostgreSQL: the caller-ID hint's statements probe the blind index, and its audited read appends after an index probe")
    func callerIDHintStatementsUseIndexes() throws {
        guard TestBackend.all.contains(.postgres) else { return }
        let test = try TestStore(.postgres)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("hinted", phones: ["+44 20 7946 0958"]), context: TestStore.admin)
        try test.store.declarePurpose(PurposeDeclaration(name: "marketing-email", description: "Offers", lawfulBasis: .consent),
                                      context: TestStore.admin)
        // Through the hint: its reading and the miss's probe are prepared on the data connection.
        #expect(try test.store.callerID(number: "+44 20 7946 0958", context: TestStore.caller).map(\.id) == [id])
        #expect(try test.store.callerID(number: "+33 6 12 34 56 78", context: TestStore.caller).isEmpty)
        let statements = try preparedStatements(of: test.store)
        for pinned in [CallerIDHint.readAll, CallerIDHint.entriesAndNewestVersion] {
            #expect(statements.contains { $0.matches(pinned) }, "not run: \(pinned)")
        }
        try fillGrowingTables(of: test, subjects: Self.plannedSubjects)
        // The miss's probe: the tag's index rows by (version, tag) from the covering index alone (no
        // `subjects` row is read), the newest version from the end of the same index.
        let miss = try #require(statements.first { $0.matches(CallerIDHint.entriesAndNewestVersion) })
        let missPlan = try miss.plan()
        let missText = missPlan.joined(separator: "\n")
        #expect(missPlan.contains { $0.contains("Index Only Scan Backward using phone_index_by_tag") }, "\(missText)")
        #expect(missPlan.contains { $0.contains("Index Only Scan using phone_index_by_tag") }, "\(missText)")
        #expect(missPlan.contains { $0.contains("Index Cond: ((key_version = $1) AND (tag = $2))") }, "\(missText)")
        #expect(!missText.contains("Seq Scan") && !missText.contains("subjects"), "\(missText)")
        // The hit's statement, on the audit log's connection: the same probe, and the predecessor by its key.
        let data = try test.database(.data)
        // The log as long as the other tables (lines of no use but to its size: the store is not used again).
        try data.execute("""
            INSERT INTO audit_log (sequence, line) SELECT i, 'x'::bytea FROM generate_series(1000000, \(999_999 + Self.plannedSubjects)) AS g(i);
            ANALYZE audit_log
            """)
        let sql = PostgresAuditLog.appendingSQL(entries: 2, with: CallerIDHint.auditedRead([.int(1), .integer(1), .text("")]), lock: 1)
        try data.execute("PREPARE hinted_lookup AS " + PostgresConnection.numberedParameters(sql))
        try data.execute("SET plan_cache_mode = force_generic_plan")
        let plan = try data.rows("EXPLAIN EXECUTE hinted_lookup(1, 1, '', 1, '', 2, '', 0)") { $0.text(0) ?? "" }
        let text = plan.joined(separator: "\n")
        #expect(plan.filter(Self.isPostgresScanOfGrowingTable).isEmpty, "\(text)")
        #expect(text.contains("Index Cond: ((key_version = $1) AND (tag = $2))"), "\(text)")
        #expect(text.contains("audit_log_pkey"), "\(text)")
        // No sort: the index gives the tag's rows in the fingerprint's order. The predecessor is looked
        // up once, for the insert and the answer alike.
        #expect(!text.contains("Sort"), "\(text)")
        #expect(text.components(separatedBy: "audit_log_pkey").count == 2, "\(text)")
    }

    @Test("PostgreSQL: an e-mail index batch drops its subjects' rows by subject, even when the statistics take the version being built for a rare one")
    func emailBatchDropIgnoresStaleStatistics() throws {
        guard TestBackend.all.contains(.postgres) else { return }
        let test = try TestStore(.postgres)
        defer { test.cleanUp() }
        // Statistics gathered with version 1 alone, then a rotation's worth of version 2 rows: what an
        // index rotation meets before autovacuum analyses the table again.
        let data = try test.database(.data)
        let first = 1_000_000, last = first + Self.plannedSubjects - 1
        let rows = "SELECT i, i, decode(md5(i::text), 'hex') FROM generate_series(\(first), \(last)) AS g(i)"
        try data.execute("""
            INSERT INTO subjects (id, kind, created_at, updated_at, key_version) SELECT i, 'contact', i, i, 1 FROM generate_series(\(first), \(last)) AS g(i);
            INSERT INTO email_index (key_version, tag, subject_id, check_mac) SELECT 1, g.* FROM (\(rows)) AS g;
            ANALYZE subjects, email_index;
            INSERT INTO email_index (key_version, tag, subject_id, check_mac) SELECT 2, g.* FROM (\(rows)) AS g
            """)
        let batch = MultiRowStatements.rotation.rowsPerStatement
        try data.execute("PREPARE drop_batch AS " + PostgresConnection.numberedParameters(Store.EmailIndexStatements.dropVersionOfSubjects(batch)))
        // The plan for the values a batch binds (PostgreSQL plans the first executions for them).
        try data.execute("SET plan_cache_mode = force_custom_plan")
        let ids = (0..<batch).map { String(first + 5_000 + $0) }.joined(separator: ", ")
        let plan = try data.rows("EXPLAIN EXECUTE drop_batch(2, \(ids))") { $0.text(0) ?? "" }.joined(separator: "\n")
        #expect(plan.contains("email_index_by_subject") && !plan.contains("email_index_by_tag"), "\(plan)")
        #expect(!plan.contains("Seq Scan"), "\(plan)")
    }

    @Test("a store made before the blind index's (subject, version) index and its staging table opens, gains both, and rotates its index",
          arguments: TestBackend.all)
    func storeOfSchemaFourOpens(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("old", phones: ["+44 20 7946 0958"]), context: TestStore.admin)
        test.store.close()
        // The data database as version 4 made it.
        let raw = try test.database(.data)
        try PreviousSchema.rewindData(raw, to: 4, backend)
        #expect(try indexColumns(of: "phone_index_by_subject", raw) == ["subject_id"])

        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try raw.schemaVersion() == PreviousSchema.latestData(backend))
        #expect(try indexColumns(of: "phone_index_by_subject", raw) == ["subject_id", "key_version"])
        #expect(try reopened.callerID(number: "020 7946 0958", context: TestStore.caller).map(\.id) == [id])
        _ = try reopened.rotateIndexKey(context: TestStore.admin)
        // Second act: after the rotation, and from yet another opening, the caller is still found.
        #expect(try reopened.callerID(number: "+442079460958", context: TestStore.caller).map(\.id) == [id])
        let again = try test.reopen()
        defer { again.close() }
        #expect(try again.callerID(number: "+442079460958", context: TestStore.caller).map(\.id) == [id])
        #expect(try raw.schemaVersion() == PreviousSchema.latestData(backend))
    }

    @Test("a SQLite store of data schema 12 opens with narrow tag indexes and finds every number: through the hint, the probe, a reopen, an index rotation; PostgreSQL keeps its covering ones")
    func storeOfSchemaTwelveNarrowsTagIndexes() throws {
        if TestBackend.all.contains(.postgres) {
            let test = try TestStore(.postgres)
            defer { test.cleanUp() }
            let raw = try test.database(.data)
            for index in ["phone_index_by_tag", "email_index_by_tag"] {
                #expect(try indexColumns(of: index, raw) == ["key_version", "tag", "subject_id", "check_mac"], "\(index)")
            }
        }
        let test = try TestStore(.sqlite)
        defer { test.cleanUp() }
        let numbers = (10..<50).map { "+4420794609\($0)" }
        let ids = try test.store.write(numbers.indices.map { sampleSubject("v12-\($0)", phones: [numbers[$0]]) }, context: TestStore.admin).map(\.id)
        let imported = try CSVImporter(store: test.store).run(Array("external_id,mobile\nv12-import,07700 900555\n".utf8), context: TestStore.admin)
        #expect(imported.created == 1)
        test.store.close()
        let raw = try test.database(.data)
        try PreviousSchema.rewindData(raw, to: 12, .sqlite)
        let covering = ["key_version", "tag", "subject_id", "check_mac"], narrow = ["key_version", "tag"]
        for index in ["phone_index_by_tag", "email_index_by_tag"] { #expect(try indexColumns(of: index, raw) == covering) }

        let store = try test.reopen()
        defer { store.close() }
        #expect(try raw.schemaVersion() == PreviousSchema.latestData(.sqlite))
        for index in ["phone_index_by_tag", "email_index_by_tag"] { #expect(try indexColumns(of: index, raw) == narrow) }
        // Every subject found by each of its keys, and the erased one by none.
        func everyoneFound(by store: Store, _ moment: String) throws {
            for index in numbers.indices {
                let expected = index == 7 ? [] : [ids[index]]
                #expect(try store.callerID(number: numbers[index], context: TestStore.caller).map(\.id) == expected, "\(moment): \(index)")
                #expect(try store.find(.email("zebedee.v12-\(index)@example.org"), context: EmailIndexTests.request).map(\.id) == expected,
                        "\(moment): \(index)")
            }
            #expect(try store.callerID(number: "07700 900555", context: TestStore.caller).count == 1, "\(moment)")
        }
        try store.erase(ids[7], reason: "request", context: TestStore.admin)
        try everyoneFound(by: store, "through the hint")
        // Another opening's write empties this one's hint: each tag is then read through the tag index.
        let other = try test.reopen()
        _ = try other.create(sampleSubject("v12-other", phones: ["+447700900999"]), context: TestStore.admin)
        other.close()
        try everyoneFound(by: store, "hint emptied")
        #expect(store.sqliteCallerIDHint.withLock { $0?.holdsEveryTag } == false)
        // A call record probes the blind index with the checks made in SQL (no hint).
        let call = try store.recordCall(number: numbers[3], context: TestStore.caller)
        #expect(call.caller.id == ids[3] && !call.createdLead)
        // While an index rotation runs two versions answer, through the probe; its end builds the tag index again, narrow.
        var checkedMidRotation = false
        _ = try store.rotateIndexKey(batchSize: 8, context: TestStore.admin) { done, total in
            guard !checkedMidRotation, done > 0, done < total else { return }
            checkedMidRotation = true
            #expect(store.keyring.keys.phoneIndexes.count == 2)
            do { try everyoneFound(by: store, "mid rotation") } catch { Issue.record(error, "mid rotation") }
        }
        #expect(checkedMidRotation)
        for index in ["phone_index_by_tag", "email_index_by_tag"] { #expect(try indexColumns(of: index, raw) == narrow) }
        try everyoneFound(by: store, "after the rotation")
        let reopened = try test.reopen()
        defer { reopened.close() }
        try everyoneFound(by: reopened, "reopened")
    }

    // MARK: - The paths

    /// Runs once each path whose statements run per subject or per batch of subjects.
    private func runEveryPerSubjectPath(_ store: Store) throws {
        let marketing: Purpose = "marketing-email"
        try store.declarePurpose(PurposeDeclaration(name: marketing, description: "Offers", lawfulBasis: .consent), context: TestStore.admin)
        let ids = try store.write((0..<6).map { sampleSubject("plan\($0)", phones: ["+44 20 7946 09\(10 + $0)", "07700 9001\(10 + $0)"]) },
                                  context: TestStore.admin).map(\.id)
        _ = try store.create(sampleSubject("single"), context: TestStore.admin)
        _ = try store.read(ids[0], context: TestStore.admin)
        _ = try store.exportAll(context: TestStore.admin) { _ in }
        try store.update(ids[0], personal: PersonalData(name: "Renamed", phones: [LabeledPhone(label: "m", number: "07700 900999")]),
                         context: TestStore.admin)
        _ = try store.callerID(number: "07700 900999", context: TestStore.caller)
        _ = try store.callerID(number: "+33 6 12 34 56 78", context: TestStore.caller)
        _ = try store.recordCall(number: "+44 20 7946 0911", context: TestStore.caller)
        _ = try store.recordCall(number: "+44 20 7946 0999", context: TestStore.caller)
        _ = try store.grantConsent(ids[1], purpose: marketing, evidence: "web form", initiator: .subject, context: TestStore.admin)
        _ = try store.withdrawConsent(ids[1], purpose: marketing, initiator: .subject, context: TestStore.admin)
        try store.setRestricted(true, ids[2], context: TestStore.admin)
        try store.erase(ids[3], reason: "request", context: TestStore.admin)
        _ = try store.write([sampleSubject("plan3")], skippingRefused: true, context: TestStore.admin)
        // An import row carrying one of a stored subject's numbers: its stored numbers are read to merge over.
        _ = try CSVImporter(store: store).run(Array("external_id,mobile\next-plan5,07700 900555\nnew-import,07700 900556\n".utf8),
                                              context: TestStore.admin)
        try store.delete(ids[4], context: TestStore.admin)
        _ = try store.rotateMasterKey(to: try SecretKey.random(), context: TestStore.admin)
        _ = try store.rotateKeyEncryptionKey(batchSize: 2, context: TestStore.admin)
        _ = try store.rotateDataKey(of: ids[1], context: TestStore.admin)
        _ = try store.rotateAllDataKeys(batchSize: 2, context: TestStore.admin)
        // A subject changed once its rows are staged is left out of the copy and indexed by the catch-up.
        _ = try store.rotateIndexKey(batchSize: 2, context: TestStore.admin) { done, _ in
            if done == 2 { try? store.update(ids[0], personal: PersonalData(name: "Renamed again"), context: TestStore.admin) }
        }
        let request = AccessContext(actor: "test-dpo", purpose: .subjectRequest)
        _ = try store.find(.email("zebedee.plan1@example.org"), context: request)
        _ = try store.find(.phone("07700 900111", region: nil), context: request)
        _ = try store.find(.externalID("ext-plan5"), context: request)
        try store.listSubjects(SubjectListFilter(kind: .lead, untouchedSince: Date()), context: TestStore.admin) { _ in }
        try store.rectify(ids[5], [FieldChange(field: "email", value: "renamed@example.org"), FieldChange(field: "mobile", value: "07700 900998")],
                          context: TestStore.admin)
        // The first build of an older store's e-mail index, from its marker (a new store has none).
        try store.data.withLock { (connection) throws(DatabaseError) in
            try connection.run("INSERT INTO email_index_backfill (id, cursor) VALUES (1, 0)")
        }
        try store.backfillEmailIndex()
    }

    // MARK: - Statements and plans

    /// A statement a connection of the store prepared, and how to ask that connection for its plan.
    struct PreparedStatement {
        let sql: String
        let plan: () throws -> [String]

        /// Whether this is `sql` (PostgreSQL's copy has `$n` for `?`).
        func matches(_ sql: String) -> Bool {
            self.sql == sql || self.sql == PostgresConnection.numberedParameters(sql)
        }

        var touchesGrowingTable: Bool {
            let words = Set(sql.split { !($0.isLetter || $0 == "_") }.map(String.init))
            return !words.isDisjoint(with: QueryPlanTests.growingTables)
        }

        /// `CREATE`/`DROP`: an index rotation builds `phone_index_by_tag` again on SQLite (once per
        /// rotation: `StoreBackend.rebuildsTagIndexForBulkChanges`); it has no plan to ask for.
        var isSchemaChange: Bool {
            sql.hasPrefix("CREATE ") || sql.hasPrefix("DROP ")
        }

        /// `SELECT count(*) FROM table`: the size of a table, read once by a command (a rotation's total),
        /// never per subject.
        var isWholeTableCount: Bool {
            sql.hasPrefix("SELECT count(*) FROM ") && !sql.contains("WHERE")
        }
    }

    /// Columns that hold a handful of values over the whole table (a key or index version, a kind): an
    /// index probe constrained by them alone walks most of the table, as a scan does.
    static let fewValuedColumns: Set<String> = ["key_version", "kek_version", "version", "kind", "purpose", "state"]

    /// SQLite: `SCAN t` (a walk over a table or a whole index) of anything but a small table, or a
    /// `SEARCH` constrained only by few-valued columns (`phone_index_by_tag (key_version=?)`).
    static func isSQLiteScanOfGrowingTable(_ line: String) -> Bool {
        if line.hasPrefix("SEARCH "), line.hasSuffix(")"), let open = line.lastIndex(of: "(") {
            let columns = line[line.index(after: open)..<line.index(before: line.endIndex)].components(separatedBy: " AND ")
                .map { String($0.prefix { $0.isLetter || $0 == "_" }) }
            return columns.allSatisfy(fewValuedColumns.contains)
        }
        // `SCAN n CONSTANT ROWS`: the rows of a multi-row VALUES list.
        guard line.hasPrefix("SCAN "), !line.hasSuffix(" CONSTANT ROWS") else { return false }
        let table = line.dropFirst(5).prefix { $0 != " " }
        // `rewrapped`, `reencrypted`, `resealed`: the VALUES lists of the KEK and data rotations' batches.
        return !["CONSTANT", "rewrapped", "reencrypted", "resealed", "store", "purposes", "kek", "index_keys", "audit_keys", "rotations", "key_usage", "audit_head",
                 "sqlite_sequence", "json_each"].contains(String(table))
    }

    /// PostgreSQL: `Seq Scan on t` of a growing table, or an index condition only on few-valued columns.
    static func isPostgresScanOfGrowingTable(_ line: String) -> Bool {
        if let range = line.range(of: "Index Cond: ") {
            let columns = line[range.upperBound...].components(separatedBy: " AND ")
                .map { String($0.drop { !$0.isLetter }.prefix { $0.isLetter || $0 == "_" || $0 == "." }.split(separator: ".").last ?? "") }
            return columns.allSatisfy(fewValuedColumns.contains)
        }
        guard let range = line.range(of: "Seq Scan on ") else { return false }
        let table = line[range.upperBound...].prefix { $0 != " " }
        return growingTables.contains(String(table))
    }

    /// The statements the store's data and key connections prepared while the paths ran.
    private func preparedStatements(of store: Store) throws -> [PreparedStatement] {
        try [store.data.withLock { $0 }, store.keyring.database.connectionForInspection].flatMap { connection in
            switch connection.dialect {
            case .sqlite:
                // `sqlite_stmt` (SQLITE_ENABLE_STMTVTAB) lists the connection's prepared statements.
                let texts = try connection.rows("SELECT sql FROM sqlite_stmt") { $0.text(0) ?? "" }
                return Set(texts).filter { !$0.hasPrefix("SELECT sql FROM sqlite_stmt") }.sorted().map { sql in
                    PreparedStatement(sql: sql) { try connection.rows("EXPLAIN QUERY PLAN " + sql) { $0.text(3) ?? "" } }
                }
            case .postgresql:
                let rows = try connection.rows("""
                    SELECT name, statement, coalesce(array_length(parameter_types, 1), 0) FROM pg_prepared_statements
                    WHERE statement NOT LIKE '%pg_prepared_statements%'
                    """) { ($0.text(0) ?? "", $0.text(1) ?? "", Int($0.int64(2))) }
                return rows.map { name, sql, parameters in
                    PreparedStatement(sql: sql) {
                        // The plan for any parameter values: the one a statement prepared once and run per subject
                        // settles on.
                        try connection.execute("SET plan_cache_mode = force_generic_plan")
                        let arguments = Array(repeating: "NULL", count: parameters).joined(separator: ", ")
                        return try connection.rows("EXPLAIN EXECUTE \(name)" + (parameters > 0 ? "(\(arguments))" : "")) { $0.text(0) ?? "" }
                    }
                }
            }
        }
    }

    /// Adds `subjects` rows to each growing table (of no use but to their size), then on PostgreSQL
    /// gathers the statistics its planner chooses by.
    private func fillGrowingTables(of test: TestStore, subjects: Int) throws {
        let first = 1_000_000, last = first + subjects - 1
        let data = try test.database(.data), keys = try test.database(.keys)
        let series = test.backend == .sqlite
            ? "WITH RECURSIVE g(i) AS (SELECT \(first) UNION ALL SELECT i + 1 FROM g WHERE i < \(last)) SELECT i FROM g"
            : "SELECT i FROM generate_series(\(first), \(last)) AS g(i)"
        let bytes = test.backend == .sqlite ? "randomblob(16)" : "decode(md5(i::text), 'hex')"
        try data.transaction { () throws(DatabaseError) in
            try data.execute("""
                INSERT INTO subjects (id, kind, created_at, updated_at, key_version, last_contacted_at)
                    SELECT i, 'contact', i, i, 1, i FROM (\(series)) AS s;
                INSERT INTO phone_index (key_version, tag, subject_id, check_mac) SELECT 1, i, i, \(bytes) FROM (\(series)) AS s;
                INSERT INTO phone_index (key_version, tag, subject_id, check_mac) SELECT 1, i + 7, i, \(bytes) FROM (\(series)) AS s;
                INSERT INTO email_index (key_version, tag, subject_id, check_mac) SELECT 1, i, i, \(bytes) FROM (\(series)) AS s;
                INSERT INTO phone_index_building (subject_id, updated_at, tag, check_mac) SELECT i, i, i, \(bytes) FROM (\(series)) AS s;
                INSERT INTO email_index_building (subject_id, updated_at, tag, check_mac) SELECT i, i, i, \(bytes) FROM (\(series)) AS s;
                INSERT INTO calls (call_key, subject_id, at, direction) SELECT \(bytes), i, i, 'in' FROM (\(series)) AS s;
                INSERT INTO consent_ledger (subject_id, purpose, state, at, initiator, key_version)
                    SELECT i, 'marketing-email', 'granted', i, 'staff', 1 FROM (\(series)) AS s;
                """)
        }
        try keys.transaction { () throws(DatabaseError) in
            try keys.execute("""
                INSERT INTO subject_keys (subject_id, version, key_id, kek_version, wrapped, created_at)
                    SELECT i, 1, i, 1, \(bytes), i FROM (\(series)) AS s;
                INSERT INTO erased_subjects (subject_id, erased_at) SELECT i + \(subjects), i FROM (\(series)) AS s;
                INSERT INTO tombstones (\(KeyDatabase.tombstoneColumns))
                    SELECT i + \(subjects), 'r', \(bytes), i, 'a', 'r', 1, 1, 0, 0, 0, i, \(bytes) FROM (\(series)) AS s;
                """)
        }
        if test.backend == .postgres {
            try analyzeOwnTables(data)
            try analyzeOwnTables(keys)
        }
    }

    /// Gathers the planner's statistics for the tables of `connection`'s own schema only: a bare
    /// `ANALYZE` takes every table of the database, other tests' schemas too, and can deadlock with a
    /// test dropping its schema at the same time.
    private func analyzeOwnTables(_ connection: any Database) throws {
        let tables = try connection.rows("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()") { $0.text(0) ?? "" }
        try connection.execute("ANALYZE " + tables.joined(separator: ", "))
    }

    /// The columns of index `index`, in order.
    private func indexColumns(of index: String, _ connection: any Database) throws -> [String] {
        switch connection.dialect {
        case .sqlite:
            return try connection.rows("SELECT name FROM pragma_index_info(?) ORDER BY seqno", [.text(index)]) { $0.text(0) ?? "" }
        case .postgresql:
            let definition = try connection.scalarText("SELECT indexdef FROM pg_indexes WHERE indexname = ? AND schemaname = current_schema()",
                                                       [.text(index)]) ?? ""
            guard let open = definition.lastIndex(of: "("), let close = definition.lastIndex(of: ")") else { return [] }
            return definition[definition.index(after: open)..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
    }
}
