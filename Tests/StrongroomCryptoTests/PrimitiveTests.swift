import StrongroomCrypto
import StrongroomTestSupport
import Testing

@Suite("Known answers of the primitives")
struct PrimitiveTests {
    @Test("HKDF-SHA256, RFC 5869 test case 1")
    func hkdfRFC5869() throws {
        let okm = try HKDFSHA256.deriveKey(inputKeyMaterial: SecretKey(copying: hexBytes("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b")),
                                           salt: hexBytes("000102030405060708090a0b0c"), info: hexBytes("f0f1f2f3f4f5f6f7f8f9"),
                                           outputByteCount: 42)
        #expect(okm == SecretKey(copying: hexBytes("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")))
    }

    @Test("HKDF-SHA256, RFC 5869 test case 3 (empty salt and info)")
    func hkdfRFC5869Case3() throws {
        let okm = try HKDFSHA256.deriveKey(inputKeyMaterial: SecretKey(copying: [UInt8](repeating: 0x0b, count: 22)),
                                           salt: [], info: [], outputByteCount: 42)
        #expect(okm == SecretKey(copying: hexBytes("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")))
    }

    @Test("HMAC-SHA256 with an empty key and an empty message, twice on one instance")
    func hmacEmptyKey() throws {
        let hmac = try HMACSHA256(key: SecretKey(copying: []))
        let expected = hexBytes("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
        #expect(try hmac.authenticationCode(for: [UInt8]()) == expected)
        #expect(try hmac.authenticationCode(for: [UInt8]()) == expected)
        #expect(try hmac.authenticationCode(for: [[UInt8](), [UInt8]()]) == expected)
    }

    @Test("SHA-256 of \"abc\", the empty string and the 448-bit message (FIPS 180-4 examples)")
    func sha256() {
        #expect(SHA256.hash(Array("abc".utf8)) == hexBytes("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        #expect(SHA256.hash([]) == hexBytes("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        #expect(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == hexBytes("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"))
        #expect(SHA256.hash(Array("abc".utf8)).count == SHA256.digestByteCount)
    }

    @Test("HMAC-SHA256, RFC 4231 test case 1")
    func hmacRFC4231Case1() throws {
        let hmac = try HMACSHA256(key: SecretKey(copying: [UInt8](repeating: 0x0b, count: 20)))
        let message = Array("Hi There".utf8)
        let expected = hexBytes("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(try hmac.authenticationCode(for: message) == expected)
        #expect(try hmac.authenticationCode(for: "Hi There".utf8.span) == expected, "a string's UTF-8 read in place")
        #expect(hmac.isValidAuthenticationCode(expected, for: message))
    }

    @Test("a truncated HMAC-SHA256 code (RFC 4231 test case 5's 128 bits) is checked against the code's prefix only")
    func hmacTruncated() throws {
        let hmac = try HMACSHA256(key: SecretKey(copying: [UInt8](repeating: 0x0c, count: 20)))
        let message = Array("Test With Truncation".utf8)
        let truncated = hexBytes("a3b6167473100ee06e0c796c2955552b")
        #expect(hmac.isValidTruncatedAuthenticationCode(truncated, for: message))
        let full = try hmac.authenticationCode(for: message)
        #expect(Array(full.prefix(16)) == truncated)
        #expect(hmac.isValidTruncatedAuthenticationCode(Array(full.prefix(20)), for: message))
        #expect(hmac.isValidTruncatedAuthenticationCode(full, for: message))
        // A flipped bit anywhere, another message, or a code under 128 bits or over 256 bits is refused.
        for index in truncated.indices {
            var tampered = truncated
            tampered[index] ^= 0x01
            #expect(!hmac.isValidTruncatedAuthenticationCode(tampered, for: message))
        }
        #expect(!hmac.isValidTruncatedAuthenticationCode(truncated, for: message + [0]))
        #expect(!hmac.isValidTruncatedAuthenticationCode(Array(truncated.prefix(15)), for: message))
        #expect(!hmac.isValidTruncatedAuthenticationCode(full + [0], for: message))
        // Truncated codes are still refused where the full code is required.
        #expect(!hmac.isValidAuthenticationCode(truncated, for: message))
    }

    @Test("a truncated code checked over a message in two pieces agrees wherever the message is split (RFC 4231 case 5)")
    func hmacTruncatedInTwoPieces() throws {
        let hmac = try HMACSHA256(key: SecretKey(copying: [UInt8](repeating: 0x0c, count: 20)))
        let message = Array("Test With Truncation".utf8)
        let truncated = hexBytes("a3b6167473100ee06e0c796c2955552b")
        for split in 0...message.count {
            let (first, second) = (Array(message[..<split]), Array(message[split...]))
            let valid = hmac.isValidTruncatedAuthenticationCode(truncated.span, forConcatenationOf: first.span, second.span)
            #expect(valid, "split at \(split)")
            let reordered = second + first
            let reorderedValid = hmac.isValidTruncatedAuthenticationCode(truncated.span, forConcatenationOf: reordered.span, [UInt8]().span)
            #expect(split == 0 || split == message.count || !reorderedValid)
        }
        let short = Array(truncated.prefix(15))
        let shortValid = hmac.isValidTruncatedAuthenticationCode(short.span, forConcatenationOf: message.span, [UInt8]().span)
        #expect(!shortValid)
    }

    @Test("HMAC-SHA256, RFC 4231 test case 2 (a key shorter than the output)")
    func hmacRFC4231Case2() throws {
        let hmac = try HMACSHA256(key: SecretKey(copying: Array("Jefe".utf8)))
        let message = Array("what do ya want for nothing?".utf8)
        let expected = hexBytes("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(try hmac.authenticationCode(for: message) == expected)
        #expect(try hmac.authenticationCode(for: [Array("what do ya".utf8), Array(" want for nothing?".utf8)]) == expected)
        // The same instance gives the same code again (its key is reused, not consumed).
        #expect(try hmac.authenticationCode(for: message) == expected)
    }

    @Test("HMAC-SHA256, RFC 4231 test case 6 (a key longer than the block)")
    func hmacRFC4231Case6() throws {
        let hmac = try HMACSHA256(key: SecretKey(copying: [UInt8](repeating: 0xaa, count: 131)))
        #expect(try hmac.authenticationCode(for: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
                == hexBytes("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"))
    }

    /// McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 13 to 16 (256-bit keys).
    static let gcmSpecCases: [GCMCase] = [
        GCMCase(name: "13", String(repeating: "00", count: 32), String(repeating: "00", count: 12), "", "", "",
         "530f8afbc74536b9a963b4f1c4cb738b"),
        GCMCase(name: "14", String(repeating: "00", count: 32), String(repeating: "00", count: 12), String(repeating: "00", count: 16), "",
         "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"),
        GCMCase(name: "15", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
         "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
         "",
         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
         "b094dac5d93471bdec1a502270e3cc6c"),
        GCMCase(name: "16", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
         "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
         "feedfacedeadbeeffeedfacedeadbeefabaddad2",
         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
         "76fc6ece0f4e1768cddf8853bb2d551b"),
    ]

    @Test("AES-256-GCM, GCM specification test cases 13-16", arguments: gcmSpecCases)
    func aesGCMSpec(_ testCase: GCMCase) throws {
        let gcm = try AES256GCM(key: SecretKey(copying: hexBytes(testCase.key)))
        let nonce = hexBytes(testCase.iv), plaintext = hexBytes(testCase.plaintext), aad = hexBytes(testCase.aad)
        var sealed: [UInt8] = []
        try gcm.seal(plaintext, nonce: nonce, authenticating: aad, appendingTo: &sealed)
        #expect(sealed == hexBytes(testCase.ciphertext) + hexBytes(testCase.tag), "test case \(testCase.name)")
        #expect(try gcm.open(sealed: sealed[...], nonce: nonce[...], authenticating: aad) == plaintext, "test case \(testCase.name)")
    }
}

/// A known-answer test of AES-256-GCM, in hex.
struct GCMCase: Sendable, CustomTestStringConvertible {
    let name: String, key: String, iv: String, plaintext: String, aad: String, ciphertext: String, tag: String
    init(name: String, _ key: String, _ iv: String, _ plaintext: String, _ aad: String, _ ciphertext: String, _ tag: String) {
        (self.name, self.key, self.iv, self.plaintext, self.aad, self.ciphertext, self.tag) = (name, key, iv, plaintext, aad, ciphertext, tag)
    }
    var testDescription: String { "test case \(name)" }
}
