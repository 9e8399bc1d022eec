import Foundation
import Strongroom
import StrongroomCrypto
import Testing

/// The library tour of README.md, kept here so that it compiles and runs: change both together.
@Suite("README library tour")
struct ReadmeTourTests {
    @Test("the tour runs as written", arguments: TestBackend.all)
    func tour(backend: TestBackend) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tour-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder); try? FileManager.default.removeItem(atPath: folder + ".key") }
        // The store's place: the folder (`.directory(folder)`), or a URL with a schema of its own on PostgreSQL.
        let location = try TestStore.location(backend, directory: folder)
        defer { TestStore.dropSchemas(of: location) }

        // --- README tour begins ---
        // 1. A master key in a 0600 file, and a store locked with it (default phone region GB).
        let keyFile = folder + ".key"
        _ = try KeyFile.create(at: keyFile)
        var configuration = StoreConfiguration()
        configuration.defaultRegion = "GB"
        let store = try Store.create(at: location, keyProvider: KeyFileProvider(path: keyFile), configuration: configuration)
        defer { store.close() }

        // 2. Every read and write names who acts and why; each decrypt is audited before it returns.
        let crm = AccessContext(actor: "crm-api", purpose: .admin, clientAddress: "10.0.0.7")
        let id = try store.create(NewSubject(
            metadata: SubjectMetadata(kind: .lead, externalID: "crm-1", source: "Website form"),
            personal: PersonalData(name: "Ada Lovelace", emails: ["ada@example.org"],
                                   phones: [LabeledPhone(label: "mobile", number: "07700 900123")])),
            context: crm)
        let ada = try store.read(id, fields: [.name, .emails], context: crm)
        print(ada.personal.name ?? "")                                  // Ada Lovelace

        // 3. Caller ID: the number as the telephony layer gives it finds the person.
        let pbx = AccessContext(actor: "pbx", purpose: .callerID)
        let callers = try store.callerID(number: "+447700900123", context: pbx)
        print(callers.first?.name ?? "unknown caller")                  // Ada Lovelace

        // 4. Rectify, convert, export, restrict and erase.
        try store.update(id, personal: PersonalData(company: "Analytical Engines Ltd"), context: crm)
        try store.convertToContact(id, context: crm)
        let export = try store.export(id, context: AccessContext(actor: "dpo", purpose: .subjectRequest))
        print(String(decoding: try export.jsonData(), as: UTF8.self).count > 0)
        try store.setRestricted(true, id, context: crm)
        try store.erase(id, reason: "Art. 17 request 2026-114", context: crm)

        // 5. The audit log verifies: every entry chained under HMAC-SHA256, its head signed.
        let verification = try store.verifyAuditLog()
        print(verification.isIntact)                                    // true
        // --- README tour ends ---

        #expect(ada.personal.name == "Ada Lovelace")
        #expect(callers.map(\.id) == [id])
        #expect(export.personal.company == "Analytical Engines Ltd")
        #expect(verification.isIntact)
    }
}
