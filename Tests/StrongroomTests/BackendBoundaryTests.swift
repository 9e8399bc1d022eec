import Foundation
@testable import Strongroom
import StrongroomTestSupport
import Testing

@Suite("Backends: what differs between SQLite and PostgreSQL lives in Backends/, one folder each")
struct BackendBoundaryTests {
    /// Engine files that still ask a connection what it is: none.
    static let notYetBehindTheBackend: Set<String> = []

    /// What only a backend may write: a downcast to a connection type, or a choice by SQL dialect.
    static let backendOnly = ["as? SQLiteConnection", "as? PostgresConnection", "as! SQLiteConnection", "as! PostgresConnection",
                              "is SQLiteConnection", "is PostgresConnection", ".dialect"]

    @Test("the engine holds no downcast to a connection type and no dialect branch outside Backends/")
    func noBackendBranchesInTheEngine() throws {
        let engine = Fixture.directory.deletingLastPathComponent().appendingPathComponent("Sources/Strongroom")
        let files = try FileManager.default.subpathsOfDirectory(atPath: engine.path).filter { $0.hasSuffix(".swift") }
        #expect(files.contains("Backends/StoreBackend.swift"), "scanning the wrong folder: \(engine.path)")
        var offenders: [String] = []
        for file in files where !file.hasPrefix("Backends/") && !Self.notYetBehindTheBackend.contains(file) {
            let text = try String(contentsOf: engine.appendingPathComponent(file), encoding: .utf8)
            offenders += Self.backendOnly.filter(text.contains).map { "\(file): \($0)" }
        }
        #expect(offenders == [])
    }

    @Test("a new store declares exactly the built-in purposes of the Swift list, and still does when reopened",
          arguments: TestBackend.all)
    func builtInPurposesSeededFromSwift(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        #expect(test.store.purposes().sorted { $0.name.rawValue < $1.name.rawValue }
            == PurposeDeclaration.builtIns.sorted { $0.name.rawValue < $1.name.rawValue })
        let reopened = try test.reopen()
        #expect(reopened.purposes().count == PurposeDeclaration.builtIns.count)
        #expect(try reopened.callerID(number: "+14155550100", context: TestStore.caller).isEmpty)
    }
}
