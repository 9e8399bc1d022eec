import Foundation
import Strongroom
import StrongroomCrypto
import StrongroomStorage

/// Export of every subject (`subject export --all`): N synthetic contacts, one in ten with a logged call
/// and a consent, exported by `Store.exportAll` from a freshly opened store (no key cached, as in a new
/// process): every field and consent entry decrypted, every decrypt audited, each subject's access log
/// from the audit log, each export encoded as its JSON line. Baseline: the same rows in clear in plain
/// tables of the same backend, read in one pass in id order (on SQLite in C against the sqlite3 API,
/// each contact's numbers, calls and consents read from cursors merged on the contact id; on PostgreSQL
/// the same four queries through the storage layer). The baseline neither decrypts, audits nor encodes
/// JSON: the ratio is what all of that costs.
struct ExportAllWorkload {
    let contacts: Int
    let backend: BenchmarkBackend

    func run() throws -> BenchmarkResult {
        try withScratchDirectory { directory in
            note("export-all: loading \(contacts) contacts into Strongroom and into plain \(backend.name)")
            var configuration = StoreConfiguration()
            configuration.defaultRegion = "GB"
            configuration.plannedPhoneNumbers = contacts * 2
            let location = try backend.storeLocation(scratch: directory)
            defer { backend.dropScratchSchemas() }
            let key = try SecretKey.random()
            let loading = try Store.create(at: location, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
            let baseline = try backend.baselineConnection(scratch: directory)
            try baseline.execute("""
                CREATE TABLE contacts (id BIGINT PRIMARY KEY, external_id TEXT, kind TEXT, owner TEXT, status TEXT, source TEXT,
                    created_at BIGINT, updated_at BIGINT, last_contacted BIGINT, restricted INTEGER, name TEXT, company TEXT,
                    emails TEXT, address TEXT, notes TEXT, custom_fields TEXT);
                CREATE TABLE numbers (contact_id BIGINT NOT NULL, position INTEGER NOT NULL, label TEXT, number TEXT, e164 TEXT);
                CREATE TABLE calls (contact_id BIGINT NOT NULL, at BIGINT NOT NULL, direction TEXT);
                CREATE TABLE consents (contact_id BIGINT NOT NULL, id BIGINT NOT NULL, purpose TEXT, state TEXT, at BIGINT,
                    initiator TEXT, client TEXT, evidence TEXT);
                """)
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            try SyntheticContacts.load(contacts, into: loading, baselineDatabase: baseline) { (index, contact) throws(DatabaseError) in
                try baseline.run("""
                    INSERT INTO contacts (id, external_id, kind, source, created_at, updated_at, last_contacted, restricted, name, company,
                        emails, custom_fields) VALUES (?, ?, 'contact', ?, ?, ?, ?, 0, ?, ?, '[]', '{}')
                    """, [.int(index + 1), .text("c\(index)"), .text(contact.source), .integer(now), .integer(now),
                          .integer(Int64(contact.lastContacted.timeIntervalSince1970 * 1000)), .text(contact.name),
                          .text("Company of \(contact.name)")])
                for (position, (typed, e164)) in zip(contact.typed, contact.e164).enumerated() {
                    try baseline.run("INSERT INTO numbers (contact_id, position, label, number, e164) VALUES (?, ?, 'phone', ?, ?)",
                                     [.int(index + 1), .int(position), .text(typed), .text(e164)])
                }
            }
            note("export-all: a call and a consent for one contact in ten")
            let admin = AccessContext(actor: "bench", purpose: .admin)
            let newsletter: Purpose = "newsletter"
            try loading.declarePurpose(PurposeDeclaration(name: newsletter, description: "Monthly news", lawfulBasis: .consent), context: admin)
            let callTime = Date(timeIntervalSince1970: 1_790_000_000)
            for first in stride(from: 0, to: contacts, by: 10_000) {
                var written: [(index: Int, id: SubjectID, consent: Int64)] = []
                for index in stride(from: first, to: min(first + 10_000, contacts), by: 10) {
                    let contact = SyntheticContacts.contact(index)
                    let id = try loading.recordCall(number: contact.e164[0], at: callTime, context: admin).caller.id
                    let consent = try loading.grantConsent(id, purpose: newsletter, evidence: "signup form v3", initiator: .subject,
                                                           clientAddress: "198.51.100.\(index % 250)", context: admin)
                    written.append((index, id, consent.entryID))
                }
                try baseline.transaction { () throws(DatabaseError) in
                    for (index, id, consentID) in written {
                        try baseline.run("INSERT INTO calls (contact_id, at, direction) VALUES (?, ?, 'in')",
                                         [.integer(id.rawValue), .integer(Int64(callTime.timeIntervalSince1970 * 1000))])
                        try baseline.run("""
                            INSERT INTO consents (contact_id, id, purpose, state, at, initiator, client, evidence)
                            VALUES (?, ?, 'newsletter', 'granted', ?, 'subject', ?, 'signup form v3')
                            """, [.integer(id.rawValue), .integer(consentID), .integer(now), .text("198.51.100.\(index % 250)")])
                    }
                }
            }
            try baseline.execute("""
                CREATE INDEX numbers_by_contact ON numbers (contact_id, position);
                CREATE INDEX calls_by_contact ON calls (contact_id, at);
                CREATE INDEX consents_by_contact ON consents (contact_id, id)
                """)
            if baseline.dialect == .postgresql { try baseline.execute("ANALYZE contacts; ANALYZE numbers; ANALYZE calls; ANALYZE consents") }
            loading.close()

            note("export-all: timing the plain read and the export")
            let baselineCPUStart = clock()
            let (baselineSeconds, baselineSubjects) = try plainRead(baseline, directory: directory)
            let baselineCPU = Double(clock() - baselineCPUStart) / Double(CLOCKS_PER_SEC)
            // A fresh opening: no subject key cached, as for the tool in a new process.
            let store = try Store.open(at: location, keyProvider: StaticKeyProvider(key: key))
            defer { store.close() }
            let residentBefore = peakResidentMegabytes()
            var intervals = LatencySample()
            intervals.reserve(contacts)
            var bytes = 0
            var last = DispatchTime.now().uptimeNanoseconds
            let start = last
            let cpuStart = clock()
            let summary = try store.exportAll(context: admin) { export in
                bytes += try export.jsonLine().count + 1
                let time = DispatchTime.now().uptimeNanoseconds
                intervals.record(time - last)
                last = time
            }
            let seconds = Double(last - start) / 1e9
            let cpu = Double(clock() - cpuStart) / Double(CLOCKS_PER_SEC)
            let rate = Double(summary.exported) / seconds
            let baselineRate = Double(baselineSubjects) / baselineSeconds
            return BenchmarkResult(
                workload: "export-all", backend: backend.name, n: contacts, operations: summary.exported, opsPerS: rate,
                baselineOpsPerS: baselineRate, ratio: rate / baselineRate,
                p50Us: intervals.percentile(0.5), p99Us: intervals.percentile(0.99), p999Us: intervals.percentile(0.999),
                baselineP50Us: 1e6 / baselineRate, baselineP99Us: 0, peakRssMb: peakResidentMegabytes(),
                notes: String(format: "subjects/s from a freshly opened store, each decrypted, audited and encoded (%.0f MB of JSON lines); "
                                  + "by CPU time (this process's, the wall time's share on a busy machine): %.0f/s against %.0f/s, ratio %.4f; "
                                  + "p50/p99: time between one subject's export and the next (a batch's queries fall on its first); "
                                  + "peak RSS %.0f MB before the export; baseline: %@, mean µs per contact as its p50",
                              Double(bytes) / 1e6, Double(summary.exported) / cpu, Double(baselineSubjects) / baselineCPU,
                              (Double(summary.exported) / cpu) / (Double(baselineSubjects) / baselineCPU), residentBefore,
                              (backend.name == "sqlite" ? "C against the sqlite3 API, one merged pass"
                                  : "plain PostgreSQL, four whole-table queries through the storage layer") as NSString))
        }
    }

    /// Reads every contact in clear from the plain tables: the C baseline on SQLite, the same queries
    /// through the storage layer on PostgreSQL. Returns the seconds taken and the contacts read.
    private func plainRead(_ baseline: any Database, directory: String) throws -> (seconds: Double, subjects: Int) {
        if case .sqlite = backend { return try cBaselineExportAll(path: directory + "/baseline.sqlite") }
        let start = DispatchTime.now().uptimeNanoseconds
        var subjects = 0
        var checksum = 0
        try baseline.forEachRow("""
            SELECT id, external_id, kind, owner, status, source, created_at, updated_at, last_contacted, restricted, name, company,
                emails, address, notes, custom_fields FROM contacts ORDER BY id
            """) { row in
            for column in 1..<16 { checksum &+= row.text(column)?.utf8.count ?? 0 }
            subjects += 1
        }
        for (query, columns) in [("SELECT contact_id, label, number, e164 FROM numbers ORDER BY contact_id, position", 4),
                                 ("SELECT contact_id, at, direction FROM calls ORDER BY contact_id, at", 3),
                                 ("SELECT contact_id, id, purpose, state, at, initiator, client, evidence FROM consents ORDER BY contact_id, id", 8)] {
            try baseline.forEachRow(query) { row in
                for column in 1..<columns { checksum &+= row.text(column)?.utf8.count ?? 0 }
            }
        }
        blackHole(checksum)
        return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, subjects)
    }
}
