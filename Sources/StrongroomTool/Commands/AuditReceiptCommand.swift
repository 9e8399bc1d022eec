import Foundation
import Strongroom

/// An erasure receipt as the tool prints it (`subject erase`, `audit receipt`, `retention apply`):
/// `receipt`, `id`, `external_id` (null when not known in clear), `erased_at`, `actor`, `reason`,
/// `destroyed` (counts), `audit_sequence`, `mac` (hex). No personal field.
struct ReceiptOutput: Encodable {
    let receipt: String
    let id: String
    @NullWhenAbsent var externalId: String?
    let erasedAt: String
    let actor: String
    let reason: String
    let destroyed: ErasureReceipt.Destroyed
    @NullWhenAbsent var auditSequence: UInt64?
    let mac: String

    init(_ receipt: ErasureReceipt) {
        self.receipt = receipt.receipt
        id = String(receipt.id.rawValue)
        externalId = receipt.externalID
        erasedAt = formatTime(receipt.erasedAt)
        actor = receipt.actor
        reason = receipt.reason
        destroyed = receipt.destroyed
        auditSequence = receipt.auditSequence
        mac = receipt.mac.map { String(format: "%02x", $0) }.joined()
    }

    /// The receipt as readable lines; stored text (actor, reason, external id) escaped.
    func printLines(_ console: Console) {
        let counts = destroyed
        for (label, value) in [
            ("receipt", receipt), ("id", id), ("external_id", externalId ?? "(not kept in clear; look it up by external id to show it)"),
            ("erased_at", erasedAt), ("actor", actor), ("reason", reason),
            ("destroyed", "\(counts.subjectKeys) subject key(s), \(counts.rows) row(s), \(counts.indexEntries) index entries, "
                + "\(counts.consentEntries) consent entries, \(counts.calls) call(s)"),
            ("audit_sequence", auditSequence.map(String.init) ?? "(none: no audit log of its own)"), ("mac", mac),
        ] {
            console.printEscaped("  \(label.padding(toLength: 15, withPad: " ", startingAt: 0)) \(value)")
        }
    }
}

/// `strongroom audit receipt`: an erasure's receipt, found again and verified.
struct AuditReceiptCommand: StoreCommand {
    static let name = "audit receipt"
    static let abstract = "show and verify the receipt of an erased subject"
    static let help = """
        Usage: strongroom audit receipt ID [--json]

        Finds the receipt `subject erase` (or `retention apply`) left for an erased subject, by the
        store's id or by the external id (the store keeps only its keyed hash, so the receipt shows the
        external id only when found by it), and verifies it: its MAC under the receipt key (derived from
        the audit key), then its audit entry — present at the receipt's audit_sequence in a log that
        verifies as a whole, and the erasure of that subject by that actor for that reason.
        Exit status 0 when verified; 1 when no receipt is kept under ID, or a check failed (named).

          --json   the receipt's fields (as `subject erase --json`) with `verified` and `problem`

        \(StoreOptions.helpPointer)

        Example:
          strongroom audit receipt crm-4242-3 --store ./crm-store --key-file ./crm-store.key
        """

    /// The JSON form: the receipt's fields, then whether it verified and what failed.
    struct Output: Encodable {
        let receipt: ReceiptOutput
        let verified: Bool
        let problem: String?

        private enum CodingKeys: String, CodingKey { case verified, problem }

        /// The receipt's keys and these two in one object.
        func encode(to encoder: any Encoder) throws {
            try receipt.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(verified, forKey: .verified)
            try container.encode(problem, forKey: .problem)
        }
    }

    static let takesJSON = true
    let reference: String

    init(parsing arguments: inout Arguments) throws(UsageError) {
        guard let reference = arguments.positional() else { throw UsageError(message: "give the erased subject's id or external id") }
        self.reference = reference
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let verification = try store.checkErasureReceipt(reference, context: context)
        let receipt = ReceiptOutput(verification.receipt)
        if console.json {
            try console.printJSON(Output(receipt: receipt, verified: verification.isVerified, problem: verification.problem))
        } else {
            console.print(verification.isVerified ? "erasure receipt verified:" : "erasure receipt NOT verified:")
            receipt.printLines(console)
            if let problem = verification.problem { console.printEscaped("  problem         \(problem)") }
        }
        return verification.isVerified ? .success : .failure
    }
}
