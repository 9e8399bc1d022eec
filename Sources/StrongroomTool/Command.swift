import Foundation
import Strongroom

/// The tool's exit statuses (README.md, "Command reference").
enum ExitStatus: Int32 {
    /// Done.
    case success = 0
    /// Not found, or verification failed.
    case failure = 1
    /// Usage or input error.
    case usage = 2
    /// Key or integrity error: wrong key, tampered or unreadable ciphertext, refused access.
    case integrity = 3
}

/// A subcommand of `strongroom`: a value parsed from its words, then run by `StrongroomCLI`.
protocol Command: SendableMetatype {
    /// The words that select it, e.g. "audit verify".
    static var name: String { get }
    /// One line saying what it does, for `strongroom --help`.
    static var abstract: String { get }
    /// Usage, options and an example, for `--help`.
    static var help: String { get }
    /// Whether it takes `--json` (its result as JSON on standard output): the dispatcher reads that
    /// flag, and the command asks `Console.json`.
    static var takesJSON: Bool { get }
    /// Reads the command's own options and positional words; the dispatcher reads the store options
    /// and rejects whatever is left, all before anything is opened.
    init(parsing arguments: inout Arguments) throws(UsageError)
    /// Parses the command (and the store options if it takes them), rejects any word left over, and
    /// only then runs it: a usage error (exit 2) is reported before any store or file is opened.
    /// `StandaloneCommand` and `StoreOptionsCommand` provide it.
    static func parseThenRun(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus
}

/// A command that needs no store options: `demo`, `phone normalize`.
protocol StandaloneCommand: Command {
    /// Does the work.
    func run(console: Console) throws -> ExitStatus
}

/// A command that reads the store options (`StoreOptions`) but opens or creates the store itself:
/// `init`, and the commands that replace the master key.
protocol StoreOptionsCommand: Command {
    /// The purpose in the access context when `--purpose` is not given.
    static var defaultPurpose: Purpose { get }
    /// Does the work with the store, key and access context the command line and environment chose.
    func run(with options: StoreOptions, console: Console) throws -> ExitStatus
}

/// A command run against a store the dispatcher opened, and closes once the command is done.
protocol StoreCommand: StoreOptionsCommand {
    /// The configuration to open the store with.
    var configuration: StoreConfiguration { get }
    /// Does the work on `store`, on behalf of `context`.
    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus
}

extension Command {
    static var takesJSON: Bool { false }

    /// `console`, printing JSON if the command takes `--json` and it is given (consumed).
    static func outputConsole(_ console: Console, _ arguments: inout Arguments) -> Console {
        takesJSON ? console.printing(json: arguments.flag("--json")) : console
    }
}

extension StandaloneCommand {
    static func parseThenRun(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        let console = outputConsole(console, &arguments)
        let command = try Self(parsing: &arguments)
        try arguments.finish()
        return try command.run(console: console)
    }
}

extension StoreOptionsCommand {
    static var defaultPurpose: Purpose { .admin }

    static func parseThenRun(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        // The command reads its positional words before the store options are read: `--store DIR` is not one.
        arguments.expectValuedOptions(StoreOptions.valuedOptionNames)
        let console = outputConsole(console, &arguments)
        let command = try Self(parsing: &arguments)
        let options = try StoreOptions.parse(&arguments, console, defaultPurpose: defaultPurpose)
        try arguments.finish()
        return try command.run(with: options, console: console)
    }
}

extension StoreCommand {
    var configuration: StoreConfiguration { StoreConfiguration() }

    func run(with options: StoreOptions, console: Console) throws -> ExitStatus {
        let store = try options.open(configuration)
        defer { store.close() }
        return try run(on: store, context: options.context, console: console)
    }
}

/// Where a command reads and writes: the process's streams and environment, or a test's buffers.
final class Console {
    /// The environment variables.
    let environment: [String: String]
    private let writeOut: (String) -> Void
    private let writeError: (String) -> Void
    private let readInput: () -> String?
    /// Whether standard error is a terminal (progress lines are shown only then).
    let isTerminal: Bool
    /// Whether the command was given `--json`: it then prints its result as JSON (`printJSON`).
    let json: Bool

    init(environment: [String: String], isTerminal: Bool, json: Bool = false, out: @escaping (String) -> Void,
         error: @escaping (String) -> Void, input: @escaping () -> String?) {
        self.environment = environment
        self.isTerminal = isTerminal
        self.json = json
        writeOut = out
        writeError = error
        readInput = input
    }

    /// This console, with `json` set as given.
    func printing(json: Bool) -> Console {
        Console(environment: environment, isTerminal: isTerminal, json: json, out: writeOut, error: writeError, input: readInput)
    }

    /// The console of this process.
    static func standard() -> Console {
        Console(environment: ProcessInfo.processInfo.environment, isTerminal: ProgressLine.standardErrorIsTerminal,
                out: { FileHandle.standardOutput.write(Data($0.utf8)) },
                error: { FileHandle.standardError.write(Data($0.utf8)) },
                input: { Swift.readLine(strippingNewline: true) })
    }

    /// Writes a line to standard output.
    func print(_ line: String) { writeOut(line + "\n") }
    /// Writes a line that holds stored or imported text to standard output, its terminal control
    /// characters shown as escapes (`TerminalText.escaping`).
    func printEscaped(_ line: String) { print(TerminalText.escaping(line)) }
    /// Writes text to standard output as is.
    func write(_ text: String) { writeOut(text) }
    /// Writes a line to standard error, its terminal control characters shown as escapes: an error may
    /// name an imported value's column or an external id.
    func printError(_ line: String) { writeError(TerminalText.escaping(line) + "\n") }
    /// Reads a line of standard input, nil at its end.
    func readLine() -> String? { readInput() }

    /// A progress reporter on standard error, silent when it is not a terminal.
    func progress(_ label: String, total: Int?) -> ProgressLine {
        ProgressLine(label: label, total: total, isTerminal: isTerminal, write: writeError)
    }

    /// Encodes `value` as JSON (snake_case keys, sorted) and prints it as one line.
    func printJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // The same JSON value with no raw character a terminal acts on (`TerminalText.escapingJSON`).
        print(TerminalText.escapingJSON(String(decoding: try encoder.encode(value), as: UTF8.self)))
    }
}

/// A failure the tool reports on one line with its exit status.
struct ToolError: Error {
    let message: String
    let status: ExitStatus
}

extension StoreError {
    /// The exit status for this error (README.md, "Command reference").
    var exitStatus: ExitStatus {
        switch self {
        case .subjectNotFound, .subjectErased, .concurrentChange, .noAuditGap, .auditLogUnverified, .noErasureReceipt: return .failure
        case .storeNotFound, .storeAlreadyExists, .invalidPhoneNumber, .duplicateExternalID, .externalIDErased, .schemaTooNew,
             .consentTokenRejected, .purposeWeakened,
             .fieldTooLarge, .textHoldsNUL,
             .unsupportedRegion, .blindIndexBitsOutOfRange, .masterKeyWrongLength, .keyEncryptionKeyRotationOvertaken,
             .wrongSubjectKind, .noAuditHook, .invalidReason, .invalidPurposeName, .builtInPurposeOnConsent,
             .undeclaredPurpose, .purposeNotOnConsent, .consentEvidenceMissing, .invalidTokenLifetime,
             .noFieldsToRectify, .unknownField, .fieldNamedTwice, .invalidEmailAddress:
            return .usage
        case .wrongMasterKey, .storeMismatch, .keyProvider, .keyUnavailable, .accessRefused, .unreadableField, .unreadableKey,
             .auditFailed, .auditHookFailed, .auditGap, .database, .crypto, .file, .keyBudgetExhausted, .injectedFault:
            return .integrity
        }
    }

    /// What to do next in the tool's words (its commands and options), added to the engine's message,
    /// which names none; nil when the message says it all.
    var toolHint: String? {
        switch self {
        case .storeNotFound: return "create one with `strongroom init`"
        case .auditGap: return "strongroom audit verify, then strongroom audit acknowledge-gap --reason TEXT"
        case .auditLogUnverified: return "strongroom audit verify"
        case .keyBudgetExhausted: return "strongroom keys rotate-kek, rotate-index or rotate-master"
        case .blindIndexBitsOutOfRange: return "--bits"
        default: return nil
        }
    }
}
