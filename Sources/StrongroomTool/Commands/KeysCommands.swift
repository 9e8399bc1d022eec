import Foundation
import Strongroom

/// `strongroom keys status`: the key hierarchy at a glance.
struct KeysStatusCommand: StoreCommand {
    static let name = "keys status"
    static let abstract = "key versions, what each protects, the blind index plan"
    static let help = """
        Usage: strongroom keys status [--json]

        Shows the master key generation, the key-encryption key's version, how many subject keys it
        protects, the blind index (key version, tag bits, planned and actual population, expected
        numbers per tag) and the audit key and signed chain head; and, if a reader of keys.sqlite kept
        an erased key's old pages, since when (see `strongroom keys compact`).

        \(StoreOptions.helpPointer)

        Example:
          strongroom keys status --store ./crm-store --key-file ./crm-store.key
        """

    static let takesJSON = true

    init(parsing arguments: inout Arguments) {}

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let status = try store.keyStatus()
        if console.json {
            try console.printJSON(status)
            return .success
        }
        let index = status.phoneIndex
        console.print("""
            master key            generation \(status.masterGeneration) (wraps the key-encryption key)
            key-encryption key    version \(status.kekVersion), wraps \(status.subjectKeys) subject keys, the index key and the audit key
            erased subjects       \(status.erasedSubjects)
            phone blind index     key version \(index.version), \(index.bits)-bit tags, planned for \(index.plannedPopulation) numbers, holds \(index.indexedNumbers) (\(String(format: "%.2f", index.expectedCoincidences)) per tag)
            audit key             version \(status.auditKeyVersion), signed head at entry \(status.auditHeadSequence)
            """)
        for usage in status.keyUsage {
            console.print("key use              \(usage.key): \(usage.used) of \(usage.budget) encryptions"
                          + (usage.nearBudget ? "  (near its budget: rotate it)" : ""))
        }
        if let since = try store.oldKeyPagesSince() {
            console.print("erased keys           old pages wait for a reader of keys.sqlite since \(formatTime(since)); "
                          + "`strongroom keys compact` overwrites them once it has ended")
        }
        if index.needsReplanning {
            console.print("warning: the index holds more than 4x its plan; re-plan with `strongroom keys rotate-index --bits N`")
        }
        for rotation in status.rotationsInProgress {
            console.print("rotation in progress   \(rotation.kind.rawValue) to version \(rotation.targetVersion): \(rotation.done)/\(rotation.total), "
                          + "started \(formatTime(rotation.startedAt)); run `strongroom keys rotate-\(rotation.kind.rawValue)` again to finish it")
        }
        return .success
    }
}

/// Runs a long job (a rotation, a retention run), showing a progress line with rate and ETA when
/// standard error is a terminal.
func withProgress<Report>(_ label: String, _ console: Console,
                          _ body: ((Int, Int) -> Void) throws -> Report) throws -> Report {
    var line: ProgressLine?
    let result = try body { done, total in
        if line == nil { line = console.progress(label, total: total) }
        line?.advance(to: done)
    }
    line?.finish()
    return result
}

/// The summary a rotation prints with `--json`, and the line it prints for people.
private func report(_ report: RotationReport, _ console: Console) throws {
    if console.json {
        try console.printJSON(report)
    } else {
        let what: String
        switch report.kind {
        case .master: what = "master key rotated: generation \(report.fromVersion) -> \(report.toVersion), \(report.items) key-encryption key(s) re-wrapped"
        case .kek: what = "key-encryption key rotated: version \(report.fromVersion) -> \(report.toVersion), \(report.items) subject keys re-wrapped, old KEK destroyed"
        case .index: what = "blind index rotated: key version \(report.fromVersion) -> \(report.toVersion), \(report.items) subjects re-indexed, old index dropped"
        case .sealErasures:
            what = "erasures sealed: \(report.items) keys re-wrapped under a new KEK, master key generation \(report.toVersion); "
                + "key-database backups older than now no longer open with today's key"
        case .data: what = "data keys rotated: \(report.items) subject(s) re-encrypted under fresh keys, old keys destroyed"
        }
        console.print(what + (report.resumed ? " (resumed an interrupted rotation)" : ""))
    }
}

/// `strongroom keys rotate-master`: re-wraps the KEK under a new master key.
struct KeysRotateMasterCommand: StoreOptionsCommand {
    static let name = "keys rotate-master"
    static let takesJSON = true
    static let abstract = "re-wrap the key-encryption key under a new master key (constant time)"
    static let help = """
        Usage: strongroom keys rotate-master --new-key-file FILE [--json]

        Re-wraps the store's key-encryption key under the key in FILE, created (mode 0600, 256 random
        bits) if it does not exist. One transaction, the same few milliseconds at any store size.
        Afterwards the old master key is refused (exit 3): point STRONGROOM_KEY_FILE or --key-file at
        FILE. FILE may be the current key file: the new key is then written to FILE.new (0600, synced)
        and renamed over FILE once the store uses it. Running it again after a crash is safe.

        \(StoreOptions.helpPointer)

        Example:
          strongroom keys rotate-master --new-key-file ./crm-store.key.2026-12 --store ./crm-store --key-file ./crm-store.key
        """

    let replacement: MasterKeyReplacement

    init(parsing arguments: inout Arguments) throws(UsageError) {
        replacement = try MasterKeyReplacement(parsing: &arguments, sealing: false)
    }

    func run(with options: StoreOptions, console: Console) throws -> ExitStatus {
        try replacement.run(with: options, console) { store, newKey, context in
            try store.rotateMasterKey(to: newKey.masterKey(), context: context)
        }
    }
}

/// `strongroom keys seal-erasures`: a new KEK and a new master key, so old key-database backups are useless.
struct KeysSealErasuresCommand: StoreOptionsCommand {
    static let name = "keys seal-erasures"
    static let takesJSON = true
    static let abstract = "rotate the KEK and the master key so no older key-database backup yields an erased key"
    static let help = """
        Usage: strongroom keys seal-erasures --new-key-file FILE [--destroy-old-key-file] [--json]

        Erasure destroys a subject's key in keys.sqlite at once, but a backup of keys.sqlite taken
        before still holds it. This re-wraps every key under a new key-encryption key (destroying the
        old one), then the KEK under the master key in FILE (created, mode 0600, if absent): afterwards
        no key-database backup older than the seal opens with today's master key. The old master key
        still opens those backups: it must be destroyed. Each step is crash-safe; run it again after an
        interruption. Seal at least as often as your backups of keys.sqlite expire (see SECURITY.md).

          --destroy-old-key-file   once the store uses the new key, overwrite the old key file with
                                   random bytes, sync it, delete it and sync its folder. Only for a
                                   key file (--key-file or STRONGROOM_KEY_FILE); a key from
                                   --key-command or STRONGROOM_MASTER_KEY must be destroyed where it
                                   is kept. With FILE the current key file, the old key in it is
                                   overwritten just before the new one is renamed into its place.

        \(StoreOptions.helpPointer)

        Example:
          strongroom keys seal-erasures --new-key-file ./crm-store.key.2026-12 --destroy-old-key-file --store ./crm-store --key-file ./crm-store.key
        """

    let replacement: MasterKeyReplacement

    init(parsing arguments: inout Arguments) throws(UsageError) {
        replacement = try MasterKeyReplacement(parsing: &arguments, sealing: true)
    }

    func run(with options: StoreOptions, console: Console) throws -> ExitStatus {
        try replacement.run(with: options, console) { store, newKey, context in
            let newMaster = try newKey.masterKey()
            return try withProgress("re-wrapping subject keys", console) { try store.sealErasures(newMaster: newMaster, context: context, progress: $0) }
        }
    }
}

/// What `keys rotate-master` and `keys seal-erasures` read: `--new-key-file` (created with a fresh key
/// if absent, synced before the store depends on it), and when sealing `--destroy-old-key-file`.
struct MasterKeyReplacement {
    let newKeyFile: String
    /// Whether this is `keys seal-erasures`: it then says that the old key must be destroyed.
    let sealing: Bool
    let destroyOldKeyFile: Bool

    init(parsing arguments: inout Arguments, sealing: Bool) throws(UsageError) {
        guard let newKeyFile = try arguments.option("--new-key-file") else { throw UsageError(message: "give --new-key-file FILE") }
        self.newKeyFile = newKeyFile
        self.sealing = sealing
        destroyOldKeyFile = sealing && arguments.flag("--destroy-old-key-file")
    }

    /// Opens the store with the current key and runs `rotate` with the new key. When the store already
    /// opens only with the new key, a rotation committed before a crash: says so. When sealing, says that
    /// the old key must be destroyed, and destroys its file with `--destroy-old-key-file`.
    func run(with options: StoreOptions, _ console: Console,
             _ rotate: (Store, KeyFileProvider, AccessContext) throws -> RotationReport) throws -> ExitStatus {
        if destroyOldKeyFile && options.keyFile == nil {
            throw UsageError(message: "--destroy-old-key-file destroys a key file, and the current key comes from --key-command or "
                             + "STRONGROOM_MASTER_KEY: destroy that key where it is kept")
        }
        // FILE may be the current key file: the new key is then written beside it as FILE.new and renamed
        // over it once the store uses it, so that a crash at any point leaves one working key on disk.
        let inPlace = options.keyFile.map { URL(fileURLWithPath: $0).standardized == URL(fileURLWithPath: newKeyFile).standardized } ?? false
        let staging = inPlace ? newKeyFile + ".new" : newKeyFile
        // The new key is on disk, synced, before the store depends on it.
        try MasterKeyFile.createIfAbsent(at: staging)
        let newKey = KeyFileProvider(path: staging)
        let store: Store
        do {
            store = try options.open()
        } catch StoreError.wrongMasterKey {
            // A rotation that committed before a crash: the store already opens with the new key.
            let rotated = try Store.open(at: options.location, keyProvider: newKey)
            rotated.close()
            if inPlace { try MasterKeyFile.install(staging, at: newKeyFile) }
            console.print("the store already opens with the key in \(newKeyFile): the master key was rotated")
            return .success
        }
        defer { store.close() }
        try report(try rotate(store, newKey, options.context), console)
        let oldKeyFile = destroyOldKeyFile ? options.keyFile : nil
        if inPlace {
            if let oldKeyFile { try MasterKeyFile.destroy(at: oldKeyFile) }
            try MasterKeyFile.install(staging, at: newKeyFile)
            if !console.json { console.print("\(newKeyFile) now holds the new key (replaced atomically); the old key is refused") }
        } else {
            if let oldKeyFile { try MasterKeyFile.destroy(at: oldKeyFile) }
            if !console.json { console.print("the store now opens only with \(newKeyFile); the old key is refused") }
        }
        guard sealing, !console.json else { return .success }
        if destroyOldKeyFile {
            console.print("old key file \(options.keyFile ?? "") destroyed: overwritten, synced and deleted")
        } else {
            // The old master key opens every key-database backup older than the seal, erased keys and all.
            console.print("the old master key must now be destroyed: it still opens key-database backups from before the seal, "
                          + (options.keyFile.map { "erased subjects' keys included (run with --destroy-old-key-file, or overwrite and delete \($0))" }
                             ?? "erased subjects' keys included (it came from --key-command or STRONGROOM_MASTER_KEY: destroy it where it is kept)"))
        }
        return .success
    }
}

/// `strongroom keys compact`: overwrites old pages of erased keys that a reader held back.
struct KeysCompactCommand: StoreCommand {
    static let name = "keys compact"
    static let abstract = "overwrite old pages of erased keys that a reader of keys.sqlite held back"
    static let help = """
        Usage: strongroom keys compact [--wait SECONDS] [--json]

        An erasure destroys the subject's key at once, but while another connection reads an older
        snapshot of keys.sqlite (an online backup, a long read by another process) the pages that held
        the wrapped key must stay, and `subject erase` says so (exit 1). Once that reader has ended,
        this overwrites them (checkpoint of the WAL into keys.sqlite, whose deleted rows are already
        zeroed, and the WAL cut to zero bytes). Opening the store does the same without waiting.
        Exit 0 when no old page remains, 1 when a reader still holds them (run it again later).

          --wait SECONDS   how long to wait for such readers to end (default 5)
          --json           print {"complete": BOOL, "old_pages_since": TIME or null}

        \(StoreOptions.helpPointer)

        Example:
          strongroom keys compact --store ./crm-store --key-file ./crm-store.key
        """

    static let takesJSON = true
    let configuration: StoreConfiguration

    init(parsing arguments: inout Arguments) throws(UsageError) {
        configuration = try erasureConfiguration(&arguments)
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        let completion = try store.compactKeyDatabase()
        if console.json {
            try console.printJSON(ErasureCompletionJSON(completion))
        } else if case .oldPagesRemain(let since) = completion {
            console.printError(oldPagesMessage(since: since))
        } else {
            console.print("keys.sqlite holds no old page of an erased key")
        }
        return completion == .complete ? .success : .failure
    }
}

/// The configuration with `--wait SECONDS`, how long an erasure or compaction waits for readers of keys.sqlite.
func erasureConfiguration(_ arguments: inout Arguments) throws(UsageError) -> StoreConfiguration {
    var configuration = StoreConfiguration()
    if let text = try arguments.option("--wait") {
        guard let seconds = Double(text), seconds >= 0, seconds <= 3600 else { throw UsageError(message: "--wait takes 0 to 3600 seconds") }
        configuration.erasureWait = .milliseconds(Int(seconds * 1000))
    }
    return configuration
}

/// The line that says old pages of an erased key remain, since when, and what removes them.
func oldPagesMessage(since: Date) -> String {
    "old pages of keys.sqlite still hold an erased key's wrapped copy (since \(formatTime(since))): a reader of an older snapshot "
        + "(an online backup, another process) holds them; they are overwritten once it ends, at the next open of the store "
        + "or by `strongroom keys compact`"
}

/// An erasure's or compaction's outcome as JSON.
struct ErasureCompletionJSON: Encodable {
    let complete: Bool
    let oldPagesSince: Date?

    init(_ completion: ErasureCompletion) {
        if case .oldPagesRemain(let since) = completion {
            (complete, oldPagesSince) = (false, since)
        } else {
            (complete, oldPagesSince) = (true, nil)
        }
    }
}

/// `strongroom keys rotate-kek`: a new key-encryption key.
struct KeysRotateKEKCommand: StoreCommand {
    static let name = "keys rotate-kek"
    static let abstract = "a new key-encryption key; every subject, index and audit key re-wrapped (resumable)"
    static let help = """
        Usage: strongroom keys rotate-kek [--json]

        Makes a new key-encryption key and re-wraps every subject, index and audit key under it, in
        batches committed with their progress, then destroys the old one. Cost grows with the number
        of subjects, not with the data. Reads and writes go on meanwhile. If it is interrupted (even by
        kill -9), run it again: it resumes.

        \(StoreOptions.helpPointer)

        Example:
          strongroom keys rotate-kek --store ./crm-store --key-file ./crm-store.key
        """

    static let takesJSON = true

    init(parsing arguments: inout Arguments) {}

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        try report(try withProgress("re-wrapping subject keys", console) { try store.rotateKeyEncryptionKey(context: context, progress: $0) }, console)
        return .success
    }
}

/// `strongroom keys rotate-data`: fresh subject keys, fields re-encrypted.
struct KeysRotateDataCommand: StoreCommand {
    static let name = "keys rotate-data"
    static let abstract = "fresh subject keys, fields re-encrypted (one subject, or all: resumable)"
    static let help = """
        Usage: strongroom keys rotate-data (--subject ID | --all) [--json]

        Gives subjects fresh keys and re-encrypts their fields under them (after a suspected leak of a
        subject key), then destroys the old keys. Each subject's decryption is audited with purpose
        key-rotation. --all walks every subject in batches committed with their progress; if it is
        interrupted, run it again to resume.

        \(StoreOptions.helpPointer)

        Example:
          strongroom keys rotate-data --subject crm-4242-2 --store ./crm-store --key-file ./crm-store.key
        """

    /// The subject to rotate; nil for `--all`.
    let subject: String?
    static let takesJSON = true

    init(parsing arguments: inout Arguments) throws(UsageError) {
        subject = try arguments.option("--subject")
        let all = arguments.flag("--all")
        guard (subject != nil) != all else { throw UsageError(message: "give either --subject ID or --all") }
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        if let subject {
            let id = try store.resolve(subject)
            try report(try store.rotateDataKey(of: id, context: context), console)
            return .success
        }
        try report(try withProgress("re-encrypting subjects", console) { try store.rotateAllDataKeys(context: context, progress: $0) }, console)
        return .success
    }
}

/// `strongroom keys rotate-index`: rebuilds the blind index under a new key.
struct KeysRotateIndexCommand: StoreCommand {
    static let name = "keys rotate-index"
    static let abstract = "rebuild the blind index under a new key (and tag length); lookups answer throughout"
    static let help = """
        Usage: strongroom keys rotate-index [--bits N] [--json]

        Builds a new version of the phone blind index under a new index key beside the old one (with N
        bits per tag: re-planning for a grown store, see SECURITY.md), from every subject's numbers;
        caller ID answers from both until the switch, then the old index and key are dropped. If it
        is interrupted, run it again to resume.

          --bits N   tag length of the new index, 8 to 32 (default: the current length)

        \(StoreOptions.helpPointer)

        Example:
          strongroom keys rotate-index --bits 20 --store ./crm-store --key-file ./crm-store.key
        """

    /// The new tag length; nil keeps the current one.
    let bits: Int?
    static let takesJSON = true

    init(parsing arguments: inout Arguments) throws(UsageError) {
        bits = try arguments.option("--bits").map { text throws(UsageError) -> Int in
            guard let bits = Int(text), (8...32).contains(bits) else { throw UsageError(message: "--bits takes 8 to 32") }
            return bits
        }
    }

    func run(on store: Store, context: AccessContext, console: Console) throws -> ExitStatus {
        try report(try withProgress("re-indexing subjects", console) { try store.rotateIndexKey(bits: bits, context: context, progress: $0) }, console)
        return .success
    }
}
