import Foundation
import Strongroom

/// `strongroom subject find`: the subjects holding an e-mail address, a phone number or an external id.
struct SubjectFindCommand: StoreCommand {
    static let name = "subject find"
    static let abstract = "find subjects by e-mail address, phone number or external id"
    static let help = """
        Usage: strongroom subject find --email ADDR | --phone NUMBER [--region R] | --external-id X [--json]

        Prints the subjects holding ADDR, NUMBER or the external id X as lookup prints them (name,
        kind, id, last-contacted time, source), newest activity first. An address is found through
        the e-mail blind index, trimmed and lower-cased, its domain in IDNA form (BÜCHER.example and
        xn--bcher-kva.example are one domain); a number through the phone blind index. Each name
        decrypted is written to the audit log (purpose subject-request by default). Exit status 1
        when nobody matches, 2 when ADDR or NUMBER is not valid; no message repeats what was searched.

          --email ADDR        an e-mail address
          --phone NUMBER      a phone number; --region R for one written without a country code
          --external-id X     the CRM's id, as given at import
          --json              an array of matches: id, external_id, kind, name, last_contacted, source

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject find --email ivo.2@example.org --store ./crm-store --key-file ./crm-store.key
        """

    static let defaultPurpose = Purpose.subjectRequest
    static let takesJSON = true
    let key: SubjectLookupKey

    init(parsing arguments: inout Arguments) throws(UsageError) {
        let email = try arguments.option("--email"), phone = try arguments.option("--phone")
        let region = try arguments.option("--region"), externalID = try arguments.option("--external-id")
        let keys: [SubjectLookupKey] = [email.map { .email($0) }, phone.map { .phone($0, region: region) },
                                        externalID.map { .externalID($0) }].compactMap { $0 }
        guard keys.count == 1 else { throw UsageError(message: "give one of --email, --phone or --external-id") }
        guard region == nil || phone != nil else { throw UsageError(message: "--region goes with --phone") }
        key = keys[0]
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        try printMatches(try store.find(key, context: context), on: console)
    }
}

/// `strongroom subject list`: every subject's clear operational fields.
struct SubjectListCommand: StoreCommand {
    static let name = "subject list"
    static let abstract = "list subjects' clear operational fields, decrypting nothing"
    static let help = """
        Usage: strongroom subject list [--kind lead|contact] [--untouched-since T] [--restricted] [--json]

        One line per subject, by id: id, kind, external id, created, last contacted, source, owner, and
        whether processing is restricted. Nothing is decrypted; the listing is one entry in the audit
        log (who, why, which filter). Streams: a store of any size lists in constant memory.

          --kind K              only leads or only contacts
          --untouched-since T   only subjects last contacted (or, never contacted, created) before T:
                                an RFC 3339 time or a date (YYYY-MM-DD)
          --restricted          only subjects whose processing is restricted
          --json                one JSON object per line: id, external_id, kind, source, owner, created,
                                last_contacted, restricted

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject list --kind lead --untouched-since 2025-01-01 --json --store ./crm-store --key-file ./crm-store.key
        """

    /// One subject as listed.
    struct Output: Encodable {
        let id: String
        @NullWhenAbsent var externalId: String?
        let kind: String
        @NullWhenAbsent var source: String?
        @NullWhenAbsent var owner: String?
        let created: String
        @NullWhenAbsent var lastContacted: String?
        let restricted: Bool

        init(_ summary: SubjectSummary) {
            id = String(summary.id.rawValue)
            externalId = summary.metadata.externalID
            kind = summary.metadata.kind.rawValue
            source = summary.metadata.source
            owner = summary.metadata.owner
            created = formatTime(summary.createdAt)
            lastContacted = summary.metadata.lastContactedAt.map(formatTime)
            restricted = summary.isRestricted
        }

        /// One line for people.
        var line: String {
            "\(id)  \(kind)  \(externalId ?? "-")  created \(created)  last contacted \(lastContacted ?? "never")"
                + "  source \(source ?? "-")  owner \(owner ?? "-")" + (restricted ? "  restricted" : "")
        }
    }

    static let takesJSON = true
    let filter: SubjectListFilter

    init(parsing arguments: inout Arguments) throws(UsageError) {
        var filter = SubjectListFilter(restrictedOnly: arguments.flag("--restricted"))
        if let kind = try arguments.option("--kind") {
            guard let parsed = SubjectKind(rawValue: kind) else { throw UsageError(message: "--kind takes lead or contact") }
            filter.kind = parsed
        }
        if let text = try arguments.option("--untouched-since") {
            guard let date = ISO8601DateFormatter().date(from: text) ?? ISO8601DateFormatter.dateOnly.date(from: text) else {
                throw UsageError(message: "--untouched-since takes an RFC 3339 time or a date (YYYY-MM-DD)")
            }
            filter.untouchedSince = date
        }
        self.filter = filter
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        try store.listSubjects(filter, context: context) { summary in
            let output = Output(summary)
            if console.json { try console.printJSON(output) } else { console.printEscaped(output.line) }
        }
        return .success
    }
}

/// `strongroom subject rectify`: changes named fields of a subject.
struct SubjectRectifyCommand: StoreCommand {
    static let name = "subject rectify"
    static let abstract = "rectify named fields of a subject (Art. 16)"
    static let help = """
        Usage: strongroom subject rectify ID FIELD=VALUE... [--region R]

        Changes only the fields named: name, company, email, phone, mobile, work_phone, address,
        notes, or a custom field the subject has; FIELD= clears it. Every other field is kept. Phone
        numbers and e-mail addresses are re-indexed in the same transaction, so caller ID and subject
        find answer with the new values at once. Prints the names of the fields changed; the audit
        log records them (never their values). Refused (exit 3) while the subject's processing is
        restricted, unless --purpose is subject-request or legal-claims. Exit status 2 for an unknown
        field, a number that does not normalise or an invalid address (the value is never repeated).

          --region R   region of a number written without a country code

        \(StoreOptions.helpPointer)

        Example:
          strongroom subject rectify crm-4242-2 "name=Ivo Novak" mobile=+447700900456 notes= --store ./crm-store --key-file ./crm-store.key
        """

    let reference: String
    let changes: [FieldChange]
    let region: String?

    init(parsing arguments: inout Arguments) throws(UsageError) {
        region = try arguments.option("--region")
        reference = try subjectReference(&arguments)
        changes = try arguments.remainingPositionals().map { word throws(UsageError) in
            guard let equals = word.firstIndex(of: "=") else { throw UsageError(message: "give each change as FIELD=VALUE") }
            return FieldChange(field: String(word[..<equals]), value: String(word[word.index(after: equals)...]))
        }
        guard !changes.isEmpty else { throw UsageError(message: "give at least one FIELD=VALUE") }
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let id = try store.resolve(reference)
        let fields = try store.rectify(id, changes, region: region, context: context)
        console.printEscaped("rectified subject \(id): \(fields.joined(separator: ", "))")
        return .success
    }
}
