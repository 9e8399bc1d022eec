import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Shows progress of long work on a terminal; silent otherwise.
///
/// On a terminal it redraws one line on standard error, at most five times a second:
/// `label: done/total (pct%) rate/s, ETA mm:ss` (`label: done, rate/s` when the total is unknown).
/// `finish()` ends it with the time taken. Nothing is written when standard error is not a terminal:
/// callers that want a record print a summary instead.
///
/// Not thread-safe: report from the thread doing the work.
final class ProgressLine {
    /// The shortest time between two redraws, in seconds.
    static let redrawInterval = 0.2

    private let label: String
    private let total: Int?
    private let isTerminal: Bool
    private let clock: () -> Double
    private let write: (String) -> Void
    private let start: Double
    private var done = 0
    private var lastDraw: Double?
    private var finished = false

    /// A progress line for `total` units of work (nil when unknown), starting now.
    /// - Parameters:
    ///   - clock: monotonic time in seconds.
    ///   - write: where the text goes (standard error).
    init(label: String, total: Int?, isTerminal: Bool = ProgressLine.standardErrorIsTerminal,
         clock: @escaping () -> Double = { ProcessInfo.processInfo.systemUptime },
         write: @escaping (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }) {
        self.label = label
        self.total = total
        self.isTerminal = isTerminal
        self.clock = clock
        self.write = write
        start = clock()
    }

    /// Whether standard error is a terminal.
    static var standardErrorIsTerminal: Bool { isatty(2) == 1 }

    /// Records that `done` units are finished, redrawing the line unless it was drawn less than `redrawInterval` ago.
    func advance(to done: Int) {
        guard isTerminal, !finished else { return }
        self.done = done
        let now = clock()
        if let lastDraw, now - lastDraw < Self.redrawInterval { return }
        lastDraw = now
        write("\r" + text(now: now, final: false) + "\u{1B}[K")
    }

    /// Draws the final line, with the time taken, and ends it. Later calls do nothing.
    func finish() {
        guard isTerminal, !finished else { return }
        finished = true
        write("\r" + text(now: clock(), final: true) + "\u{1B}[K\n")
    }

    /// The line's text at time `now`: with the ETA, or with the time taken when `final`.
    private func text(now: Double, final: Bool) -> String {
        let elapsed = max(now - start, 0)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        var line = "\(label): \(done)"
        if let total {
            let percent = total > 0 ? Int(Double(min(max(done, 0), total)) * 100 / Double(total)) : 100
            line += "/\(total) (\(percent)%) \(Self.format(rate: rate))/s"
        } else {
            line += ", \(Self.format(rate: rate))/s"
        }
        if final {
            line += ", took " + (elapsed < 60 ? "\(Self.tenths(elapsed)) s" : Self.clockTime(elapsed))
        } else if let total {
            let remaining = max(total - done, 0)
            if remaining == 0 {
                line += ", ETA 00:00"
            } else if rate > 0 {
                line += ", ETA " + Self.clockTime(Double(remaining) / rate)
            } else {
                line += ", ETA --:--"
            }
        }
        return line
    }

    /// A rate with one decimal below 10 ("2.5"), else a whole number ("1234").
    private static func format(rate: Double) -> String {
        rate < 10 ? tenths(rate) : String(Int(min(rate, 1e15).rounded()))
    }

    /// A non-negative number with one decimal, e.g. "2.5".
    private static func tenths(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// A duration as `mm:ss`, or `h:mm:ss` from an hour, or `--:--` from 100 hours (as good as unknown).
    private static func clockTime(_ seconds: Double) -> String {
        guard seconds < 100 * 3600 else { return "--:--" }
        let whole = Int(seconds.rounded())
        func twoDigits(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let (hours, minutes, secs) = (whole / 3600, whole / 60 % 60, whole % 60)
        return hours > 0 ? "\(hours):\(twoDigits(minutes)):\(twoDigits(secs))" : "\(twoDigits(minutes)):\(twoDigits(secs))"
    }
}
