/// A command-line usage mistake: the message is shown on one line, exit status 2.
struct UsageError: Error, Equatable {
    /// What is wrong, e.g. "unknown option --foo".
    let message: String
}

/// The words of a command line, consumed by name as a command reads its options.
///
/// - Options are the words before a lone `--` that start with `--` (`--name`, `--name VALUE`,
///   `--name=VALUE`) or are exactly `-h`. Every other word is positional, including `-`, `-5` and
///   `+44 20 7946 0958`; after a lone `--`, every word is.
/// - In `--name VALUE`, the value is the next word, even one starting with a single `-`; a word
///   starting with `--` is not taken as a value. Empty values are refused.
/// - Read flags and options before positionals: until `--name` is read, its value looks positional
///   (unless `--name` was declared with `expectValuedOptions`).
/// - `finish()` rejects whatever is left, so a misspelt option is an error, not silently ignored.
struct Arguments {
    private let words: [String]
    private var consumed: [Bool]
    /// The index of the lone `--` that ends options, or `words.count` without one.
    private let endOfOptions: Int
    /// The names read as flags, so `finish()` can say that `--flag=VALUE` takes no value.
    private var flagNames: Set<String> = []
    /// Options that take a value but are read later (`expectValuedOptions`): their values are not positional.
    private var expectedValuedOptions: Set<String> = []

    /// The words after the command's name.
    init(_ words: [String]) {
        self.words = words
        var consumed = Array(repeating: false, count: words.count)
        if let marker = words.firstIndex(of: "--") {
            endOfOptions = marker
            consumed[marker] = true
        } else {
            endOfOptions = words.count
        }
        self.consumed = consumed
    }

    /// True (and consumed) if `--name` is present. `--help`/`-h` handled by `helpRequested`.
    mutating func flag(_ name: String) -> Bool {
        flagNames.insert(name)
        var found = false
        for index in 0..<endOfOptions where !consumed[index] && words[index] == name {
            consumed[index] = true
            found = true
        }
        return found
    }

    /// The value of `--name VALUE` or `--name=VALUE`, consumed; nil when absent; UsageError when given without value or given twice.
    mutating func option(_ name: String) throws(UsageError) -> String? {
        let values = try options(name)
        guard values.count <= 1 else { throw UsageError(message: "\(name) is given more than once") }
        return values.first
    }

    /// Every value of a repeatable option, consumed, in order; UsageError when one is given without value.
    mutating func options(_ name: String) throws(UsageError) -> [String] {
        var values: [String] = []
        let prefix = name + "="
        var index = 0
        while index < endOfOptions {
            defer { index += 1 }
            guard !consumed[index] else { continue }
            let word = words[index]
            let value: String
            if word == name {
                let valueIndex = index + 1
                guard valueIndex < endOfOptions, !consumed[valueIndex], !words[valueIndex].hasPrefix("--") else {
                    throw UsageError(message: "\(name) needs a value")
                }
                value = words[valueIndex]
                consumed[valueIndex] = true
            } else if word.hasPrefix(prefix) {
                value = String(word.dropFirst(prefix.count))
            } else {
                continue
            }
            guard !value.isEmpty else { throw UsageError(message: "\(name) needs a value") }
            consumed[index] = true
            values.append(value)
        }
        return values
    }

    /// Declares options that take a value and will be read after the positional words, so that in
    /// `--name VALUE` the VALUE is not taken as positional meanwhile.
    mutating func expectValuedOptions(_ names: [String]) {
        expectedValuedOptions.formUnion(names)
    }

    /// The next positional word (not starting with `--`, except after a lone `--` which ends options;
    /// not the value of an expected option), consumed.
    mutating func positional() -> String? {
        var index = 0
        while index < words.count {
            defer { index += 1 }
            guard !consumed[index] else { continue }
            guard isOption(index) else {
                consumed[index] = true
                return words[index]
            }
            if expectedValuedOptions.contains(words[index]), index + 1 < endOfOptions, !consumed[index + 1],
               !words[index + 1].hasPrefix("--") {
                index += 1
            }
        }
        return nil
    }

    /// All remaining positional words, consumed, in order.
    mutating func remainingPositionals() -> [String] {
        var result: [String] = []
        while let word = positional() { result.append(word) }
        return result
    }

    /// Whether `--help` or `-h` was present (consumed).
    mutating func helpRequested() -> Bool {
        let long = flag("--help")
        let short = flag("-h")
        return long || short
    }

    /// Throws UsageError naming the first unconsumed word ("unknown option --foo", "unexpected
    /// argument 2").
    ///
    /// An option is named without its `=VALUE`, which could hold anything, even a key; a positional
    /// word is named by its position only, since it may be a phone number or a name.
    func finish() throws(UsageError) {
        guard let index = consumed.firstIndex(of: false) else { return }
        let word = words[index]
        guard isOption(index) else { throw UsageError(message: "unexpected argument \(index + 1) (one too many)") }
        let name = String(word.prefix { $0 != "=" })
        if name != word, flagNames.contains(name) {
            throw UsageError(message: "\(name) takes no value")
        }
        throw UsageError(message: "unknown option \(name)")
    }

    /// Whether the word at `index` is an option rather than a positional word.
    private func isOption(_ index: Int) -> Bool {
        index < endOfOptions && (words[index].hasPrefix("--") || words[index] == "-h")
    }
}
