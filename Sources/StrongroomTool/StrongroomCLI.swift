import Foundation
import Strongroom

/// `strongroom`, the admin tool: dispatches to the subcommand named by the first words.
@main
enum StrongroomCLI {
    /// Every subcommand, in the order `--help` lists them.
    static let commands: [any Command.Type] = [
        InitCommand.self, ImportCommand.self, LookupCommand.self, CallRecordCommand.self, PhoneNormalizeCommand.self,
        SubjectExportCommand.self, SubjectEraseCommand.self, SubjectRestrictCommand.self, SubjectUnrestrictCommand.self,
        SubjectFindCommand.self, SubjectListCommand.self, SubjectRectifyCommand.self,
        ConsentGrantCommand.self, ConsentWithdrawCommand.self, ConsentConfirmCommand.self, ConsentShowCommand.self,
        PurposeDeclareCommand.self, PurposeListCommand.self,
        KeysStatusCommand.self, KeysRotateMasterCommand.self, KeysRotateKEKCommand.self, KeysRotateDataCommand.self,
        KeysRotateIndexCommand.self, KeysSealErasuresCommand.self, KeysCompactCommand.self,
        AuditVerifyCommand.self, AuditAcknowledgeGapCommand.self, AuditShowCommand.self, AuditExportCommand.self, AuditReceiptCommand.self,
        RetentionApplyCommand.self, DemoCommand.self,
    ]

    static func main() {
        let status = run(Array(CommandLine.arguments.dropFirst()), Console.standard())
        exit(status.rawValue)
    }

    /// What `strongroom --help` prints: usage, the commands, the options every store command shares
    /// (said here once; each command's help points here) and the exit statuses.
    static var overview: String {
        """
        strongroom — the admin tool of a Strongroom encrypted CRM store

        Usage: strongroom COMMAND [OPTIONS]   (strongroom COMMAND --help for each)

        Commands:
        \(commands.map { "  \($0.name.padding(toLength: 20, withPad: " ", startingAt: 0)) \($0.abstract)" }.joined(separator: "\n"))

        \(StoreOptions.help)

        Exit status: 0 done, 1 not found or verification failed, 2 usage or input error, 3 key or integrity error.

        """
    }

    /// Runs the command line `words` (without the program name) and returns its exit status.
    static func run(_ words: [String], _ console: Console) -> ExitStatus {
        guard let command = commands.first(where: { type in
            let name = type.name.split(separator: " ").map(String.init)
            return words.count >= name.count && Array(words.prefix(name.count)) == name
        }) else {
            if words.isEmpty || words == ["--help"] || words == ["-h"] || words == ["help"] {
                console.write(overview)
                return words.isEmpty ? .usage : .success
            }
            let group = words.first.map { first in commands.filter { $0.name.hasPrefix(first + " ") } } ?? []
            if !group.isEmpty {
                console.printError("strongroom: \(words[0]) needs one of: \(group.map { $0.name }.joined(separator: ", "))")
            } else {
                console.printError("strongroom: unknown command \(words.first ?? ""); see strongroom --help")
            }
            return .usage
        }
        var arguments = Arguments(Array(words.dropFirst(command.name.split(separator: " ").count)))
        if arguments.helpRequested() {
            console.write(command.help + "\n")
            return .success
        }
        do {
            return try command.parseThenRun(&arguments, console)
        } catch let error as UsageError {
            console.printError("strongroom \(command.name): \(error.message) (see strongroom \(command.name) --help)")
            return .usage
        } catch {
            let (message, status) = describe(error)
            console.printError("strongroom \(command.name): \(message)")
            return status
        }
    }

    /// The one-line message and exit status for an error. Errors never carry keys or personal data.
    static func describe(_ error: any Error) -> (String, ExitStatus) {
        switch error {
        case let error as ToolError: return (error.message, error.status)
        case let error as StoreError: return (error.description + (error.toolHint.map { " (\($0))" } ?? ""), error.exitStatus)
        case let error as KeyProviderError: return (error.description, .integrity)
        case let error as ImportError: return (error.description, .usage)
        default: return ("\(error)", .integrity)
        }
    }
}
