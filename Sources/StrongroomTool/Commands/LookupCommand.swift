import Foundation
import Strongroom
import StrongroomPhone

/// The JSON form of a caller-ID match (`lookup --json`, `call record --json`): every key always
/// present, `null` where there is no value (a new lead has no name and no external id).
struct MatchOutput: Encodable {
    let id: String
    @NullWhenAbsent var externalId: String?
    let kind: String
    @NullWhenAbsent var name: String?
    @NullWhenAbsent var lastContacted: String?
    @NullWhenAbsent var source: String?

    init(_ match: CallerMatch) {
        id = String(match.id.rawValue)
        externalId = match.externalID
        kind = match.kind.rawValue
        name = match.name
        lastContacted = match.lastContactedAt.map(formatTime)
        source = match.source
    }

    /// One line for people: name, kind and ids, last contact, source; stored text escaped (`TerminalText`).
    var line: String {
        var text = "\(name ?? "(no name)")  \(kind) \(id)"
        if let externalId { text += " (\(externalId))" }
        text += "  last contacted \(lastContacted ?? "never")"
        if let source { text += "  source \(source)" }
        return TerminalText.escaping(text)
    }
}

/// A time as the tool prints it: RFC 3339, UTC, seconds.
func formatTime(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: date)
}

/// `strongroom lookup`: caller ID.
struct LookupCommand: StoreCommand {
    static let name = "lookup"
    static let abstract = "caller ID: who holds this phone number"
    static let help = """
        Usage: strongroom lookup [--region R] [--json] NUMBER

        Normalises NUMBER to E.164 (under R, default the store's region), finds the leads and contacts
        holding it through the blind index, and prints name, kind, id, last-contacted time and source,
        newest activity first. Each name decrypted is written to the audit log (purpose caller-id).
        Exit status 1 when nobody matches, 2 when NUMBER is not a valid phone number.

          --region R   region of a number written without a country code
          --json       an array of matches: id, external_id, kind, name, last_contacted, source

        \(StoreOptions.helpPointer)

        Example:
          strongroom lookup --store ./crm-store --key-file ./crm-store.key "+44 121 242 9247"
        """

    static let defaultPurpose = Purpose.callerID
    let number: String
    let region: String?
    static let takesJSON = true

    init(parsing arguments: inout Arguments) throws(UsageError) {
        region = try arguments.option("--region")
        guard let number = arguments.positional() else { throw UsageError(message: "give the NUMBER to look up") }
        self.number = number
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        try printMatches(try store.callerID(number: number, region: region, context: context), on: console)
    }
}

/// Prints matches as `lookup` does (`subject find` too): a JSON array, or one line each, or "no match";
/// exit status 1 when there are none.
func printMatches(_ found: [CallerMatch], on console: Console) throws -> ExitStatus {
    let matches = found.map(MatchOutput.init)
    if console.json {
        try console.printJSON(matches)
    } else if matches.isEmpty {
        console.print("no match")
    } else {
        matches.forEach { console.print($0.line) }
    }
    return matches.isEmpty ? .failure : .success
}

/// `strongroom call record`: logs a call.
struct CallRecordCommand: StoreCommand {
    static let name = "call record"
    static let abstract = "log a call: update last contact, or make a lead for an unknown number"
    static let help = """
        Usage: strongroom call record [--at T] [--direction in|out] [--region R] [--json] NUMBER

        A known number's people get T as their last-contacted time (if it is newer); an unknown number
        becomes a new lead (source "Call log") holding it, so the next call from it is recognised.
        Logging the same call (number, time, direction) again changes nothing. Prints the person
        touched, as lookup does. A person whose processing is restricted (or who has not consented,
        where the purpose rests on consent) is not touched: when nobody else holds the number, the
        call is refused with exit 3, nothing is changed and the refusal is in the audit log.

          --at T              when the call happened, RFC 3339 (default now)
          --direction in|out  incoming (default) or outgoing
          --region R          region of a number written without a country code
          --json              the person touched as JSON, plus created_lead and logged

        \(StoreOptions.helpPointer)

        Example:
          strongroom call record --store ./crm-store --key-file ./crm-store.key --at 2026-11-23T09:15:00Z +447700900123
        """

    struct Output: Encodable {
        let match: MatchOutput
        let createdLead: Bool
        let logged: Bool
        func encode(to encoder: any Encoder) throws {
            try match.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(createdLead, forKey: .createdLead)
            try container.encode(logged, forKey: .logged)
        }
        enum Keys: String, CodingKey { case createdLead, logged }
    }

    static let defaultPurpose = Purpose.callerID
    let number: String
    let time: Date
    let direction: CallDirection
    let region: String?
    static let takesJSON = true

    init(parsing arguments: inout Arguments) throws(UsageError) {
        var time = Date()
        if let text = try arguments.option("--at") {
            guard let parsed = ISO8601DateFormatter().date(from: text) else {
                throw UsageError(message: "--at takes an RFC 3339 time such as 2026-11-23T09:15:00Z")
            }
            time = parsed
        }
        var direction = CallDirection.incoming
        if let text = try arguments.option("--direction") {
            guard let parsed = CallDirection(rawValue: text) else { throw UsageError(message: "--direction takes in or out") }
            direction = parsed
        }
        region = try arguments.option("--region")
        guard let number = arguments.positional() else { throw UsageError(message: "give the NUMBER that called") }
        (self.number, self.time, self.direction) = (number, time, direction)
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let record = try store.recordCall(number: number, at: time, direction: direction, region: region, context: context)
        let match = MatchOutput(record.caller)
        if console.json {
            try console.printJSON(Output(match: match, createdLead: record.createdLead, logged: record.logged))
        } else {
            console.print(match.line)
            if record.createdLead { console.print("unknown number: created lead \(match.id) (source Call log)") }
            if !record.logged { console.print("this call was already logged") }
        }
        return .success
    }
}

/// `strongroom phone normalize`: E.164 forms of phone numbers.
struct PhoneNormalizeCommand: StandaloneCommand {
    static let name = "phone normalize"
    static let abstract = "print the E.164 form of phone numbers"
    static let help = """
        Usage: strongroom phone normalize [--region R] [--json] [NUMBER...]

        One output line per number, in order: its E.164 form, or `invalid: REASON`. With --json, one
        JSON object per line instead: {"e164": "+44…"} or {"e164": null, "invalid": "REASON"}. With no NUMBER,
        reads one number per line from standard input (an empty line gives `invalid: empty`).
        Extensions (x123, ext. 123, ;ext=123) are not part of the E.164 form.
        Exit status 0 when every number was valid, 2 when any was invalid.

          --region R   region of numbers written without a country code: ISO 3166 code (default: the
                       store's, from --store or STRONGROOM_STORE; US when no store is named)

        Example:
          strongroom phone normalize --region GB "020 7946 0958" "+1 (415) 555-2671"
        """

    /// One number's result as `--json` prints it: the E.164 form, or null and why it is invalid.
    struct Output: Encodable {
        let e164: String?
        let invalid: String?

        enum CodingKeys: String, CodingKey { case e164, invalid }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(e164, forKey: .e164)
            try container.encodeIfPresent(invalid, forKey: .invalid)
        }
    }

    static let takesJSON = true
    /// The store whose default region applies, as given (`--store`, `--keys-store`).
    let store: StoreLocationArguments
    let region: String?
    let numbers: [String]

    init(parsing arguments: inout Arguments) throws(UsageError) {
        store = try StoreLocationArguments(parsing: &arguments)
        region = try arguments.option("--region")
        numbers = arguments.remainingPositionals()
    }

    func run(console: Console) throws -> ExitStatus {
        var region = region
        if region == nil, let storeLocation = try store.location(environment: console.environment) {
            region = try Store.defaultRegion(at: storeLocation)
        }
        let normalizer: PhoneNormalizer
        do { normalizer = try PhoneNormalizer(defaultRegion: region ?? "US") } catch {
            throw UsageError(message: "unsupported region \(region ?? "")")
        }
        var numbers = numbers
        let fromInput = numbers.isEmpty
        var allValid = true
        while true {
            let number: String
            if fromInput {
                guard let line = console.readLine() else { break }
                number = line
            } else {
                guard !numbers.isEmpty else { break }
                number = numbers.removeFirst()
            }
            let output: Output
            do { output = Output(e164: try normalizer.normalize(number).e164, invalid: nil) } catch {
                allValid = false
                output = Output(e164: nil, invalid: error.reason)
            }
            if console.json {
                try console.printJSON(output)
            } else {
                console.print(output.e164 ?? "invalid: \(output.invalid ?? "")")
            }
        }
        return allValid ? .success : .usage
    }
}
