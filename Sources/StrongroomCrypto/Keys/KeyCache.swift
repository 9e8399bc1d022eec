#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
internal import COpenSSL

/// A cache of AES-256 keys up to a fixed maximum, each found by a 64-bit owner and a 32-bit version
/// and carrying a 32-bit identifier, held in one memory mapping.
///
/// A hit allocates nothing and an eviction frees nothing, so a cache of a million keys costs the same
/// per use when full as when empty (a dictionary of key objects did not: it paid an allocation per
/// insert, a free per eviction, and rehashing). The mapping starts small (`defaultInitialCapacity`
/// slots, or the maximum when smaller) and doubles when three quarters of it hold keys, until it
/// reaches the maximum: a store of a thousand subjects keeps a quarter of a megabyte, not the pages a
/// million slots would have spread its keys over. A doubling moves every key once, under the cache's
/// lock, so inserts cost the same on average at any size. The mapping is anonymous and excluded from
/// core dumps (`MADV_DONTDUMP`); a removed or evicted key's bytes are overwritten (`OPENSSL_cleanse`),
/// and so are the keys of a mapping a doubling leaves behind, and the remaining keys when the cache goes.
///
/// A mapping of 2 MiB or more asks for transparent huge pages (`MADV_HUGEPAGE`) before any key is in
/// it. Lookups land at random places: with 4 KiB pages a cache of a million keys (56 MB) spans 14,000
/// pages, far more than the processor's TLB holds, and each lookup paid a page walk on top of its cache
/// miss. Huge pages cost no memory that small ones would not: a mapping that large exists only once
/// keys fill three eighths of it, spread by hash over all its pages. (The kernel may still move or
/// copy the cache's pages, as it may any memory not locked: see SECURITY.md on hosts.)
///
/// Placement: the slots are grouped in sets of `ways`; a key can live in either of two sets its owner
/// and version hash to, and goes into the one with more empty slots ("two choices": with one set a
/// key, a cache filled to its capacity left 12% of keys out; with two, 2%). When both are full, a key
/// of theirs whose other set has room moves there (cuckoo displacement, one step: filled to its
/// capacity the cache then keeps 99.6% of keys, and at 95% all); only when none can does one of them
/// evict a slot not used since it was last swept (the CLOCK approximation of least-recently-used).
/// Lookups compare the owner and the version, never the key.
///
/// Not thread-safe: keep it behind a lock.
public struct KeyCache: ~Copyable {
    /// The bytes of a cached key.
    public static let keyByteCount = 32
    /// Slots per set: a lookup scans one cache line of owners in each of its (at most two) sets.
    public static let ways = 8

    /// What a slot holds.
    private enum SlotState: UInt8 {
        case empty = 0, present, recentlyUsed
    }

    /// The slots a cache starts with unless told otherwise (or its maximum is smaller): 4,096 (224 KiB).
    public static let defaultInitialCapacity = 1 << 12

    /// The most slots the cache grows to, a power of two and a multiple of `ways`.
    public private(set) var maximumCapacity: Int
    /// Slots now, a power of two and a multiple of `ways`.
    public private(set) var capacity: Int
    private var setShift: UInt64
    private var mapping: UnsafeMutableRawBufferPointer
    /// How many keys are cached (slots holding a key).
    public private(set) var count = 0
    /// Picks the victim when a whole set was used since its last sweep.
    private var evictions: UInt64 = 0

    /// Where a set's fields start within its `setByteCount` bytes. A lookup reads the owners' cache
    /// line, then the versions and identifiers' line, the states, and one key: adjacent lines of one
    /// page, so a cache miss costs little more than one memory access.
    private enum Layout {
        static let owners = 0, versions = 64, identifiers = 96, states = 128, keys = 192
        static let setByteCount = keys + KeyCache.ways * KeyCache.keyByteCount
    }

    /// A cache of at most `capacity` keys, starting with `initialCapacity` slots (each rounded up to a
    /// power of two, at least one set).
    ///
    /// Takes 56 bytes of memory a slot, for the initial slots at first and more as it grows.
    public init(capacity: Int, initialCapacity: Int = KeyCache.defaultInitialCapacity) throws(CryptoError) {
        maximumCapacity = KeyCache.slots(for: capacity)
        self.capacity = min(maximumCapacity, KeyCache.slots(for: initialCapacity))
        mapping = try KeyCache.mapSlots(self.capacity)
        setShift = KeyCache.setShift(forSlots: self.capacity)
    }

    deinit {
        KeyCache.release(mapping, slots: capacity)
    }

    /// A fresh mapping of `slots` empty slots (anonymous pages start zeroed: every slot `.empty`).
    private static func mapSlots(_ slots: Int) throws(CryptoError) -> UnsafeMutableRawBufferPointer {
        let length = slots / KeyCache.ways * Layout.setByteCount
        guard let base = unsafe mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              unsafe base != MAP_FAILED else {
            throw CryptoError.outOfMemory(bytes: length)
        }
        #if os(Linux)
        // Keys have no business in a core dump; failure here only loses that protection, so it is ignored.
        _ = unsafe madvise(base, length, MADV_DONTDUMP)
        // Asked before any page is touched, so the pages are made huge from the start (see the type's
        // comment); where transparent huge pages are off this does nothing, and a failure only costs speed.
        if length >= 2 << 20 { _ = unsafe madvise(base, length, MADV_HUGEPAGE) }
        #endif
        return unsafe UnsafeMutableRawBufferPointer(start: base, count: length)
    }

    /// Overwrites every key still in `mapping` (of `slots` slots) and unmaps it.
    private static func release(_ mapping: UnsafeMutableRawBufferPointer, slots: Int) {
        for slot in 0..<slots where state(slot, in: mapping) != .empty {
            unsafe OPENSSL_cleanse(keyAddress(slot, in: mapping), KeyCache.keyByteCount)
        }
        unsafe munmap(mapping.baseAddress, mapping.count)
    }

    /// `keys` rounded up to a power of two of at least one set.
    private static func slots(for keys: Int) -> Int {
        var slots = KeyCache.ways
        while slots < keys { slots <<= 1 }
        return slots
    }

    /// The shift that leaves a hash's top bits, as many as there are sets among `slots`.
    private static func setShift(forSlots slots: Int) -> UInt64 {
        UInt64(64 - (slots / KeyCache.ways).trailingZeroBitCount)
    }

    /// The cached key of (`owner`, `version`) as a ready AES-256-GCM cipher, with its identifier; nil
    /// when it is not cached.
    public mutating func cipher(owner: Int64, version: UInt32) throws(CryptoError) -> (cipher: AES256GCM, identifier: UInt32)? {
        guard let slot = find(owner: owner, version: version) else { return nil }
        setState(.recentlyUsed, of: slot)
        let cipher = try unsafe AES256GCM(keyBytes: UnsafeRawBufferPointer(start: keyAddress(slot), count: KeyCache.keyByteCount))
        return (cipher, unsafe field(Layout.identifiers, of: slot).load(as: UInt32.self))
    }

    /// Has the processor start loading the lines a lookup of (`owner`, `version`) reads first (the
    /// owners, versions and states of its two sets), and returns at once; nothing else changes. Told a
    /// few microseconds ahead (a caller-ID lookup, before SQLite reads the subject's row), the lookup
    /// then finds them in cache instead of waiting for memory. In 4 KiB pages each prefetch paid a page
    /// walk of its own and cost as much as it saved; in huge pages it does not (`Benchmarks/README.md`).
    public func prefetch(owner: Int64, version: UInt32) {
        func load(_ set: Int) {
            unsafe COpenSSL_prefetch(field(Layout.owners, of: set))
            unsafe COpenSSL_prefetch(field(Layout.versions, of: set))
            unsafe COpenSSL_prefetch(field(Layout.states, of: set))
        }
        let (first, second) = sets(owner: owner, version: version)
        load(first)
        if second != first { load(second) }
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
        let slot: Int
        if let existing = find(owner: owner, version: version) {
            slot = existing
        } else {
            if count >= capacity / 4 * 3, capacity < maximumCapacity { grow() }
            slot = victim(inSetOf: owner, version: version)
            if state(slot) == .empty { count += 1 }
        }
        label(slot, owner: owner, version: version, identifier: identifier, state: .present)
        unsafe key.withUnsafeBytes { unsafe keyAddress(slot).copyMemory(from: $0.baseAddress!, byteCount: KeyCache.keyByteCount) }
    }

    /// Doubles the slots: every key moves into a fresh mapping twice the size (with its identifier and
    /// use mark), and the old mapping's keys are overwritten before it is unmapped. When the larger
    /// mapping cannot be had, the cache stays at its size for good (`maximumCapacity` drops to it) and
    /// evicts instead: caching only saves unwraps.
    private mutating func grow() {
        let (old, oldSlots) = (mapping, capacity)
        do { mapping = try KeyCache.mapSlots(oldSlots * 2) } catch {
            maximumCapacity = oldSlots
            return
        }
        capacity = oldSlots * 2
        setShift = KeyCache.setShift(forSlots: capacity)
        count = 0
        for source in 0..<oldSlots {
            let sourceState = KeyCache.state(source, in: old)
            guard sourceState != .empty else { continue }
            let owner = unsafe KeyCache.field(Layout.owners, of: source, in: old).load(as: Int64.self)
            let version = unsafe KeyCache.field(Layout.versions, of: source, in: old).load(as: UInt32.self)
            // Three eighths full: both of a key's sets full is all but impossible, and would only evict
            // a key (a later read unwraps it again).
            let slot = victim(inSetOf: owner, version: version)
            if state(slot) == .empty { count += 1 }
            label(slot, owner: owner, version: version,
                  identifier: unsafe KeyCache.field(Layout.identifiers, of: source, in: old).load(as: UInt32.self), state: sourceState)
            unsafe keyAddress(slot).copyMemory(from: KeyCache.keyAddress(source, in: old), byteCount: KeyCache.keyByteCount)
        }
        KeyCache.release(old, slots: oldSlots)
    }

    /// Forgets the key of (`owner`, `version`), overwriting its bytes.
    public mutating func remove(owner: Int64, version: UInt32) {
        guard let slot = find(owner: owner, version: version) else { return }
        wipeKey(slot)
        setState(.empty, of: slot)
        count -= 1
    }

    /// Forgets every key of the owners in `owners`, whatever its version, overwriting their bytes: one
    /// pass over all slots, for when the versions are no longer known (a subject erased by another
    /// process).
    public mutating func removeAll(owners: Set<Int64>) {
        guard !owners.isEmpty else { return }
        for slot in 0..<capacity where state(slot) != .empty && owners.contains(unsafe field(Layout.owners, of: slot).load(as: Int64.self)) {
            wipeKey(slot)
            setState(.empty, of: slot)
            count -= 1
        }
    }

    /// The first slot of each of the two sets that (`owner`, `version`) may live in (the same set when
    /// the cache has only one).
    private func sets(owner: Int64, version: UInt32) -> (Int, Int) {
        // Fibonacci hashing (Knuth, TAOCP vol. 3 §6.4) of both halves, with the multipliers swapped
        // for the second set; the top bits pick the set.
        let owner = UInt64(bitPattern: owner), version = UInt64(version)
        let first = (owner &* 0x9E37_79B9_7F4A_7C15) ^ (version &* 0xC2B2_AE3D_27D4_EB4F)
        let second = (owner &* 0xC2B2_AE3D_27D4_EB4F) ^ (version &* 0x9E37_79B9_7F4A_7C15)
        guard setShift < 64 else { return (0, 0) }
        return (Int(truncatingIfNeeded: first >> setShift) * KeyCache.ways, Int(truncatingIfNeeded: second >> setShift) * KeyCache.ways)
    }

    /// The slot holding (`owner`, `version`), if any.
    ///
    /// At a million keys each set is a cache miss. So both sets' owners and versions are read whole,
    /// without stopping at a match, and only then compared: their loads do not wait for one another,
    /// and a lookup costs about one memory access before the key's instead of one for each line
    /// visited in turn.
    private func find(owner: Int64, version: UInt32) -> Int? {
        let (first, second) = sets(owner: owner, version: version)
        let firstMatches = matches(owner: owner, version: version, inSetAt: first)
        let secondMatches = second == first ? 0 : matches(owner: owner, version: version, inSetAt: second)
        return occupied(firstMatches, inSetAt: first) ?? occupied(secondMatches, inSetAt: second)
    }

    /// A bit for each slot of the set (`ways` is 8: one byte) whose owner and version are these,
    /// whatever its state.
    private func matches(owner: Int64, version: UInt32, inSetAt first: Int) -> UInt8 {
        var matches: UInt8 = 0
        for way in 0..<KeyCache.ways {
            let difference = unsafe UInt64(bitPattern: field(Layout.owners, of: first + way).load(as: Int64.self) ^ owner)
                | UInt64(unsafe field(Layout.versions, of: first + way).load(as: UInt32.self) ^ version)
            matches |= (difference == 0 ? 1 : 0) << way
        }
        return matches
    }

    /// The first slot of `matches` that is not empty (an emptied slot keeps its owner and version).
    private func occupied(_ matches: UInt8, inSetAt first: Int) -> Int? {
        var remaining = matches
        while remaining != 0 {
            let slot = first + remaining.trailingZeroBitCount
            if state(slot) != .empty { return slot }
            remaining &= remaining - 1
        }
        return nil
    }

    /// An empty slot of whichever of the two sets has more; else one emptied by moving a key of either
    /// set to its other set; else, taking the sets in turn, the first slot of one not used since its
    /// last sweep (clearing the use marks of the slots passed over), else, when every slot of it was
    /// used, one picked round-robin.
    private mutating func victim(inSetOf owner: Int64, version: UInt32) -> Int {
        let (first, second) = sets(owner: owner, version: version)
        let (firstEmpty, secondEmpty) = (emptySlots(inSetAt: first), emptySlots(inSetAt: second))
        if let empty = (secondEmpty.count > firstEmpty.count ? secondEmpty : firstEmpty).first { return empty }
        if let freed = moveAKeyAway(fromSetAt: first) ?? moveAKeyAway(fromSetAt: second) { return freed }
        evictions &+= 1
        let start = evictions % 2 == 0 ? first : second
        for slot in start..<(start + KeyCache.ways) {
            if state(slot) == .present {
                wipeKey(slot)
                return slot
            }
            setState(.present, of: slot)
        }
        let slot = start + Int(evictions / 2 % UInt64(KeyCache.ways))
        wipeKey(slot)
        return slot
    }

    /// Moves the first key of the set at `start` whose other set has an empty slot into that slot (one
    /// step of cuckoo hashing's displacement: Pagh and Rodler, "Cuckoo Hashing", 2004), and returns the
    /// slot it left, wiped; nil when no key can move. It keeps a cache near its capacity from evicting
    /// keys while other sets have room: filled to capacity, two choices alone left 2% of keys out.
    private mutating func moveAKeyAway(fromSetAt start: Int) -> Int? {
        for slot in start..<(start + KeyCache.ways) {
            let owner = unsafe field(Layout.owners, of: slot).load(as: Int64.self)
            let version = unsafe field(Layout.versions, of: slot).load(as: UInt32.self)
            let (first, second) = sets(owner: owner, version: version)
            let other = first == start ? second : first
            guard other != start, let target = emptySlots(inSetAt: other).first else { continue }
            label(target, owner: owner, version: version, identifier: unsafe field(Layout.identifiers, of: slot).load(as: UInt32.self),
                  state: state(slot))
            unsafe keyAddress(target).copyMemory(from: keyAddress(slot), byteCount: KeyCache.keyByteCount)
            wipeKey(slot)
            setState(.empty, of: slot)
            return slot
        }
        return nil
    }

    /// Records in `slot` whose key it holds and its state (the key's bytes are the caller's to store).
    private func label(_ slot: Int, owner: Int64, version: UInt32, identifier: UInt32, state: SlotState) {
        unsafe field(Layout.owners, of: slot).storeBytes(of: owner, as: Int64.self)
        unsafe field(Layout.versions, of: slot).storeBytes(of: version, as: UInt32.self)
        unsafe field(Layout.identifiers, of: slot).storeBytes(of: identifier, as: UInt32.self)
        setState(state, of: slot)
    }

    /// The set's first empty slot, and how many it has.
    private func emptySlots(inSetAt start: Int) -> (first: Int?, count: Int) {
        var first: Int?
        var count = 0
        for slot in start..<(start + KeyCache.ways) where state(slot) == .empty {
            first = first ?? slot
            count += 1
        }
        return (first, count)
    }

    /// The address of `slot`'s entry in the field starting at `offset` of its set in `mapping` (entries
    /// as long as the field's type: 8 bytes for owners, 4 for versions and identifiers, 1 for states).
    private static func field(_ offset: Int, of slot: Int, in mapping: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawPointer {
        let stride = switch offset {
        case Layout.owners: MemoryLayout<Int64>.stride
        case Layout.states: 1
        default: MemoryLayout<UInt32>.stride
        }
        return unsafe mapping.baseAddress! + (slot / KeyCache.ways) * Layout.setByteCount + offset + (slot % KeyCache.ways) * stride
    }

    private static func state(_ slot: Int, in mapping: UnsafeMutableRawBufferPointer) -> SlotState {
        SlotState(rawValue: unsafe field(Layout.states, of: slot, in: mapping).load(as: UInt8.self)) ?? .empty
    }

    private static func keyAddress(_ slot: Int, in mapping: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawPointer {
        unsafe mapping.baseAddress! + (slot / KeyCache.ways) * Layout.setByteCount + Layout.keys + (slot % KeyCache.ways) * KeyCache.keyByteCount
    }

    private func field(_ offset: Int, of slot: Int) -> UnsafeMutableRawPointer {
        unsafe KeyCache.field(offset, of: slot, in: mapping)
    }

    private func state(_ slot: Int) -> SlotState {
        KeyCache.state(slot, in: mapping)
    }

    private func setState(_ state: SlotState, of slot: Int) {
        unsafe field(Layout.states, of: slot).storeBytes(of: state.rawValue, as: UInt8.self)
    }

    private func keyAddress(_ slot: Int) -> UnsafeMutableRawPointer {
        unsafe KeyCache.keyAddress(slot, in: mapping)
    }

    private func wipeKey(_ slot: Int) {
        unsafe OPENSSL_cleanse(keyAddress(slot), KeyCache.keyByteCount)
    }
}
