import Foundation
import Strongroom

/// `strongroom init`: creates a store, and its master key file if absent.
struct InitCommand: StoreOptionsCommand {
    static let name = "init"
    static let abstract = "create a store (and a master key file with a fresh random key if absent)"
    static let help = """
        Usage: strongroom init [--region R] [--planned-numbers N] [--durable-audit] [--store DIR|URL] [--key-file FILE]

        Creates an encrypted store in DIR (--store, or STRONGROOM_STORE). If the key file (--key-file,
        or STRONGROOM_KEY_FILE) does not exist, it is created with a fresh random 256-bit master key,
        mode 0600 from its first instant. Keep the key file away from backups of the store: whoever
        holds both can read everything.

        DIR is created mode 0700, and every file in it is 0600, whatever the umask. An existing DIR
        must be a real folder of yours that the group and others cannot use: one open to them
        (chmod 700 it, or use a new folder), or a symbolic link (use a real folder), is refused with
        exit status 3 before anything is written.

          --region R            default phone region of the store, ISO 3166 code (default US)
          --planned-numbers N   how many phone numbers the store is planned for (default 1000000);
                                sets the blind index's tag length (see SECURITY.md)
          --durable-audit       flush each audit entry to stable storage (fsync, group-committed
                                across concurrent readers) before returning plaintext, instead
                                of only writing it to the OS (slower; survives power loss; on
                                PostgreSQL, audit commits with synchronous_commit = on)

        \(StoreOptions.helpPointer)

        Example:
          strongroom init --region GB --store ./crm-store --key-file ./crm-store.key
        """

    let configuration: StoreConfiguration

    init(parsing arguments: inout Arguments) throws(UsageError) {
        var configuration = StoreConfiguration()
        if let region = try arguments.option("--region") { configuration.defaultRegion = region.uppercased() }
        if let planned = try arguments.option("--planned-numbers") {
            guard let count = Int(planned), count > 0 else { throw UsageError(message: "--planned-numbers takes a positive number") }
            configuration.plannedPhoneNumbers = count
        }
        if arguments.flag("--durable-audit") { configuration.auditDurability = .synced }
        self.configuration = configuration
    }

    func run(with options: StoreOptions, console: Console) throws -> ExitStatus {
        let createdKey = try options.keyFile.map { try MasterKeyFile.createIfAbsent(at: $0) } ?? false
        let store = try Store.create(at: options.location, keyProvider: options.keyProvider, configuration: configuration)
        store.close()
        console.print("created store \(options.location) (default region \(store.defaultRegion), audit "
                      + (configuration.auditDurability == .synced ? "durable: each entry fsync'd)" : "entries written before plaintext returns)"))
        if let keyFile = options.keyFile {
            console.print(createdKey ? "created master key file \(keyFile) (mode 0600): keep it apart from the store's backups"
                                     : "locked with the existing master key file \(keyFile)")
        }
        return .success
    }
}
