import Foundation
import Strongroom

/// The options a consent change shares: the purpose, who initiated it, the subject's client address.
private struct ConsentOptions {
    let reference: String
    let purpose: Purpose?
    let initiator: ConsentInitiator
    let client: String?
    let evidence: String?

    init(parsing arguments: inout Arguments, needsPurpose: Bool) throws(UsageError) {
        let purpose = try arguments.option("--purpose").map(Purpose.init(rawValue:))
        if needsPurpose && purpose == nil { throw UsageError(message: "give --purpose NAME") }
        let initiatorText = try arguments.option("--initiator") ?? "staff"
        guard let initiator = ConsentInitiator(rawValue: initiatorText) else {
            throw UsageError(message: "--initiator takes subject, staff or import")
        }
        let evidence = try arguments.option("--evidence")
        // --client here is the subject's address: personal data, kept encrypted in the ledger. It is read
        // before the store options so that it never becomes the audit context's address, which the log keeps in clear.
        let client = try arguments.option("--client")
        reference = try subjectReference(&arguments)
        (self.purpose, self.initiator, self.client, self.evidence) = (purpose, initiator, client, evidence)
    }
}

/// What a consent change prints with `--json`.
private struct ChangeOutput: Encodable {
    let subject: String
    let entry: Int64
    let purpose: String
    let state: String
    let confirmationToken: String?
    let tokenExpiresAt: String?
}

private func print(_ change: ConsentChange, subject: SubjectID, _ console: Console) throws {
    if console.json {
        try console.printJSON(ChangeOutput(subject: String(subject.rawValue), entry: change.entryID, purpose: change.purpose.rawValue,
                                           state: change.state.rawValue,
                                           confirmationToken: change.confirmationToken, tokenExpiresAt: change.tokenExpiresAt.map(formatTime)))
        return
    }
    console.print("subject \(subject): \(change.purpose) \(change.state.rawValue) (ledger entry \(change.entryID))")
    if let token = change.confirmationToken, let expiry = change.tokenExpiresAt {
        console.print("confirmation token (send it to the subject; single use, valid until \(formatTime(expiry))): \(token)")
    }
}

/// `strongroom consent grant`.
struct ConsentGrantCommand: StoreCommand {
    static let name = "consent grant"
    static let abstract = "record a consent (pending until confirmed, for double opt-in purposes)"
    static let takesJSON = true
    static let help = """
        Usage: strongroom consent grant ID --purpose P --evidence TEXT [--initiator subject|staff|import] [--client IP] [--json]

        Appends a grant to the subject's consent ledger. TEXT records how consent was given (the form,
        the text shown, its version): without it nothing is recorded, since a consent cannot be
        pre-ticked. For a purpose declared with double opt-in the entry is pending and a single-use
        confirmation token is printed (stored only as its hash; valid for 72 hours). The client
        address and evidence are stored encrypted under the subject's key. Exit status 2 for an
        undeclared purpose, one not on consent, or no evidence; 1 when the subject is unknown.

          --purpose P          the purpose consented to (declared on consent: `strongroom purpose list`)
          --evidence TEXT      how consent was given: form, text shown, its version (required)
          --initiator WHO      who brought it about: subject, staff (default) or import
          --client IP          the subject's network address when consenting: kept encrypted in the
                               ledger and never written to the audit log (for consent commands it
                               takes the place of the access context's --client)
          --json               print the entry as JSON (with confirmation_token when pending)

        \(StoreOptions.helpPointer)

        Example:
          strongroom consent grant crm-4242-2 --purpose marketing-email --initiator subject --client 203.0.113.7 \\
            --evidence "newsletter form v3: 'Send me offers by e-mail' ticked"
        """

    private let options: ConsentOptions
    private let evidence: String

    init(parsing arguments: inout Arguments) throws(UsageError) {
        options = try ConsentOptions(parsing: &arguments, needsPurpose: true)
        guard let evidence = options.evidence else { throw UsageError(message: "give --evidence TEXT: a consent cannot be pre-ticked") }
        self.evidence = evidence
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let id = try store.resolve(options.reference)
        let change = try store.grantConsent(id, purpose: options.purpose!, evidence: evidence, initiator: options.initiator,
                                            clientAddress: options.client, context: context)
        try print(change, subject: id, console)
        return .success
    }
}

/// `strongroom consent withdraw`.
struct ConsentWithdrawCommand: StoreCommand {
    static let name = "consent withdraw"
    static let abstract = "record that a consent was withdrawn"
    static let takesJSON = true
    static let help = """
        Usage: strongroom consent withdraw ID --purpose P [--evidence TEXT] [--initiator subject|staff|import] [--client IP] [--json]

        Appends a withdrawal to the subject's consent ledger: reads for P are refused from now on, and
        a pending double opt-in grant for P can no longer be confirmed. --evidence and --client (the
        subject's address) are optional and stored encrypted; the --client is not written to the
        audit log.

        \(StoreOptions.helpPointer)

        Example:
          strongroom consent withdraw crm-4242-2 --purpose marketing-email --initiator subject --evidence "unsubscribe link"
        """

    private let options: ConsentOptions

    init(parsing arguments: inout Arguments) throws(UsageError) {
        options = try ConsentOptions(parsing: &arguments, needsPurpose: true)
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let id = try store.resolve(options.reference)
        let change = try store.withdrawConsent(id, purpose: options.purpose!, evidence: options.evidence, initiator: options.initiator,
                                               clientAddress: options.client, context: context)
        try print(change, subject: id, console)
        return .success
    }
}

/// `strongroom consent confirm`.
struct ConsentConfirmCommand: StoreCommand {
    static let name = "consent confirm"
    static let abstract = "confirm a pending double opt-in consent with its token"
    static let takesJSON = true
    static let help = """
        Usage: strongroom consent confirm ID --token T [--client IP] [--json]

        Confirms the pending grant whose token is T. A token works once, until it expires, and only
        while the grant is the latest change for its purpose; a wrong, reused, expired or overtaken
        token is exit status 2. --client is the subject's address, stored encrypted in the ledger.

        \(StoreOptions.helpPointer)

        Example:
          strongroom consent confirm crm-4242-2 --token 3f9c…e1 --client 203.0.113.7
        """

    private let options: ConsentOptions
    private let token: String

    init(parsing arguments: inout Arguments) throws(UsageError) {
        guard let token = try arguments.option("--token") else { throw UsageError(message: "give --token T") }
        self.token = token
        options = try ConsentOptions(parsing: &arguments, needsPurpose: false)
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let id = try store.resolve(options.reference)
        let change = try store.confirmConsent(id, token: token, clientAddress: options.client, context: context)
        try print(change, subject: id, console)
        return .success
    }
}

/// `strongroom consent show`.
struct ConsentShowCommand: StoreCommand {
    static let name = "consent show"
    static let abstract = "a subject's consent ledger"
    static let help = """
        Usage: strongroom consent show ID [--json]

        Every consent change of the subject, oldest first: purpose, state, time, initiator, the actor
        who made the change (--actor of that command; "unknown" before the ledger recorded it), client
        address and evidence (decrypted; the read is audited).

        \(StoreOptions.helpPointer)

        Example:
          strongroom consent show crm-4242-2 --purpose subject-request
        """

    static let takesJSON = true
    let reference: String

    init(parsing arguments: inout Arguments) throws(UsageError) {
        reference = try subjectReference(&arguments)
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let entries = try store.consentLedger(of: try store.resolve(reference), context: context)
        if console.json {
            try console.printJSON(entries)
        } else if entries.isEmpty {
            console.print("no consent entries")
        } else {
            for entry in entries {
                var line = "#\(entry.id)  \(entry.time)  \(entry.purpose)  \(entry.state.rawValue)  by \(entry.initiator.rawValue) (\(entry.actor))"
                if let client = entry.clientAddress { line += "  from \(client)" }
                if let confirms = entry.confirms { line += "  (confirms #\(confirms))" }
                if let evidence = entry.evidence { line += "  evidence: \(evidence)" }
                console.printEscaped(line)
            }
        }
        return .success
    }
}

/// `strongroom purpose declare`.
struct PurposeDeclareCommand: StoreCommand {
    static let name = "purpose declare"
    static let abstract = "declare a purpose of processing and its lawful basis"
    static let help = """
        Usage: strongroom purpose declare NAME --basis consent|contract|legitimate-interest|legal-obligation
                                          --description TEXT [--double-opt-in]

        Once subjects have consent-ledger entries for a purpose, it cannot be weakened: moving it off
        consent or dropping --double-opt-in is refused (exit 2); declare a new purpose instead.
        Repeating the declaration or strengthening it is fine.

        Reads name a purpose; a read for an undeclared purpose is refused. A purpose on consent needs a
        granted (or confirmed) consent in the subject's ledger; --double-opt-in makes grants pending
        until the subject confirms them. Built in: caller-id and admin (legitimate interest),
        subject-request and legal-claims (legal obligation), key-rotation (legitimate interest); the
        last three are what restriction still allows and cannot be put on consent.

        \(StoreOptions.helpPointer)

        Example:
          strongroom purpose declare marketing-email --basis consent --double-opt-in --description "Offers by e-mail"
        """

    let name: String
    let basis: LawfulBasis
    let description: String
    let doubleOptIn: Bool

    init(parsing arguments: inout Arguments) throws(UsageError) {
        guard let basisText = try arguments.option("--basis"), let basis = LawfulBasis(rawValue: basisText) else {
            throw UsageError(message: "give --basis consent, contract, legitimate-interest or legal-obligation")
        }
        self.basis = basis
        guard let description = try arguments.option("--description") else { throw UsageError(message: "give --description TEXT") }
        self.description = description
        doubleOptIn = arguments.flag("--double-opt-in")
        guard let name = arguments.positional() else { throw UsageError(message: "give the purpose's NAME") }
        self.name = name
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        try store.declarePurpose(PurposeDeclaration(name: Purpose(rawValue: name), description: description, lawfulBasis: basis,
                                                    requiresDoubleOptIn: doubleOptIn), context: context)
        console.print("declared \(name) on \(basis.rawValue)" + (doubleOptIn && basis == .consent ? ", double opt-in" : ""))
        return .success
    }
}

/// `strongroom purpose list`.
struct PurposeListCommand: StoreCommand {
    static let name = "purpose list"
    static let abstract = "the store's purposes and their lawful bases"
    static let help = """
        Usage: strongroom purpose list [--json]

        \(StoreOptions.helpPointer)

        Example:
          strongroom purpose list --store ./crm-store --key-file ./crm-store.key
        """

    static let takesJSON = true

    init(parsing arguments: inout Arguments) {}

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let purposes = store.purposes()
        if console.json {
            try console.printJSON(purposes)
        } else {
            for purpose in purposes {
                console.printEscaped("\(purpose.name.rawValue.padding(toLength: 18, withPad: " ", startingAt: 0)) \(purpose.lawfulBasis.rawValue)"
                                     + (purpose.requiresDoubleOptIn ? ", double opt-in" : "") + "  \(purpose.description)")
            }
        }
        return .success
    }
}
