import Foundation
import Strongroom

/// `strongroom subject export`: everything held on a subject, as JSON.
enum SubjectExportCommand: Command {
    static let name = "subject export"
    static let abstract = "everything held on a subject, as JSON (right of access, portability)"
    static let help = """
        Usage: strongroom subject export ID [--purpose P] [--out FILE]

        Prints everything the store holds on the subject as JSON (layout "strongroom.subject-export",
        version 1): clear fields, every personal field decrypted, phone numbers with their E.164 form,
        logged calls, the consent ledger, and the audit trail of who accessed the subject's data and
        why. The export is itself audited. ID is the store's id or the external_id given at import.

          --purpose P  why, as the audit log records it: subject-request for a data subject's
                       request (Art. 15 or 20, allowed while restricted), else admin (default)
          --out FILE   write to FILE (mode 0600) instead of standard output

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject export crm-4242-2 --store ./crm-store --key-file ./crm-store.key --purpose subject-request
        """

    static func run(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        let out = try arguments.option("--out")
        let options = try StoreOptions.parse(&arguments, console, defaultPurpose: .admin)
        guard let reference = arguments.positional() else { throw UsageError(message: "give the subject's ID") }
        try arguments.finish()
        let store = try options.open()
        defer { store.close() }
        let export = try store.export(try store.resolve(reference), context: options.context)
        // Escaped as `Console.printJSON` does: the file may be shown on a terminal too.
        let json = TerminalText.escapingJSON(String(decoding: try export.jsonData(), as: UTF8.self))
        if let out {
            guard FileManager.default.createFile(atPath: out, contents: nil, attributes: [.posixPermissions: 0o600]),
                  let handle = FileHandle(forWritingAtPath: out) else {
                throw ToolError(message: "cannot write \(out)", status: .usage)
            }
            handle.write(Data((json + "\n").utf8))
            try handle.close()
            console.print("exported subject \(export.subject.id) to \(out)")
        } else {
            console.print(json)
        }
        return .success
    }
}

/// `strongroom subject erase`: erasure by crypto-shredding.
enum SubjectEraseCommand: Command {
    static let name = "subject erase"
    static let abstract = "erase a subject by crypto-shredding"
    static let help = """
        Usage: strongroom subject erase ID --reason TEXT

        Destroys the subject's key, then deletes its rows, index entries, consent ledger and call
        history. Copies of its ciphertext in backups of the data file can no longer be decrypted. Backups of the key
        database still hold the wrapped key until `strongroom keys seal-erasures` runs. The audit log
        records the erasure with the subject id and TEXT (a ticket or legal basis: no personal data).

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject erase crm-4242-2 --reason "Art. 17 request 2026-114" --store ./crm-store --key-file ./crm-store.key
        """

    static func run(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        guard let reason = try arguments.option("--reason") else { throw UsageError(message: "an erasure needs --reason TEXT") }
        let options = try StoreOptions.parse(&arguments, console, defaultPurpose: .admin)
        guard let reference = arguments.positional() else { throw UsageError(message: "give the subject's ID") }
        try arguments.finish()
        let store = try options.open()
        defer { store.close() }
        let id = try store.resolve(reference)
        try store.erase(id, reason: reason, context: options.context)
        console.print("erased subject \(id): key destroyed, rows deleted")
        return .success
    }
}

/// `strongroom subject restrict`: restriction of processing.
enum SubjectRestrictCommand: Command {
    static let name = "subject restrict"
    static let abstract = "restrict processing of a subject"
    static let help = """
        Usage: strongroom subject restrict ID

        While restricted, the subject's data is decrypted only for the purposes legal-claims and
        subject-request; every other read (caller ID included) is refused and audited as refused.

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject restrict crm-4242-2 --store ./crm-store --key-file ./crm-store.key
        """

    static func run(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        try setRestriction(true, &arguments, console)
    }
}

/// `strongroom subject unrestrict`: lifts restriction of processing.
enum SubjectUnrestrictCommand: Command {
    static let name = "subject unrestrict"
    static let abstract = "lift restriction of processing"
    static let help = """
        Usage: strongroom subject unrestrict ID

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject unrestrict crm-4242-2 --store ./crm-store --key-file ./crm-store.key
        """

    static func run(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        try setRestriction(false, &arguments, console)
    }
}

private func setRestriction(_ restricted: Bool, _ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
    let options = try StoreOptions.parse(&arguments, console, defaultPurpose: .admin)
    guard let reference = arguments.positional() else { throw UsageError(message: "give the subject's ID") }
    try arguments.finish()
    let store = try options.open()
    defer { store.close() }
    let id = try store.resolve(reference)
    try store.setRestricted(restricted, id, context: options.context)
    console.print(restricted ? "processing of subject \(id) is restricted" : "restriction of subject \(id) lifted")
    return .success
}
