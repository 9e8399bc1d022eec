import Foundation

/// Options of a CSV import.
public struct ImportOptions: Sendable {
    /// The kind of rows whose `kind` column is absent or empty.
    public var defaultKind: SubjectKind = .lead
    /// The region for phone numbers without a country code (default: the store's).
    public var region: String?
    /// Refuse the whole file if any row is bad, instead of skipping bad rows.
    public var strict = false
    /// Rows written per transaction: a crash loses at most the batch in flight.
    public var batchSize = 500

    /// The default options.
    public init() {}
}

/// What an import did.
public struct ImportReport: Sendable, Equatable {
    /// A row that was not imported, and why (never the row's content).
    public struct RejectedRow: Sendable, Equatable {
        /// The 1-based line of the file where the row starts.
        public let line: Int
        /// The column at fault, when one is.
        public let column: String?
        /// Why it was refused.
        public let reason: String

        /// The row of an external id whose subject was erased: never re-created.
        static func erased(line: Int, at erasedAt: Date) -> RejectedRow {
            RejectedRow(line: line, column: "external_id", reason: "erased on \(Timestamp.day(erasedAt)): an erased subject is never re-imported")
        }

        /// A rejected row; `column` when one column is at fault.
        init(line: Int, column: String? = nil, reason: String) {
            self.line = line
            self.column = column
            self.reason = reason
        }
    }

    /// A phone number that is stored (encrypted) but could not be normalised, so caller ID cannot find it.
    public struct UnindexedNumber: Sendable, Equatable {
        /// The row's line.
        public let line: Int
        /// The column it came from.
        public let column: String
        /// Why it could not be normalised.
        public let reason: String
    }

    /// Rows that created a subject.
    public internal(set) var created = 0
    /// Rows that updated the subject with the same external id.
    public internal(set) var updated = 0
    /// Rows refused, in file order.
    public internal(set) var rejected: [RejectedRow] = []
    /// Numbers stored but not indexed.
    public internal(set) var unindexed: [UnindexedNumber] = []
}

/// Why an import stopped before the end of the file.
public enum ImportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The header row is missing or has no known column.
    case badHeader(String)
    /// A strict import (`ImportOptions.strict`) and these rows were bad: nothing was imported.
    case rejectedRows([ImportReport.RejectedRow])

    public var description: String {
        switch self {
        case .badHeader(let reason): return "bad header: \(reason)"
        case .rejectedRows(let rows):
            let first = rows.prefix(5).map { "line \($0.line): \($0.reason)" }.joined(separator: "; ")
            return "\(rows.count) bad row(s), nothing imported (strict import): \(first)\(rows.count > 5 ? "; …" : "")"
        }
    }
}
