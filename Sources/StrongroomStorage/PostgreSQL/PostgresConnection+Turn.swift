internal import CPostgreSQL

/// A short transaction holding the connection's write lock, in two round trips: the first begins it,
/// takes the lock and reads; the second runs one statement and commits. For work that others wait on
/// (an audit log's appends): the lock is held for about one round trip, where `transaction` holds it
/// for one more per statement and one for the commit.
extension PostgresConnection {
    /// Begins a transaction, takes this connection's write lock (`transaction`'s) and runs `read` (SQL
    /// text without parameters), in one round trip; each row `read` returns goes to `row`. The
    /// transaction stays open until `forEachRowAndCommit` or `rollBack`; on a failure here it is rolled back.
    public func beginLocked(reading read: String, _ row: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) {
        try reconnectIfLost()
        // Each statement of a multi-statement query takes its own snapshot (READ COMMITTED): `read` sees
        // every commit made before the lock was granted.
        let result = PostgresResult(unsafe PQexec(handle, "BEGIN; SELECT pg_advisory_xact_lock(\(writeLockKey)); " + read))
        inTransaction = true
        do {
            try check(result, sql: read)
            for each in try result.rows(sql: read) { try row(each) }
        } catch {
            rollBack()
            throw error
        }
    }

    /// Runs `sql` with `values` in the transaction `beginLocked` began, then commits it, in one round
    /// trip (libpq's pipeline mode); each row `sql` returns goes to `row`. A failed statement or a
    /// commit the server turned into a rollback is an error, and the transaction is over either way.
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/libpq-pipeline-mode.html>
    public func forEachRowAndCommit(_ sql: String, _ values: [SQLValue], _ row: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) {
        let results: [PostgresResult]
        do {
            let name = try preparedName(sql)
            results = try withParameters(values, sql: sql) { count, pointers, lengths, formats in
                guard unsafe PQenterPipelineMode(handle) == 1 else { return [] }
                defer { _ = unsafe PQexitPipelineMode(handle) }
                guard unsafe PQsendQueryPrepared(handle, name, count, pointers, lengths, formats, PostgresConnection.binaryResults) == 1,
                      unsafe PQsendQueryParams(handle, "COMMIT", 0, nil, nil, nil, nil, 0) == 1,
                      unsafe PQpipelineSync(handle) == 1 else { return [] }
                // Each statement's result, then nil; then the sync's. More nils than statements: the connection failed.
                var collected: [PostgresResult] = []
                var ends = 0
                while ends <= 2 {
                    guard let next = unsafe PQgetResult(handle) else { ends += 1; continue }
                    if unsafe PQresultStatus(next) == PGRES_PIPELINE_SYNC { unsafe PQclear(next); break }
                    collected.append(PostgresResult(next))
                }
                return collected
            }
        } catch {
            rollBack()
            throw error
        }
        guard results.count == 2 else {
            rollBack()
            throw DatabaseError(code: .postgresql(sqlState: "08006"),
                                message: "the statement and its commit were not answered: \(unsafe PostgresConnection.trimmed(String(cString: PQerrorMessage(handle))))", sql: sql)
        }
        // A failed statement leaves the transaction aborted (its COMMIT skipped): it is rolled back.
        if let error = results[0].error(connection: handle, sql: sql) {
            rollBack()
            throw error
        }
        inTransaction = false
        try check(results[1], sql: "COMMIT")
        guard results[1].commandStatus == "COMMIT" else {
            throw DatabaseError(code: .postgresql(sqlState: "40000"), message: "the transaction was rolled back by the server", sql: "COMMIT")
        }
        for each in try results[0].rows(sql: sql) { try row(each) }
    }

    /// Ends the transaction `beginLocked` began without its changes.
    public func rollBack() {
        _ = PostgresResult(unsafe PQexec(handle, "ROLLBACK"))
        inTransaction = false
    }
}
