/// A failure reported by PostgreSQL or libpq: the SQLSTATE code and the primary message, never the
/// values bound to the statement nor the server's DETAIL line (which can quote a row's values).
/// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/errcodes-appendix.html>
public struct PostgresError: DatabaseError, Equatable {
    /// The five-character SQLSTATE ("23505" for a unique violation); "08000" when the connection
    /// itself failed, "22000" when Strongroom refused a value before sending it.
    public let sqlState: String
    /// The server's or libpq's primary message (names tables, constraints and hosts, not values).
    public let message: String
    /// The statement's SQL text, when the error belongs to one.
    public let sql: String?

    /// Creates an error from its parts.
    public init(sqlState: String, message: String, sql: String? = nil) {
        self.sqlState = sqlState
        self.message = message
        self.sql = sql
    }

    /// True for class 23, integrity constraint violation.
    public var isConstraintViolation: Bool { sqlState.hasPrefix("23") }

    public var description: String {
        "PostgreSQL error \(sqlState): \(message)"
    }
}
