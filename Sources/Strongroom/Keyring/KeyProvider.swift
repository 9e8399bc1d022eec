import Foundation
import StrongroomCrypto

/// Why a master key could not be obtained. Never carries key bytes.
public enum KeyProviderError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The key file could not be used.
    case keyFile(KeyFileError)
    /// The environment variable is not set.
    case environmentVariableMissing(String)
    /// The value is not base64 of a 32-byte key.
    case malformedKey(source: String)
    /// The key command could not be run or exited with a failure.
    case commandFailed(command: String, status: Int32)

    public var description: String {
        switch self {
        case .keyFile(let error): return error.description
        case .environmentVariableMissing(let name): return "environment variable \(name) is not set"
        case .malformedKey(let source): return "\(source) does not hold a base64-encoded 32-byte key"
        case .commandFailed(let command, let status): return "key command `\(command)` failed with status \(status)"
        }
    }
}

/// Supplies the master key that unlocks a store: a key file, the environment, or an external command (a KMS hook).
public protocol KeyProvider: Sendable {
    /// The master key.
    func masterKey() throws(KeyProviderError) -> SecretKey
}

/// A master key kept in a file of mode 0600 (created by `strongroom init`).
public struct KeyFileProvider: KeyProvider {
    /// The key file.
    public let path: String
    /// Reads keys from `path`.
    public init(path: String) { self.path = path }

    public func masterKey() throws(KeyProviderError) -> SecretKey {
        do { return try KeyFile.load(from: path) } catch { throw .keyFile(error) }
    }
}

/// A master key given as base64 in an environment variable (default `STRONGROOM_MASTER_KEY`).
public struct EnvironmentKeyProvider: KeyProvider {
    /// The variable's name.
    public let variable: String
    /// Reads the key from `variable`.
    public init(variable: String = "STRONGROOM_MASTER_KEY") { self.variable = variable }

    public func masterKey() throws(KeyProviderError) -> SecretKey {
        guard let value = ProcessInfo.processInfo.environment[variable] else { throw .environmentVariableMissing(variable) }
        guard let key = SecretKey(base64Encoded: value), key.byteCount == KeyFile.keyByteCount else {
            throw .malformedKey(source: "environment variable \(variable)")
        }
        return key
    }
}

/// A master key printed (as base64) by an external command, run with `/bin/sh -c`: the hook for a KMS or vault.
public struct CommandKeyProvider: KeyProvider {
    /// The shell command.
    public let command: String
    /// Runs `command` to obtain the key.
    public init(command: String) { self.command = command }

    public func masterKey() throws(KeyProviderError) -> SecretKey {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        let output = Pipe()
        process.standardOutput = output
        do { try process.run() } catch { throw .commandFailed(command: command, status: -1) }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw .commandFailed(command: command, status: process.terminationStatus) }
        guard let key = SecretKey(base64Encoded: String(decoding: data, as: UTF8.self)),
              key.byteCount == KeyFile.keyByteCount else {
            throw .malformedKey(source: "the output of the key command")
        }
        return key
    }
}

/// A master key the embedding application already holds (for example from its own secret store).
public struct StaticKeyProvider: KeyProvider {
    private let key: SecretKey
    /// Supplies `key`.
    public init(key: SecretKey) { self.key = key }
    public func masterKey() throws(KeyProviderError) -> SecretKey { key }
}
