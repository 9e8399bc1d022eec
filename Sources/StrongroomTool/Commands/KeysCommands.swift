import Foundation
import Strongroom

/// `strongroom keys status`: the key hierarchy at a glance.
enum KeysStatusCommand: Command {
    static let name = "keys status"
    static let abstract = "key versions, what each protects, the blind index plan"
    static let help = """
        Usage: strongroom keys status [--json]

        Shows the master key generation, the key-encryption key's version, how many subject keys it
        protects, the blind index (key version, tag bits, planned and actual population, expected
        numbers per tag) and the audit key and signed chain head.

        \(StoreOptions.help)

        Example:
          strongroom keys status --store ./crm-store --key-file ./crm-store.key
        """

    static func run(_ arguments: inout Arguments, _ console: Console) throws -> ExitStatus {
        let json = arguments.flag("--json")
        let options = try StoreOptions.parse(&arguments, console, defaultPurpose: .admin)
        try arguments.finish()
        let store = try options.open()
        defer { store.close() }
        let status = try store.keyStatus()
        if json {
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
        if index.needsReplanning {
            console.print("warning: the index holds more than 4x its plan; re-plan with `strongroom keys rotate-index --bits N`")
        }
        return .success
    }
}
