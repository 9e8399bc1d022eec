import Foundation
@testable import Strongroom
import StrongroomCrypto
import Testing

/// A subject's envelopes sealed with nonces taken from one `RandomDraw` (the import's path) against
/// envelopes sealed each with its own request (the single-envelope path): the same format, each its own
/// nonce, every tampering refused.
@Suite("Envelopes sealed with nonces from one draw")
struct EnvelopeDrawTests {
    let storeID = (0..<16).map { UInt8($0) }
    let key: KeyHandle
    let plaintext = Array("Zebedee Quixotic".utf8)

    init() throws {
        key = KeyHandle(cipher: try AES256GCM(key: try SecretKey.random()), version: 1, identifier: 0xA1B2_C3D4)
    }

    /// Opens `envelope` at `location` under `key` (`openKey` opens any envelope without a decrypt
    /// permit; here it returns the field's bytes as a key) and says whether it holds `plaintext`.
    func opens(_ envelope: [UInt8], at location: EnvelopeLocation, storeID: [UInt8]? = nil) throws(EnvelopeError) -> Bool {
        try Envelope.openKey(envelope, at: location, under: key, storeID: storeID ?? self.storeID) == SecretKey(copying: plaintext)
    }

    func location(_ field: PersonalField, _ record: Int64 = 42) -> EnvelopeLocation {
        EnvelopeLocation(slot: .field(field), recordID: record)
    }

    @Test("every field sealed from one draw opens as one sealed alone does, with the same header and a nonce of its own")
    func drawnOpensLikeAlone() throws {
        var draw = try RandomDraw(byteCount: Store.sealedFieldsDrawByteCount)
        let drawn = try PersonalField.allCases.map { field in
            try Envelope.seal(plaintext, at: location(field), under: key, storeID: storeID, nonces: &draw)
        }
        let alone = try PersonalField.allCases.map { field in try Envelope.seal(plaintext, at: location(field), under: key, storeID: storeID) }
        let nonceRange = Envelope.headerByteCount..<(Envelope.headerByteCount + AES256GCM.nonceByteCount)
        for (position, field) in PersonalField.allCases.enumerated() {
            #expect(try opens(drawn[position], at: location(field)))
            #expect(try opens(alone[position], at: location(field)))
            #expect(drawn[position][..<Envelope.headerByteCount] == alone[position][..<Envelope.headerByteCount])
            #expect(drawn[position].count == alone[position].count)
        }
        let nonces = Set((drawn + alone).map { Array($0[nonceRange]) })
        #expect(nonces.count == 2 * PersonalField.allCases.count)
        // More envelopes than the draw was sized for: the draw requests again, every nonce still new.
        let more = try (0..<100).map { _ in try Envelope.seal(plaintext, at: location(.notes), under: key, storeID: storeID, nonces: &draw) }
        #expect(Set((drawn + more).map { Array($0[nonceRange]) }).count == drawn.count + more.count)
        #expect(try more.allSatisfy { try opens($0, at: location(.notes)) })
    }

    @Test("a drawn envelope with a flipped ciphertext, tag or nonce byte, another store id (AAD) or another place is refused; the intact one still opens")
    func tamperedDrawnEnvelope() throws {
        var draw = try RandomDraw(byteCount: Store.sealedFieldsDrawByteCount)
        let envelope = try Envelope.seal(plaintext, at: location(.name), under: key, storeID: storeID, nonces: &draw)
        for position in Envelope.headerByteCount..<envelope.count {
            var tampered = envelope
            tampered[position] ^= 0x80
            #expect(throws: EnvelopeError.authenticationFailed, "byte \(position)") { try opens(tampered, at: location(.name)) }
        }
        var otherStore = storeID
        otherStore[0] ^= 1
        #expect(throws: EnvelopeError.authenticationFailed) { try opens(envelope, at: location(.name), storeID: otherStore) }
        #expect(throws: EnvelopeError.misplaced(expected: location(.name, 43), found: location(.name))) {
            try opens(envelope, at: location(.name, 43))
        }
        // The second act: the untouched envelope, and one sealed after the failures, still open.
        #expect(try opens(envelope, at: location(.name)))
        #expect(try opens(try Envelope.seal(plaintext, at: location(.name), under: key, storeID: storeID, nonces: &draw), at: location(.name)))
    }

    @Test("subject keys made from one draw: each wrapped key opens under the KEK to its key, with keys, identifiers and nonces all distinct, past the draw's expected need too",
          arguments: TestBackend.all)
    func subjectKeysFromOneDraw(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let keyring = test.store.keyring
        let kek = keyring.keyEncryptionKey
        try keyring.reserve(kek.usage, count: 50)
        // Drawn for 40: the last ten keys each draw again.
        var draws = try Keyring.NewKeyDraws(count: 40)
        let fresh = try (1...50).map { subject in
            try keyring.makeSubjectKey(for: SubjectID(rawValue: Int64(subject)), version: 1, wrappedUnder: kek, drawingFrom: &draws)
        }
        #expect(Set(fresh.map { $0.key.base64EncodedBytes() }).count == 50)
        for key in fresh {
            let location = EnvelopeLocation(slot: .subjectKey, recordID: key.subject.rawValue)
            #expect(try Envelope.openKey(key.wrapped, at: location, under: kek, storeID: keyring.storeID) == key.key)
        }
        #expect(Set(fresh.map(\.handle.identifier)).count == 50)
        #expect(Set(fresh.map { Array($0.wrapped[Envelope.headerByteCount..<(Envelope.headerByteCount + AES256GCM.nonceByteCount)]) }).count == 50)
        // The store still makes and reads subjects normally afterwards.
        let id = try test.store.create(sampleSubject("after-draw"), context: TestStore.admin)
        #expect(try test.store.read(id, fields: [.name], context: TestStore.admin).personal.name == "Zebedee Quixotic-after-draw")
    }
}
