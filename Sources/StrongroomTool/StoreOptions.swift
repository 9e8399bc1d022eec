import Foundation
import Strongroom

/// The options every store command shares: the store (a folder or a PostgreSQL URL), the master
/// key's provider and the access context (README.md, "Command reference", "Common options").
struct StoreOptions {
    /// Where the store is.
    let location: StoreLocation
    /// Where the master key comes from.
    let keyProvider: any KeyProvider
    /// The key file, when the key comes from one (init creates it if absent).
    let keyFile: String?
    /// Who acts and why.
    let context: AccessContext

    /// The help text for these options, shown once by `strongroom --help`.
    static let help = """
        Choosing the store and its key (every command but demo; phone normalize reads only the store):
          --store DIR|URL      the store folder, or a PostgreSQL URL such as
                               postgresql://crm@db.internal/crm?schema=strongroom
                               (or STRONGROOM_STORE)
          --keys-store URL     PostgreSQL only: where the key tables live, e.g. another
                               database (default: the same database, schema NAME_keys;
                               or STRONGROOM_KEYS_STORE)
          --key-file FILE      master key file, mode 0600 (or STRONGROOM_KEY_FILE)
          --key-command CMD    a command that prints the base64 master key (a KMS hook)
          The master key is the first given of --key-file, --key-command, STRONGROOM_KEY_FILE
          and STRONGROOM_MASTER_KEY (the base64 key itself). A key file readable by group or
          others is refused.
        Access context, written to the audit log with everything the command reads:
          --actor NAME         who is acting (default: the OS user)
          --purpose NAME       why (each command has a default)
          --client ADDRESS     the client's network address
        Example:
          export STRONGROOM_STORE=./crm-store STRONGROOM_KEY_FILE=./crm-store.key
          strongroom init && strongroom keys status
        """

    /// What each store command's help shows in place of `help`: where to find it.
    static let helpPointer = """
        Store, master key and access context (--store, --key-file, --key-command, --actor,
        --purpose, --client, or STRONGROOM_STORE, STRONGROOM_KEY_FILE...): see strongroom --help.
        """

    /// The store options that take a value, read after a command's positional words.
    static let valuedOptionNames = ["--store", "--keys-store", "--key-file", "--key-command", "--actor", "--purpose", "--client"]

    /// Reads the options from `arguments` and the environment.
    static func parse(_ arguments: inout Arguments, _ console: Console, defaultPurpose: Purpose) throws -> StoreOptions {
        let environment = console.environment
        guard let location = try StoreLocationArguments(parsing: &arguments).location(environment: environment) else {
            throw UsageError(message: "no store: give --store DIR|URL or set STRONGROOM_STORE")
        }
        let keyFileOption = try arguments.option("--key-file")
        let keyCommand = try arguments.option("--key-command")
        let provider: any KeyProvider
        var keyFile: String?
        if let keyFileOption {
            provider = KeyFileProvider(path: keyFileOption)
            keyFile = keyFileOption
        } else if let keyCommand {
            provider = CommandKeyProvider(command: keyCommand)
        } else if let path = environment["STRONGROOM_KEY_FILE"] {
            provider = KeyFileProvider(path: path)
            keyFile = path
        } else if environment["STRONGROOM_MASTER_KEY"] != nil {
            provider = EnvironmentKeyProvider()
        } else {
            throw UsageError(message: "no master key: give --key-file FILE, --key-command CMD, STRONGROOM_KEY_FILE or STRONGROOM_MASTER_KEY")
        }
        let actor = try arguments.option("--actor") ?? ProcessInfo.processInfo.userName
        let purpose = try arguments.option("--purpose").map(Purpose.init(rawValue:)) ?? defaultPurpose
        let client = try arguments.option("--client")
        return StoreOptions(location: location, keyProvider: provider, keyFile: keyFile,
                            context: AccessContext(actor: actor, purpose: purpose, clientAddress: client))
    }

    /// Opens the store, with `configuration` for this process.
    func open(_ configuration: StoreConfiguration = StoreConfiguration()) throws -> Store {
        try Store.open(at: location, keyProvider: keyProvider, configuration: configuration)
    }
}

/// `--store` and `--keys-store` as given on the command line, resolved against the environment later.
struct StoreLocationArguments {
    /// `--store`: a folder or a PostgreSQL URL.
    let store: String?
    /// `--keys-store`: where a PostgreSQL store's key tables live.
    let keysStore: String?

    /// Reads `--store` and `--keys-store`.
    init(parsing arguments: inout Arguments) throws(UsageError) {
        store = try arguments.option("--store")
        keysStore = try arguments.option("--keys-store")
    }

    /// The store named here or by STRONGROOM_STORE (with STRONGROOM_KEYS_STORE); nil when none is named.
    func location(environment: [String: String]) throws(UsageError) -> StoreLocation? {
        guard let store = store ?? environment["STRONGROOM_STORE"] else { return nil }
        let keysStore = keysStore ?? environment["STRONGROOM_KEYS_STORE"]
        let location = StoreLocation(store, keysURL: keysStore)
        if keysStore != nil, case .directory = location {
            throw UsageError(message: "--keys-store is for PostgreSQL stores; a folder store keeps its keys in keys.sqlite")
        }
        return location
    }
}
