import Foundation
import Strongroom

/// `strongroom audit verify`: checks the audit chain and its signed head.
enum AuditVerifyCommand: Command {
    static let name = "audit verify"
    static let abstract = "check the audit log: every MAC, the chain, and the signed head"
    static let help = """
        Usage: strongroom audit verify [--json]

        Recomputes every entry's HMAC-SHA256 chain under the audit key and compares the log's end with
        the signed chain head in the key database. Exit status 0 when the log is intact; 1 naming the
        first bad entry (edited, deleted, inserted, reordered), or the sequence number it expected when
        entries are missing from the end, or a torn last line.

        \(StoreOptions.helpPointer)

        Example:
          strongroom audit verify --store ./crm-store --key-file ./crm-store.key
        """

    struct Output: Encodable {
        let intact: Bool
        let verifiedEntries: Int
        let lastSequence: UInt64
        let headSequence: UInt64
        let problem: String?
    }

    static func run(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        let json = arguments.flag("--json")
        let options = try StoreOptions.parse(&arguments, console, defaultPurpose: .admin)
        try arguments.finish()
        let store = try options.open()
        defer { store.close() }
        let result = try store.verifyAuditLog()
        if json {
            try console.printJSON(Output(intact: result.isIntact, verifiedEntries: result.verifiedEntries,
                                         lastSequence: result.lastSequence, headSequence: result.headSequence,
                                         problem: result.problem?.description))
        } else if let problem = result.problem {
            console.printEscaped("audit log verification FAILED after \(result.verifiedEntries) good entries: \(problem)")
        } else {
            console.print("audit log intact: \(result.verifiedEntries) entries verified, signed head at entry \(result.headSequence)")
        }
        return result.isIntact ? .success : .failure
    }
}

extension ISO8601DateFormatter {
    /// Parses YYYY-MM-DD.
    static var dateOnly: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        return formatter
    }
}

/// `strongroom audit show`: entries for people, or JSON for tools.
enum AuditShowCommand: Command {
    static let name = "audit show"
    static let abstract = "show audit entries, filtered by subject, actor or time"
    static let help = """
        Usage: strongroom audit show [--subject ID] [--actor A] [--since T] [--json]

        One line per entry: time, sequence number, action, outcome, actor, purpose, subject and the
        fields touched (names only: the log never holds personal data). --json prints each entry as
        a JSON object per line.

          --subject ID   entries about this subject (store id or external id)
          --actor A      entries by this actor
          --since T      entries at or after T (RFC 3339 or YYYY-MM-DD)

        \(StoreOptions.helpPointer)
        (Here --actor filters the entries: reading the log decrypts nothing, so nothing is logged.)

        Example:
          strongroom audit show --subject crm-4242-2 --since 2026-11-01 --store ./crm-store --key-file ./crm-store.key
        """

    static func run(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        let json = arguments.flag("--json")
        let (filter, subject, options) = try parseFilter(&arguments, console)
        try arguments.finish()
        let store = try options.open()
        defer { store.close() }
        var resolved = filter
        if let subject { resolved.subject = try auditSubject(subject, in: store) }
        var count = 0
        try store.auditEntries(resolved) { entry, line in
            count += 1
            if json {
                console.print(String(decoding: line, as: UTF8.self))
            } else {
                var text = "\(entry.time)  #\(entry.seq)  \(entry.action) \(entry.outcome)  \(entry.actor) for \(entry.purpose)"
                if let subject = entry.subject { text += "  subject \(subject)" }
                if !entry.fields.isEmpty { text += "  [\(entry.fields.joined(separator: ","))]" }
                if let client = entry.client { text += "  from \(client)" }
                if let detail = entry.detail { text += "  (\(detail))" }
                console.printEscaped(text)
            }
        }
        if !json && count == 0 { console.print("no matching entries") }
        return .success
    }
}

/// `strongroom audit export`: JSON lines for SIEM ingestion.
enum AuditExportCommand: Command {
    static let name = "audit export"
    static let abstract = "export audit entries as JSON lines for a SIEM"
    static let help = """
        Usage: strongroom audit export --format jsonl [--since T]

        Prints the log's entries, as written (each with its chain MAC), one JSON object per line.

          --format jsonl   the only format
          --since T        entries at or after T (RFC 3339 or YYYY-MM-DD)

        \(StoreOptions.helpPointer)

        Example:
          strongroom audit export --format jsonl --since 2026-11-01 --store ./crm-store --key-file ./crm-store.key > audit.jsonl
        """

    static func run(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        guard let format = try arguments.option("--format") else { throw UsageError(message: "give --format jsonl") }
        guard format == "jsonl" else { throw UsageError(message: "unknown format \(format): only jsonl is supported") }
        let (filter, subject, options) = try parseFilter(&arguments, console)
        try arguments.finish()
        let store = try options.open()
        defer { store.close() }
        var resolved = filter
        if let subject { resolved.subject = try auditSubject(subject, in: store) }
        try store.auditEntries(resolved) { _, line in console.print(String(decoding: line, as: UTF8.self)) }
        return .success
    }
}

/// The subject an audit filter names: an erased subject's id still selects its (kept) audit trail.
private func auditSubject(_ reference: String, in store: Store) throws -> SubjectID {
    do { return try store.resolve(reference) } catch StoreError.subjectErased(let id) { return id }
}

/// Reads the filter options, then the store options. `--actor` is taken as the filter here: reading
/// the log decrypts nothing, so no access context is logged.
private func parseFilter(_ arguments: inout Arguments, _ console: Console) throws -> (AuditFilter, String?, StoreOptions) {
    var filter = AuditFilter()
    let subject = try arguments.option("--subject")
    filter.actor = try arguments.option("--actor")
    if let since = try arguments.option("--since") {
        guard let date = ISO8601DateFormatter().date(from: since) ?? ISO8601DateFormatter.dateOnly.date(from: since) else {
            throw UsageError(message: "--since takes an RFC 3339 time or a date (YYYY-MM-DD)")
        }
        filter.since = date
    }
    return (filter, subject, try StoreOptions.parse(&arguments, console, defaultPurpose: .admin))
}
