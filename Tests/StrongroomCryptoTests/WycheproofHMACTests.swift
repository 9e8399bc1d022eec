import StrongroomCrypto
import StrongroomTestSupport
import Testing

/// Project Wycheproof's HMAC-SHA256 vectors (`Fixtures/wycheproof/hmac_sha256_test.json`) against `HMACSHA256`.
///
/// `HMACSHA256` makes and verifies full 32-byte codes only. Vectors with 128-bit tags are checked
/// here by truncating the full code in the test, and the API must refuse those truncated codes.
@Suite("Wycheproof HMAC-SHA256")
struct WycheproofHMACTests {
    @Test("every vector gives its verdict; truncated codes are refused by isValidAuthenticationCode")
    func vectors() throws {
        let vectors = try WycheproofFile<MACTestGroup>.load("hmac_sha256_test.json")
        #expect(vectors.algorithm == "HMACSHA256")
        #expect(vectors.testGroups.reduce(0) { $0 + $1.tests.count } == vectors.numberOfTests)

        var valid = 0, invalid = 0, acceptable = 0, full = 0, truncated = 0
        for group in vectors.testGroups {
            let tagByteCount = group.tagSize / 8
            for vector in group.tests {
                let key = hexBytes(vector.key), message = hexBytes(vector.msg), tag = hexBytes(vector.tag)
                let label = "tcId \(vector.tcId) (\(vector.comment)) key \(group.keySize) bits, tag \(group.tagSize) bits"
                #expect(key.count * 8 == group.keySize && tag.count == tagByteCount, "\(label)")
                let hmac = try HMACSHA256(key: SecretKey(copying: key))
                let code = try hmac.authenticationCode(for: message)
                #expect(code.count == HMACSHA256.codeByteCount, "\(label)")
                // The parts form computes the same code without concatenating.
                let middle = message.count / 2
                #expect(try hmac.authenticationCode(for: [Array(message[..<middle]), [], Array(message[middle...])]) == code,
                        "\(label)")

                let matches = constantTimeEquals(Array(code.prefix(tagByteCount)), tag)
                let accepted = hmac.isValidAuthenticationCode(tag, for: message)
                if tagByteCount == HMACSHA256.codeByteCount {
                    full += 1
                    #expect(accepted == matches, "\(label): isValidAuthenticationCode disagrees with the computed code")
                } else {
                    truncated += 1
                    #expect(!accepted, "\(label): a \(tag.count)-byte code was accepted")
                    #expect(!hmac.isValidAuthenticationCode(Array(code.prefix(tagByteCount)), for: message),
                            "\(label): the true truncated code was accepted")
                }

                switch vector.result {
                case .valid:
                    valid += 1
                    #expect(matches, "\(label): computed \(hex(code))")
                case .invalid:
                    invalid += 1
                    #expect(!matches, "\(label): an invalid code matched")
                    #expect(!accepted, "\(label): an invalid code was accepted")
                case .acceptable:
                    acceptable += 1
                }
            }
        }
        let run = valid + invalid + acceptable
        print("Wycheproof HMAC-SHA256: \(run) vectors run (\(valid) valid, \(invalid) invalid); "
              + "\(full) with full 256-bit codes, \(truncated) with 128-bit codes compared as a truncated prefix "
              + "and refused by isValidAuthenticationCode")
        #expect(run == 174)
        #expect(valid == 66)
        #expect(invalid == 108)
        #expect(acceptable == 0)
        #expect(full == 87)
        #expect(truncated == 87)
    }

    @Test("isValidAuthenticationCode refuses every code length but 32, even a true prefix", arguments: [0, 1, 16, 20, 28, 31, 33, 64])
    func codeLengths(length: Int) throws {
        let hmac = try HMACSHA256(key: SecretKey.random())
        let message = Array("a message".utf8)
        let code = try hmac.authenticationCode(for: message)
        #expect(hmac.isValidAuthenticationCode(code, for: message))
        let candidate = length <= code.count ? Array(code.prefix(length)) : code + [UInt8](repeating: 0, count: length - code.count)
        #expect(!hmac.isValidAuthenticationCode(candidate, for: message))
    }
}
