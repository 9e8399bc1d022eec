import StrongroomStorage

extension Database {
    /// Runs a statement that takes many rows of values at once (a multi-row VALUES list) over `values`,
    /// `valuesPerRow` to a row, each statement's parameters preceded by `leading`: `statement(n)` is
    /// its text for n rows. The rows go in statements of 128, 64, … 1 rows: one round trip per 128
    /// rows on PostgreSQL, and no more than eight statement texts prepared on either backend.
    func runInRows(_ values: [SQLValue], valuesPerRow: Int, leading: [SQLValue] = [], statement: (Int) -> String) throws {
        var rest = values[...], rows = 128
        while !rest.isEmpty {
            while rest.count < rows * valuesPerRow { rows /= 2 }
            try run(statement(rows), leading + rest.prefix(rows * valuesPerRow))
            rest = rest.dropFirst(rows * valuesPerRow)
        }
    }
}
