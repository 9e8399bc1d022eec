import Foundation
import StrongroomCrypto

/// The engine's handling of master key files, so that a tool creates, installs and destroys them
/// without the crypto module: a fresh 256-bit key from the system's CSPRNG, written to a file of mode
/// 0600 from its first instant and synced with its folder (`KeyFile`). Failures are
/// `KeyProviderError.keyFile`, naming the path and the operation, never the key.
public enum MasterKeyFile {
    /// Creates `path` holding a fresh random master key. Refuses an existing file.
    public static func create(at path: String) throws(KeyProviderError) {
        do { _ = try KeyFile.create(at: path) } catch { throw .keyFile(error) }
    }

    /// Creates `path` with a fresh random master key unless a file is already there; true when it created one.
    @discardableResult
    public static func createIfAbsent(at path: String) throws(KeyProviderError) -> Bool {
        guard !FileManager.default.fileExists(atPath: path) else { return false }
        try create(at: path)
        return true
    }

    /// Renames the complete, synced key file `source` over `path` and syncs the folder: the old key is
    /// gone only once the new one is durably in its place.
    public static func install(_ source: String, at path: String) throws(KeyProviderError) {
        do { try KeyFile.install(source, at: path) } catch { throw .keyFile(error) }
    }

    /// Overwrites the key file at `path` with random bytes, syncs it, deletes it and syncs its folder.
    public static func destroy(at path: String) throws(KeyProviderError) {
        do { try KeyFile.destroy(at: path) } catch { throw .keyFile(error) }
    }
}
