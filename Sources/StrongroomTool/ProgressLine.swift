import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Shows the progress of long work on a terminal, as one line redrawn at most five times a second:
/// `label: done/total (pct%) rate/s, ETA mm:ss`. Silent when standard error is not a terminal.
final class ProgressLine {
    private let label: String
    private let total: Int?
    private let isTerminal: Bool
    private let clock: () -> Double
    private let write: (String) -> Void
    private let start: Double
    private var lastDraw = -Double.infinity
    private var done = 0

    /// A progress line for `total` units (nil when unknown).
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

    /// Records that `done` units are finished, redrawing if the last draw is 0.2 s old.
    func advance(to done: Int) {
        self.done = done
        guard isTerminal else { return }
        let now = clock()
        guard now - lastDraw >= 0.2 else { return }
        lastDraw = now
        write("\r" + text(now: now) + "\u{1B}[K")
    }

    /// Draws the final line with the total time, and ends it.
    func finish() {
        guard isTerminal else { return }
        let elapsed = clock() - start
        write("\r" + text(now: clock()) + String(format: ", done in %.1f s", elapsed) + "\u{1B}[K\n")
    }

    /// The line's text at time `now`.
    func text(now: Double) -> String {
        let elapsed = max(now - start, 1e-9)
        let rate = Double(done) / elapsed
        var line = "\(label): \(done)"
        if let total, total > 0 {
            let shown = min(done, total)
            line += "/\(total) (\(shown * 100 / total)%)"
        }
        line += " \(Int(rate.rounded()))/s"
        if let total, rate > 0, done < total {
            let remaining = Int((Double(total - done) / rate).rounded())
            line += String(format: ", ETA %02d:%02d", remaining / 60, remaining % 60)
        }
        return line
    }
}
