import Foundation
import Strongroom
import StrongroomStorage
import Testing

@Suite("Attacks on stored ciphertext")
struct EnvelopeAttackTests {
    /// The error a read of `id` fails with, as the envelope error inside it.
    func envelopeError(_ store: Store, _ id: SubjectID, fields: Set<PersonalField> = [.name]) -> EnvelopeError? {
        do {
            _ = try store.read(id, fields: fields, context: TestStore.admin)
            return nil
        } catch StoreError.unreadableField(_, _, let error) {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    func column(_ test: TestStore, _ column: String, of id: SubjectID) throws -> [UInt8] {
        try #require(try test.database(.data).firstRow("SELECT \(column) FROM subjects WHERE id = ?", [.integer(id.rawValue)]) {
            $0.blob(0)
        } ?? nil)
    }

    func setColumn(_ test: TestStore, _ column: String, of id: SubjectID, to value: [UInt8]) throws {
        try test.database(.data).run("UPDATE subjects SET \(column) = ? WHERE id = ?", [.blob(value), .integer(id.rawValue)])
    }

    @Test("every flipped byte of a stored ciphertext is rejected, with the error of the part it hit", arguments: TestBackend.all)
    func flippedBytes(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("flip"), context: TestStore.admin)
        let original = try column(test, "name_ct", of: id)
        var counts: [String: Int] = [:]
        for position in original.indices {
            var tampered = original
            tampered[position] ^= 0x01
            try setColumn(test, "name_ct", of: id, to: tampered)
            let error = try #require(envelopeError(test.store, id), "flip at \(position) was accepted")
            let expected: String
            switch position {
            case 0: expected = "unsupportedVersion"
            case 1...9: expected = "misplaced"
            case 10...13: expected = "keyVersionUnavailable"
            case 14...17: expected = "wrongKey"
            default: expected = "authenticationFailed"
            }
            #expect(String(describing: error).hasPrefix(expected), "flip at \(position): \(error)")
            counts[expected, default: 0] += 1
        }
        try setColumn(test, "name_ct", of: id, to: original)
        #expect(try test.store.read(id, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-flip")
        print("flipped \(original.count) bytes, every one rejected: \(counts.sorted { $0.key < $1.key })")
    }

    @Test("a ciphertext copied to another row or another column is refused as misplaced", arguments: TestBackend.all)
    func swapped(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let alice = try test.store.create(sampleSubject("alice"), context: TestStore.admin)
        let bob = try test.store.create(sampleSubject("bob"), context: TestStore.admin)
        try setColumn(test, "name_ct", of: bob, to: try column(test, "name_ct", of: alice))
        #expect(envelopeError(test.store, bob) == .misplaced(expected: EnvelopeLocation(slot: EnvelopeSlot(rawValue: 1), recordID: bob.rawValue),
                                                              found: EnvelopeLocation(slot: EnvelopeSlot(rawValue: 1), recordID: alice.rawValue)))
        try setColumn(test, "name_ct", of: alice, to: try column(test, "company_ct", of: alice))
        guard case .misplaced = envelopeError(test.store, alice) else {
            Issue.record("a column swap was not refused as misplaced")
            return
        }
    }

    @Test("truncated ciphertext is refused as truncated", arguments: TestBackend.all, [0, 1, 17, 30, 45])
    func truncated(backend: TestBackend, length: Int) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("tr"), context: TestStore.admin)
        try setColumn(test, "name_ct", of: id, to: Array(try column(test, "name_ct", of: id).prefix(length)))
        #expect(envelopeError(test.store, id) == .truncated(byteCount: length))
    }

    @Test("a subject key swapped with another subject's in the key database does not unwrap", arguments: TestBackend.all)
    func swappedKeys(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let alice = try test.store.create(sampleSubject("ka"), context: TestStore.admin)
        let bob = try test.store.create(sampleSubject("kb"), context: TestStore.admin)
        let keys = try test.database(.keys)
        let wrapped = try keys.rows("SELECT wrapped FROM subject_keys ORDER BY subject_id") { $0.blob(0)! }
        try keys.run("UPDATE subject_keys SET wrapped = ? WHERE subject_id = ?", [.blob(wrapped[1]), .integer(alice.rawValue)])
        try keys.run("UPDATE subject_keys SET wrapped = ? WHERE subject_id = ?", [.blob(wrapped[0]), .integer(bob.rawValue)])
        let fresh = try test.reopen()  // no cached keys
        #expect {
            try fresh.read(alice, context: TestStore.admin)
        } throws: { error in
            if case StoreError.unreadableKey(_, .misplaced) = error { return true }
            return false
        }
    }

    @Test("a failed decrypt is audited as failed, naming the field and the kind of failure", arguments: TestBackend.all)
    func failedDecryptIsAudited(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("au"), context: TestStore.admin)
        var tampered = try column(test, "name_ct", of: id)
        tampered[tampered.count - 1] ^= 0x80
        try setColumn(test, "name_ct", of: id, to: tampered)
        #expect(envelopeError(test.store, id) == .authenticationFailed)
        #expect(hook.events.last?.outcome == .failed)
        #expect(hook.events.last?.detail == "name: authenticationFailed")
    }
}

@Suite("Rollback of a field (outside the threat model, see SECURITY.md)")
struct RollbackTests {
    @Test("an older valid ciphertext put back into its own field opens to the older value; the audit log shows the update it undid", arguments: TestBackend.all)
    func rollback(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("rb"), context: TestStore.admin)
        let data = try test.database(.data)
        let old = try #require(try data.firstRow("SELECT name_ct FROM subjects WHERE id = ?", [.integer(id.rawValue)]) { $0.blob(0) } ?? nil)
        try test.store.update(id, personal: PersonalData(name: "Newer Name"), context: TestStore.admin)
        try data.run("UPDATE subjects SET name_ct = ? WHERE id = ?", [.blob(old), .integer(id.rawValue)])
        // Not detected: the envelope binds the place (store, table, column, record), not a version.
        #expect(try test.store.read(id, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-rb")
        var updates = 0
        try test.store.auditEntries(AuditFilter(subject: id)) { entry, _ in if entry.action == "update" { updates += 1 } }
        #expect(updates == 1)
    }
}
