import Foundation
import StrongroomCrypto
import StrongroomStorage

/// A consent ledger row as stored.
struct ConsentRow {
    let id: Int64
    let purpose: String
    let state: ConsentState
    let at: Int64
    let initiator: ConsentInitiator
    let client: [UInt8]?
    let evidence: [UInt8]?
    let confirms: Int64?
    /// The sealed `ConsentActorSeal`; nil for an entry written before schema version 7.
    let actor: [UInt8]?

    /// Its sealed parts, in order (client address, evidence, actor).
    var sealedValues: [SealedValue] {
        [client.map { SealedValue(location: EnvelopeLocation(slot: .consentClientAddress, recordID: id), ciphertext: $0) },
         evidence.map { SealedValue(location: EnvelopeLocation(slot: .consentEvidence, recordID: id), ciphertext: $0) },
         actor.map { SealedValue(location: EnvelopeLocation(slot: .consentActor, recordID: id), ciphertext: $0) }].compactMap { $0 }
    }
}

/// The sealed actor of a ledger entry: the staff member or service that made the change, sealed
/// (AES-256-GCM under the subject key, like the entry's client address and evidence) together with the
/// entry's clear facts — purpose, state, time, initiator, confirmed entry. GCM authenticates its whole
/// plaintext (NIST SP 800-38D), so the facts are bound to the actor as AAD would bind them: a row whose
/// clear state, purpose or time was edited in the database no longer matches its seal, and reading the
/// ledger fails (`unreadableField`) instead of showing the edited entry as genuine.
struct ConsentActorSeal: Equatable {
    /// How an entry from before the ledger recorded actors reads.
    static let unknownActor = "unknown"

    let actor: String
    let purpose: String
    let state: ConsentState
    let at: Int64
    let initiator: ConsentInitiator
    let confirms: Int64?

    /// The bytes sealed: the actor, then the facts, in the length-prefixed layout of `FieldCodec`.
    var plaintext: [UInt8] {
        FieldCodec.encodeStrings([actor, purpose, state.rawValue, String(at), initiator.rawValue, confirms.map(String.init) ?? ""])
    }

    /// Whether the facts sealed are the row's clear facts.
    func matches(_ row: ConsentRow) -> Bool {
        purpose == row.purpose && state == row.state && at == row.at && initiator == row.initiator && confirms == row.confirms
    }
}

extension ConsentActorSeal {
    /// Reads an opened seal; nil when malformed.
    init?(plaintext: [UInt8]) {
        guard let strings = try? FieldCodec.decodeStrings(plaintext), strings.count == 6,
              let state = ConsentState(rawValue: strings[2]), let at = Int64(strings[3]),
              let initiator = ConsentInitiator(rawValue: strings[4]) else { return nil }
        let confirms = strings[5].isEmpty ? nil : Int64(strings[5])
        guard strings[5].isEmpty || confirms != nil else { return nil }
        self.init(actor: strings[0], purpose: strings[1], state: state, at: at, initiator: initiator, confirms: confirms)
    }
}

extension Store {
    /// Finishes re-encrypting `subject`'s ledger under its new key `version`, inside the rotation's
    /// transaction: counts the re-sealed parts against the new key's budget, and throws when an entry is
    /// not under the new key (one appended while the rotation ran), so the batch rolls back rather than
    /// destroy the key that entry needs; running the rotation again re-encrypts every entry.
    func finishLedgerReseal(_ subject: SubjectID, version: UInt32, in connection: any Database) throws {
        if try connection.scalarInteger("SELECT 1 FROM consent_ledger WHERE subject_id = ? AND key_version <> ? LIMIT 1",
                                        [.integer(subject.rawValue), .int(Int(version))]) != nil {
            throw StoreError.concurrentChange(subject)
        }
        try connection.run("""
            UPDATE subjects SET seal_count = seal_count
                + (SELECT count(client_ct) + count(evidence_ct) + count(actor_ct) FROM consent_ledger WHERE subject_id = ?1)
            WHERE id = ?1
            """, [.integer(subject.rawValue)])
    }
}
