import Foundation
import Strongroom

/// `strongroom subject export`: everything held on a subject, or on every subject, as JSON.
struct SubjectExportCommand: StoreCommand {
    static let name = "subject export"
    static let abstract = "everything held on a subject, or on all of them, as JSON (right of access, portability)"
    static let help = """
        Usage: strongroom subject export ID [--purpose P] [--out FILE]
               strongroom subject export --all [--kind lead|contact] [--purpose P] [--out FILE]

        Prints everything the store holds on the subject as JSON (layout "strongroom.subject-export",
        version 1): clear fields, every personal field decrypted, phone numbers with their E.164 form,
        logged calls, the consent ledger, and the audit trail of who accessed the subject's data and
        why. The export is itself audited. ID is the store's id or the external_id given at import.

        With --all, every subject (of the kind given) in id order, one JSON object per line in the same
        layout, each subject's decrypt audited by an entry of its own; progress on a terminal. Each
        line's access log is the audit log as the export found it (its own decrypts come in the next
        export). A subject the purpose may not process (restricted, unless P is subject-request or
        legal-claims; no consent to a consent-based P) is skipped, its refusal audited; the skipped are
        counted on standard error at the end, and the exit status is then 3 (the others are exported).

          --all        every subject, as JSON Lines
          --kind K     with --all: only leads or only contacts
          --purpose P  why, as the audit log records it: subject-request for a data subject's
                       request (Art. 15 or 20, allowed while restricted), else admin (default)
          --out FILE   write to FILE (mode 0600) instead of standard output

        \(StoreOptions.helpPointer)

        Examples:
          strongroom subject export crm-4242-2 --store ./crm-store --key-file ./crm-store.key --purpose subject-request
          strongroom subject export --all --kind contact --out contacts.jsonl --store ./crm-store --key-file ./crm-store.key
        """

    /// The subject, as given; nil with `--all`.
    let reference: String?
    /// With `--all`: only subjects of this kind (nil for both).
    let kind: SubjectKind?
    /// The file to write; nil for standard output.
    let out: String?

    init(parsing arguments: inout Arguments) throws(UsageError) {
        out = try arguments.option("--out")
        let all = arguments.flag("--all")
        let kind = try arguments.option("--kind")
        guard all else {
            guard kind == nil else { throw UsageError(message: "--kind goes with --all") }
            self.kind = nil
            reference = try subjectReference(&arguments)
            return
        }
        if let kind, SubjectKind(rawValue: kind) == nil { throw UsageError(message: "--kind takes lead or contact") }
        self.kind = kind.flatMap(SubjectKind.init(rawValue:))
        reference = nil
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        guard let reference else { return try exportAll(from: store, context: context, console: console) }
        let export: SubjectExport
        do { export = try store.export(try store.resolve(reference), context: context) } catch {
            // A restricted subject's data still answers the subject's own request (Art. 18(2), 15, 20): say how.
            guard case .accessRefused(_, _, let reason) = error, reason.contains("restricted") else { throw error }
            throw ToolError(message: "\(error): for the subject's own request, export with --purpose subject-request",
                            status: error.exitStatus)
        }
        let output = try ExportOutput(path: out, console: console)
        // Escaped as `Console.printJSON` does: the file may be shown on a terminal too.
        try output.write(TerminalText.escapingJSON(String(decoding: try export.jsonData(), as: UTF8.self)))
        try output.close()
        if let out { console.print("exported subject \(export.subject.id) to \(out)") }
        return .success
    }

    /// `--all`: every subject, one line each; the refused are counted at the end. A run that fails
    /// removes the part of FILE it wrote.
    private func exportAll(from store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let progress = console.progress("exported", total: kind == nil ? try store.count() : nil)
        let output = try ExportOutput(path: out, console: console)
        var done = 0
        let summary: BulkExportSummary
        do {
            summary = try store.exportAll(kind: kind, context: context) { export in
                try output.write(TerminalText.escapingJSON(String(decoding: try export.jsonLine(), as: UTF8.self)))
                done += 1
                progress.advance(to: done)
            }
            try output.close()
        } catch {
            output.discard()
            throw error
        }
        progress.finish()
        if let out { console.print("exported \(summary.exported) subjects to \(out)") }
        guard !summary.refused.isEmpty else { return .success }
        console.printError("""
            \(summary.refused.count) subjects not exported: processing refused for purpose \(context.purpose) \
            (restricted, or no consent; a data subject's own request: --purpose subject-request); the refusals are in the audit log
            """)
        return .integrity
    }
}

/// Where an export goes: standard output, or a new file of mode 0600 written in large pieces.
private final class ExportOutput {
    private let console: Console
    private let file: FileHandle?
    private let path: String?
    private var buffer = Data()

    /// Opens `path` (created, or emptied, with mode 0600), or standard output when nil.
    init(path: String?, console: Console) throws {
        self.console = console
        self.path = path
        guard let path else {
            file = nil
            return
        }
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw ToolError(message: "cannot write \(path)", status: .usage)
        }
        file = handle
    }

    /// Writes `line` and a newline.
    func write(_ line: String) throws {
        guard let file else { return console.print(line) }
        buffer.append(contentsOf: line.utf8)
        buffer.append(UInt8(ascii: "\n"))
        if buffer.count >= 1 << 16 { try flush(file) }
    }

    /// Writes what is buffered and closes the file.
    func close() throws {
        guard let file else { return }
        try flush(file)
        try file.close()
    }

    /// Closes and removes the file, after a failure: no partial export is left behind.
    func discard() {
        guard let file, let path else { return }
        try? file.close()
        try? FileManager.default.removeItem(atPath: path)
    }

    private func flush(_ file: FileHandle) throws {
        try file.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

/// `strongroom subject erase`: erasure by crypto-shredding.
struct SubjectEraseCommand: StoreCommand {
    static let name = "subject erase"
    static let abstract = "erase a subject by crypto-shredding"
    static let help = """
        Usage: strongroom subject erase ID --reason TEXT [--wait SECONDS] [--json]

        Destroys the subject's key, then deletes its rows, index entries, consent ledger and call
        history. Copies of its ciphertext in backups of the data file can no longer be decrypted, by
        this process or any other. Backups of the key database still hold the wrapped key until
        `strongroom keys seal-erasures` runs. The audit log records the erasure with the subject id and
        TEXT (a ticket or legal basis: no personal data).

        The erasure leaves a tombstone: the external id's keyed hash, so that no import, create or call
        record brings it back, and the erasure's receipt, printed here (receipt id, id, external_id,
        erased_at, actor, reason, what was destroyed, the audit entry's sequence number and a MAC under
        a key derived from the audit key) and shown again by `strongroom audit receipt ID`.

          --wait SECONDS  how long to wait for readers of old key pages (default 5)
          --json          the receipt as one JSON object

        While another connection reads an older snapshot of keys.sqlite (an online backup, another
        process), the old pages holding the wrapped key must stay: the erasure waits up to SECONDS
        (default 5) for it to end. If it has not, the key is still destroyed, but the tool says that
        old pages remain and exits 1; `strongroom keys compact` (or the next open) overwrites them
        once the reader has ended.

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject erase crm-4242-2 --reason "Art. 17 request 2026-114" --store ./crm-store --key-file ./crm-store.key
        """

    let reference: String
    let reason: String
    let configuration: StoreConfiguration

    init(parsing arguments: inout Arguments) throws(UsageError) {
        guard let reason = try arguments.option("--reason") else { throw UsageError(message: "an erasure needs --reason TEXT") }
        self.reason = reason
        configuration = try erasureConfiguration(&arguments)
        reference = try subjectReference(&arguments)
    }

    static let takesJSON = true

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let id = try store.resolve(reference)
        let erasure = try store.erase(id, reason: reason, context: context)
        let receipt = ReceiptOutput(erasure.receipt)
        if console.json {
            try console.printJSON(receipt)
        } else {
            console.print("erased subject \(id): key destroyed, rows deleted")
            receipt.printLines(console)
        }
        guard case .oldPagesRemain(let since) = erasure.completion else { return .success }
        console.printError(oldPagesMessage(since: since))
        return .failure
    }
}

/// `strongroom subject restrict`: restriction of processing.
struct SubjectRestrictCommand: RestrictionCommand {
    static let name = "subject restrict"
    static let abstract = "restrict processing of a subject"
    static let help = """
        Usage: strongroom subject restrict ID [--json]

        While restricted, the subject's data is decrypted only for the purposes legal-claims and
        subject-request; every other read (caller ID included) is refused and audited as refused.

          --json   print {"id": "…", "restricted": true}

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject restrict crm-4242-2 --store ./crm-store --key-file ./crm-store.key
        """
    static let restricts = true

    let reference: String
}

/// `strongroom subject unrestrict`: lifts restriction of processing.
struct SubjectUnrestrictCommand: RestrictionCommand {
    static let name = "subject unrestrict"
    static let abstract = "lift restriction of processing"
    static let help = """
        Usage: strongroom subject unrestrict ID [--json]

          --json   print {"id": "…", "restricted": false}

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject unrestrict crm-4242-2 --store ./crm-store --key-file ./crm-store.key
        """
    static let restricts = false

    let reference: String
}

/// `subject restrict` and `subject unrestrict`: sets or lifts one subject's restriction of processing.
protocol RestrictionCommand: StoreCommand {
    /// True to restrict, false to lift the restriction.
    static var restricts: Bool { get }
    /// The subject, as given (store id or external id).
    var reference: String { get }
    init(reference: String)
}

/// What `subject restrict|unrestrict --json` prints.
struct RestrictionOutput: Encodable {
    let id: String
    let restricted: Bool
}

extension RestrictionCommand {
    static var takesJSON: Bool { true }

    init(parsing arguments: inout Arguments) throws(UsageError) {
        self.init(reference: try subjectReference(&arguments))
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let id = try store.resolve(reference)
        try store.setRestricted(Self.restricts, id, context: context)
        if console.json {
            try console.printJSON(RestrictionOutput(id: String(id.rawValue), restricted: Self.restricts))
            return .success
        }
        console.print(Self.restricts ? "processing of subject \(id) is restricted" : "restriction of subject \(id) lifted")
        return .success
    }
}

/// Reads the subject's ID (the store's id or an external id), the command's positional word.
func subjectReference(_ arguments: inout Arguments) throws(UsageError) -> String {
    guard let reference = arguments.positional() else { throw UsageError(message: "give the subject's ID") }
    return reference
}
