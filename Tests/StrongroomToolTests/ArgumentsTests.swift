@testable import StrongroomTool
import Testing

@Suite("Command-line arguments")
struct ArgumentsTests {
    // MARK: Flags

    @Test("a flag is true when present, false when absent, and consumed")
    func flags() throws {
        var arguments = Arguments(["--json", "--strict", "--json"])
        let json = arguments.flag("--json"), strict = arguments.flag("--strict"), quiet = arguments.flag("--quiet")
        #expect(json && strict && !quiet)
        let again = arguments.flag("--json")
        #expect(!again)
        try arguments.finish()
    }

    @Test("a flag with a value is refused, naming the flag only")
    func flagWithValue() {
        var arguments = Arguments(["--json=yes"])
        let json = arguments.flag("--json")
        #expect(!json)
        #expect(throws: UsageError(message: "--json takes no value")) { try arguments.finish() }
    }

    // MARK: Options

    @Test("an option's value, as --name VALUE or --name=VALUE", arguments: [["--region", "GB"], ["--region=GB"]])
    func optionForms(_ words: [String]) throws {
        var arguments = Arguments(words)
        #expect(try arguments.option("--region") == "GB")
        try arguments.finish()
    }

    @Test("an absent option is nil and consumes nothing")
    func absentOption() throws {
        var arguments = Arguments(["--store", "/tmp/s", "file.csv"])
        #expect(try arguments.option("--region") == nil)
        #expect(try arguments.option("--stor") == nil)
        #expect(try arguments.option("--store") == "/tmp/s")
        #expect(arguments.positional() == "file.csv")
        try arguments.finish()
    }

    @Test("only the text after the first = is the value")
    func valueWithEquals() throws {
        var arguments = Arguments(["--reason=a=b", "--regionx=1"])
        #expect(try arguments.option("--reason") == "a=b")
        #expect(try arguments.option("--region") == nil)
        #expect(throws: UsageError(message: "unknown option --regionx")) { try arguments.finish() }
    }

    @Test("a value may start with a single dash or a plus", arguments: ["-", "-5", "-h", "+44 20 7946 0958", "-x"])
    func dashValues(_ value: String) throws {
        var arguments = Arguments(["--at", value, "NUMBER"])
        #expect(try arguments.option("--at") == value)
        #expect(arguments.positional() == "NUMBER")
        try arguments.finish()
    }

    @Test("an option without a value is refused",
          arguments: [["--region"], ["--region", "--json"], ["--region="], ["--region", ""], ["--region", "--", "GB"],
                      ["GB", "--region"]])
    func missingValue(_ words: [String]) {
        var arguments = Arguments(words)
        #expect(throws: UsageError(message: "--region needs a value")) { try arguments.option("--region") }
    }

    @Test("an option given twice is refused, in either form",
          arguments: [["--store", "a", "--store", "b"], ["--store=a", "--store", "b"], ["--store=a", "--store=a"]])
    func optionTwice(_ words: [String]) {
        var arguments = Arguments(words)
        #expect(throws: UsageError(message: "--store is given more than once")) { try arguments.option("--store") }
    }

    @Test("a repeatable option gives every value, in order")
    func repeatable() throws {
        var arguments = Arguments(["--tag", "a", "x", "--tag=b", "--json", "--tag", "c"])
        #expect(try arguments.options("--tag") == ["a", "b", "c"])
        #expect(try arguments.options("--tag") == [])
        #expect(try arguments.options("--other") == [])
        let json = arguments.flag("--json")
        #expect(json)
        #expect(arguments.remainingPositionals() == ["x"])
        try arguments.finish()
    }

    @Test("a repeatable option refuses a missing value")
    func repeatableMissingValue() {
        var arguments = Arguments(["--tag", "a", "--tag"])
        #expect(throws: UsageError(message: "--tag needs a value")) { try arguments.options("--tag") }
    }

    // MARK: Positionals

    @Test("phone numbers, a lone dash and negative numbers are positional")
    func positionalWords() throws {
        var arguments = Arguments(["+44 20 7946 0958", "-", "-5", "-x", "020 7946 0958"])
        #expect(arguments.remainingPositionals() == ["+44 20 7946 0958", "-", "-5", "-x", "020 7946 0958"])
        #expect(arguments.positional() == nil)
        try arguments.finish()
    }

    @Test("positionals come in order, skipping options and consumed values")
    func positionalsAroundOptions() throws {
        var arguments = Arguments(["record", "--region", "GB", "+1 202 555 0143", "--json"])
        #expect(try arguments.option("--region") == "GB")
        #expect(arguments.positional() == "record")
        #expect(arguments.positional() == "+1 202 555 0143")
        #expect(arguments.positional() == nil)
        #expect(throws: UsageError(message: "unknown option --json")) { try arguments.finish() }
    }

    @Test("a lone -- ends options: every later word is positional, even a second --")
    func endOfOptions() throws {
        var arguments = Arguments(["--json", "--", "--region", "GB", "-h", "--", "--json"])
        let help = arguments.helpRequested()
        #expect(!help)
        #expect(try arguments.option("--region") == nil)
        let json = arguments.flag("--json")
        #expect(json)
        #expect(arguments.remainingPositionals() == ["--region", "GB", "-h", "--", "--json"])
        try arguments.finish()
    }

    @Test("no words: nothing to read, nothing left")
    func empty() throws {
        var arguments = Arguments([])
        let help = arguments.helpRequested(), json = arguments.flag("--json")
        #expect(!help && !json)
        #expect(try arguments.option("--store") == nil)
        #expect(arguments.positional() == nil)
        #expect(arguments.remainingPositionals() == [])
        try arguments.finish()
    }

    // MARK: Help

    @Test("--help or -h anywhere before -- asks for help, and is consumed",
          arguments: [["--help"], ["-h"], ["x", "--help"], ["-h", "--json", "--help"]])
    func help(_ words: [String]) {
        var arguments = Arguments(words)
        let help = arguments.helpRequested()
        #expect(help)
        let again = arguments.helpRequested()
        #expect(!again)
    }

    @Test("-h is an option: unread, finish names it")
    func unreadShortHelp() {
        var arguments = Arguments(["-h"])
        #expect(arguments.positional() == nil)
        #expect(throws: UsageError(message: "unknown option -h")) { try arguments.finish() }
    }

    // MARK: Leftovers

    @Test("finish names the first word nothing consumed",
          arguments: [
              (["--foo"], "unknown option --foo"),
              (["--foo=secret-key-material"], "unknown option --foo"),
              (["bar"], "unexpected argument 1 (one too many)"),
              (["bar", "--foo"], "unexpected argument 1 (one too many)"),
              (["--foo", "bar"], "unknown option --foo"),
              (["--", "--foo"], "unexpected argument 2 (one too many)"),
          ])
    func leftovers(_ words: [String], _ message: String) {
        let arguments = Arguments(words)
        #expect(throws: UsageError(message: message)) { try arguments.finish() }
    }

    @Test("a lone -- is not a leftover")
    func markerIsConsumed() throws {
        try Arguments(["--"]).finish()
    }

    @Test("a command reads its options, then its positional, then finishes")
    func typicalCommand() throws {
        var arguments = Arguments(["--kind", "lead", "contacts.csv", "--strict", "--region=GB", "--store", "/var/s"])
        let help = arguments.helpRequested()
        #expect(!help)
        #expect(try arguments.option("--kind") == "lead")
        #expect(try arguments.option("--region") == "GB")
        #expect(try arguments.option("--store") == "/var/s")
        let strict = arguments.flag("--strict"), json = arguments.flag("--json")
        #expect(strict && !json)
        #expect(arguments.positional() == "contacts.csv")
        try arguments.finish()
    }
}
