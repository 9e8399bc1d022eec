import Foundation
import Strongroom
import StrongroomStorage
import DeterministicRandom

/// Deterministic synthetic contacts with 1–3 phone numbers each, stored in mixed national and
/// international styles, as a GB store would receive them.
struct SyntheticContacts {
    /// One contact: its E.164 numbers and how each was typed.
    struct Contact {
        let name: String
        let source: String
        let lastContacted: Date
        let e164: [String]
        let typed: [String]

        /// Its e-mail address, for the stores that hold one (`load`'s `withEmails`).
        var email: String { name.lowercased().replacingOccurrences(of: " ", with: ".") + "@example.com" }
    }

    static let sources = ["Referral", "Website form", "Cold call", "Google Ads", "Trade show", "Call log"]

    /// Writes the first `count` contacts into `store` in batches of 1,000 (external ids `c0`, `c1`, …);
    /// `baseline`, when given, is called with each contact's index and contents inside one transaction of
    /// `baselineDatabase` per batch, so both sides are loaded alike. `withEmails`: each subject holds its
    /// contact's e-mail address too. Notes progress every 100,000.
    static func load(_ count: Int, into store: Store, withEmails: Bool = false, baselineDatabase: (any Database)? = nil,
                     baseline: (Int, Contact) throws(DatabaseError) -> Void = { _, _ in }) throws {
        let admin = AccessContext(actor: "bench", purpose: .admin)
        let start = Date()
        for first in stride(from: 0, to: count, by: 1000) {
            let indexes = first..<min(first + 1000, count)
            let contacts = indexes.map(contact)
            if let baselineDatabase {
                try baselineDatabase.transaction { () throws(DatabaseError) in
                    for (index, contact) in zip(indexes, contacts) { try baseline(index, contact) }
                }
            }
            _ = try store.write(zip(indexes, contacts).map { subject($1, externalID: "c\($0)", withEmail: withEmails) }, context: admin)
            if first % 100_000 == 0 && first > 0 { note("  loaded \(first) in \(Int(Date().timeIntervalSince(start))) s") }
        }
    }

    /// The import workloads' CSV file: the first `count` contacts, external ids `c0`, `c1`, …, up to
    /// three numbers each as typed.
    static func importFile(_ count: Int) -> [UInt8] {
        var csv = "external_id,kind,name,company,phone,mobile,work_phone,source,last_contacted\n"
        for index in 0..<count {
            let contact = contact(index)
            let phones = contact.typed + Array(repeating: "", count: 3 - contact.typed.count)
            csv += "c\(index),contact,\(contact.name),Company of \(contact.name),\(phones.joined(separator: ",")),\(contact.source),2026-01-01\n"
        }
        return Array(csv.utf8)
    }

    /// The `index`-th contact (the same for every run).
    static func contact(_ index: Int) -> Contact {
        var random = SplitMix64(seed: UInt64(index) &* 0x9E37_79B9 &+ 17)
        let count = 1 + Int(random.next() % 3)
        var e164: [String] = []
        var typed: [String] = []
        for slot in 0..<count {
            // A bijection of (index, slot) onto 8 digits keeps numbers distinct.
            let serial = UInt64(index * 3 + slot)
            let digits = (serial &* 2_654_435_761) % 100_000_000
            let body = String(format: "%08llu", digits)
            switch random.next() % 10 {
            case 0..<7:
                let number = "+447" + String(random.next() % 10) + body
                e164.append(number)
                let national = "07" + number.dropFirst(4)
                typed.append(random.next() % 2 == 0 ? national.prefix(5) + " " + national.dropFirst(5) : "+44 " + number.dropFirst(3))
            case 7..<9:
                let area = 201 + Int(random.next() % 700)
                let number = "+1\(area)" + body.suffix(7)
                e164.append(number)
                typed.append("+1 (\(area)) \(body.suffix(7).prefix(3))-\(body.suffix(4))")
            default:
                let number = "+4915" + body + String(random.next() % 10)
                e164.append(number)
                typed.append("0049 " + number.dropFirst(3))
            }
        }
        return Contact(name: "Contact \(index)", source: sources[Int(random.next() % UInt64(sources.count))],
                       lastContacted: Date(timeIntervalSince1970: 1_700_000_000 + Double(random.next() % 50_000_000)),
                       e164: e164, typed: typed)
    }

    /// A valid number that no contact holds (French mobiles: none of the contacts has one).
    static func absentNumber(_ index: Int) -> String {
        "+336" + String(format: "%08d", (index &* 7_919) % 100_000_000)
    }

    /// The contact as a new subject for the store (`withEmail`: holding its e-mail address).
    static func subject(_ contact: Contact, externalID: String, withEmail: Bool = false) -> NewSubject {
        NewSubject(metadata: SubjectMetadata(kind: .contact, externalID: externalID, source: contact.source,
                                             lastContactedAt: contact.lastContacted),
                   personal: PersonalData(name: contact.name, company: "Company of \(contact.name)",
                                          emails: withEmail ? [contact.email] : nil,
                                          phones: contact.typed.map { LabeledPhone(label: "phone", number: $0) }))
    }
}
