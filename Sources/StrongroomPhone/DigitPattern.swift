/// A pattern over decimal digits in libphonenumber's metadata notation, compiled once into a small
/// program and matched by backtracking, without Foundation or `Regex`.
///
/// The notation is the subset that PhoneNumberMetadata.xml uses for national number patterns,
/// national prefixes and international prefixes: digits, `\d`, classes (`[2-46-9]`), groups
/// (`(?:…)`, and capturing `(…)`), alternation (`|`), the quantifiers `?`, `*`, `+`, `{n}`, `{m,n}`,
/// and `$` (end of the digits). Alternatives are tried in order, as in Java and Python, so a prefix
/// match ends where libphonenumber's `lookingAt` ends.
struct DigitPattern: Sendable {
    /// One step of the compiled program.
    private enum Step: Sendable {
        /// Consume one digit whose bit is set in the mask.
        case digit(UInt16)
        /// Try the first target, then (if that fails) the second.
        case split(Int, Int)
        case jump(Int)
        /// Record the current position in a capture slot (2g: start of group g, 2g+1: its end).
        case save(Int)
        /// Succeed only at the end of the digits.
        case end
        case match
    }

    /// A pattern as parsed, before compilation.
    private indirect enum Node {
        case digits(UInt16)
        case end
        case sequence([Node])
        case alternation([Node])
        case group(Int, Node)
        case repetition(Node, min: Int, max: Int?)
    }

    /// Where a prefix match ended and what its groups captured.
    struct PrefixMatch {
        /// The number of digits matched.
        var length: Int
        fileprivate var slots: CaptureSlots

        /// The digit offsets captured by group `group` (1-based), nil when it took no part.
        func capture(_ group: Int) -> Range<Int>? {
            guard group >= 1, group <= DigitPattern.maxGroups else { return nil }
            let start = Int(slots[2 * group]), end = Int(slots[2 * group + 1])
            return start >= 0 && end >= start ? start..<end : nil
        }
    }

    fileprivate typealias CaptureSlots = InlineArray<10, Int8>
    fileprivate static let maxGroups = 4

    private let steps: [Step]
    /// The number of capturing groups.
    let groupCount: Int

    /// Compiles `source`. A malformed pattern is a defect of the generated table (the tests compile
    /// every row), so it traps.
    init(_ source: String) {
        var parser = Parser(Array(source.utf8))
        let node = parser.parseAlternation()
        precondition(parser.atEnd && parser.groups <= Self.maxGroups, "malformed digit pattern")
        var steps: [Step] = []
        Self.emit(node, into: &steps)
        steps.append(.match)
        self.steps = steps
        groupCount = parser.groups
    }

    /// Whether the pattern matches all of `digits`.
    func matchesWhole(_ digits: PhoneDigits) -> Bool {
        var slots = CaptureSlots(repeating: -1)
        return run(0, 0, digits, &slots, whole: true) >= 0
    }

    /// The match at the start of `digits` (libphonenumber's `lookingAt`), if any.
    func matchPrefix(_ digits: PhoneDigits) -> PrefixMatch? {
        var slots = CaptureSlots(repeating: -1)
        let end = run(0, 0, digits, &slots, whole: false)
        return end >= 0 ? PrefixMatch(length: end, slots: slots) : nil
    }

    /// Runs the program from `pc` at digit `position`; returns where the match ended, or -1.
    private func run(_ pc: Int, _ position: Int, _ digits: PhoneDigits, _ slots: inout CaptureSlots,
                     whole: Bool) -> Int {
        var pc = pc, position = position
        while true {
            switch steps[pc] {
            case .digit(let mask):
                guard position < digits.count, mask & (1 << digits[position]) != 0 else { return -1 }
                pc += 1
                position += 1
            case .split(let first, let second):
                let end = run(first, position, digits, &slots, whole: whole)
                if end >= 0 { return end }
                pc = second
            case .jump(let target):
                pc = target
            case .save(let slot):
                let saved = slots[slot]
                slots[slot] = Int8(position)
                let end = run(pc + 1, position, digits, &slots, whole: whole)
                if end < 0 { slots[slot] = saved }
                return end
            case .end:
                guard position == digits.count else { return -1 }
                pc += 1
            case .match:
                return !whole || position == digits.count ? position : -1
            }
        }
    }

    // MARK: - Compilation

    private static func emit(_ node: Node, into steps: inout [Step]) {
        switch node {
        case .digits(let mask):
            steps.append(.digit(mask))
        case .end:
            steps.append(.end)
        case .sequence(let nodes):
            for node in nodes { emit(node, into: &steps) }
        case .alternation(let alternatives):
            // split(a, next); a; jump(out); next: split(b, next'); b; jump(out); …; last
            var jumps: [Int] = []
            for (index, alternative) in alternatives.enumerated() {
                if index == alternatives.count - 1 {
                    emit(alternative, into: &steps)
                } else {
                    let split = steps.count
                    steps.append(.split(split + 1, -1))
                    emit(alternative, into: &steps)
                    jumps.append(steps.count)
                    steps.append(.jump(-1))
                    steps[split] = .split(split + 1, steps.count)
                }
            }
            for jump in jumps { steps[jump] = .jump(steps.count) }
        case .group(let index, let inner):
            steps.append(.save(2 * index))
            emit(inner, into: &steps)
            steps.append(.save(2 * index + 1))
        case .repetition(let inner, let min, let max):
            for _ in 0..<min { emit(inner, into: &steps) }
            if let max {
                // Greedy optional copies, each a split to the common exit.
                var splits: [Int] = []
                for _ in min..<max {
                    splits.append(steps.count)
                    steps.append(.split(steps.count + 1, -1))
                    emit(inner, into: &steps)
                }
                for split in splits { steps[split] = .split(split + 1, steps.count) }
            } else {
                let loop = steps.count
                steps.append(.split(loop + 1, -1))
                emit(inner, into: &steps)
                steps.append(.jump(loop))
                steps[loop] = .split(loop + 1, steps.count)
            }
        }
    }

    /// A recursive-descent parser of the notation.
    private struct Parser {
        let bytes: [UInt8]
        var index = 0
        var groups = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { index == bytes.count }
        private var next: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func parseAlternation() -> Node {
            var alternatives = [parseSequence()]
            while next == UInt8(ascii: "|") {
                index += 1
                alternatives.append(parseSequence())
            }
            return alternatives.count == 1 ? alternatives[0] : .alternation(alternatives)
        }

        private mutating func parseSequence() -> Node {
            var nodes: [Node] = []
            while let byte = next, byte != UInt8(ascii: "|"), byte != UInt8(ascii: ")") {
                nodes.append(parseQuantified(parseAtom()))
            }
            return nodes.count == 1 ? nodes[0] : .sequence(nodes)
        }

        private mutating func parseAtom() -> Node {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                return .digits(1 << (byte - UInt8(ascii: "0")))
            case UInt8(ascii: "\\"):
                precondition(next == UInt8(ascii: "d"), "only \\d is supported")
                index += 1
                return .digits(0x3FF)
            case UInt8(ascii: "$"):
                return .end
            case UInt8(ascii: "["):
                var mask: UInt16 = 0
                while let current = next, current != UInt8(ascii: "]") {
                    index += 1
                    if current == UInt8(ascii: "\\") {
                        precondition(next == UInt8(ascii: "d"), "only \\d is supported")
                        index += 1
                        mask |= 0x3FF
                        continue
                    }
                    let low = current - UInt8(ascii: "0")
                    var high = low
                    if next == UInt8(ascii: "-"), index + 1 < bytes.count, bytes[index + 1] != UInt8(ascii: "]") {
                        high = bytes[index + 1] - UInt8(ascii: "0")
                        index += 2
                    }
                    precondition(low <= high && high <= 9, "malformed class")
                    for digit in low...high { mask |= 1 << digit }
                }
                index += 1
                return .digits(mask)
            case UInt8(ascii: "("):
                var capturing = true
                if next == UInt8(ascii: "?") {
                    precondition(index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: ":"), "only (?: groups")
                    index += 2
                    capturing = false
                }
                var group = 0
                if capturing {
                    groups += 1
                    group = groups
                }
                let inner = parseAlternation()
                precondition(next == UInt8(ascii: ")"), "unclosed group")
                index += 1
                return capturing ? .group(group, inner) : inner
            default:
                preconditionFailure("unsupported character in digit pattern")
            }
        }

        private mutating func parseQuantified(_ atom: Node) -> Node {
            switch next {
            case UInt8(ascii: "?"):
                index += 1
                return .repetition(atom, min: 0, max: 1)
            case UInt8(ascii: "*"):
                index += 1
                return .repetition(atom, min: 0, max: nil)
            case UInt8(ascii: "+"):
                index += 1
                return .repetition(atom, min: 1, max: nil)
            case UInt8(ascii: "{"):
                index += 1
                let low = parseNumber()
                var high: Int? = low
                if next == UInt8(ascii: ",") {
                    index += 1
                    high = next == UInt8(ascii: "}") ? nil : parseNumber()
                }
                precondition(next == UInt8(ascii: "}"), "malformed repetition")
                index += 1
                return .repetition(atom, min: low, max: high)
            default:
                return atom
            }
        }

        private mutating func parseNumber() -> Int {
            var value = 0
            while let byte = next, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                index += 1
            }
            return value
        }
    }
}
