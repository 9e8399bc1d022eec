/// What a rotation replaces. The raw values are part of the `--json` output of the `keys rotate-*`
/// commands, of `keys status`, and of the `rotations` table of the key database: they never change.
public enum RotationKind: String, Sendable, Codable, CaseIterable {
    /// The master key: the KEKs re-wrapped under a new one (constant time).
    case master
    /// The key-encryption key: every subject, index and audit key re-wrapped under a new one.
    case kek
    /// The subjects' data keys: every field re-encrypted under a fresh key.
    case data
    /// The phone blind-index key: the index rebuilt under a new one.
    case index
    /// Erasures sealed against key-database backups: a KEK rotation, then a master rotation.
    case sealErasures = "seal-erasures"
}
