import Foundation

/// A new folder under the system's temporary directory, removed with everything in it (SQLite's WAL
/// and lock files included) when the last reference to it goes: a test holds one for as long as it
/// uses the files, e.g. as a property of its suite (Swift Testing makes a suite value per test).
public final class TemporaryDirectory: Sendable {
    /// The folder's path.
    public let path: String

    /// Creates the folder, named `label` and a random UUID. Should that fail, the first file made
    /// in it fails with the reason.
    public init(_ label: String = "strongroom-test") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// The path of `name` inside the folder.
    public func path(_ name: String) -> String {
        path + "/" + name
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}
