import Foundation

/// What a rotation did.
public struct RotationReport: Sendable, Codable, Equatable {
    /// What was rotated.
    public let kind: RotationKind
    /// The key version (or master generation) before.
    public let fromVersion: Int
    /// The key version (or master generation) after.
    public let toVersion: Int
    /// How many keys were re-wrapped, subjects re-encrypted or subjects re-indexed.
    public let items: Int
    /// Whether an interrupted rotation was resumed.
    public let resumed: Bool
}

/// A rotation in progress, as `keys status` shows it.
public struct RotationProgress: Sendable, Codable, Equatable {
    /// What is being rotated (`kek`, `data` or `index`: the kinds that walk subjects).
    public let kind: RotationKind
    /// The key version being rotated to.
    public let targetVersion: Int
    /// Items done so far.
    public let done: Int
    /// Items in all (as counted when the rotation started).
    public let total: Int
    /// When it started.
    public let startedAt: Date
}
