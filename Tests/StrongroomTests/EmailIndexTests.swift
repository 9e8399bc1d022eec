import Foundation
@testable import Strongroom
@testable import StrongroomStorage
import StrongroomTestSupport
import Synchronization
import Testing

/// A subject holding one e-mail address (and no phone number), for the e-mail index tests.
func emailSubject(_ name: String, email: String, externalID: String? = nil, kind: SubjectKind = .lead) -> NewSubject {
    NewSubject(metadata: SubjectMetadata(kind: kind, externalID: externalID), personal: PersonalData(name: name, emails: [email]))
}

@Suite("E-mail addresses as the e-mail index keys them")
struct EmailAddressTests {
    @Test("Punycode encodes RFC 3492's samples and common labels", arguments: [
        ("bücher", "bcher-kva"), ("münchen", "mnchen-3ya"),
        ("3年B組金八先生", "3B-ww4c5e180e575a65lsy2b"),                  // RFC 3492 §7.1 (L)
        ("ليهمابتكلموشعربي؟", "egbpdaj6bu4bxfgehfvwxn"),                 // (A)
        ("他们为什么不说中文", "ihqwcrb4cv8a8dqg056pqjye"),                 // (B)
        ("安室奈美恵-with-SUPER-MONKEYS", "-with-SUPER-MONKEYS-pc58ag80a8qai00g7n9n"), // (M)
    ])
    func punycode(label: String, encoded: String) {
        #expect(Punycode.encode(Array(label.unicodeScalars)) == encoded)
    }

    @Test("case, surrounding space and the domain's Unicode form do not change the address", arguments: [
        (" Ivo.2@Example.ORG\n", "ivo.2@example.org"),
        ("ivo@BÜCHER.example", "ivo@xn--bcher-kva.example"),
        ("ivo@xn--bcher-kva.example", "ivo@xn--bcher-kva.example"),
        ("ivo@bu\u{308}cher.example", "ivo@xn--bcher-kva.example"),       // decomposed ü
        ("ivo@ＥＸＡＭＰＬＥ。org", "ivo@example.org"),                     // full-width letters, ideographic stop
        ("IVO+news@München.DE", "ivo+news@xn--mnchen-3ya.de"),
    ])
    func normalises(text: String, normalized: String) throws {
        #expect(try EmailAddress(text).normalized == normalized)
    }

    @Test("what is not an address is refused, and the error holds none of it", arguments: [
        "", "   ", "ivo.example.org", "@example.org", "ivo@", "ivo@localhost", "iv o@example.org", "ivo@exa mple.org",
        "ivo@-example.org", "ivo@example-.org", "ivo@example..org", "ivo@.example.org", "ivo@example.org.",
        "a@b@example.org", "ivo@exa_mple.org", "ivo@exam☃ple.org", String(repeating: "x", count: 65) + "@example.org",
        "ivo@" + String(repeating: "x", count: 64) + ".org", "ivo\u{7}@example.org",
    ])
    func refuses(text: String) {
        #expect(throws: EmailAddressError.self) { try EmailAddress(text) }
        if case .failure(let error) = Result(catching: { () throws(EmailAddressError) in try EmailAddress(text) }) {
            #expect(text.count < 3 || !error.reason.contains(text))
        }
    }
}

@Suite("The e-mail blind index")
struct EmailIndexTests {
    static let request = AccessContext(actor: "test-dpo", purpose: .subjectRequest)

    /// Closes the test's store and takes its data database back to version 5, as that version made it
    /// (no e-mail tables); returns a raw connection to it.
    static func asSchemaFive(_ test: TestStore) throws -> any Database {
        test.store.close()
        let raw = try test.database(.data)
        try PreviousSchema.rewindData(raw, to: 5, test.backend)
        return raw
    }

    @Test("truncation collisions never return the wrong person (8-bit tags, 600 addresses)", arguments: TestBackend.all)
    func collisions(backend: TestBackend) throws {
        let test = try TestStore(backend, plannedPhoneNumbers: 16)
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<600).map { emailSubject("Person \($0)", email: "person.\($0)@example.org") },
                                       context: TestStore.admin).map(\.id)
        // The tags really collide: 600 addresses in at most 256 tags.
        #expect(try test.database(.data).scalarInteger("SELECT count(DISTINCT tag) FROM email_index") ?? 0 <= 256)
        for (index, id) in ids.enumerated() {
            #expect(try test.store.find(.email("Person.\(index)@EXAMPLE.org"), context: Self.request).map(\.id) == [id])
        }
        for index in 600..<700 {
            #expect(try test.store.find(.email("person.\(index)@example.org"), context: Self.request).isEmpty)
        }
        // Second act: from another opening, the same answers.
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.find(.email("person.599@example.org"), context: Self.request).map(\.id) == [ids[599]])
    }

    @Test("find answers by e-mail, phone and external id as caller ID does, and nothing for an unknown key", arguments: TestBackend.all)
    func findByEachKey(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let ivo = try test.store.create(sampleSubject("ivo", phones: ["+44 20 7946 0958"]), context: TestStore.admin)
        let ana = try test.store.create(sampleSubject("ana", phones: ["+44 20 7946 0959"]), context: TestStore.admin)
        let byEmail = try test.store.find(.email("  Zebedee.IVO@example.org "), context: Self.request)
        #expect(byEmail.map(\.id) == [ivo] && byEmail[0].name == "Zebedee Quixotic-ivo" && byEmail[0].externalID == "ext-ivo")
        #expect(try test.store.find(.phone("020 7946 0959", region: nil), context: Self.request).map(\.id) == [ana])
        #expect(try test.store.find(.phone("20 7946 0959", region: "GB"), context: Self.request).map(\.id) == [ana])
        #expect(try test.store.find(.externalID("ext-ana"), context: Self.request).map(\.id) == [ana])
        #expect(try test.store.find(.email("nobody@example.org"), context: Self.request).isEmpty)
        #expect(try test.store.find(.externalID("ext-nobody"), context: Self.request).isEmpty)
        #expect(try test.store.find(.phone("+44 20 7946 0000", region: nil), context: Self.request).isEmpty)
        // An invalid address is refused without being repeated.
        do {
            _ = try test.store.find(.email("zebedee.ivo-at-example.org"), context: Self.request)
            Issue.record("an address without @ was accepted")
        } catch {
            #expect(!"\(error)".contains("zebedee"))
            guard case StoreError.invalidEmailAddress = error else { Issue.record("not an input error: \(error)"); return }
        }
        // A restricted subject is found for the subject's request, not for another purpose.
        try test.store.setRestricted(true, ivo, context: TestStore.admin)
        #expect(try test.store.find(.email("zebedee.ivo@example.org"), context: Self.request).map(\.id) == [ivo])
        #expect(try test.store.find(.email("zebedee.ivo@example.org"), context: TestStore.admin).isEmpty)
        // Second act: another opening finds both again.
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.find(.externalID("ext-ivo"), context: Self.request).map(\.id) == [ivo])
        #expect(try reopened.find(.email("zebedee.ana@example.org"), context: Self.request).map(\.id) == [ana])
    }

    @Test("an update moves the index to the new address; an erasure removes the subject's index rows", arguments: TestBackend.all)
    func updateAndErase(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let ids = try test.store.write([emailSubject("Ivo", email: "ivo@example.org", externalID: "c-1"),
                                        emailSubject("Ana", email: "ana@example.org", externalID: "c-2")], context: TestStore.admin).map(\.id)
        // A re-import of the same external id with a new address.
        _ = try test.store.write([emailSubject("Ivo", email: "ivo@new.example", externalID: "c-1")], context: TestStore.admin)
        #expect(try test.store.find(.email("ivo@example.org"), context: Self.request).isEmpty)
        #expect(try test.store.find(.email("ivo@new.example"), context: Self.request).map(\.id) == [ids[0]])
        let data = try test.database(.data)
        let rows = { (id: SubjectID) in try data.scalarInteger("SELECT count(*) FROM email_index WHERE subject_id = ?", [.integer(id.rawValue)]) }
        #expect(try rows(ids[0]) == 1)
        try test.store.erase(ids[0], reason: "Art. 17 request", context: TestStore.admin)
        #expect(try rows(ids[0]) == 0)
        #expect(try test.store.find(.email("ivo@new.example"), context: Self.request).isEmpty)
        // Second act: the other subject is found, here and from another opening.
        #expect(try test.store.find(.email("ana@example.org"), context: Self.request).map(\.id) == [ids[1]])
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.find(.email("ivo@new.example"), context: Self.request).isEmpty)
        #expect(try reopened.find(.email("ana@example.org"), context: Self.request).map(\.id) == [ids[1]])
    }

    @Test("rotate-index rebuilds the e-mail index under the new key: found after, from another opening and a stale one", arguments: TestBackend.all)
    func rotation(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<7).map { emailSubject("P\($0)", email: "p\($0)@example.org") }, context: TestStore.admin).map(\.id)
        let stale = try test.reopen()
        defer { stale.close() }
        #expect(try stale.find(.email("p1@example.org"), context: Self.request).map(\.id) == [ids[1]])
        let report = try test.store.rotateIndexKey(bits: 10, batchSize: 3, context: TestStore.admin)
        let versions = try test.database(.data).rows("SELECT DISTINCT key_version FROM email_index") { $0.int64(0) }
        #expect(versions == [Int64(report.toVersion)])
        for (index, id) in ids.enumerated() {
            #expect(try test.store.find(.email("P\(index)@example.org"), context: Self.request).map(\.id) == [id])
        }
        // A store opened before the rotation holds the old key: its miss reloads the keys.
        #expect(try stale.find(.email("p6@example.org"), context: Self.request).map(\.id) == [ids[6]])
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.find(.email("p3@example.org"), context: Self.request).map(\.id) == [ids[3]])
        // Second act: a subject written after the rotation is found too, by the stale opening as well.
        let late = try reopened.create(emailSubject("Late", email: "late@example.org"), context: TestStore.admin)
        #expect(try stale.find(.email("late@example.org"), context: Self.request).map(\.id) == [late])
    }

    /// Opens the test's store again with `hook` at the fault points, called with the number of times it
    /// was called at `point` (from 1).
    static func opening(_ test: TestStore, at point: String, _ hook: @escaping @Sendable (Int) throws -> Void) throws -> Store {
        let calls = Mutex(0)
        var configuration = StoreConfiguration()
        configuration.faultInjection = { name, _ in
            guard name == point else { return }
            try hook(calls.withLock { $0 += 1; return $0 })
        }
        return try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: test.key), configuration: configuration)
    }

    @Test("an address rectified (and a name) by another opening while the index rotation's batch holds it decrypted: only the new address is found after the rotation",
          arguments: TestBackend.all)
    func rotationRacingRectification(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<9).map { emailSubject("P\($0)", email: "p\($0)@example.org") }, context: TestStore.admin).map(\.id)
        let writer = test.store
        // Between the second batch's decrypt (ids[3] to ids[5]) and its staging, the address; in the
        // third's (ids[6] to ids[8]), a name only (its writer leaves its index rows alone: the staged
        // rows are stale all the same, and the subject is indexed again after the switch).
        let rotator = try Self.opening(test, at: "rotate-index.decrypted") { call in
            if call == 2 { _ = try writer.rectify(ids[4], [FieldChange(field: "email", value: "p4@new.example")], context: TestStore.admin) }
            if call == 3 { _ = try writer.rectify(ids[7], [FieldChange(field: "name", value: "P7 Renamed")], context: TestStore.admin) }
        }
        defer { rotator.close() }
        let report = try rotator.rotateIndexKey(batchSize: 3, context: TestStore.admin)
        #expect(try writer.read(ids[4], context: TestStore.admin).personal.emails == ["p4@new.example"])
        #expect(try writer.read(ids[7], context: TestStore.admin).personal.name == "P7 Renamed")
        let data = try test.database(.data)
        #expect(try data.rows("SELECT DISTINCT key_version FROM email_index") { $0.int64(0) } == [Int64(report.toVersion)])
        #expect(try data.scalarInteger("SELECT count(*) FROM email_index") == 9)
        #expect(try data.scalarInteger("SELECT count(*) FROM email_index_building") == 0)
        for store in [rotator, writer, try test.reopen()] {
            #expect(try store.find(.email("p4@example.org"), context: Self.request).isEmpty)
            #expect(try store.find(.email("p4@new.example"), context: Self.request).map(\.id) == [ids[4]])
            for (index, id) in ids.enumerated() where index != 4 {
                #expect(try store.find(.email("p\(index)@example.org"), context: Self.request).map(\.id) == [id])
            }
        }
        // Second act: another rotation and another rectification; everyone is found by the address they hold.
        _ = try test.reopen().rotateIndexKey(batchSize: 4, context: TestStore.admin)
        _ = try writer.rectify(ids[4], [FieldChange(field: "email", value: "p4@newer.example")], context: TestStore.admin)
        let again = try test.reopen()
        defer { again.close() }
        #expect(try again.find(.email("p4@new.example"), context: Self.request).isEmpty)
        #expect(try again.find(.email("p4@newer.example"), context: Self.request).map(\.id) == [ids[4]])
        #expect(try again.find(.email("p8@example.org"), context: Self.request).map(\.id) == [ids[8]])
        #expect(try again.verifyAuditLog().isIntact)
    }

    @Test("a subject changed by another writer during the first build of the e-mail index is found by its address", arguments: TestBackend.all)
    func firstBuildRacingWriter(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<5).map { emailSubject("Old \($0)", email: "old.\($0)@example.org") }, context: TestStore.admin).map(\.id)
        let raw = try Self.asSchemaFive(test)
        // What a writer that changes another field leaves (it re-indexes the fields it changes only): a
        // new `updated_at`. The build's batch, which read the subject before, must run again, not skip it.
        let location = test.location
        let reopened = try Self.opening(test, at: "email-index.decrypted") { call in
            guard call == 1 else { return }
            try TestStore.database(.data, at: location).run("UPDATE subjects SET updated_at = updated_at + 1 WHERE id = ?", [.integer(ids[2].rawValue)])
        }
        defer { reopened.close() }
        #expect(try raw.scalarInteger("SELECT count(*) FROM email_index_backfill") == 0)
        for (index, id) in ids.enumerated() {
            #expect(try reopened.find(.email("old.\(index)@example.org"), context: Self.request).map(\.id) == [id])
        }
        // Second act: another opening finds the changed subject by its address as well.
        let again = try test.reopen()
        defer { again.close() }
        #expect(try again.find(.email("old.2@example.org"), context: Self.request).map(\.id) == [ids[2]])
        #expect(try again.verifyAuditLog().isIntact)
    }

    @Test("a store made before the e-mail index (schema 5) opens, indexes its addresses once, and finds by e-mail", arguments: TestBackend.all)
    func storeOfSchemaFiveOpens(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let ids = try test.store.write((0..<5).map { emailSubject("Old \($0)", email: "old.\($0)@example.org") }, context: TestStore.admin).map(\.id)
        try test.store.setRestricted(true, ids[4], context: TestStore.admin)
        let raw = try Self.asSchemaFive(test)
        let reopened = try test.reopen(hooks: [hook])
        defer { reopened.close() }
        #expect(try raw.schemaVersion() == PreviousSchema.latestData(backend))
        #expect(try raw.scalarInteger("SELECT count(*) FROM email_index_backfill") == 0)
        for (index, id) in ids.enumerated() {
            #expect(try reopened.find(.email("old.\(index)@example.org"), context: Self.request).map(\.id) == [id])
        }
        let builds = { hook.events.filter { $0.action == .decrypt && $0.detail == "e-mail index" } }
        #expect(builds().count == 5 && builds().allSatisfy { $0.purpose == Purpose.keyRotation.rawValue && $0.fields == [.emails] })
        // Second act: the next opening builds nothing again, and still finds.
        let again = try test.reopen(hooks: [hook])
        defer { again.close() }
        #expect(builds().count == 5)
        #expect(try again.find(.email("old.2@example.org"), context: Self.request).map(\.id) == [ids[2]])
    }

    @Test("a first build the audit log refuses leaves the store open; find by e-mail then reports it, and builds once the log takes entries",
          arguments: TestBackend.all)
    func buildRefusedAtOpen(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let id = try test.store.create(emailSubject("Old", email: "old@example.org"), context: TestStore.admin)
        let raw = try Self.asSchemaFive(test)
        hook.fail(true)
        let reopened = try test.reopen(hooks: [hook])
        defer { reopened.close() }
        #expect(try raw.scalarInteger("SELECT cursor FROM email_index_backfill") == 0)
        #expect(throws: StoreError.self) { try reopened.find(.email("old@example.org"), context: Self.request) }
        // Second act: once the log takes entries again, the same find builds the index and answers.
        hook.fail(false)
        #expect(try reopened.find(.email("old@example.org"), context: Self.request).map(\.id) == [id])
        #expect(try raw.scalarInteger("SELECT count(*) FROM email_index_backfill") == 0)
    }
}
