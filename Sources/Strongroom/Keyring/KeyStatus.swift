import Foundation
import StrongroomStorage

/// The state of a store's key hierarchy, for `strongroom keys status`.
public struct KeyStatus: Sendable, Codable, Equatable {
    /// The master key's generation (1 at creation; each master rotation adds one).
    public let masterGeneration: Int
    /// The current key-encryption key's version.
    public let kekVersion: Int
    /// How many subject keys the KEK protects.
    public let subjectKeys: Int
    /// How many subjects were erased (their keys destroyed).
    public let erasedSubjects: Int
    /// The phone blind index.
    public let phoneIndex: IndexStatus
    /// The audit key's version.
    public let auditKeyVersion: Int
    /// The sequence number the signed audit head covers.
    public let auditHeadSequence: UInt64
    /// Rotations in progress or interrupted (run the same command again to finish them).
    public let rotationsInProgress: [RotationProgress]
    /// Encryptions counted under each shared key against its budget.
    public let keyUsage: [KeyUsageStatus]

    /// One shared key's encryption count (NIST SP 800-38D §8.3).
    public struct KeyUsageStatus: Sendable, Codable, Equatable {
        /// "master:2", "kek:3", "index:1".
        public let key: String
        /// Encryptions counted (reserved blocks included: an upper bound).
        public let used: UInt64
        /// The budget.
        public let budget: UInt64
        /// True from 90% of the budget: rotate the key soon.
        public var nearBudget: Bool { used * 10 >= budget * 9 }
    }

    /// A blind index's key and plan.
    public struct IndexStatus: Sendable, Codable, Equatable {
        /// The index key's version.
        public let version: Int
        /// Tag length in bits.
        public let bits: Int
        /// The population the length was planned for.
        public let plannedPopulation: Int
        /// How many numbers are indexed now.
        public let indexedNumbers: Int
        /// Indexed numbers per tag value on average (R / 2^bits).
        public let expectedCoincidences: Double
        /// True when the index holds more than four times its plan: re-plan with `keys rotate-index --bits N`.
        public let needsReplanning: Bool
    }
}

extension Store {
    /// The state of the key hierarchy.
    public func keyStatus() throws(StoreError) -> KeyStatus {
        let indexed = try withData { (connection) throws(DatabaseError) in
            Int(try connection.scalarInteger("SELECT count(*) FROM phone_index WHERE key_version = ?",
                                             [.int(Int(keyring.phoneIndex.version))]) ?? 0)
        }
        let rotations = try rotationsInProgress()
        return try keyring.status(indexedNumbers: indexed, rotations: rotations)
    }
}

extension Keyring {
    /// The key hierarchy's state, with `indexedNumbers` from the data database.
    func status(indexedNumbers: Int, rotations: [RotationProgress]) throws(StoreError) -> KeyStatus {
        try database.read { (tables) throws(DatabaseError) in
            let planned = try tables.plannedPopulation(ofIndexVersion: phoneIndex.version)
            return KeyStatus(
                masterGeneration: Int(try tables.masterGeneration() ?? 0),
                kekVersion: Int(keyEncryptionKey.version),
                subjectKeys: try tables.subjectKeyCount(),
                erasedSubjects: try tables.erasedSubjectCount(),
                phoneIndex: .init(version: Int(phoneIndex.version), bits: phoneIndex.bits, plannedPopulation: planned,
                                  indexedNumbers: indexedNumbers,
                                  expectedCoincidences: BlindIndexPlan.expectedCoincidences(population: indexedNumbers,
                                                                                            bits: phoneIndex.bits),
                                  needsReplanning: indexedNumbers > 4 * planned),
                auditKeyVersion: Int(try tables.latestAuditKey()?.version ?? 0),
                auditHeadSequence: try tables.auditHead()?.head.sequence ?? 0,
                rotationsInProgress: rotations,
                keyUsage: [keys.master.usage, keys.current.usage].compactMap { usage in
                    usage.map { KeyStatus.KeyUsageStatus(key: $0.name, used: $0.snapshot.used, budget: $0.budget) }
                })
        }
    }
}
