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

    /// `url` with the password of its `user:password@` part replaced by `***`.
    static func withoutPassword(_ url: String) -> String {
        guard let scheme = url.range(of: "://"),
              let at = url[scheme.upperBound...].firstIndex(of: "@"),
              let colon = url[scheme.upperBound..<at].firstIndex(of: ":") else { return url }
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
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

    /// Whether a store (either of its databases) is already at this location.
    func holdsStore() throws -> (data: Bool, keys: Bool) {
        switch self {
        case .directory(let directory):
            let layout = Layout(directory: directory)
            return (FileManager.default.fileExists(atPath: layout.data), FileManager.default.fileExists(atPath: layout.keys))
        case .postgres(let url, let keysURL):
            func hasStoreTable(_ url: String) throws -> Bool {
                try PostgresConnection(url: url, create: false, writeLock: "probe").scalarText("SELECT to_regclass('store')::text") != nil
            }
            return (try hasStoreTable(url), try hasStoreTable(StoreLocation.keysURL(forData: url, keysURL: keysURL)))
        }
    }

    /// Opens the data database with the settings every data connection uses.
    ///
    /// SQLite: WAL lets readers work while a writer commits; `synchronous = NORMAL` in WAL mode
    /// survives a process crash and loses at most the last commits on power loss; `secure_delete`
    /// overwrites deleted content so an erased subject's ciphertext does not linger in free pages.
    func connectData(create: Bool) throws -> any Database {
        switch self {
        case .directory(let directory):
            if create { try createDirectory(directory) }
            let connection = try SQLiteConnection(path: Layout(directory: directory).data, create: create)
            try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA secure_delete = ON; PRAGMA mmap_size = 1073741824")
            return connection
        case .postgres(let url, _):
            return try PostgresConnection(url: url, create: create, writeLock: "data")
        }
    }

    /// Opens the key database with the settings every key database connection uses.
    ///
    /// SQLite: `secure_delete` overwrites deleted key rows with zeros; `synchronous = FULL` makes each
    /// committed key durable; erasure truncates the WAL afterwards (`discardDeletedContent`).
    /// Related SQLite documentation: <https://www.sqlite.org/pragma.html#pragma_secure_delete>
    func connectKeys(create: Bool) throws -> any Database {
        switch self {
        case .directory(let directory):
            let connection = try SQLiteConnection(path: Layout(directory: directory).keys, create: create)
            try connection.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA mmap_size = 1073741824")
            return connection
        case .postgres(let url, let keysURL):
            return try PostgresConnection(url: StoreLocation.keysURL(forData: url, keysURL: keysURL), create: create, writeLock: "keys")
        }
    }

    /// Opens the store's audit log: segment files in the folder, or a table beside the data.
    func openAuditTrail(mac: HMACSHA256, storeID: [UInt8], durability: AuditDurability, segmentByteLimit: Int64,
                        saveHead: @escaping @Sendable (AuditHead) -> Bool) throws -> any AuditTrail {
        switch self {
        case .directory(let directory):
            return try AuditLog(directory: Layout(directory: directory).audit, mac: mac, storeID: storeID, durability: durability,
                                segmentByteLimit: segmentByteLimit, saveHead: saveHead)
        case .postgres(let url, _):
            return try PostgresAuditLog(connection: PostgresConnection(url: url, create: false, writeLock: "audit"),
                                        mac: mac, storeID: storeID, saveHead: saveHead)
        }
    }
}
