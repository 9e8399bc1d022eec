/// A command-line usage mistake: shown on one line, exit status 2.
struct UsageError: Error, Equatable {
    /// What is wrong, e.g. "unknown option --foo".
    let message: String
}

/// The words of a command line, consumed by name as a command reads its options.
///
/// Options are words starting with `--` (`--name VALUE` or `--name=VALUE`) and `-h`; every other
/// word, including one that starts with `+` or a single `-`, is positional. A lone `--` ends options.
struct Arguments {
    private var words: [String?]
    private let endOfOptions: Int

    /// The words after the command's name.
    init(_ words: [String]) {
        let marker = words.firstIndex(of: "--")
        endOfOptions = marker ?? words.count
        var remaining: [String?] = words
        if let marker { remaining[marker] = nil }
        self.words = remaining
    }

    private func isOption(_ index: Int) -> Bool {
        guard index < endOfOptions, let word = words[index] else { return false }
        return word.hasPrefix("--") || word == "-h"
    }

    /// True (and consumed) if `--name` is present.
    mutating func flag(_ name: String) -> Bool {
        var found = false
        for index in 0..<endOfOptions where words[index] == name {
            words[index] = nil
            found = true
        }
        return found
    }

    /// The value of `--name VALUE` or `--name=VALUE`, consumed; nil when absent.
    /// Throws when the option has no value or is given twice.
    mutating func option(_ name: String) throws(UsageError) -> String? {
        let values = try options(name)
        guard values.count <= 1 else { throw UsageError(message: "\(name) is given more than once") }
        return values.first
    }

    /// Every value of a repeatable option, consumed.
    mutating func options(_ name: String) throws(UsageError) -> [String] {
        var values: [String] = []
        var index = 0
        while index < endOfOptions {
            defer { index += 1 }
            guard let word = words[index] else { continue }
            if word == name {
                guard index + 1 < endOfOptions, let value = words[index + 1] else {
                    throw UsageError(message: "\(name) needs a value")
                }
                values.append(value)
                words[index] = nil
                words[index + 1] = nil
                index += 1
            } else if word.hasPrefix(name + "=") {
                values.append(String(word.dropFirst(name.count + 1)))
                words[index] = nil
            }
        }
        return values
    }

    /// Whether `--help` or `-h` was given (consumed).
    mutating func helpRequested() -> Bool {
        let help = flag("--help")
        let short = flag("-h")
        return help || short
    }

    /// The next positional word, consumed.
    mutating func positional() -> String? {
        for index in words.indices where words[index] != nil && !isOption(index) {
            defer { words[index] = nil }
            return words[index]
        }
        return nil
    }

    /// Every remaining positional word, consumed.
    mutating func remainingPositionals() -> [String] {
        var result: [String] = []
        while let word = positional() { result.append(word) }
        return result
    }

    /// Throws naming the first word nothing consumed.
    func finish() throws(UsageError) {
        for index in words.indices {
            guard let word = words[index] else { continue }
            throw UsageError(message: isOption(index) ? "unknown option \(word)" : "unexpected argument \(word)")
        }
    }
}
