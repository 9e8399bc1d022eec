import Foundation
import StrongroomStorage

/// How long a subject may stay untouched before a retention rule erases it: a whole number of days,
/// months or years, written `90d`, `24m`, `2y`.
public struct RetentionPeriod: Sendable, Hashable, CustomStringConvertible {
    /// The calendar unit.
    public enum Unit: String, Sendable, Hashable {
        case days = "d"
        case months = "m"
        case years = "y"
    }

    /// How many units.
    public let count: Int
    /// Which unit.
    public let unit: Unit

    /// What the text form accepts, for error messages.
    public static let accepted = "a whole number followed by d (days), m (months) or y (years), such as 90d, 24m or 2y"

    /// Parses `90d`, `24m`, `2y` (a positive whole number, at most 9999, and a unit); nil otherwise.
    public init?(_ text: String) {
        guard let last = text.last, let unit = Unit(rawValue: String(last)),
              let count = Int(text.dropLast()), text.dropLast().allSatisfy(\.isASCII), (1...9999).contains(count) else { return nil }
        self.count = count
        self.unit = unit
    }

    public var description: String { "\(count)\(unit.rawValue)" }

    /// The moment `now` minus this period, in the Gregorian calendar in UTC (a month back from 31 March
    /// is the last day of February).
    public func cutoff(before now: Date) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let component: Calendar.Component = switch unit {
        case .days: .day
        case .months: .month
        case .years: .year
        }
        return calendar.date(byAdding: component, value: -count, to: now) ?? .distantPast
    }
}

/// What a retention run selected and did (`Store.applyRetention`).
public struct RetentionReport: Sendable, Hashable {
    /// The subjects untouched (last contact, or creation when never contacted) before this moment were selected.
    public let cutoff: Date
    /// Whether nothing was changed (`dryRun`).
    public let dryRun: Bool
    /// The selected subjects that were erased, or with `dryRun` would be, in id order (clear fields only).
    public internal(set) var subjects: [SubjectSummary] = []
    /// The receipts of the erasures made (empty with `dryRun`).
    public internal(set) var receipts: [ErasureReceipt] = []
    /// Selected subjects skipped because their processing is restricted: restriction often keeps data
    /// for legal claims (GDPR Art. 18(1)(c)), which an erasure would defeat.
    public internal(set) var skippedRestricted: [SubjectID] = []
    /// Selected subjects kept because they were contacted (or re-created) after the run selected them:
    /// each erasure checks the cutoff again in its own transaction.
    public internal(set) var skippedContactedSince: [SubjectID] = []
}

extension Store {
    /// Erases every subject (of `kind`, or both kinds) whose last contact — or creation, when it was never
    /// contacted — is strictly before `cutoff`, each by its own `erase` (its own transaction, audit entry,
    /// tombstone and receipt), with `reason` (no personal data). Restricted subjects are skipped and
    /// listed. With `dryRun`, lists what would be erased and changes nothing.
    ///
    /// A subject contacted after the selection is kept (`skippedContactedSince`): each erasure checks the
    /// cutoff again inside its own transaction.
    ///
    /// The selection is one pass over the subjects' clear columns (no decrypt), made again by each run:
    /// a run interrupted at any point leaves every erasure it made complete, and the next run erases
    /// the rest. `progress(done, total)` is called after each erasure.
    public func applyRetention(untouchedBefore cutoff: Date, kind: SubjectKind? = nil, reason: String, dryRun: Bool = false,
                               context: AccessContext, progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RetentionReport {
        let selected = try withData { (connection) throws(DatabaseError) in
            try connection.rows("""
                SELECT \(Store.summaryColumns) FROM subjects
                WHERE coalesce(last_contacted_at, created_at) < ?1 AND (kind = ?2 OR ?2 IS NULL) ORDER BY id
                """, [.integer(Store.milliseconds(cutoff)), .text(kind?.rawValue)]) { Store.summary(from: $0, offset: 0) }
        }
        var report = RetentionReport(cutoff: cutoff, dryRun: dryRun)
        report.skippedRestricted = selected.filter(\.isRestricted).map(\.id)
        report.subjects = selected.filter { !$0.isRestricted }
        guard !dryRun else { return report }
        for (done, subject) in report.subjects.enumerated() {
            let erasure: Erasure
            do throws(StoreError) {
                guard let erased = try erase(subject.id, reason: reason, untouchedBefore: cutoff, context: context) else {
                    report.skippedContactedSince.append(subject.id)
                    continue
                }
                erasure = erased
            } catch .subjectNotFound, .subjectErased {
                continue   // erased or deleted by someone else since the selection
            } catch {
                throw error
            }
            report.receipts.append(erasure.receipt)
            try injectFault("retention.erased", done + 1)
            progress(done + 1, report.subjects.count)
        }
        return report
    }
}
