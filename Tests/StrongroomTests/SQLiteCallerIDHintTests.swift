import Foundation
@testable import Strongroom
import StrongroomCrypto
import StrongroomTestSupport
import Synchronization
import Testing

/// The caller-ID hint on SQLite (`SQLiteCallerIDHint`): the blind index's pairs kept in the process,
/// exact while the data version says the data is the one they were read from. This store's own writes
/// keep the whole hint; another process's change empties it, and each answer still follows the data.
@Suite("Caller ID through the SQLite hint", .serialized)
struct SQLiteCallerIDHintTests {
    static let old = "+442079460958"
    static let new = "+447700900123"
    static let gone = "+447700900456"
    static let added = "+447700900789"
    static let later = "+447700900321"
    static let admin = AccessContext(actor: "hint-test-admin", purpose: .admin)
    static let caller = AccessContext(actor: "hint-test-pbx", purpose: .callerID)

    /// The test's files, removed after it.
    let scratch = TemporaryDirectory("strongroom-sqlite-hint")

    /// Who holds `number`, by `store`'s caller ID.
    private func holders(_ number: String, _ store: Store) throws -> [SubjectID] {
        try store.callerID(number: number, context: Self.caller).map(\.id)
    }

    /// Whether `store`'s hint holds every tag (nil: no hint).
    private func holdsEveryTag(_ store: Store) -> Bool? {
        store.sqliteCallerIDHint.withLock { $0?.holdsEveryTag }
    }

    @Test("another process's move, addition and erasure of numbers is seen by the next lookup; the hint then refills")
    func otherProcessChanges() async throws {
        let folder = scratch.path("store"), keyFile = scratch.path("master.key"), errorFile = scratch.path("error")
        let key = try KeyFile.create(at: keyFile)
        var configuration = StoreConfiguration()
        configuration.defaultRegion = "GB"
        let store = try Store.create(at: folder, keyProvider: StaticKeyProvider(key: key), configuration: configuration)
        defer { store.close() }
        let moved = try store.create(sampleSubject("moved", phones: [Self.old]), context: Self.admin)
        let erased = try store.create(sampleSubject("erased", phones: [Self.gone]), context: Self.admin)
        #expect(try holders(Self.old, store) == [moved])
        #expect(try holders(Self.gone, store) == [erased])
        #expect(try holders(Self.added, store).isEmpty)
        #expect(holdsEveryTag(store) == true, "the first lookup reads the whole hint")

        // Another process: the number moves to someone new, a number is added, a subject is erased.
        await #expect(processExitsWith: .success) { [folder = folder as String, keyFile = keyFile as String, errorFile = errorFile as String] in
            runChild(errorFile: errorFile) {
                let other = try Store.open(at: folder, keyProvider: StaticKeyProvider(key: KeyFile.load(from: keyFile)))
                defer { other.close() }
                let moved = try #require(try other.callerID(number: SQLiteCallerIDHintTests.old, context: SQLiteCallerIDHintTests.caller).first?.id)
                try other.update(moved, personal: PersonalData(name: "Moved", phones: [LabeledPhone(label: "m", number: SQLiteCallerIDHintTests.new)]),
                                 context: SQLiteCallerIDHintTests.admin)
                _ = try other.create(sampleSubject("newcomer", phones: [SQLiteCallerIDHintTests.old, SQLiteCallerIDHintTests.added]),
                                     context: SQLiteCallerIDHintTests.admin)
                let erased = try #require(try other.callerID(number: SQLiteCallerIDHintTests.gone, context: SQLiteCallerIDHintTests.caller).first?.id)
                _ = try other.erase(erased, reason: "request", context: SQLiteCallerIDHintTests.admin)
            }
        }
        if let reason = try? String(contentsOfFile: errorFile, encoding: .utf8) { Issue.record("child: \(reason)") }

        for round in 0..<3 {   // the first round refills each tag, the next ones answer from it
            let newcomer = try holders(Self.old, store)
            #expect(newcomer.count == 1 && newcomer != [moved], "round \(round)")
            #expect(try store.callerID(number: Self.old, context: Self.caller).first?.name == "Zebedee Quixotic-newcomer")
            #expect(try holders(Self.added, store) == newcomer)
            #expect(try holders(Self.new, store) == [moved])
            #expect(try store.callerID(number: Self.new, context: Self.caller).first?.name == "Moved")
            #expect(try holders(Self.gone, store).isEmpty)
        }
        #expect(holdsEveryTag(store) == false, "another process's change empties the hint")

        // Second act: this store writes; its next lookups follow, and a fresh opening agrees.
        try store.update(moved, personal: PersonalData(name: "Moved again", phones: [LabeledPhone(label: "m", number: Self.later)]),
                         context: Self.admin)
        #expect(try holders(Self.new, store).isEmpty)
        #expect(try holders(Self.later, store) == [moved])
        let fresh = try Store.open(at: folder, keyProvider: StaticKeyProvider(key: key))
        defer { fresh.close() }
        for number in [Self.old, Self.new, Self.gone, Self.added, Self.later] {
            #expect(try holders(number, fresh) == holders(number, store), "\(number)")
        }
        #expect(try store.verifyAuditLog().verifiedEntries > 0)
    }

    @Test("this store's own writes keep the whole hint and exact; a write rolled back changes nothing; another opening's write empties it")
    func ownWritesKeepTheHint() throws {
        let failing = FailSwitch()
        let test = try TestStore(.sqlite, region: "GB") { configuration in
            configuration.faultInjection = { point, _ in
                if point == "write.audited", failing.on.withLock({ $0 }) { throw FailSwitch.Failure() }
            }
        }
        defer { test.cleanUp() }
        let store = test.store
        let first = try store.create(sampleSubject("first", phones: [Self.old]), context: Self.admin)
        #expect(try holders(Self.old, store) == [first])
        #expect(holdsEveryTag(store) == true)

        // Moved, added to someone new, erased: each seen by the next lookup, the hint still whole.
        try store.update(first, personal: PersonalData(name: "First", phones: [LabeledPhone(label: "m", number: Self.new)]), context: Self.admin)
        let second = try store.create(sampleSubject("second", phones: [Self.old, Self.gone]), context: Self.admin)
        #expect(try holders(Self.old, store) == [second])
        #expect(try holders(Self.new, store) == [first])
        #expect(try holders(Self.gone, store) == [second])
        _ = try store.erase(second, reason: "request", context: Self.admin)
        #expect(try holders(Self.old, store).isEmpty)
        #expect(try holders(Self.gone, store).isEmpty)
        let recorded = try store.recordCall(number: Self.added, context: Self.caller)
        #expect(recorded.createdLead)
        #expect(try holders(Self.added, store) == [recorded.caller.id])
        #expect(holdsEveryTag(store) == true, "this store's writes keep the hint whole")

        // A write that fails inside its transaction, after its index rows were written, changes nothing.
        failing.on.withLock { $0 = true }
        #expect(throws: StoreError.self) {
            try store.update(first, personal: PersonalData(name: "First", phones: [LabeledPhone(label: "m", number: Self.later)]),
                             context: Self.admin)
        }
        failing.on.withLock { $0 = false }
        #expect(try holders(Self.later, store).isEmpty)
        #expect(try holders(Self.new, store) == [first])
        #expect(holdsEveryTag(store) == true)

        // Second act: another opening of the store (its own connection, as another process) moves the number.
        let other = try test.reopen()
        defer { other.close() }
        try other.update(first, personal: PersonalData(name: "First", phones: [LabeledPhone(label: "m", number: Self.later)]), context: Self.admin)
        #expect(try holders(Self.new, store).isEmpty)
        #expect(try holders(Self.later, store) == [first])
        #expect(holdsEveryTag(store) == false)
        for number in [Self.old, Self.new, Self.gone, Self.added, Self.later] {
            #expect(try holders(number, other) == holders(number, store), "\(number)")
        }
    }
}

/// Makes the store's writes fail before their commit while on (`StoreConfiguration.faultInjection`).
private final class FailSwitch: Sendable {
    struct Failure: Error {}
    let on = Mutex(false)
}
