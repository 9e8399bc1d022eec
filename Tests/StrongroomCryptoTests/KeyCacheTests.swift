import StrongroomCrypto
import StrongroomTestSupport
import Testing

@Suite("KeyCache: fixed-capacity cache of subject keys")
struct KeyCacheTests {
    /// Whether `cipher` is `key`: it opens what `key` sealed.
    static func opens(_ cipher: AES256GCM, sealedUnder key: SecretKey) throws -> Bool {
        let nonce = [UInt8](repeating: 7, count: AES256GCM.nonceByteCount)
        var sealed: [UInt8] = []
        try AES256GCM(key: key).seal(Array("probe".utf8), nonce: nonce, authenticating: [], appendingTo: &sealed)
        return (try? cipher.open(sealed: sealed[...], nonce: nonce[...], authenticating: [])) == Array("probe".utf8)
    }

    @Test("a cached key comes back as its cipher with its identifier, under its owner and version only")
    func roundTrip() throws {
        var cache = try KeyCache(capacity: 64)
        let key = try SecretKey.random()
        try cache.insert(key, identifier: 0xDEAD_BEEF, owner: 42, version: 3)
        let (cipher, identifier) = try #require(try cache.cipher(owner: 42, version: 3))
        #expect(identifier == 0xDEAD_BEEF)
        #expect(try Self.opens(cipher, sealedUnder: key))
        let misses = [(42, 4), (43, 3), (-42, 3)].filter { !cache.contains(owner: $0, version: $1) }
        #expect(misses.count == 3)
    }

    @Test("inserting under the same owner and version replaces the key; remove forgets it")
    func replaceAndRemove() throws {
        var cache = try KeyCache(capacity: 8)
        let first = try SecretKey.random(), second = try SecretKey.random()
        try cache.insert(first, identifier: 1, owner: 5, version: 1)
        try cache.insert(second, identifier: 2, owner: 5, version: 1)
        let count = cache.count
        #expect(count == 1)
        let (cipher, identifier) = try #require(try cache.cipher(owner: 5, version: 1))
        #expect(identifier == 2)
        #expect(try Self.opens(cipher, sealedUnder: second))
        #expect(try !Self.opens(cipher, sealedUnder: first))
        cache.remove(owner: 5, version: 1)
        cache.remove(owner: 6, version: 1)
        let (kept, left) = (cache.contains(owner: 5, version: 1), cache.count)
        #expect(!kept && left == 0)
    }

    @Test("capacity rounds up to a power of two of at least one set")
    func capacityRounding() throws {
        let capacities = try [0, 1, 1000, 1 << 20].map { try KeyCache(capacity: $0).capacity }
        #expect(capacities == [KeyCache.ways, KeyCache.ways, 1024, 1 << 20])
    }

    @Test("a key that is not 32 bytes is refused")
    func wrongKeyLength() throws {
        var cache = try KeyCache(capacity: 8)
        var refusal: CryptoError?
        do { try cache.insert(SecretKey(copying: [UInt8](repeating: 1, count: 16)), identifier: 0, owner: 1, version: 1) } catch {
            refusal = error
        }
        let count = cache.count
        #expect(refusal == .invalidKeyLength(expected: 32, actual: 16))
        #expect(count == 0)
    }

    @Test("a full set evicts a key not used since the last sweep before one that was")
    func recentlyUsedSurvives() throws {
        // One set: every owner competes for the same eight slots.
        var cache = try KeyCache(capacity: KeyCache.ways)
        let keys = try (0..<KeyCache.ways).map { _ in try SecretKey.random() }
        for (owner, key) in keys.enumerated() { try cache.insert(key, identifier: UInt32(owner), owner: Int64(owner), version: 1) }
        _ = try cache.cipher(owner: 0, version: 1)
        try cache.insert(SecretKey.random(), identifier: 99, owner: 99, version: 1)
        let count = cache.count
        let (usedKept, newKept) = (cache.contains(owner: 0, version: 1), cache.contains(owner: 99, version: 1))
        let othersKept = (1..<KeyCache.ways).filter { cache.contains(owner: Int64($0), version: 1) }.count
        #expect(count == KeyCache.ways)
        #expect(usedKept && newKept)
        #expect(othersKept == KeyCache.ways - 2)
    }

    @Test("half full or 95% full, every key but a rare one stays; full, 99% or more (two choices of an 8-way set, and a key moved to its other set to make room)",
          arguments: [(1 << 13, 0.999), (15_565, 0.999), (1 << 14, 0.99)])
    func loadFactor(keys: Int, minimumKept: Double) throws {
        var cache = try KeyCache(capacity: 1 << 14)
        let key = try SecretKey.random()
        for owner in 1...Int64(keys) { try cache.insert(key, identifier: 0, owner: owner, version: 1) }
        let kept = (1...Int64(keys)).filter { cache.contains(owner: $0, version: 1) }.count
        #expect(Double(kept) / Double(keys) >= minimumKept, "kept \(kept) of \(keys)")
    }

    @Test("property: whatever a random mix of inserts, uses and removals leaves, a hit is always the right key",
          arguments: [1, 2, 3] as [UInt64])
    func neverTheWrongKey(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var cache = try KeyCache(capacity: 64)
        let keys = try (0..<300).map { _ in try SecretKey.random() }
        var model: [Int64: (version: UInt32, key: Int)] = [:]
        for _ in 0..<5_000 {
            let owner = Int64(random.next() % 300)
            let version = UInt32(1 + random.next() % 2)
            switch random.next() % 4 {
            case 0, 1:
                let key = Int(random.next() % UInt64(keys.count))
                try cache.insert(keys[key], identifier: UInt32(key), owner: owner, version: version)
                model[owner] = (version, key)
                if version == 1 { cache.remove(owner: owner, version: 2) } else { cache.remove(owner: owner, version: 1) }
                let cached = cache.contains(owner: owner, version: version)
                #expect(cached, "the key just inserted is cached")
            case 2:
                cache.remove(owner: owner, version: version)
                if model[owner]?.version == version { model[owner] = nil }
            default:
                guard let (cipher, identifier) = try cache.cipher(owner: owner, version: version) else { continue }
                let expected = try #require(model[owner], "a hit for an owner with no key")
                #expect(expected.version == version)
                #expect(identifier == UInt32(expected.key))
                #expect(try Self.opens(cipher, sealedUnder: keys[expected.key]))
            }
            let (count, capacity) = (cache.count, cache.capacity)
            #expect(count <= capacity)
        }
    }
}
