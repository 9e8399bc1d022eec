/// A bounded cache of unwrapped subject keys, so that reading a subject again costs no key-database
/// read and no unwrap.
///
/// Two generations approximate least-recently-used eviction at the cost of two dictionary probes:
/// when the young generation fills, it becomes the old one and the previous old one is dropped;
/// a hit in the old generation moves the key back to the young one.
struct SubjectKeyCache<Value> {
    typealias Reference = SubjectKeyReference

    private let generationCapacity: Int
    private var young: [Reference: Value] = [:]
    private var old: [Reference: Value] = [:]

    /// A cache of at most about `capacity` keys.
    init(capacity: Int) {
        generationCapacity = max(1, capacity / 2)
    }

    /// The cached key, if any.
    mutating func key(for reference: Reference) -> Value? {
        if let key = young[reference] { return key }
        guard let key = old.removeValue(forKey: reference) else { return nil }
        insert(key, for: reference)
        return key
    }

    /// Caches `key`.
    mutating func insert(_ key: Value, for reference: Reference) {
        if young.count >= generationCapacity {
            old = young
            young = [:]
            young.reserveCapacity(generationCapacity)
        }
        young[reference] = key
    }

    /// Forgets `subject`'s key of each of `versions` (after erasure or data-key rotation).
    mutating func remove(subject: SubjectID, versions: [UInt32]) {
        for version in versions {
            let reference = Reference(subject: subject, version: version)
            young.removeValue(forKey: reference)
            old.removeValue(forKey: reference)
        }
    }
}

/// A subject's key of one version.
struct SubjectKeyReference: Hashable {
    let subject: SubjectID
    let version: UInt32
}
