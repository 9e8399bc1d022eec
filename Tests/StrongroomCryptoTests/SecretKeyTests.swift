import Foundation
import StrongroomCrypto
import StrongroomTestSupport
import Testing

@Suite("SecretKey: redaction, wiping, base64, equality")
struct SecretKeyTests {
    /// Every textual form of `bytes` that must never appear in output about a key holding them.
    static func forbiddenForms(of bytes: [UInt8]) -> [String] {
        let lower = hex(bytes)
        let base64 = Data(bytes).base64EncodedString()
        var forms = [lower, lower.uppercased(), base64, String(base64.prefix(16)), String(lower.prefix(16)),
                     bytes.map(String.init).joined(separator: ", ")]
        // The bytes as unpadded base64 and as URL-safe base64.
        forms.append(base64.replacingOccurrences(of: "=", with: ""))
        forms.append(base64.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_"))
        return forms.filter { !$0.isEmpty }
    }

    /// Every way a key commonly reaches a log, as (name, text).
    static func renderings(of key: SecretKey) -> [(String, String)] {
        var dumped = ""
        dump(key, to: &dumped)
        var dumpedArray = ""
        dump([key], to: &dumpedArray)
        var printed = ""
        print(key, to: &printed)
        var debugPrinted = ""
        debugPrint(key, to: &debugPrinted)
        let optional: SecretKey? = key
        struct Holder { let name = "holder"; let key: SecretKey }
        var dumpedHolder = ""
        dump(Holder(key: key), to: &dumpedHolder)
        return [
            ("String(describing:)", String(describing: key)),
            ("String(reflecting:)", String(reflecting: key)),
            ("dump", dumped),
            ("dump of an array", dumpedArray),
            ("interpolation", "\(key)"),
            ("interpolation of an array", "\([key])"),
            ("interpolation of an optional", "\(optional as Any)"),
            ("interpolation of a dictionary", "\(["k": key])"),
            ("print", printed),
            ("debugPrint", debugPrinted),
            ("dump of a struct holding it", dumpedHolder),
            ("String(describing:) of a struct holding it", String(describing: Holder(key: key))),
        ]
    }

    @Test("every textual form says redacted and shows neither hex nor base64 of the bytes",
          arguments: [Array(0..<32), [UInt8](repeating: 0xab, count: 32), Array(UInt8(200)...UInt8(215))] as [[UInt8]])
    func redaction(bytes: [UInt8]) throws {
        let key = SecretKey(copying: bytes)
        let forbidden = Self.forbiddenForms(of: bytes)
        for (name, text) in Self.renderings(of: key) {
            #expect(text.contains("redacted"), "\(name): \(text)")
            for form in forbidden {
                #expect(!text.contains(form), "\(name) shows the key bytes as \(form)")
            }
        }
        #expect(Mirror(reflecting: key).children.isEmpty)
    }

    @Test("a random key is redacted in every textual form")
    func randomRedaction() throws {
        let key = try SecretKey.random()
        let bytes = try #require(Data(base64Encoded: String(decoding: key.base64EncodedBytes(), as: UTF8.self)))
        let forbidden = Self.forbiddenForms(of: Array(bytes))
        for (name, text) in Self.renderings(of: key) {
            #expect(text.contains("redacted"), "\(name): \(text)")
            #expect(forbidden.allSatisfy { !text.contains($0) }, "\(name) shows the key bytes")
        }
    }

    @Test("init(wiping:) zeroes the caller's array and keeps the bytes")
    func wiping() {
        let original: [UInt8] = Array(1...32)
        var bytes = original
        let key = SecretKey(wiping: &bytes)
        #expect(bytes == [UInt8](repeating: 0, count: 32))
        #expect(key.byteCount == 32)
        #expect(key == SecretKey(copying: original))
    }

    @Test("init(copying:) leaves the caller's array alone")
    func copying() {
        let original: [UInt8] = Array(1...32)
        var bytes = original
        let key = SecretKey(copying: bytes)
        bytes[0] = 99  // Changing the array afterwards does not change the key.
        #expect(key == SecretKey(copying: original))
        #expect(key != SecretKey(copying: bytes))
    }

    @Test("base64 known answer: bytes 0...31")
    func base64KnownAnswer() throws {
        let key = SecretKey(copying: Array(0..<32))
        let text = String(decoding: key.base64EncodedBytes(), as: UTF8.self)
        #expect(text == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        let decoded = try #require(SecretKey(base64Encoded: text))
        #expect(decoded == key)
    }

    @Test("base64 round-trips at every length 0...64 and agrees with Foundation")
    func base64RoundTrips() throws {
        for length in 0...64 {
            let bytes = try SecureRandom.bytes(count: length)
            let key = SecretKey(copying: bytes)
            let text = String(decoding: key.base64EncodedBytes(), as: UTF8.self)
            #expect(text == Data(bytes).base64EncodedString(), "length \(length)")
            #expect(!text.contains("\n"))
            let decoded = try #require(SecretKey(base64Encoded: text), "length \(length)")
            #expect(decoded == key, "length \(length)")
            #expect(decoded.byteCount == length)
            // Surrounding white space, as in a key file, is ignored.
            #expect(SecretKey(base64Encoded: " \(text)\n") == key, "length \(length)")
            #expect(SecretKey(base64Encoded: "\t\(text)\r\n") == key, "length \(length)")
        }
    }

    @Test("malformed base64 gives nil",
          arguments: ["hello", "A", "AA", "AAA", "A===", "====", "AA=A", "AA==AA==", "AAA=A", "AAAA=", "@@@@", "AAAA!",
                      "AA-_", "ÄÄÄÄ", "AAA\u{0}", "AAAA AAA", "AQID=", "AQIDBA=", "AQIDBA===", "=AAA"])
    func malformedBase64(text: String) {
        #expect(SecretKey(base64Encoded: text) == nil, "\(text.debugDescription) was accepted")
    }

    @Test("equality compares bytes and lengths")
    func equality() throws {
        let bytes = try SecureRandom.bytes(count: 32)
        let key = SecretKey(copying: bytes)
        #expect(key == key)
        #expect(key == SecretKey(copying: bytes))
        for position in [0, 15, 31] {
            var other = bytes
            other[position] ^= 0x80
            #expect(key != SecretKey(copying: other), "differs at \(position)")
        }
        #expect(key != SecretKey(copying: Array(bytes.prefix(31))))
        #expect(key != SecretKey(copying: bytes + [0]))
        #expect(SecretKey(copying: []) == SecretKey(copying: []))
        #expect(SecretKey(copying: []) != SecretKey(copying: [0]))
        #expect(SecretKey(copying: [0]) != SecretKey(copying: [0, 0]))
    }

    @Test("random keys have the asked length and differ")
    func random() throws {
        let keys = try (0..<16).map { _ in try SecretKey.random() }
        #expect(keys.allSatisfy { $0.byteCount == 32 })
        for (index, key) in keys.enumerated() {
            #expect(!keys[(index + 1)...].contains { $0 == key })
        }
        #expect(try SecretKey.random(byteCount: 64).byteCount == 64)
        #expect(try SecretKey.random(byteCount: 0).byteCount == 0)
    }

    @Test("constantTimeEquals: equal, different, different lengths, empty")
    func constantTime() {
        #expect(constantTimeEquals([], []))
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(!constantTimeEquals([], [0]))
        #expect(!constantTimeEquals([0x80] + [UInt8](repeating: 0, count: 31), [UInt8](repeating: 0, count: 32)))
    }
}
