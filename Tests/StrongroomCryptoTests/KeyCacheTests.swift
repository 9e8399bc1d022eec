import StrongroomCrypto
import StrongroomTestSupport
import Testing

@Suite("KeyCache: cache of subject keys, growing to a fixed maximum")
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

    @Test("capacity rounds up to a power of two of at least one set, and a cache starts with at most the initial slots")
    func capacityRounding() throws {
        let sizes = try [0, 1, 1000, 1 << 20].map { requested in
            let cache = try KeyCache(capacity: requested)
            return [cache.maximumCapacity, cache.capacity]
        }
        #expect(sizes == [[KeyCache.ways, KeyCache.ways], [KeyCache.ways, KeyCache.ways], [1024, 1024],
                          [1 << 20, KeyCache.defaultInitialCapacity]])
        let small = try KeyCache(capacity: 1 << 10, initialCapacity: 3)
        #expect(small.capacity == KeyCache.ways)
    }

    @Test("the cache doubles when three quarters of it hold keys, counting the keys it holds now, and stops at its maximum")
    func growth() throws {
        var cache = try KeyCache(capacity: 64, initialCapacity: 16)
        let key = try SecretKey.random()
        for owner in 1...12 { try cache.insert(key, identifier: 0, owner: Int64(owner), version: 1) }
        let atThreeQuarters = cache.capacity
        // Replacing a key and removing keys does not count towards the next doubling.
        try cache.insert(key, identifier: 1, owner: 12, version: 1)
        for owner in 1...4 { cache.remove(owner: Int64(owner), version: 1) }
        for owner in 13...16 { try cache.insert(key, identifier: 0, owner: Int64(owner), version: 1) }
        let afterRemovals = cache.capacity
        try cache.insert(key, identifier: 0, owner: 17, version: 1)
        let doubled = cache.capacity
        for owner in 18...200 { try cache.insert(key, identifier: 0, owner: Int64(owner), version: 1) }
        let (largest, count) = (cache.capacity, cache.count)
        #expect(atThreeQuarters == 16 && afterRemovals == 16 && doubled == 32)
        #expect(largest == 64 && count <= 64)
    }

    @Test("every key survives the doublings from one set to 65,536 slots, with its identifier and its bytes")
    func keysSurviveGrowth() throws {
        var cache = try KeyCache(capacity: 1 << 16, initialCapacity: KeyCache.ways)
        let keys = try (0..<16).map { _ in try SecretKey.random() }
        let count = 40_000
        for owner in 0..<count { try cache.insert(keys[owner % keys.count], identifier: UInt32(owner), owner: Int64(owner), version: 7) }
        let capacity = cache.capacity
        #expect(capacity == 1 << 16)
        var missing = 0
        for owner in 0..<count {
            guard let (cipher, identifier) = try cache.cipher(owner: Int64(owner), version: 7) else { missing += 1; continue }
            #expect(identifier == UInt32(owner))
            if owner % 1000 == 0 { #expect(try Self.opens(cipher, sealedUnder: keys[owner % keys.count])) }
        }
        #expect(missing == 0)
        // Then ordinary use of the grown cache: removals forget exactly their keys.
        for owner in 0..<count where owner % 2 == 0 { cache.remove(owner: Int64(owner), version: 7) }
        let left = (0..<count).filter { cache.contains(owner: Int64($0), version: 7) }.count
        #expect(left == count / 2)
    }

    @Test("prefetching a key, cached or not, before or after a doubling, changes nothing the cache answers")
    func prefetchChangesNothing() throws {
        var cache = try KeyCache(capacity: 64, initialCapacity: KeyCache.ways)
        let key = try SecretKey.random()
        for owner in 1...5 { try cache.insert(key, identifier: UInt32(owner), owner: Int64(owner), version: 2) }
        for owner in 0...7 { cache.prefetch(owner: Int64(owner), version: 2) }
        let before = ((0...7).map { cache.contains(owner: Int64($0), version: 2) }, cache.count, cache.capacity)
        for owner in 6...40 { try cache.insert(key, identifier: UInt32(owner), owner: Int64(owner), version: 2) }
        for owner in 0...50 { cache.prefetch(owner: Int64(owner), version: 2) }
        let (cipher, identifier) = try #require(try cache.cipher(owner: 3, version: 2))
        let after = ((1...40).filter { cache.contains(owner: Int64($0), version: 2) }.count, cache.capacity)
        let opens = try Self.opens(cipher, sealedUnder: key)
        #expect(before.0 == [false, true, true, true, true, true, false, false] && before.1 == 5 && before.2 == KeyCache.ways)
        #expect(identifier == 3 && opens)
        #expect(after.0 == 40 && after.1 == 64)
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

    @Test("property: whatever a random mix of inserts, uses and removals leaves, growing or full, a hit is always the right key",
          arguments: [1, 2, 3] as [UInt64])
    func neverTheWrongKey(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var cache = try KeyCache(capacity: 256, initialCapacity: KeyCache.ways)
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
