import StrongroomStorage

/// Many rows in few statements, in SQL both backends take: multi-row `VALUES (…), (…)` lists (an
/// `INSERT`, or the `FROM (VALUES …)` of an `UPDATE` or `DELETE`) and `IN (…)` lists, up to
/// `rowsPerStatement` rows to a statement. Used by `SQLiteBackend`'s bulk inserts and lookups and by
/// the rotations' writes of a batch (`Database.runInRows`).
struct MultiRowStatements {
    /// The most rows the caller wants in one statement.
    let rowsPerStatement: Int

    /// The most parameters a statement may have: SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` since
    /// 3.32 (PostgreSQL takes up to 65,535).
    /// Related SQLite documentation: <https://www.sqlite.org/limits.html#max_variable_number>
    static let parameterLimit = 32_766

    /// The rotations' batches: one round trip per 128 rows on PostgreSQL.
    static let rotation = MultiRowStatements(rowsPerStatement: 128)

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

    /// Runs `statement(n)`, the text of a statement taking `n` rows, over `rows` (the same number of
    /// values each), each statement's parameters preceded by `leading`; returns the rows the
    /// statements changed, in all.
    @discardableResult
    func run(_ rows: [[SQLValue]], leading: [SQLValue] = [], on connection: any Database,
             statement: (Int) -> String) throws(DatabaseError) -> Int {
        var changed = 0
        let width = rows.first?.count ?? 0
        for range in chunks(of: rows.count, columns: leading.count + width) {
            // One array filled in place: `joined()`'s flattening copied value by value through the
            // generic sequence (a few per cent of an import's writing thread).
            var parameters = leading
            parameters.reserveCapacity(leading.count + range.count * width)
            for row in rows[range] { parameters.append(contentsOf: row) }
            try connection.run(statement(range.count), parameters)
            changed += connection.changes
        }
        return changed
    }

    /// Inserts `rows` (each one value per column of `columns`) into `table`, followed in each
    /// statement by `suffix` (an `ON CONFLICT` clause, or empty).
    func insert(into table: String, columns: [String], rows: [[SQLValue]], suffix: String = "",
                on connection: any Database) throws(DatabaseError) {
        try insert(count: rows.count, into: table, columns: columns, suffix: suffix, on: connection) { $1.append(contentsOf: rows[$0]) }
    }

    /// Inserts `count` rows into `table`, followed in each statement by `suffix` (an `ON CONFLICT`
    /// clause, or empty): `row(i, &values)` appends row i's values, one per column of `columns`, to
    /// the statement's parameters. No array is made per row, or per statement (one is refilled), and
    /// the values' bytes are bound without an allocation each where the connection can
    /// (`runLendingValues`): an import's writing thread spent a tenth of its time building, copying and
    /// freeing them.
    func insert(count: Int, into table: String, columns: [String], suffix: String = "", on connection: any Database,
                row: (Int, inout [SQLValue]) -> Void) throws(DatabaseError) {
        let head = "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES "
        let tail = suffix.isEmpty ? "" : " " + suffix
        let placeholders = Array(repeating: "?", count: columns.count)
        // Each statement text made once per call (at most about log2(rowsPerStatement) of them).
        var texts: [Int: String] = [:]
        var parameters: [SQLValue] = []
        for range in chunks(of: count, columns: columns.count) {
            parameters.removeAll(keepingCapacity: true)
            parameters.reserveCapacity(range.count * columns.count)
            for position in range { row(position, &parameters) }
            let text = texts[range.count] ?? head + MultiRowStatements.valuesList(range.count, row: placeholders) + tail
            texts[range.count] = text
            try connection.runLendingValues(text, parameters)
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

    /// `count` rows of a VALUES list, each of the parameter expressions `row`: `(?, ?), (?, ?)`.
    static func valuesList(_ count: Int, row: [String]) -> String {
        Array(repeating: "(" + row.joined(separator: ", ") + ")", count: count).joined(separator: ", ")
    }
}

extension Database {
    /// Runs a statement that takes many rows of values at once (a multi-row VALUES list) over `values`,
    /// `valuesPerRow` to a row, each statement's parameters preceded by `leading`: `statement(n)` is
    /// its text for n rows. In the rotations' statement sizes (`MultiRowStatements.rotation`).
    func runInRows(_ values: [SQLValue], valuesPerRow: Int, leading: [SQLValue] = [], statement: (Int) -> String) throws(DatabaseError) {
        let rows = stride(from: 0, to: values.count, by: valuesPerRow).map { Array(values[$0..<$0 + valuesPerRow]) }
        try MultiRowStatements.rotation.run(rows, leading: leading, on: self, statement: statement)
    }
}
