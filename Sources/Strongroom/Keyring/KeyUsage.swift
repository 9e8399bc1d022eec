import Synchronization

/// The durable count of encryptions under one shared key (a KEK, an index check key, a master key),
/// against its budget.
///
/// AES-GCM with random 96-bit nonces stays within the collision bound of NIST SP 800-38D §8.3 for
/// 2^32 encryptions per key; the budget is set well below (2^28 by default, following the IETF AEAD
/// usage-limits draft's margin). Counts are reserved in blocks in the key database *before* they are
/// used, and a process starts by counting every earlier reservation as spent, so a crash can skip
/// counts but never lose them.
///
/// Thread safety: safe from any thread.
final class KeyUsage: Sendable {
    /// The key's name in `key_usage`, e.g. "kek:2".
    let name: String
    /// The most encryptions this key may make.
    let budget: UInt64
    private let counts: Mutex<(used: UInt64, reserved: UInt64)>

    /// A counter starting from what earlier processes reserved (all of it counted as used).
    init(name: String, budget: UInt64, reserved: UInt64) {
        self.name = name
        self.budget = budget
        counts = Mutex((reserved, reserved))
    }

    /// Encryptions counted so far, and the reserved total.
    var snapshot: (used: UInt64, reserved: UInt64) { counts.withLock { $0 } }

    /// Takes one count from the reservation, before an encryption.
    func take() throws(StoreError) {
        let taken = counts.withLock { counts -> Bool in
            guard counts.used < counts.reserved else { return false }
            counts.used += 1
            return true
        }
        guard taken else { throw .keyBudgetExhausted(key: name, used: snapshot.used, budget: budget) }
    }

    /// The reserved total to write so that `count` more encryptions fit (a block more than needed, at
    /// most the budget), or nil when enough is reserved already. Throws when the budget cannot take them.
    func reservationNeeded(for count: UInt64, block: UInt64) throws(StoreError) -> UInt64? {
        let (used, reserved) = snapshot
        guard used + count > reserved else { return nil }
        guard used + count <= budget else { throw .keyBudgetExhausted(key: name, used: used, budget: budget) }
        return min(budget, max(used + count, reserved) + block)
    }

    /// Records that `total` is now reserved in the key database.
    func didReserve(_ total: UInt64) {
        counts.withLock { $0.reserved = max($0.reserved, total) }
    }
}
