#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
internal import COpenSSL

/// A fixed-capacity cache of AES-256 keys, each found by a 64-bit owner and a 32-bit version and
/// carrying a 32-bit identifier, held in one memory mapping made when the cache is.
///
/// A hit or an insert allocates nothing and an eviction frees nothing, so a cache of a million keys
/// costs the same per use when full as when empty (a dictionary of key objects did not: it paid an
/// allocation per insert, a free per eviction, and rehashing). The mapping is anonymous and excluded
/// from core dumps (`MADV_DONTDUMP`); pages are only backed once written to. A removed or evicted key's
/// bytes are overwritten (`OPENSSL_cleanse`) and so are the remaining keys when the cache goes.
///
/// Placement: the slots are grouped in sets of `ways`; a key can live only in the set its owner and
/// version hash to, and a full set evicts a slot not used since the set was last swept (the CLOCK
/// approximation of least-recently-used). Lookups compare the owner and the version, never the key.
///
/// Not thread-safe: keep it behind a lock.
public struct KeyCache: ~Copyable {
    /// The bytes of a cached key.
    public static let keyByteCount = 32
    /// Slots per set: one cache line of owners is scanned per lookup.
    public static let ways = 8

    /// What a slot holds.
    private enum SlotState: UInt8 {
        case empty = 0, present, recentlyUsed
    }

    /// Slots, a power of two and a multiple of `ways`.
    public let capacity: Int
    private let setShift: UInt64
    private let mapping: UnsafeMutableRawBufferPointer
    private let owners: UnsafeMutablePointer<Int64>
    private let versions: UnsafeMutablePointer<UInt32>
    private let identifiers: UnsafeMutablePointer<UInt32>
    private let states: UnsafeMutablePointer<UInt8>
    private let keys: UnsafeMutableRawPointer
    /// Picks the victim when a whole set was used since its last sweep.
    private var evictions: UInt64 = 0

    /// A cache of `capacity` keys (rounded up to a power of two, at least one set).
    ///
    /// Reserves `capacity` × 49 bytes of address space; memory is used only as slots are filled.
    public init(capacity: Int) throws(CryptoError) {
        var slots = KeyCache.ways
        while slots < capacity { slots <<= 1 }
        let ownersBytes = slots * MemoryLayout<Int64>.stride
        let wordsBytes = slots * MemoryLayout<UInt32>.stride
        let length = ownersBytes + 2 * wordsBytes + slots + slots * KeyCache.keyByteCount
        guard let base = unsafe mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              unsafe base != MAP_FAILED else {
            throw CryptoError.outOfMemory(bytes: length)
        }
        #if os(Linux)
        // Keys have no business in a core dump; failure here only loses that protection, so it is ignored.
        _ = unsafe madvise(base, length, MADV_DONTDUMP)
        #endif
        self.capacity = slots
        setShift = UInt64(64 - (slots / KeyCache.ways).trailingZeroBitCount)
        mapping = unsafe UnsafeMutableRawBufferPointer(start: base, count: length)
        // Anonymous pages start zeroed: every slot starts `.empty`.
        owners = unsafe base.bindMemory(to: Int64.self, capacity: slots)
        versions = unsafe (base + ownersBytes).bindMemory(to: UInt32.self, capacity: slots)
        identifiers = unsafe (base + ownersBytes + wordsBytes).bindMemory(to: UInt32.self, capacity: slots)
        states = unsafe (base + ownersBytes + 2 * wordsBytes).bindMemory(to: UInt8.self, capacity: slots)
        keys = unsafe base + ownersBytes + 2 * wordsBytes + slots
    }

    deinit {
        for slot in 0..<capacity where unsafe states[slot] != SlotState.empty.rawValue { unsafe wipeKey(slot) }
        unsafe munmap(mapping.baseAddress, mapping.count)
    }

    /// The cached key of (`owner`, `version`) as a ready AES-256-GCM cipher, with its identifier; nil
    /// when it is not cached.
    public mutating func cipher(owner: Int64, version: UInt32) throws(CryptoError) -> (cipher: AES256GCM, identifier: UInt32)? {
        guard let slot = find(owner: owner, version: version) else { return nil }
        unsafe states[slot] = SlotState.recentlyUsed.rawValue
        let cipher = try unsafe AES256GCM(keyBytes: UnsafeRawBufferPointer(start: keyAddress(slot), count: KeyCache.keyByteCount))
        return (cipher, unsafe identifiers[slot])
    }

    /// Whether the key of (`owner`, `version`) is cached.
    public func contains(owner: Int64, version: UInt32) -> Bool {
        find(owner: owner, version: version) != nil
    }

    /// Caches `key` (exactly 32 bytes) as (`owner`, `version`), replacing what was cached under that
    /// pair, or else an empty slot of its set, or else a slot not recently used.
    public mutating func insert(_ key: SecretKey, identifier: UInt32, owner: Int64, version: UInt32) throws(CryptoError) {
        guard key.byteCount == KeyCache.keyByteCount else {
            throw .invalidKeyLength(expected: KeyCache.keyByteCount, actual: key.byteCount)
        }
        let slot = find(owner: owner, version: version) ?? victim(inSetOf: owner, version: version)
        unsafe owners[slot] = owner
        unsafe versions[slot] = version
        unsafe identifiers[slot] = identifier
        unsafe states[slot] = SlotState.present.rawValue
        unsafe key.withUnsafeBytes { unsafe keyAddress(slot).copyMemory(from: $0.baseAddress!, byteCount: KeyCache.keyByteCount) }
    }

    /// Forgets the key of (`owner`, `version`), overwriting its bytes.
    public mutating func remove(owner: Int64, version: UInt32) {
        guard let slot = find(owner: owner, version: version) else { return }
        unsafe wipeKey(slot)
        unsafe states[slot] = SlotState.empty.rawValue
    }

    /// How many keys are cached (counts every slot: for tests and diagnostics).
    public var count: Int {
        (0..<capacity).reduce(0) { unsafe $0 + (states[$1] == SlotState.empty.rawValue ? 0 : 1) }
    }

    private func firstSlot(owner: Int64, version: UInt32) -> Int {
        // Fibonacci hashing (Knuth, TAOCP vol. 3 §6.4) of both halves; the top bits pick the set.
        let hash = (UInt64(bitPattern: owner) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(version) &* 0xC2B2_AE3D_27D4_EB4F)
        let set = setShift == 64 ? 0 : Int(truncatingIfNeeded: hash >> setShift)
        return set * KeyCache.ways
    }

    private func find(owner: Int64, version: UInt32) -> Int? {
        let first = firstSlot(owner: owner, version: version)
        for slot in first..<(first + KeyCache.ways)
        where unsafe owners[slot] == owner && versions[slot] == version && states[slot] != SlotState.empty.rawValue {
            return slot
        }
        return nil
    }

    /// An empty slot of the set, else the first not used since the last sweep (clearing the use marks
    /// of the slots passed over), else, when every slot was used, one picked round-robin.
    private mutating func victim(inSetOf owner: Int64, version: UInt32) -> Int {
        let first = firstSlot(owner: owner, version: version)
        let set = first..<(first + KeyCache.ways)
        if let empty = set.first(where: { unsafe states[$0] == SlotState.empty.rawValue }) { return empty }
        for slot in set {
            if unsafe states[slot] == SlotState.present.rawValue {
                unsafe wipeKey(slot)
                return slot
            }
            unsafe states[slot] = SlotState.present.rawValue
        }
        evictions &+= 1
        let slot = first + Int(evictions % UInt64(KeyCache.ways))
        unsafe wipeKey(slot)
        return slot
    }

    private func keyAddress(_ slot: Int) -> UnsafeMutableRawPointer {
        unsafe keys + slot * KeyCache.keyByteCount
    }

    private func wipeKey(_ slot: Int) {
        unsafe OPENSSL_cleanse(keyAddress(slot), KeyCache.keyByteCount)
    }
}
