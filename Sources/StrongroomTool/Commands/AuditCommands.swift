import Foundation
import Strongroom

/// `strongroom audit verify`: checks the audit chain and its signed head.
struct AuditVerifyCommand: StoreCommand {
    static let name = "audit verify"
    static let abstract = "check the audit log: every MAC, the chain, and the signed head"
    static let help = """
        Usage: strongroom audit verify [--accept-acknowledged] [--json]

        Recomputes every entry's HMAC-SHA256 chain under the audit key and compares the log's end with
        the signed chain head in the key database. Exit status 0 when the log is intact; 1 naming the
        first bad entry (edited, deleted, inserted, reordered), or the sequence number it expected when
        entries are missing from the end, a missing signed head, or a torn last line.

        Gaps recorded with `strongroom audit acknowledge-gap` are listed (who, when, why, which
        entries were lost) and, being entries lost for good, still make the exit status 1 unless
        --accept-acknowledged is given.

          --accept-acknowledged   exit 0 when the only findings are acknowledged gaps (still listed)

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
        let acknowledgedGaps: [String]
    }

    static let takesJSON = true
    let acceptAcknowledged: Bool

    init(parsing arguments: inout Arguments) throws(UsageError) {
        acceptAcknowledged = arguments.flag("--accept-acknowledged")
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let result = try store.verifyAuditLog()
        let passed = acceptAcknowledged ? result.isIntactExceptAcknowledgedGaps : result.isIntact
        if console.json {
            try console.printJSON(Output(intact: passed, verifiedEntries: result.verifiedEntries,
                                         lastSequence: result.lastSequence, headSequence: result.headSequence,
                                         problem: result.problem?.description,
                                         acknowledgedGaps: result.acknowledgedGaps.map(\.description)))
            return passed ? .success : .failure
        }
        // An acknowledgement's actor and reason are stored text: escaped like every stored value.
        for gap in result.acknowledgedGaps { console.printEscaped("acknowledged gap: \(gap)") }
        if let problem = result.problem {
            console.printEscaped("audit log verification FAILED after \(result.verifiedEntries) good entries: \(problem)")
        } else if result.acknowledgedGaps.isEmpty {
            console.print("audit log intact: \(result.verifiedEntries) entries verified, signed head at entry \(result.headSequence)")
        } else {
            console.print("""
                audit log intact but for \(result.acknowledgedGaps.count) acknowledged gap(s): \(result.verifiedEntries) entries \
                verified, signed head at entry \(result.headSequence)\(passed ? "" : " (--accept-acknowledged to accept them)")
                """)
        }
        return passed ? .success : .failure
    }
}

/// `strongroom audit acknowledge-gap`: records, for ever, entries lost from the log's end, so that the
/// store reads and writes again.
struct AuditAcknowledgeGapCommand: StoreCommand {
    static let name = "audit acknowledge-gap"
    static let abstract = "record entries lost from the audit log's end, so the store works again"
    static let help = """
        Usage: strongroom audit acknowledge-gap --reason TEXT [--json]

        When the audit log ends before its signed chain head (entries cut off), or the head is missing
        or names another entry, the store refuses every read and write (exit 3), and `audit verify`
        reports it. This appends a signed entry naming the lost range (the head's sequence number and
        MAC, the last entry left), who (--actor) and why (--reason), chained after the last entry left,
        and moves the signed head to it: the store works again. The gap is never erased: `audit verify`
        lists it and exits 1 unless given --accept-acknowledged. Investigate first (what removed the
        entries?), and keep personal data out of the reason: it is kept in clear in the log.
        Exit status 0 when recorded; 1 when there is no gap to acknowledge.

          --reason TEXT   why the gap is acknowledged (required)

        \(StoreOptions.helpPointer)

        Example:
          strongroom audit acknowledge-gap --reason "incident 2026-31: segment cut, see ticket 881" --actor dpo \\
            --store ./crm-store --key-file ./crm-store.key
        """

    struct Output: Encodable {
        let kind: String
        let expected: UInt64
        let found: UInt64
    }

    static let takesJSON = true
    let reason: String

    init(parsing arguments: inout Arguments) throws(UsageError) {
        guard let reason = try arguments.option("--reason") else { throw UsageError(message: "give --reason TEXT") }
        self.reason = reason
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let gap = try store.acknowledgeAuditGap(reason: reason, context: context)
        if console.json {
            try console.printJSON(Output(kind: gap.kind.rawValue, expected: gap.expected, found: gap.found))
        } else {
            console.print("gap acknowledged and recorded in the audit log: \(gap)")
        }
        return .success
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
struct AuditShowCommand: StoreCommand {
    static let name = "audit show"
    static let abstract = "show audit entries, filtered by subject, actor or time"
    static let help = """
        Usage: strongroom audit show [--subject ID] [--actor A] [--since T] [--until T] [--action A] [--json]

        One line per entry: time, sequence number, action, outcome, actor, purpose, subject and the
        fields touched (names only: the log never holds personal data). --json prints each entry as
        a JSON object per line. Only a log that verifies is shown (every MAC, the chain, the end
        against the signed head; acknowledged gaps accepted): otherwise nothing is printed and the
        exit status is 1, naming the first bad entry (segment, line, sequence number).

          --subject ID   entries about this subject (store id or external id)
          --actor A      entries by this actor
          --since T      entries at or after T (RFC 3339 or YYYY-MM-DD)
          --until T      entries at or before T (RFC 3339; a date YYYY-MM-DD includes that whole day)
          --action A     entries of this action: \(AuditShowCommand.actionNames)

        \(StoreOptions.helpPointer)
        (Here --actor filters the entries: reading the log decrypts nothing, so nothing is logged.)

        Example:
          strongroom audit show --subject crm-4242-2 --since 2026-11-01 --until 2026-11-30 --action decrypt \\
            --store ./crm-store --key-file ./crm-store.key
        """

    /// The actions `--action` takes, for help and errors.
    static let actionNames = AuditEvent.Action.allCases.map(\.rawValue).joined(separator: ", ")

    static let takesJSON = true
    let selection: AuditSelection
    let until: Date?
    let action: AuditEvent.Action?

    init(parsing arguments: inout Arguments) throws(UsageError) {
        selection = try AuditSelection(parsing: &arguments)
        until = try AuditSelection.time(option: "--until", &arguments).map { time in
            // A date alone names a whole day: up to its last instant.
            time.isDateOnly ? time.date.addingTimeInterval(86_400 - 0.001) : time.date
        }
        if let name = try arguments.option("--action") {
            guard let action = AuditEvent.Action(rawValue: name) else {
                throw UsageError(message: "unknown --action: it takes one of \(AuditShowCommand.actionNames)")
            }
            self.action = action
        } else {
            action = nil
        }
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        var count = 0
        var filter = try selection.filter(in: store)
        (filter.until, filter.action) = (until, action)
        try store.auditEntries(filter) { entry, line in
            count += 1
            if console.json {
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
        if !console.json && count == 0 { console.print("no matching entries") }
        return .success
    }
}

/// `strongroom audit export`: JSON lines for SIEM ingestion.
struct AuditExportCommand: StoreCommand {
    static let name = "audit export"
    static let abstract = "export audit entries as JSON lines for a SIEM"
    static let help = """
        Usage: strongroom audit export --format jsonl [--since T]

        Prints the log's entries, as written (each with its chain MAC), one JSON object per line.
        Only a log that verifies is exported (as for `audit show`): otherwise nothing is printed and
        the exit status is 1, naming the first bad entry.

          --format jsonl   the only format
          --since T        entries at or after T (RFC 3339 or YYYY-MM-DD)

        \(StoreOptions.helpPointer)

        Example:
          strongroom audit export --format jsonl --since 2026-11-01 --store ./crm-store --key-file ./crm-store.key > audit.jsonl
        """

    let selection: AuditSelection

    init(parsing arguments: inout Arguments) throws(UsageError) {
        guard let format = try arguments.option("--format") else { throw UsageError(message: "give --format jsonl") }
        guard format == "jsonl" else { throw UsageError(message: "unknown format \(format): only jsonl is supported") }
        selection = try AuditSelection(parsing: &arguments)
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        try store.auditEntries(try selection.filter(in: store)) { _, line in console.print(String(decoding: line, as: UTF8.self)) }
        return .success
    }
}

/// Which audit entries `audit show` and `audit export` print: `--subject`, `--actor`, `--since`.
/// `--actor` is taken as the filter here, before the store options: reading the log decrypts nothing,
/// so no access context is logged.
struct AuditSelection {
    /// The filter without its subject, which only the store resolves.
    let filter: AuditFilter
    /// The subject as given (store id or external id).
    let subject: String?

    init(parsing arguments: inout Arguments) throws(UsageError) {
        var filter = AuditFilter()
        subject = try arguments.option("--subject")
        filter.actor = try arguments.option("--actor")
        filter.since = try AuditSelection.time(option: "--since", &arguments)?.date
        self.filter = filter
    }

    /// The time `option` gives (RFC 3339 or a date alone, YYYY-MM-DD), and whether it was a date alone.
    static func time(option: String, _ arguments: inout Arguments) throws(UsageError) -> (date: Date, isDateOnly: Bool)? {
        guard let text = try arguments.option(option) else { return nil }
        if let date = ISO8601DateFormatter().date(from: text) { return (date, false) }
        guard let date = ISO8601DateFormatter.dateOnly.date(from: text) else {
            throw UsageError(message: "\(option) takes an RFC 3339 time or a date (YYYY-MM-DD)")
        }
        return (date, true)
    }

    /// The filter with the subject resolved in `store`: an erased subject's id still selects its (kept) audit trail.
    func filter(in store: Store) throws -> AuditFilter {
        var resolved = filter
        if let subject {
            do { resolved.subject = try store.resolve(subject) } catch StoreError.subjectErased(let id) { resolved.subject = id }
        }
        return resolved
    }
}
