/// A failure reported by SQLite: its extended result code and message, never the values bound to the statement.
///
/// Bound values can be ciphertext, blind-index tags or identifiers; they stay out of errors so that
/// nothing derived from personal data reaches a log line.
/// Related SQLite documentation: <https://www.sqlite.org/rescode.html>
public struct SQLiteError: DatabaseError, Equatable {
    /// The extended result code (`sqlite3_extended_errcode`).
    public let extendedCode: Int32
    /// SQLite's own message (`sqlite3_errmsg`), which names tables or constraints, not values.
    public let message: String
    /// The statement's SQL text, when the error belongs to one.
    public let sql: String?

    /// Creates an error from its parts.
    public init(extendedCode: Int32, message: String, sql: String? = nil) {
        self.extendedCode = extendedCode
        self.message = message
        self.sql = sql
    }

    /// The primary result code (the low byte of the extended code).
    public var primaryCode: Int32 { extendedCode & 0xFF }

    /// True for `SQLITE_CONSTRAINT` and its extended codes (a unique or check constraint refused the write).
    public var isConstraintViolation: Bool { primaryCode == 19 }

    public var description: String {
        "SQLite error \(extendedCode): \(message)"
    }
}
