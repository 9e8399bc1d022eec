/// A failure reported by a database backend, SQLite or PostgreSQL alike: the backend's code, its
/// message and the statement's SQL text, never the values bound to the statement (they can be
/// ciphertext, blind-index tags or identifiers), so nothing derived from personal data reaches a log
/// line. PostgreSQL's DETAIL line, which can quote a row's values, is left out for the same reason.
public struct DatabaseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The backend's code for the failure.
    public enum Code: Equatable, Sendable {
        /// SQLite's extended result code (`sqlite3_extended_errcode`).
        /// Related SQLite documentation: <https://www.sqlite.org/rescode.html>
        case sqlite(extendedCode: Int32)
        /// PostgreSQL's five-character SQLSTATE ("23505" for a unique violation); "08000" when the
        /// connection itself failed, "22000" when Strongroom refused a value before sending it, "42804"
        /// when a result column has a type Strongroom does not read in binary (`PostgresColumnType`).
        /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/errcodes-appendix.html>
        case postgresql(sqlState: String)
    }

    /// The backend's code.
    public let code: Code
    /// The backend's own message (`sqlite3_errmsg`, PostgreSQL's primary message), which names
    /// tables, constraints and hosts, not values.
    public let message: String
    /// The statement's SQL text (with `?` or `$n` placeholders, never values), when the error
    /// belongs to one.
    public let sql: String?

    /// Creates an error from its parts.
    public init(code: Code, message: String, sql: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
    }

    /// SQLite's extended result code, nil for another backend.
    public var sqliteExtendedCode: Int32? {
        if case .sqlite(let code) = code { return code }
        return nil
    }

    /// SQLite's primary result code (the low byte of the extended code), nil for another backend.
    public var sqlitePrimaryCode: Int32? { sqliteExtendedCode.map { $0 & 0xFF } }

    /// PostgreSQL's SQLSTATE, nil for another backend.
    public var sqlState: String? {
        if case .postgresql(let state) = code { return state }
        return nil
    }

    /// True when a unique, check or foreign-key constraint refused the write: SQLite's
    /// `SQLITE_CONSTRAINT` (19) and its extended codes, PostgreSQL's class 23.
    public var isConstraintViolation: Bool {
        switch code {
        case .sqlite(let extendedCode): return extendedCode & 0xFF == 19
        case .postgresql(let sqlState): return sqlState.hasPrefix("23")
        }
    }

    /// True when a unique constraint (or primary key) refused the write: SQLite's
    /// `SQLITE_CONSTRAINT_UNIQUE` (2067) and `SQLITE_CONSTRAINT_PRIMARYKEY` (1555), PostgreSQL's 23505.
    public var isUniqueViolation: Bool {
        switch code {
        case .sqlite(let extendedCode): return extendedCode == 2067 || extendedCode == 1555
        case .postgresql(let sqlState): return sqlState == "23505"
        }
    }

    public var description: String {
        switch code {
        case .sqlite(let extendedCode): return "SQLite error \(extendedCode): \(message)"
        case .postgresql(let sqlState): return "PostgreSQL error \(sqlState): \(message)"
        }
    }
}
