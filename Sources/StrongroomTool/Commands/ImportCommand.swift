import Foundation
import Strongroom

/// `strongroom import`: loads a CSV file of leads and contacts.
struct ImportCommand: StoreCommand {
    static let name = "import"
    static let abstract = "import leads and contacts from a CSV file"
    static let help = """
        Usage: strongroom import [--kind lead|contact] [--region R] [--max-field-bytes N] [--strict] [--json] FILE.csv

        Header-driven CSV (RFC 4180, UTF-8, BOM tolerated). Known columns, in any order:
          external_id, kind, name, company, email, phone, mobile, work_phone, address, notes,
          source, owner, last_contacted (RFC 3339 time or YYYY-MM-DD)
        Other columns become custom fields. A row whose external_id is already in the store updates
        that subject instead of adding a duplicate. Bad rows (a value longer than N bytes among them)
        are reported with their line number and column, never their content, and skipped; with
        --strict, any bad row refuses the whole file. Rows are written in batches of
        500, each in one transaction: a crash loses at most the batch in flight, and running the same
        import again completes it.

          --kind K     kind of rows without a kind column value (default lead)
          --region R   region of numbers written without a country code (default: the store's)
          --max-field-bytes N
                       the most UTF-8 bytes one value may have (default 65536, 64 KiB); a row
                       holding a longer value is a bad row, never stored
          --strict     import nothing if any row is bad
          --json       print the summary as JSON

        \(StoreOptions.helpPointer)

        Example:
          strongroom import --store ./crm-store --key-file ./crm-store.key Fixtures/contacts-sample.csv
        """

    /// The summary printed with `--json`.
    struct Summary: Encodable {
        let created: Int
        let updated: Int
        let rejected: [Row]
        let unindexedNumbers: [Row]
        struct Row: Encodable {
            let line: Int
            let column: String?
            let reason: String
        }
    }

    let path: String
    let options: ImportOptions
    let configuration: StoreConfiguration
    static let takesJSON = true

    init(parsing arguments: inout Arguments) throws(UsageError) {
        var options = ImportOptions()
        if let kind = try arguments.option("--kind") {
            guard let parsed = SubjectKind(rawValue: kind) else { throw UsageError(message: "--kind takes lead or contact") }
            options.defaultKind = parsed
        }
        options.region = try arguments.option("--region")
        options.strict = arguments.flag("--strict")
        var configuration = StoreConfiguration()
        if let text = try arguments.option("--max-field-bytes") {
            guard let limit = Int(text), limit > 0 else { throw UsageError(message: "--max-field-bytes takes a positive number of bytes") }
            configuration.maxFieldBytes = limit
        }
        guard let path = arguments.positional() else { throw UsageError(message: "give the CSV file to import") }
        (self.path, self.options, self.configuration) = (path, options, configuration)
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ToolError(message: "cannot read \(path)", status: .usage)
        }
        let bytes = [UInt8](data)
        // Lines are an estimate of rows (quoted fields may hold newlines): good enough for an ETA.
        let progress = console.progress("importing \(URL(fileURLWithPath: path).lastPathComponent)",
                                        total: max(1, bytes.count(where: { $0 == UInt8(ascii: "\n") }) - 1))
        let report = try CSVImporter(store: store, options: options).run(bytes, context: context) { done in
            progress.advance(to: done)
        }
        progress.finish()
        if console.json {
            try console.printJSON(Summary(
                created: report.created, updated: report.updated,
                rejected: report.rejected.map { .init(line: $0.line, column: $0.column, reason: $0.reason) },
                unindexedNumbers: report.unindexed.map { .init(line: $0.line, column: $0.column, reason: $0.reason) }))
        } else {
            for row in report.rejected { console.printError("line \(row.line): skipped: \(row.reason)") }
            for number in report.unindexed {
                console.printError("line \(number.line): \(number.column) stored but not indexed for caller ID: \(number.reason)")
            }
            console.print("imported \(path): \(report.created) created, \(report.updated) updated, "
                          + "\(report.rejected.count) rows skipped, \(report.unindexed.count) numbers not indexed")
        }
        return .success
    }
}
