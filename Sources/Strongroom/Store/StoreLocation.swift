import Foundation

/// Where a store keeps its data, keys and audit log.
public enum StoreLocation: Sendable, Hashable, CustomStringConvertible {
    /// A folder (the embedded default): `data.sqlite` (ciphertext and clear operational fields),
    /// `keys.sqlite` (the wrapped key hierarchy) and `audit/` (the access log).
    case directory(String)
    /// PostgreSQL, for several service instances sharing one store: data, blind index and audit log in
    /// the schema that `url`'s `schema=` parameter names (default `strongroom`); the key tables at
    /// `keysURL`, by default the same database with the schema `<schema>_keys`. Give `keysURL` another
    /// database so that erasing a subject key also reaches backups of the data database.
    case postgres(url: String, keysURL: String? = nil)

    /// Reads the tool's `--store` value: a `postgres://` or `postgresql://` URL, else a folder.
    public init(_ text: String, keysURL: String? = nil) {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(url: text, keysURL: keysURL)
        } else {
            self = .directory(text)
        }
    }

    /// The folder, or the URL without its password (for messages and logs).
    public var description: String {
        switch self {
        case .directory(let path): return path
        case .postgres(let url, _): return StoreLocation.withoutPassword(url)
        }
    }

    /// `url` with its password replaced by `***`, whether it is in the `user:password@` part or a
    /// `password=` parameter.
    static func withoutPassword(_ url: String) -> String {
        var text = url
        if let scheme = text.range(of: "://"), let at = text[scheme.upperBound...].firstIndex(of: "@"),
           let colon = text[scheme.upperBound..<at].firstIndex(of: ":") {
            text = String(text[...colon]) + "***" + String(text[at...])
        }
        guard let question = text.firstIndex(of: "?") else { return text }
        let parameters = text[text.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false).map {
            $0.hasPrefix("password=") ? "password=***" : String($0)
        }
        return String(text[...question]) + parameters.joined(separator: "&")
    }

    /// The backend that keeps a store here (chosen here, once: the engine never asks which it has).
    var backend: any StoreBackend {
        switch self {
        case .directory(let directory): SQLiteBackend(directory: directory)
        case .postgres(let url, let keysURL): PostgresBackend(url: url, keysURL: keysURL)
        }
    }
}
