import Foundation
import Strongroom

/// `strongroom retention apply`: erases the subjects untouched for longer than a period.
struct RetentionApplyCommand: StoreCommand {
    static let name = "retention apply"
    static let abstract = "erase subjects untouched for longer than a period, each with a receipt"
    static let help = """
        Usage: strongroom retention apply --untouched-for DURATION [--kind lead|contact] [--reason TEXT] [--dry-run] [--json]

        Erases every subject whose last contact (or creation, when never contacted) is older than
        DURATION before now, each as `subject erase` does: its own transaction, audit entry, tombstone
        and receipt. Restricted subjects are skipped and counted: restriction often keeps data for legal
        claims (GDPR Art. 18(1)(c)). Progress is shown on a terminal. An interrupted run leaves every
        erasure it made complete: run it again to finish the job.

          --untouched-for DURATION   a whole number and a unit: 90d (days), 24m (months), 2y (years)
          --kind lead|contact        only leads, or only contacts (default: both)
          --reason TEXT              the erasures' reason, no personal data (default: "retention: untouched
                                     for DURATION")
          --dry-run                  list what would be erased (clear operational fields only); change nothing
          --json                     one object: cutoff, dry_run, erased, skipped_restricted, subjects,
                                     receipts

        \(StoreOptions.helpPointer)

        Example:
          strongroom retention apply --untouched-for 24m --kind lead --dry-run --store ./crm-store --key-file ./crm-store.key
        """

    /// A selected subject's clear operational fields.
    struct SubjectOutput: Encodable {
        let id: String
        @NullWhenAbsent var externalId: String?
        let kind: String
        let created: String
        @NullWhenAbsent var lastContacted: String?
    }

    /// The `--json` output.
    struct Output: Encodable {
        let cutoff: String
        let dryRun: Bool
        let erased: Int
        let skippedRestricted: Int
        let skippedContactedSince: Int
        let subjects: [SubjectOutput]
        let receipts: [ReceiptOutput]
    }

    static let takesJSON = true
    let period: RetentionPeriod
    let kind: SubjectKind?
    let reason: String?
    let dryRun: Bool

    init(parsing arguments: inout Arguments) throws(UsageError) {
        guard let text = try arguments.option("--untouched-for") else { throw UsageError(message: "give --untouched-for DURATION") }
        guard let period = RetentionPeriod(text) else { throw UsageError(message: "--untouched-for takes \(RetentionPeriod.accepted)") }
        self.period = period
        if let text = try arguments.option("--kind") {
            guard let kind = SubjectKind(rawValue: text) else { throw UsageError(message: "--kind takes lead or contact") }
            self.kind = kind
        } else {
            kind = nil
        }
        reason = try arguments.option("--reason")
        dryRun = arguments.flag("--dry-run")
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let report = try withProgress("erasing", console) { progress in
            try store.applyRetention(untouchedBefore: period.cutoff(before: Date()), kind: kind,
                                     reason: reason ?? "retention: untouched for \(period)", dryRun: dryRun, context: context,
                                     progress: progress)
        }
        let kept = Set(report.skippedContactedSince)
        let subjects = report.subjects.filter { !kept.contains($0.id) }.map { subject in
            SubjectOutput(id: String(subject.id.rawValue), externalId: subject.metadata.externalID, kind: subject.metadata.kind.rawValue,
                          created: formatTime(subject.createdAt), lastContacted: subject.metadata.lastContactedAt.map(formatTime))
        }
        if console.json {
            try console.printJSON(Output(cutoff: formatTime(report.cutoff), dryRun: report.dryRun, erased: report.receipts.count,
                                         skippedRestricted: report.skippedRestricted.count,
                                         skippedContactedSince: report.skippedContactedSince.count, subjects: subjects,
                                         receipts: report.receipts.map(ReceiptOutput.init)))
            return .success
        }
        for subject in subjects {
            console.printEscaped("\(report.dryRun ? "would erase" : "erased") \(subject.kind) \(subject.id)"
                                 + (subject.externalId.map { " (\($0))" } ?? "")
                                 + "  created \(subject.created)  last contacted \(subject.lastContacted ?? "never")")
        }
        let verb = report.dryRun ? "would erase \(subjects.count)" : "erased \(report.receipts.count)"
        console.print("\(verb) subject(s) untouched since \(formatTime(report.cutoff)); \(report.skippedRestricted.count) restricted "
                      + "subject(s) skipped" + (kept.isEmpty ? "" : "; \(kept.count) contacted since the selection kept")
                      + (report.dryRun ? " (dry run: nothing changed)" : "; receipts: strongroom audit receipt ID"))
        return .success
    }
}
