import Foundation
import StrongroomCrypto
import StrongroomStorage

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

    /// The key database's URL: `keysURL`, or `url` with its schema suffixed `_keys`.
    static func keysURL(forData url: String, keysURL: String?) -> String {
        if let keysURL { return keysURL }
        let schema = (try? PostgresConnection.split(url).schema) ?? PostgresConnection.defaultSchema
        return PostgresConnection.url(url, schema: schema + "_keys")
    }

    /// The paths of a folder store's files.
    struct Layout {
        let directory: String
        var data: String { directory + "/data.sqlite" }
        var keys: String { directory + "/keys.sqlite" }
        var audit: String { directory + "/audit" }
    }

    /// Connects to the store's data database (`keys` false) or key database (`keys` true): of the store
    /// here when `existing`, or of a new one (creating the folder or schema) when not; `storeNotFound`
    /// or `storeAlreadyExists` when the location says otherwise.
    func connect(keys: Bool, existing: Bool) throws -> any Database {
        let mismatch = existing ? StoreError.storeNotFound(path: description) : StoreError.storeAlreadyExists(path: description)
        switch self {
        case .directory(let directory):
            let layout = Layout(directory: directory)
            let path = keys ? layout.keys : layout.data
            guard FileManager.default.fileExists(atPath: path) == existing else { throw mismatch }
            if !existing { try createDirectory(directory) }
            // WAL lets readers work while a writer commits; `secure_delete` overwrites deleted content, so
            // an erased subject's ciphertext and key do not linger in free pages. Data: `synchronous =
            // NORMAL` survives a process crash and loses at most the last commits on power loss; keys:
            // `FULL`, each committed key durable (erasure truncates the WAL: `discardDeletedContent`).
            // Related SQLite documentation: <https://www.sqlite.org/pragma.html#pragma_secure_delete>
            let connection = try SQLiteConnection(path: path, create: !existing)
            try connection.execute("""
                PRAGMA journal_mode = WAL; PRAGMA synchronous = \(keys ? "FULL" : "NORMAL"); PRAGMA secure_delete = ON;
                PRAGMA mmap_size = 1073741824
                """)
            return connection
        case .postgres(let url, let keysURL):
            let connection = try PostgresConnection(url: keys ? StoreLocation.keysURL(forData: url, keysURL: keysURL) : url,
                                                    create: !existing, writeLock: keys ? "keys" : "data")
            guard (try connection.scalarText("SELECT to_regclass('store')::text") != nil) == existing else { throw mismatch }
            return connection
        }
    }

    /// Opens the store's audit log: segment files in the folder, or a table beside the data.
    func openAuditTrail(mac: HMACSHA256, storeID: [UInt8], durability: AuditDurability, segmentByteLimit: Int64,
                        headStore: any AuditHeadStore) throws -> any AuditTrail {
        switch self {
        case .directory(let directory):
            return try AuditLog(directory: Layout(directory: directory).audit, mac: mac, storeID: storeID, durability: durability,
                                segmentByteLimit: segmentByteLimit, headStore: headStore)
        case .postgres(let url, _):
            return try PostgresAuditLog(connection: PostgresConnection(url: url, create: false, writeLock: "audit"),
                                        mac: mac, storeID: storeID, headStore: headStore)
        }
    }
}
