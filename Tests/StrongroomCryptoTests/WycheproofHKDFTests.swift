import StrongroomCrypto
import StrongroomTestSupport
import Testing

/// Project Wycheproof's HKDF-SHA256 vectors (`Fixtures/wycheproof/hkdf_sha256_test.json`) against `HKDFSHA256`.
@Suite("Wycheproof HKDF-SHA256")
struct WycheproofHKDFTests {
    @Test("every vector gives its verdict; output sizes beyond 255 hash lengths are refused")
    func vectors() throws {
        let vectors = try WycheproofFile<HKDFTestGroup>.load("hkdf_sha256_test.json")
        #expect(vectors.algorithm == "HKDF-SHA-256")
        #expect(vectors.testGroups.reduce(0) { $0 + $1.tests.count } == vectors.numberOfTests)

        var valid = 0, invalid = 0, acceptable = 0, emptySalt = 0
        for group in vectors.testGroups {
            for vector in group.tests {
                let ikm = hexBytes(vector.ikm), salt = hexBytes(vector.salt), info = hexBytes(vector.info)
                let label = "tcId \(vector.tcId) (\(vector.comment)) \(vector.flags) size \(vector.size)"
                #expect(ikm.count * 8 == group.keySize, "\(label)")
                if salt.isEmpty { emptySalt += 1 }
                let derived = Result { () throws(CryptoError) -> SecretKey in
                    try HKDFSHA256.deriveKey(inputKeyMaterial: SecretKey(copying: ikm), salt: salt, info: info,
                                             outputByteCount: vector.size)
                }
                switch vector.result {
                case .valid:
                    valid += 1
                    let okm = hexBytes(vector.okm)
                    #expect(okm.count == vector.size, "\(label)")
                    switch derived {
                    case .success(let key):
                        #expect(key.byteCount == vector.size, "\(label)")
                        #expect(key == SecretKey(copying: okm), "\(label): wrong output key material")
                    case .failure(let error):
                        Issue.record("\(label): threw \(error)")
                    }
                case .invalid:
                    invalid += 1
                    #expect(derived.map(\.byteCount) == .failure(.invalidOutputLength(vector.size)), "\(label)")
                case .acceptable:
                    acceptable += 1
                }
            }
        }
        let run = valid + invalid + acceptable
        print("Wycheproof HKDF-SHA256: \(run) vectors run (\(valid) valid, \(invalid) invalid; \(emptySalt) with an empty salt)")
        #expect(run == 86)
        #expect(valid == 83)
        #expect(invalid == 3)
        #expect(acceptable == 0)
    }

    @Test("output lengths 0 and negative are refused; 1 and 8160 are the bounds", arguments: [-1, 0, 1, 8160, 8161])
    func outputBounds(length: Int) throws {
        let ikm = SecretKey(copying: [UInt8](repeating: 0x0b, count: 22))
        if (1...HKDFSHA256.maximumOutputByteCount).contains(length) {
            let key = try HKDFSHA256.deriveKey(inputKeyMaterial: ikm, salt: [], info: [], outputByteCount: length)
            #expect(key.byteCount == length)
        } else {
            #expect(throws: CryptoError.invalidOutputLength(length)) {
                try HKDFSHA256.deriveKey(inputKeyMaterial: ikm, salt: [], info: [], outputByteCount: length)
            }
        }
    }

    @Test("an empty salt is the same as 32 zero bytes (RFC 5869 §2.2)")
    func emptySalt() throws {
        let ikm = SecretKey(copying: Array("input key material".utf8))
        let empty = try HKDFSHA256.deriveKey(inputKeyMaterial: ikm, salt: [], info: [1, 2], outputByteCount: 64)
        let zeros = try HKDFSHA256.deriveKey(inputKeyMaterial: ikm, salt: [UInt8](repeating: 0, count: 32), info: [1, 2],
                                             outputByteCount: 64)
        #expect(empty == zeros)
    }

    @Test("a shorter output is a prefix of a longer one")
    func prefix() throws {
        let ikm = try SecretKey.random()
        let long = try HKDFSHA256.deriveKey(inputKeyMaterial: ikm, salt: [9], info: [8], outputByteCount: 100)
        let longText = String(decoding: long.base64EncodedBytes(), as: UTF8.self)
        for length in [1, 31, 32, 33, 64, 99] {
            let short = try HKDFSHA256.deriveKey(inputKeyMaterial: ikm, salt: [9], info: [8], outputByteCount: length)
            // Compare through base64 of whole 3-byte groups: no accessor exposes key bytes.
            let whole = length / 3 * 4
            let shortText = String(decoding: short.base64EncodedBytes(), as: UTF8.self)
            #expect(shortText.prefix(whole) == longText.prefix(whole), "length \(length)")
        }
    }
}
