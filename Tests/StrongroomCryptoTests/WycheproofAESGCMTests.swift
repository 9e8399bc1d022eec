import StrongroomCrypto
import StrongroomTestSupport
import Testing

/// Project Wycheproof's AES-GCM vectors (`Fixtures/wycheproof/aes_gcm_test.json`) against `AES256GCM`.
///
/// `AES256GCM` takes 256-bit keys, 96-bit nonces and 128-bit tags only: every vector of that shape
/// must give its verdict, and every other 256-bit-key vector must be refused for its sizes.
@Suite("Wycheproof AES-GCM")
struct WycheproofAESGCMTests {
    static let file = "aes_gcm_test.json"

    /// A group `AES256GCM` runs: 256-bit key, 96-bit nonce, 128-bit tag.
    static func isSupported(_ group: AEADTestGroup) -> Bool {
        group.keySize == 256 && group.ivSize == 96 && group.tagSize == 128
    }

    @Test("every 256-bit-key vector: verdicts for 96-bit nonces and 128-bit tags, refusal for other sizes")
    func vectors256() throws {
        let vectors = try WycheproofFile<AEADTestGroup>.load(Self.file)
        #expect(vectors.algorithm == "AES-GCM")
        #expect(vectors.testGroups.reduce(0) { $0 + $1.tests.count } == vectors.numberOfTests)

        var valid = 0, invalid = 0, acceptable = 0, acceptableRefused = 0, refused = 0
        var refusedSizes: Set<String> = []
        for group in vectors.testGroups where group.keySize == 256 {
            for vector in group.tests {
                let gcm = try AES256GCM(key: SecretKey(copying: hexBytes(vector.key)))
                let nonce = hexBytes(vector.iv), aad = hexBytes(vector.aad), message = hexBytes(vector.msg)
                let ciphertext = hexBytes(vector.ct), tag = hexBytes(vector.tag)
                #expect(nonce.count * 8 == group.ivSize && tag.count * 8 == group.tagSize, "tcId \(vector.tcId)")

                guard Self.isSupported(group) else {
                    refusedSizes.insert("\(group.ivSize)-bit nonce/\(group.tagSize)-bit tag")
                    let label = "tcId \(vector.tcId) (\(group.ivSize)-bit nonce, \(group.tagSize)-bit tag)"
                    if nonce.count != AES256GCM.nonceByteCount {
                        var output: [UInt8] = [7]
                        #expect(throws: CryptoError.invalidNonceLength(nonce.count), "\(label)") {
                            try gcm.seal(message, nonce: nonce, authenticating: aad, appendingTo: &output)
                        }
                        #expect(output == [7], "\(label): a refused seal changed the output")
                    }
                    // The explicit-tag open checks the tag length first, then the nonce length.
                    let expected: CryptoError = tag.count != AES256GCM.tagByteCount ? .invalidTagLength(tag.count)
                                                                                    : .invalidNonceLength(nonce.count)
                    #expect(throws: expected, "\(label)") {
                        try gcm.open(ciphertext[...], tag: tag[...], nonce: nonce[...], authenticating: aad)
                    }
                    refused += 1
                    continue
                }

                let label = "tcId \(vector.tcId) (\(vector.comment)) \(vector.flags)"
                var sealed: [UInt8] = []
                try gcm.seal(message, nonce: nonce, authenticating: aad, appendingTo: &sealed)
                let opened: Result<[UInt8], CryptoError>
                do { opened = .success(try gcm.open(ciphertext[...], tag: tag[...], nonce: nonce[...], authenticating: aad)) }
                catch { opened = .failure(error) }

                switch vector.result {
                case .valid:
                    valid += 1
                    #expect(sealed == ciphertext + tag, "\(label): seal gave \(hex(sealed))")
                    #expect(opened == .success(message), "\(label): open gave \(opened)")
                    // The combined form opens too.
                    #expect(try gcm.open(sealed: (ciphertext + tag)[...], nonce: nonce[...], authenticating: aad) == message,
                            "\(label)")
                case .invalid:
                    invalid += 1
                    // Same sizes as a valid vector, so the only way to fail is the tag check.
                    #expect(opened == .failure(.authenticationFailed), "\(label): open gave \(opened)")
                    #expect(throws: CryptoError.authenticationFailed, "\(label)") {
                        try gcm.open(sealed: (ciphertext + tag)[...], nonce: nonce[...], authenticating: aad)
                    }
                    #expect(sealed != ciphertext + tag, "\(label): seal reproduced an invalid vector")
                case .acceptable:
                    // Acceptable: may be refused; when it opens, it must be exactly right.
                    acceptable += 1
                    if case .success(let plaintext) = opened {
                        #expect(plaintext == message, "\(label)")
                        #expect(sealed == ciphertext + tag, "\(label)")
                    } else {
                        acceptableRefused += 1
                    }
                }
            }
        }
        let run = valid + invalid + acceptable
        print("Wycheproof AES-GCM: \(run) vectors run (\(valid) valid, \(invalid) invalid, \(acceptable) acceptable"
              + (acceptable > 0 ? " of which \(acceptableRefused) refused" : "") + "), "
              + "\(refused) refused for unsupported sizes (\(refusedSizes.sorted().joined(separator: ", ")))")
        #expect(run == 66)
        #expect(valid == 39)
        #expect(invalid == 27)
        #expect(acceptable == 0)
        #expect(refused == 39)
    }

    @Test("128- and 192-bit keys are refused")
    func otherKeySizes() throws {
        let vectors = try WycheproofFile<AEADTestGroup>.load(Self.file)
        var refused = 0
        for group in vectors.testGroups where group.keySize != 256 {
            for vector in group.tests {
                let key = hexBytes(vector.key)
                #expect(throws: CryptoError.invalidKeyLength(expected: 32, actual: key.count), "tcId \(vector.tcId)") {
                    _ = try AES256GCM(key: SecretKey(copying: key))
                }
                refused += 1
            }
        }
        print("Wycheproof AES-GCM: \(refused) vectors with 128- or 192-bit keys refused at key setup")
        #expect(refused == 316 - 66 - 39)
    }
}
