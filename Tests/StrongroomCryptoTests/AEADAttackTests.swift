import Foundation
import StrongroomCrypto
import StrongroomTestSupport
import Testing

/// Attacks on `AES256GCM`: truncated tags, odd nonces, tampering, wrong keys, and shared use across threads.
@Suite("AES-256-GCM under attack")
struct AEADAttackTests {
    let gcm: AES256GCM
    let nonce: [UInt8]
    let aad = Array("subject 42 / name / key v1".utf8)
    let message = Array("Zebedee Quixotic, +44 20 7946 0000".utf8)

    init() throws {
        gcm = try AES256GCM(key: SecretKey.random())
        nonce = try SecureRandom.bytes(count: AES256GCM.nonceByteCount)
    }

    func sealed(_ plaintext: [UInt8]? = nil) throws -> [UInt8] {
        var output: [UInt8] = []
        try gcm.seal(plaintext ?? message, nonce: nonce, authenticating: aad, appendingTo: &output)
        return output
    }

    // MARK: Sizes

    @Test("keys other than 32 bytes are refused", arguments: [0, 1, 16, 24, 31, 33, 64])
    func keyLengths(length: Int) {
        #expect(throws: CryptoError.invalidKeyLength(expected: 32, actual: length)) {
            _ = try AES256GCM(key: SecretKey(copying: [UInt8](repeating: 1, count: length)))
        }
    }

    @Test("tags of 0 to 15 bytes are refused, even the true tag's prefix", arguments: 0..<16)
    func shortTags(length: Int) throws {
        let sealed = try sealed()
        let split = sealed.count - AES256GCM.tagByteCount
        let ciphertext = sealed[..<split], truncatedTag = sealed[split...].prefix(length)
        #expect(throws: CryptoError.invalidTagLength(length)) {
            try gcm.open(ciphertext, tag: truncatedTag, nonce: nonce[...], authenticating: aad)
        }
        // A sealed message too short to hold a tag is refused the same way.
        #expect(throws: CryptoError.invalidTagLength(length)) {
            try gcm.open(sealed: sealed.suffix(length), nonce: nonce[...], authenticating: aad)
        }
    }

    @Test("tags longer than 16 bytes are refused", arguments: [17, 20, 32])
    func longTags(length: Int) throws {
        let sealed = try sealed()
        let split = sealed.count - AES256GCM.tagByteCount
        let longTag = Array(sealed[split...]) + [UInt8](repeating: 0, count: length - AES256GCM.tagByteCount)
        #expect(throws: CryptoError.invalidTagLength(length)) {
            try gcm.open(sealed[..<split], tag: longTag[...], nonce: nonce[...], authenticating: aad)
        }
    }

    @Test("nonces other than 12 bytes are refused by seal and open", arguments: [0, 1, 8, 11, 13, 16, 32, 64])
    func nonceLengths(length: Int) throws {
        let badNonce = [UInt8](repeating: 0x5a, count: length)
        var output: [UInt8] = [1, 2, 3]
        #expect(throws: CryptoError.invalidNonceLength(length)) {
            try gcm.seal(message, nonce: badNonce, authenticating: aad, appendingTo: &output)
        }
        #expect(output == [1, 2, 3], "a refused seal appended to the output")
        let sealed = try sealed()
        #expect(throws: CryptoError.invalidNonceLength(length)) {
            try gcm.open(sealed: sealed[...], nonce: badNonce[...], authenticating: aad)
        }
        let split = sealed.count - AES256GCM.tagByteCount
        #expect(throws: CryptoError.invalidNonceLength(length)) {
            try gcm.open(sealed[..<split], tag: sealed[split...], nonce: badNonce[...], authenticating: aad)
        }
        // A 12-byte nonce taken from a longer one is a different nonce, not a prefix match.
        if length > 12 {
            #expect(throws: CryptoError.authenticationFailed) {
                try gcm.open(sealed: sealed[...], nonce: badNonce.prefix(12), authenticating: aad)
            }
        }
    }

    // MARK: Tampering

    @Test("every flipped bit of ciphertext and tag is rejected")
    func flippedBits() throws {
        let original = try sealed()
        #expect(original.count == message.count + AES256GCM.tagByteCount)
        var rejected = 0
        for position in original.indices {
            for bit in 0..<8 {
                var tampered = original
                tampered[position] ^= 1 << bit
                #expect(throws: CryptoError.authenticationFailed, "bit \(bit) of byte \(position)") {
                    try gcm.open(sealed: tampered[...], nonce: nonce[...], authenticating: aad)
                }
                rejected += 1
            }
            // And a whole byte replaced.
            var replaced = original
            replaced[position] ^= 0xff
            #expect(throws: CryptoError.authenticationFailed, "byte \(position) inverted") {
                try gcm.open(sealed: replaced[...], nonce: nonce[...], authenticating: aad)
            }
        }
        #expect(rejected == original.count * 8)
        // The instance still works after all those failures, in both directions.
        #expect(try gcm.open(sealed: original[...], nonce: nonce[...], authenticating: aad) == message)
        #expect(try sealed() == original)
    }

    @Test("truncated or extended ciphertext is rejected")
    func truncatedAndExtended() throws {
        let original = try sealed()
        for cut in 1...(original.count - AES256GCM.tagByteCount) {
            #expect(throws: CryptoError.authenticationFailed, "\(cut) bytes cut from the front") {
                try gcm.open(sealed: original.dropFirst(cut), nonce: nonce[...], authenticating: aad)
            }
        }
        let split = original.count - AES256GCM.tagByteCount
        for extra in [[0x00], [0x41, 0x42]] as [[UInt8]] {
            #expect(throws: CryptoError.authenticationFailed) {
                try gcm.open((original[..<split] + extra)[...], tag: original[split...], nonce: nonce[...], authenticating: aad)
            }
        }
    }

    @Test("every flipped bit of the associated data is rejected, as are shorter, longer and empty AAD")
    func tamperedAAD() throws {
        let original = try sealed()
        for position in aad.indices {
            for bit in 0..<8 {
                var tampered = aad
                tampered[position] ^= 1 << bit
                #expect(throws: CryptoError.authenticationFailed, "bit \(bit) of AAD byte \(position)") {
                    try gcm.open(sealed: original[...], nonce: nonce[...], authenticating: tampered)
                }
            }
        }
        for other in [[], Array(aad.dropLast()), aad + [0], Array(aad.dropFirst())] as [[UInt8]] {
            #expect(throws: CryptoError.authenticationFailed) {
                try gcm.open(sealed: original[...], nonce: nonce[...], authenticating: other)
            }
        }
    }

    @Test("a wrong key or a wrong nonce is rejected")
    func wrongKeyOrNonce() throws {
        let original = try sealed()
        let other = try AES256GCM(key: SecretKey.random())
        #expect(throws: CryptoError.authenticationFailed) {
            try other.open(sealed: original[...], nonce: nonce[...], authenticating: aad)
        }
        var otherNonce = nonce
        otherNonce[11] ^= 1
        #expect(throws: CryptoError.authenticationFailed) {
            try gcm.open(sealed: original[...], nonce: otherNonce[...], authenticating: aad)
        }
    }

    @Test("empty plaintext: a 16-byte tag that opens to nothing, and still authenticates the AAD")
    func emptyPlaintext() throws {
        let sealed = try sealed([])
        #expect(sealed.count == AES256GCM.tagByteCount)
        #expect(try gcm.open(sealed: sealed[...], nonce: nonce[...], authenticating: aad) == [])
        #expect(try gcm.open(sealed[..<0], tag: sealed[...], nonce: nonce[...], authenticating: aad) == [])
        #expect(throws: CryptoError.authenticationFailed) {
            try gcm.open(sealed: sealed[...], nonce: nonce[...], authenticating: [])
        }
        var both: [UInt8] = []
        try gcm.seal([], nonce: nonce, authenticating: [], appendingTo: &both)
        #expect(try gcm.open(sealed: both[...], nonce: nonce[...], authenticating: []) == [])
    }

    // MARK: Round trips

    @Test("200 random lengths 0...300 with random AAD round-trip, appended after existing output")
    func randomRoundTrips() throws {
        var generator = SystemRandomNumberGenerator()
        var lengths: Set<Int> = []
        for _ in 0..<200 {
            let length = Int.random(in: 0...300, using: &generator)
            lengths.insert(length)
            let plaintext = try SecureRandom.bytes(count: length)
            let randomAAD = try SecureRandom.bytes(count: Int.random(in: 0...64, using: &generator))
            let randomNonce = try SecureRandom.bytes(count: 12)
            let prefix = try SecureRandom.bytes(count: Int.random(in: 0...8, using: &generator))
            var output = prefix
            try gcm.seal(plaintext, nonce: randomNonce, authenticating: randomAAD, appendingTo: &output)
            #expect(output.count == prefix.count + length + AES256GCM.tagByteCount, "length \(length)")
            #expect(Array(output.prefix(prefix.count)) == prefix, "seal changed the bytes before it")
            // Open a slice that does not start at index 0.
            let sealed = output[prefix.count...]
            #expect(try gcm.open(sealed: sealed, nonce: randomNonce[...], authenticating: randomAAD) == plaintext,
                    "length \(length), AAD \(randomAAD.count)")
            if length >= 16 {
                #expect(Array(sealed.prefix(length)) != plaintext, "ciphertext equals plaintext")
            }
        }
        print("AES-256-GCM: 200 random round trips over \(lengths.count) distinct lengths")
    }

    @Test("a wrapped key round-trips, and fails with the wrong AAD or wrapping key")
    func keyWrap() throws {
        let dataKey = try SecretKey.random()
        var wrapped: [UInt8] = []
        try gcm.seal(key: dataKey, nonce: nonce, authenticating: aad, appendingTo: &wrapped)
        #expect(wrapped.count == 32 + AES256GCM.tagByteCount)
        #expect(!String(decoding: wrapped, as: UTF8.self).contains(String(decoding: dataKey.base64EncodedBytes(), as: UTF8.self)))
        let unwrapped = try gcm.openKey(sealed: wrapped[...], nonce: nonce[...], authenticating: aad)
        #expect(unwrapped == dataKey)
        #expect(unwrapped.byteCount == 32)
        // The wrapped form is exactly the seal of the key's bytes.
        var viaBytes: [UInt8] = []
        let keyBytes = try #require(Base64Bytes.decode(dataKey.base64EncodedBytes()))
        try gcm.seal(keyBytes, nonce: nonce, authenticating: aad, appendingTo: &viaBytes)
        #expect(viaBytes == wrapped)

        #expect(throws: CryptoError.authenticationFailed) {
            try gcm.openKey(sealed: wrapped[...], nonce: nonce[...], authenticating: aad + [0])
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try gcm.openKey(sealed: wrapped[...], nonce: nonce[...], authenticating: [])
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try AES256GCM(key: SecretKey.random()).openKey(sealed: wrapped[...], nonce: nonce[...], authenticating: aad)
        }
    }

    // MARK: Concurrency

    static let taskCount = 8
    static let messagesPerTask = 500

    /// A distinct, reproducible message for each task and index, 0...96 bytes long.
    static func concurrentMessage(_ task: Int, _ index: Int) -> [UInt8] {
        let seed = Array("task \(task) message \(index) ".utf8)
        return Array(repeatElement(seed, count: 5).joined().prefix((task * 31 + index * 7) % 97))
    }

    /// A distinct nonce for each task and index.
    static func concurrentNonce(_ task: Int, _ index: Int) -> [UInt8] {
        [UInt8(task), UInt8(index >> 8), UInt8(index & 0xff)] + [UInt8](repeating: 0xc3, count: 9)
    }

    @Test("8 tasks × 500 messages on one shared AES256GCM and one HMACSHA256")
    func sharedInstances() async throws {
        let gcm = self.gcm
        let hmac = try HMACSHA256(key: SecretKey.random())
        let aad = self.aad
        let results = try await withThrowingTaskGroup(of: (task: Int, sealed: [[UInt8]], codes: [[UInt8]], failures: Int).self) { group in
            for task in 0..<Self.taskCount {
                group.addTask {
                    var sealedMessages: [[UInt8]] = [], codes: [[UInt8]] = [], failures = 0
                    for index in 0..<Self.messagesPerTask {
                        let message = Self.concurrentMessage(task, index), nonce = Self.concurrentNonce(task, index)
                        var sealed: [UInt8] = []
                        try gcm.seal(message, nonce: nonce, authenticating: aad, appendingTo: &sealed)
                        if try gcm.open(sealed: sealed[...], nonce: nonce[...], authenticating: aad) != message { failures += 1 }
                        let code = try hmac.authenticationCode(for: message)
                        if !hmac.isValidAuthenticationCode(code, for: message) { failures += 1 }
                        sealedMessages.append(sealed)
                        codes.append(code)
                    }
                    return (task, sealedMessages, codes, failures)
                }
            }
            var all: [(task: Int, sealed: [[UInt8]], codes: [[UInt8]], failures: Int)] = []
            for try await result in group { all.append(result) }
            return all
        }
        #expect(results.count == Self.taskCount)
        #expect(results.reduce(0) { $0 + $1.failures } == 0)
        // Recompute everything on one thread: same ciphertexts (same nonces) and same codes.
        var compared = 0
        for result in results {
            #expect(result.sealed.count == Self.messagesPerTask && result.codes.count == Self.messagesPerTask)
            for index in result.sealed.indices {
                let message = Self.concurrentMessage(result.task, index), nonce = Self.concurrentNonce(result.task, index)
                var sealed: [UInt8] = []
                try gcm.seal(message, nonce: nonce, authenticating: aad, appendingTo: &sealed)
                #expect(sealed == result.sealed[index], "task \(result.task) message \(index)")
                #expect(try hmac.authenticationCode(for: message) == result.codes[index], "task \(result.task) message \(index)")
                compared += 1
            }
        }
        #expect(compared == Self.taskCount * Self.messagesPerTask)
    }
}

/// Decodes the standard base64 that `SecretKey.base64EncodedBytes()` writes (test-side, independent of the module).
enum Base64Bytes {
    static func decode(_ text: [UInt8]) -> [UInt8]? {
        guard let data = Data(base64Encoded: String(decoding: text, as: UTF8.self)) else { return nil }
        return Array(data)
    }
}
