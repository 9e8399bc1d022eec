import Foundation
@testable import Strongroom
import Testing

/// `Store.exportAll`: every subject once, each in the single export's layout and values, each decrypt
/// audited on its own, refused subjects skipped and counted, erased subjects absent; and again after
/// more writes, and from another opening of the store.
@Suite("Bulk export: every subject, as the single export makes it")
struct BulkExportTests {
    /// Subjects made: more than two batches, so batch edges are crossed.
    static let subjectCount = Store.exportBatchSize * 2 + 37

    /// A store of `subjectCount` subjects (every third a lead), with calls and consents on a few, two
    /// restricted and two erased; returns the ids of each group.
    private static func populate(_ store: Store) throws -> (all: [SubjectID], restricted: [SubjectID], erased: [SubjectID]) {
        let subjects = (0..<subjectCount).map { index in
            sampleSubject("bulk\(index)", kind: index % 3 == 0 ? .lead : .contact, phones: ["+44 20 7946 \(String(1000 + index))"])
        }
        let ids = try store.write(subjects, context: TestStore.admin).map(\.id)
        let marketing: Purpose = "marketing-email"
        try store.declarePurpose(PurposeDeclaration(name: marketing, description: "Offers", lawfulBasis: .consent), context: TestStore.admin)
        for index in [1, 255, 256, 400] {
            _ = try store.recordCall(number: "+44 20 7946 \(String(1000 + index))", at: Date(timeIntervalSince1970: 1_800_000_000),
                                     context: TestStore.caller)
            _ = try store.grantConsent(ids[index], purpose: marketing, evidence: "web form v\(index)", initiator: .subject,
                                       clientAddress: "192.0.2.\(index % 250)", context: TestStore.admin)
        }
        let restricted = [ids[5], ids[300]]
        for id in restricted { try store.setRestricted(true, id, context: TestStore.admin) }
        let erased = [ids[7], ids[510]]
        for id in erased { try store.erase(id, reason: "Art. 17 test", context: TestStore.admin) }
        return (ids, restricted, erased)
    }

    /// Runs `exportAll`, returning each line as the tool writes it and the summary.
    private static func exportLines(_ store: Store, kind: SubjectKind? = nil,
                                    context: AccessContext = TestStore.admin) throws -> (lines: [Data], summary: BulkExportSummary) {
        var lines: [Data] = []
        let summary = try store.exportAll(kind: kind, context: context) { lines.append(try $0.jsonLine()) }
        return (lines, summary)
    }

    /// A line's JSON object, without `exported_at`, and its access log apart.
    private static func parts(_ json: Data) throws -> (rest: NSDictionary, accessLog: [NSDictionary]) {
        var object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        object["exported_at"] = nil
        let accessLog = try #require(object.removeValue(forKey: "access_log") as? [[String: Any]]).map { $0 as NSDictionary }
        return (object as NSDictionary, accessLog)
    }

    /// The subject id of a line.
    private static func subjectID(_ line: Data) throws -> SubjectID {
        let export = try JSONDecoder.snakeCase.decode(SubjectExport.self, from: line)
        return SubjectID(rawValue: try #require(Int64(export.subject.id)))
    }

    /// The audit entries a bulk export made (decrypts with its detail, and refusals), by subject.
    private static func bulkEntries(_ store: Store) throws -> [SubjectID: [AuditEntry]] {
        var entries: [SubjectID: [AuditEntry]] = [:]
        try store.auditEntries { entry, _ in
            guard entry.action == "decrypt", entry.detail?.hasPrefix("export, consent ledger") == true || entry.outcome == "refused",
                  let subject = entry.subject.flatMap(Int64.init) else { return }
            entries[SubjectID(rawValue: subject), default: []].append(entry)
        }
        return entries
    }

    @Test("every live subject once, in id order; each line is the single export's JSON; one audit entry each; restricted skipped, counted and audited as refused; erased absent",
          arguments: TestBackend.all)
    func everySubjectOnce(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let (ids, restricted, erased) = try Self.populate(test.store)
        let (lines, summary) = try Self.exportLines(test.store)

        let exported = try lines.map(Self.subjectID)
        let expected = ids.filter { !restricted.contains($0) && !erased.contains($0) }
        #expect(exported == expected)
        #expect(summary.exported == expected.count && summary.refused == restricted)
        #expect(lines.allSatisfy { !$0.contains(UInt8(ascii: "\n")) })

        // Each line against the single export made afterwards: equal but for the time of export and the
        // entries appended since (the bulk export's own decrypt, then the single export's).
        let checked = [ids[0], ids[1], ids[255], ids[256], ids[400], ids[ids.count - 1]]
        for (line, id) in zip(lines, exported) where checked.contains(id) {
            let single = try test.store.export(id, context: TestStore.admin)
            let (bulkRest, bulkLog) = try Self.parts(line)
            let (singleRest, singleLog) = try Self.parts(try single.jsonLine())
            #expect(bulkRest == singleRest, "subject \(id)")
            #expect(Array(singleLog.prefix(bulkLog.count)) == bulkLog, "subject \(id)")
            #expect(!bulkLog.isEmpty && bulkLog.first?["action"] as? String == "create")
            let appended = singleLog.dropFirst(bulkLog.count).compactMap { $0["detail"] as? String }
            #expect(appended.first?.hasPrefix("export, consent ledger: ") == true, "\(appended)")
        }
        // The consent ledger's sealed values were opened.
        let withConsent = try #require(lines.first { try Self.subjectID($0) == ids[255] })
        let consents = try JSONDecoder.snakeCase.decode(SubjectExport.self, from: withConsent).consents
        #expect(consents.map(\.evidence) == ["web form v255"] && consents.map(\.clientAddress) == ["192.0.2.5"])
        #expect(try JSONDecoder.snakeCase.decode(SubjectExport.self, from: withConsent).calls.count == 1)

        // One audit entry per subject: ok for the exported, refused for the restricted; none for the erased.
        let audited = try Self.bulkEntries(test.store)
        for id in expected {
            let entries = audited[id] ?? []
            #expect(entries.count == 1 && entries[0].outcome == "ok" && entries[0].fields.count == PersonalField.allCases.count,
                    "subject \(id): \(entries)")
        }
        for id in restricted { #expect(audited[id]?.map(\.outcome) == ["refused"]) }
        #expect(erased.allSatisfy { audited[$0] == nil })
        #expect(audited.count == expected.count + restricted.count)
        #expect(try test.store.verifyAuditLog().isIntact)
    }

    @Test("--kind: only that kind; subject-request exports the restricted too; an undeclared purpose is refused before anything is read",
          arguments: TestBackend.all)
    func kindAndPurpose(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let (ids, restricted, erased) = try Self.populate(test.store)
        let leads = try Self.exportLines(test.store, kind: .lead)
        let leadIDs = try leads.lines.map(Self.subjectID)
        #expect(leadIDs == ids.enumerated().filter { $0.offset % 3 == 0 && !erased.contains($0.element) && !restricted.contains($0.element) }
            .map(\.element))
        #expect(try leads.lines.allSatisfy { try JSONDecoder.snakeCase.decode(SubjectExport.self, from: $0).subject.kind == "lead" })

        let request = AccessContext(actor: "dpo", purpose: .subjectRequest)
        let (all, summary) = try Self.exportLines(test.store, context: request)
        #expect(summary.refused.isEmpty)
        #expect(try all.map(Self.subjectID) == ids.filter { !erased.contains($0) })

        var called = false
        #expect(throws: StoreError.self) {
            try test.store.exportAll(context: AccessContext(actor: "dpo", purpose: "undeclared")) { _ in called = true }
        }
        #expect(!called)
    }

    @Test("second act: after more writes, an erasure and a reopen, the next export has them all, and the first export's entries in its access log",
          arguments: TestBackend.all)
    func secondExport(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let (ids, restricted, erased) = try Self.populate(test.store)
        let first = try Self.exportLines(test.store)

        let added = try test.store.write((0..<300).map { sampleSubject("later\($0)") }, context: TestStore.admin).map(\.id)
        try test.store.update(ids[2], personal: PersonalData(name: "Renamed Person"), context: TestStore.admin)
        try test.store.erase(ids[3], reason: "Art. 17 test", context: TestStore.admin)
        try test.store.setRestricted(false, restricted[0], context: TestStore.admin)
        let reopened = try test.reopen()
        defer { reopened.close() }

        let (lines, summary) = try Self.exportLines(reopened)
        let exported = try lines.map(Self.subjectID)
        #expect(exported == (ids + added).filter { !erased.contains($0) && $0 != ids[3] && $0 != restricted[1] })
        #expect(summary.refused == [restricted[1]] && summary.exported == first.summary.exported + 300)
        let renamed = try #require(lines.first { try Self.subjectID($0) == ids[2] })
        #expect(try JSONDecoder.snakeCase.decode(SubjectExport.self, from: renamed).personal.name == "Renamed Person")
        // The first export's decrypt is now in the subject's access log, and this one's is in the audit log.
        let log = try JSONDecoder.snakeCase.decode(SubjectExport.self, from: renamed).accessLog
        #expect(log.filter { $0.detail?.hasPrefix("export, consent ledger") == true }.count == 1)
        #expect(try Self.bulkEntries(reopened)[ids[2]]?.count == 2)
        #expect(try reopened.verifyAuditLog().isIntact)
        // And the original handle still exports, with the same subjects.
        #expect(try Self.exportLines(test.store).lines.map(Self.subjectID) == exported)
    }

    @Test("an audit log that does not verify stops the export before any subject is passed on", arguments: TestBackend.all)
    func unverifiedLog(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        _ = try Self.populate(test.store)
        test.store.close()
        try tamperWithFirstAuditEntry(test)
        let reopened = try test.reopen()
        defer { reopened.close() }
        var passed = 0
        #expect(throws: StoreError.self) { try reopened.exportAll(context: TestStore.admin) { _ in passed += 1 } }
        #expect(passed == 0)
    }
}

extension JSONDecoder {
    /// A decoder for the exports' snake_case keys.
    static var snakeCase: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }
}

/// Edits entry 5 of the store's audit log (its actor), as an attacker with the files or the table would.
private func tamperWithFirstAuditEntry(_ test: TestStore) throws {
    switch test.backend {
    case .sqlite:
        let path = test.directory + "/audit/" + AuditLog.segmentName(1)
        var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines[4] = lines[4].replacingOccurrences(of: "test-admin", with: "mallory")
        try lines.joined(separator: "\n").write(toFile: path, atomically: false, encoding: .utf8)
    case .postgres:
        let raw = try test.database(.data)
        let line = try #require(try raw.firstRow("SELECT line FROM audit_log WHERE sequence = 5") { $0.blob(0) } ?? nil)
        try raw.run("UPDATE audit_log SET line = ? WHERE sequence = 5",
                    [.blob(Array(String(decoding: line, as: UTF8.self).replacingOccurrences(of: "test-admin", with: "mallory").utf8))])
    }
}
