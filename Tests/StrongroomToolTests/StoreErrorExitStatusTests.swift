import Foundation
import Strongroom
import Testing
@testable import StrongroomTool

/// The tool's reading of the engine's errors: each input the engine refuses is a usage error (exit 2)
/// on one line; the engine's message names no option or command, the tool adds its own hint.
@Suite("Store errors: exit status and message")
struct StoreErrorExitStatusTests {
    /// One of each input error the engine reports.
    static let inputErrors: [StoreError] = [
        .unsupportedRegion("XX"),
        .blindIndexBitsOutOfRange(bits: 40, supported: 8...32),
        .masterKeyWrongLength(bytes: 16, expected: 32),
        .keyEncryptionKeyRotationOvertaken,
        .wrongSubjectKind(SubjectID(rawValue: 7), expected: .lead),
        .noAuditHook,
        .invalidReason(.erasure, maxCharacters: 200),
        .invalidReason(.auditGapAcknowledgement, maxCharacters: nil),
        .invalidPurposeName(characters: 65, maxCharacters: 64),
        .builtInPurposeOnConsent(.subjectRequest),
        .undeclaredPurpose("profiling"),
        .purposeNotOnConsent(.callerID, lawfulBasis: .legitimateInterest),
        .consentEvidenceMissing,
        .invalidTokenLifetime(seconds: 0, maxSeconds: 30 * 24 * 3600),
    ]

    @Test("each input error is exit 2 on one line, without CLI words from the engine", arguments: inputErrors)
    func inputErrorIsUsage(error: StoreError) {
        #expect(error.exitStatus == .usage)
        let (message, status) = StrongroomCLI.describe(error)
        #expect(status == .usage)
        #expect(!message.isEmpty && !message.contains("\n"))
        #expect(!error.description.contains("--") && !error.description.contains("strongroom "), "\(error.description)")
    }

    @Test("the tool, not the engine, names its option and commands in the hint")
    func toolHints() {
        let bits = StrongroomCLI.describe(StoreError.blindIndexBitsOutOfRange(bits: 40, supported: 8...32)).0
        #expect(bits.hasSuffix("(--bits)") && bits.contains("8 to 32"))
        let missing = StoreError.storeNotFound(path: "/nowhere")
        #expect(!missing.description.contains("strongroom init"))
        #expect(StrongroomCLI.describe(missing).0.contains("strongroom init"))
    }

    @Test("an audit hook's and the database's errors keep their exit 3 and their value")
    func valuesKept() {
        struct HookDown: Error {}
        let hook = StoreError.auditHookFailed(hook: "Mirror", error: HookDown())
        #expect(hook.exitStatus == .integrity)
        if case .auditHookFailed(_, let error) = hook { #expect(error is HookDown) }
        #expect(StoreError.auditFailed(.contended(attempts: 5)).exitStatus == .integrity)
    }

    @Test("end to end: input the engine refuses exits 2 with one line, and the store works on after it")
    func endToEnd() throws {
        let store = try ToolStore()
        defer { store.cleanUp() }
        let (status, _, err) = store.run(["consent", "grant", "crm-4242-2", "--purpose", "profiling", "--evidence", "web form"])
        #expect(status == .usage)
        #expect(err.contains("purpose profiling is not declared") && err.split(separator: "\n").count == 1, "\(err)")
        let (wrongBasis, _, basisErr) = store.run(["consent", "grant", "crm-4242-2", "--purpose", "caller-id", "--evidence", "web form"])
        #expect(wrongBasis == .usage && basisErr.contains("not on consent"), "\(basisErr)")
        // Second act: the same store answers normally afterwards.
        let (shown, out, _) = store.run(["consent", "show", "crm-4242-2"])
        #expect(shown == .success && !out.isEmpty)
    }
}
