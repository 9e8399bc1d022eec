import Foundation
@testable import Strongroom
import StrongroomCrypto
import StrongroomStorage
import Testing

/// An erasure's tombstone: no import, `create` or call record brings an erased external id back.
@Suite("Tombstones: an erased external id is never re-created")
struct TombstoneTests {
    static let reason = "Art. 17 request 2026-114"
    /// Two rows: the first is erased by the tests, the second stays.
    static let csv = Array("""
        external_id,kind,name,phone,last_contacted
        crm-gone-1,contact,Ottoline Gone,+44 20 7946 0111,2026-05-03
        crm-stays-2,lead,Percival Stays,+44 20 7946 0222,2026-05-04

        """.utf8)

    /// Imports `csv` (or `Self.csv`) into `store`.
    static func importRows(_ store: Store, _ csv: [UInt8] = csv, strict: Bool = false) throws -> ImportReport {
        var options = ImportOptions()
        options.strict = strict
        return try CSVImporter(store: store, options: options).run(csv, context: TestStore.admin)
    }

    @Test("a re-import skips an erased id and reports its line and day, never its content: twice, after reopening; caller ID finds nobody",
          arguments: TestBackend.all)
    func reimportSkipsErased(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        #expect(try Self.importRows(test.store).created == 2)
        let gone = try test.store.resolve("crm-gone-1")
        let erasure = try test.store.erase(gone, reason: Self.reason, context: TestStore.admin)
        let day = String(ISO8601DateFormatter().string(from: erasure.receipt.erasedAt).prefix(10))

        for store in [test.store, test.store, try test.reopen()] {
            let report = try Self.importRows(store)
            #expect(report.created == 0 && report.updated == 1)
            #expect(report.rejected == [ImportReport.RejectedRow(line: 2, column: "external_id",
                                                                   reason: "erased on \(day): an erased subject is never re-imported")])
            for text in ["crm-gone-1", "Ottoline", "7946 0111"] { #expect(!report.rejected[0].reason.contains(text)) }
            #expect(try store.count() == 1)
            #expect(try store.callerID(number: "+44 20 7946 0111", context: TestStore.caller).isEmpty)
            #expect(try store.callerID(number: "+44 20 7946 0222", context: TestStore.caller).count == 1)
            #expect { try store.resolve("crm-gone-1") } throws: { ($0 as? StoreError).map { if case .subjectNotFound = $0 { true } else { false } } ?? false }
        }
    }

    @Test("import --strict refuses a file holding an erased id: nothing of it is written", arguments: TestBackend.all)
    func strictRefuses(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        _ = try Self.importRows(test.store)
        try test.store.erase(try test.store.resolve("crm-gone-1"), reason: Self.reason, context: TestStore.admin)
        let file = Self.csv + Array("crm-new-3,lead,Quentin New,+44 20 7946 0333,2026-05-05\n".utf8)
        #expect { try Self.importRows(test.store, file, strict: true) } throws: { error in
            guard case ImportError.rejectedRows(let rows) = error else { return false }
            return rows.map(\.line) == [2] && rows[0].reason.hasPrefix("erased on ")
        }
        #expect(try test.store.count() == 1)
        #expect(try test.store.callerID(number: "+44 20 7946 0333", context: TestStore.caller).isEmpty)
        // Second act: the same file without the erased row imports.
        let clean = Array(String(decoding: file, as: UTF8.self).split(separator: "\n").enumerated()
            .filter { $0.offset != 1 }.map(\.element).joined(separator: "\n").utf8) + [10]
        #expect(try Self.importRows(test.store, clean, strict: true).created == 1)
        #expect(try test.store.count() == 2)
    }

    @Test("create refuses an erased external id (externalIDErased, nothing written); a new external id creates; call record makes a lead without it",
          arguments: TestBackend.all)
    func createRefused(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("t1"), context: TestStore.admin)
        let erasedAt = try test.store.erase(id, reason: Self.reason, context: TestStore.admin).receipt.erasedAt
        #expect { try test.store.create(sampleSubject("t1"), context: TestStore.admin) } throws: { error in
            guard case StoreError.externalIDErased(let at) = error else { return false }
            let text = "\(error)"
            return at == erasedAt && !text.contains("ext-t1") && !text.contains("Zebedee")
        }
        // A batch holding it is refused whole.
        #expect(throws: StoreError.self) { try test.store.write([sampleSubject("t2"), sampleSubject("t1")], context: TestStore.admin) }
        #expect(try test.store.count() == 0)
        // A new subject, after a new consent, under a new external id.
        var renewed = sampleSubject("t1")
        renewed.metadata.externalID = "ext-t1-renewed"
        let newID = try test.store.create(renewed, context: TestStore.admin)
        #expect(newID != id)
        // A call from the erased person's number logs a new lead, which has no external id: the erased one stays erased.
        let call = try test.store.recordCall(number: "+44 20 7946 0958", context: TestStore.admin)
        #expect(call.caller.externalID == "ext-t1-renewed")
        try test.store.erase(newID, reason: Self.reason, context: TestStore.admin)
        let lead = try test.store.recordCall(number: "+44 20 7946 0958", context: TestStore.admin)
        #expect(lead.createdLead && lead.caller.externalID == nil)
        // Nor can an update hand an erased external id to another subject.
        var moved = sampleSubject("t3").metadata
        let third = try test.store.create(NewSubject(metadata: moved, personal: PersonalData(name: "Third")), context: TestStore.admin)
        moved.externalID = "ext-t1"
        #expect(throws: StoreError.self) { try test.store.update(third, metadata: moved, personal: PersonalData(), context: TestStore.admin) }
        #expect(try test.store.resolve("ext-t3") == third)
        // Second act: from another opening, both erased ids are still refused.
        let reopened = try test.reopen()
        defer { reopened.close() }
        for tag in ["t1", "t1-renewed"] {
            var subject = sampleSubject("t1")
            subject.metadata.externalID = "ext-\(tag)"
            #expect(throws: StoreError.self) { try reopened.create(subject, context: TestStore.admin) }
        }
    }

    @Test("tombstones keep blocking after a master, KEK, data and index rotation, and from a store opened with the new master key",
          arguments: TestBackend.all)
    func survivesRotations(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        _ = try Self.importRows(test.store)
        try test.store.erase(try test.store.resolve("crm-gone-1"), reason: Self.reason, context: TestStore.admin)
        let newMaster = try SecretKey.random()
        let rotations: [(String, () throws -> Void)] = [
            ("master", { _ = try test.store.rotateMasterKey(to: newMaster, context: TestStore.admin) }),
            ("kek", { _ = try test.store.rotateKeyEncryptionKey(context: TestStore.admin) }),
            ("data", { _ = try test.store.rotateAllDataKeys(context: TestStore.admin) }),
            ("index", { _ = try test.store.rotateIndexKey(context: TestStore.admin) }),
        ]
        for (kind, rotate) in rotations {
            try rotate()
            let report = try Self.importRows(test.store)
            #expect(report.created == 0 && report.rejected.count == 1, "after the \(kind) rotation")
        }
        let reopened = try Store.open(at: test.location, keyProvider: StaticKeyProvider(key: newMaster))
        defer { reopened.close() }
        #expect(try Self.importRows(reopened).rejected.count == 1)
        #expect(try reopened.count() == 1)
    }

    @Test("the key database keeps the erased external id only as a 256-bit keyed hash", arguments: TestBackend.all)
    func keptHashed(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("h1"), context: TestStore.admin)
        try test.store.erase(id, reason: Self.reason, context: TestStore.admin)
        let keys = try test.database(.keys)
        let tag = try #require(try keys.firstRow("SELECT external_id_tag FROM tombstones WHERE subject_id = ?", [.integer(id.rawValue)]) {
            $0.blob(0)
        } ?? nil)
        let expected = try test.store.keyring.erasureKeys.tag(externalID: "ext-h1")
        #expect(tag.count == 32 && tag == expected)
        PlaintextScan.expectAbsent(["ext-h1"], from: try test.storedContent().filter { $0.place.contains("keys") }, backend: backend)
    }

    @Test("a key database of schema 5 (before tombstones) opens, gains the table, and its next erasure leaves a tombstone and a receipt",
          arguments: TestBackend.all)
    func schemaFiveOpens(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        _ = try Self.importRows(test.store)
        test.store.close()
        let keys = try test.database(.keys)
        try PreviousSchema.rewindKeys(keys, to: 5, backend)
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try keys.schemaVersion() == PreviousSchema.latestKeys(backend))
        let receipt = try reopened.erase(try reopened.resolve("crm-gone-1"), reason: Self.reason, context: TestStore.admin).receipt
        #expect(try reopened.verifyErasureReceipt(try reopened.erasureReceipt(for: "crm-gone-1")).isVerified)
        #expect(try Self.importRows(reopened).rejected.count == 1)
        // Second act: another opening finds the receipt and refuses the id.
        let again = try test.reopen()
        defer { again.close() }
        #expect(try again.erasureReceipt(for: String(receipt.id.rawValue)) == receipt.with(externalID: nil))
        #expect(try Self.importRows(again).created == 0)
    }
}
