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

/// A subcommand of `strongroom`.
protocol Command: SendableMetatype {
    /// The words that select it, e.g. "audit verify".
    static var name: String { get }
    /// One line saying what it does, for `strongroom --help`.
    static var abstract: String { get }
    /// Usage, options and an example, for `--help`.
    static var help: String { get }
    /// Reads its options from `arguments` and runs.
    static func run(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus
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

    init(environment: [String: String], isTerminal: Bool, out: @escaping (String) -> Void,
         error: @escaping (String) -> Void, input: @escaping () -> String?) {
        self.environment = environment
        self.isTerminal = isTerminal
        writeOut = out
        writeError = error
        readInput = input
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
        case .subjectNotFound, .subjectErased, .concurrentChange, .noAuditGap, .auditLogUnverified: return .failure
        case .storeNotFound, .storeAlreadyExists, .invalidInput, .invalidPhoneNumber, .duplicateExternalID, .schemaTooNew,
             .consentTokenRejected,
             .fieldTooLarge:
            return .usage
        case .wrongMasterKey, .storeMismatch, .keyProvider, .keyUnavailable, .accessRefused, .unreadableField, .unreadableKey,
             .auditFailed, .auditGap, .database, .crypto, .file, .keyBudgetExhausted:
            return .integrity
        }
    }
}
