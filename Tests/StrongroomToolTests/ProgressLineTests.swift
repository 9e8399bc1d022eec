@testable import StrongroomTool
import Testing

@Suite("Progress line")
struct ProgressLineTests {
    /// A progress line on a pretend terminal, with a clock the test sets and the text it writes.
    private final class Harness {
        var now = 100.0
        var written: [String] = []
        private(set) var line: ProgressLine!

        init(label: String = "importing", total: Int?, isTerminal: Bool = true) {
            line = ProgressLine(label: label, total: total, isTerminal: isTerminal,
                                clock: { [unowned self] in now }, write: { [unowned self] in written.append($0) })
        }

        /// Advances the clock by `seconds`, then the line to `done`.
        func advance(to done: Int, after seconds: Double) {
            now += seconds
            line.advance(to: done)
        }

        /// What the last write showed, without the redraw and clearing codes.
        var shown: String? {
            written.last.map { String($0.dropFirst().replacing("\u{1B}[K", with: "")) }
        }
    }

    @Test("each draw returns to the start of the line, writes the text and clears the rest")
    func drawFormat() throws {
        let harness = Harness(total: 200)
        harness.advance(to: 50, after: 2)
        #expect(harness.written == ["\rimporting: 50/200 (25%) 25/s, ETA 00:06\u{1B}[K"])
    }

    @Test("rate and ETA", arguments: [
        (200, 50, 2.0, "importing: 50/200 (25%) 25/s, ETA 00:06"),
        (1_000, 999, 1.0, "importing: 999/1000 (99%) 999/s, ETA 00:00"),
        (10_000, 100, 2.0, "importing: 100/10000 (1%) 50/s, ETA 03:18"),
        (1_000_000, 1_000, 10.0, "importing: 1000/1000000 (0%) 100/s, ETA 2:46:30"),
        (100, 5, 2.0, "importing: 5/100 (5%) 2.5/s, ETA 00:38"),
        (100, 1, 60.0, "importing: 1/100 (1%) 0.0/s, ETA 1:39:00"),
        (1_000_000_000, 1, 100.0, "importing: 1/1000000000 (0%) 0.0/s, ETA --:--"),
        (100, 0, 1.0, "importing: 0/100 (0%) 0.0/s, ETA --:--"),
        (100, 100, 4.0, "importing: 100/100 (100%) 25/s, ETA 00:00"),
        (100, 150, 3.0, "importing: 150/100 (100%) 50/s, ETA 00:00"),
        (0, 0, 1.0, "importing: 0/0 (100%) 0.0/s, ETA 00:00"),
    ])
    func arithmetic(total: Int, done: Int, seconds: Double, expected: String) {
        let harness = Harness(total: total)
        harness.advance(to: done, after: seconds)
        #expect(harness.shown == expected)
    }

    @Test("no time elapsed yet: a zero rate and no ETA")
    func atStart() {
        let harness = Harness(total: 10)
        harness.advance(to: 3, after: 0)
        #expect(harness.shown == "importing: 3/10 (30%) 0.0/s, ETA --:--")
    }

    @Test("an unknown total shows the count and rate only")
    func unknownTotal() {
        let harness = Harness(label: "rotating", total: nil)
        harness.advance(to: 1_200, after: 4)
        #expect(harness.shown == "rotating: 1200, 300/s")
        harness.now += 1
        harness.line.finish()
        #expect(harness.shown == "rotating: 1200, 240/s, took 5.0 s\n")
    }

    @Test("redraws at most five times a second")
    func throttled() {
        let harness = Harness(total: 1_000)
        for done in 1...1_000 { harness.advance(to: done, after: 0.001) }
        #expect(harness.written.count == 5)
    }

    @Test("the first advance draws at once, the next only 0.2 s after the last draw")
    func firstDraw() {
        let harness = Harness(total: 10)
        harness.advance(to: 1, after: 0.0625)
        #expect(harness.written.count == 1)
        harness.advance(to: 2, after: 0.125)
        harness.advance(to: 2, after: 0.0625)
        #expect(harness.written.count == 1)
        harness.advance(to: 3, after: 0.015625)
        #expect(harness.written.count == 2)
        #expect(harness.shown == "importing: 3/10 (30%) 11/s, ETA 00:01")
    }

    @Test("finish draws the final line with the time taken, ends it, and only once")
    func finish() {
        let harness = Harness(total: 1_000)
        harness.advance(to: 400, after: 1)
        harness.advance(to: 1_000, after: 0.1)
        harness.now += 1.4
        harness.line.finish()
        #expect(harness.written.last == "\rimporting: 1000/1000 (100%) 400/s, took 2.5 s\u{1B}[K\n")
        let count = harness.written.count
        harness.line.finish()
        harness.advance(to: 2_000, after: 10)
        #expect(harness.written.count == count)
    }

    @Test("finish shows a long time as mm:ss or h:mm:ss", arguments: [
        (59.94, "took 59.9 s"), (75, "took 01:15"), (3_599.4, "took 59:59"), (3_723, "took 1:02:03"),
    ])
    func finishTimes(seconds: Double, expected: String) throws {
        let harness = Harness(total: 10)
        harness.now += seconds
        harness.line.finish()
        let shown = try #require(harness.shown)
        #expect(shown.hasSuffix(", \(expected)\n"))
    }

    @Test("finish without any advance still shows the line")
    func finishOnly() {
        let harness = Harness(total: 10)
        harness.now += 2
        harness.line.finish()
        #expect(harness.shown == "importing: 0/10 (0%) 0.0/s, took 2.0 s\n")
    }

    @Test("off a terminal it writes nothing")
    func silentOffTerminal() {
        let harness = Harness(total: 10, isTerminal: false)
        harness.advance(to: 5, after: 1)
        harness.advance(to: 10, after: 1)
        harness.line.finish()
        #expect(harness.written.isEmpty)
    }

    @Test("standard error under the test runner is a terminal or not, without failing")
    func standardErrorProbe() {
        _ = ProgressLine.standardErrorIsTerminal
        let line = ProgressLine(label: "probe", total: 1, isTerminal: false)
        line.advance(to: 1)
        line.finish()
    }
}
