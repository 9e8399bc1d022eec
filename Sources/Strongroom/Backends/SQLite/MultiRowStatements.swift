import StrongroomStorage

/// Many rows in few statements, in SQLite's SQL: multi-row `INSERT … VALUES (…), (…)` and `IN (…)`
/// lists, up to `rowsPerStatement` rows to a statement (`SQLiteBackend`'s bulk inserts and lookups).
struct MultiRowStatements {
    /// The most rows the backend wants in one statement.
    let rowsPerStatement: Int

    /// The most parameters a statement may have: SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` since 3.32.
    /// Related SQLite documentation: <https://www.sqlite.org/limits.html#max_variable_number>
    static let parameterLimit = 32_766

    /// The row ranges of the statements that carry `count` rows of `columns` values: as many full
    /// statements as fit, then the rest in power-of-two sizes. A connection prepares each statement
    /// text once and keeps it, so whatever the batch sizes a statement has at most about
    /// log2(`rowsPerStatement`) texts.
    func chunks(of count: Int, columns: Int) -> [Range<Int>] {
        var size = 1
        while size * 2 <= min(rowsPerStatement, Self.parameterLimit / max(columns, 1)) { size *= 2 }
        var ranges: [Range<Int>] = []
        var start = 0
        while start < count {
            while size > count - start { size /= 2 }
            ranges.append(start..<start + size)
            start += size
        }
        return ranges
    }

    /// Inserts `rows` (each one value per column of `columns`) into `table`, followed in each
    /// statement by `suffix` (an `ON CONFLICT` clause, or empty).
    func insert(into table: String, columns: [String], rows: [[SQLValue]], suffix: String = "",
                on connection: any Database) throws(DatabaseError) {
        let head = "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES "
        let row = "(" + Array(repeating: "?", count: columns.count).joined(separator: ", ") + ")"
        for range in chunks(of: rows.count, columns: columns.count) {
            let values = Array(repeating: row, count: range.count).joined(separator: ", ")
            try connection.run(head + values + (suffix.isEmpty ? "" : " " + suffix), Array(rows[range].joined()))
        }
    }

    /// Runs `query`, whose last condition is `column IN` a list left for this function to append,
    /// for `keys`, and calls `body` with every row found.
    func forEachRow(_ query: String, in keys: [SQLValue], on connection: any Database,
                    _ body: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) {
        for range in chunks(of: keys.count, columns: 1) {
            let list = Array(repeating: "?", count: range.count).joined(separator: ", ")
            try connection.forEachRow(query + " (\(list))", Array(keys[range]), body)
        }
    }
}
