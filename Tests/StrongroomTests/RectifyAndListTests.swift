import Foundation
@testable import Strongroom
import StrongroomTestSupport
import Testing

@Suite("Rectification of named fields")
struct RectifyTests {
    static let request = AccessContext(actor: "test-dpo", purpose: .subjectRequest)

    /// A subject with a number under each of the import's phone labels.
    static func subject(_ tag: String, phone: String?, mobile: String? = nil) -> NewSubject {
        var subject = sampleSubject(tag)
        subject.personal.phones = [("phone", phone), ("mobile", mobile)].compactMap { label, number in
            number.map { LabeledPhone(label: label, number: $0) }
        }
        return subject
    }

    @Test("rectify changes only the fields named, and audits their names without their values", arguments: TestBackend.all)
    func onlyNamedFields(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let id = try test.store.create(Self.subject("r", phone: "+44 20 7946 0958", mobile: "07700 900123"), context: TestStore.admin)
        let before = try test.store.read(id, context: TestStore.admin)
        let changed = try test.store.rectify(id, [FieldChange(field: "name", value: "Ulrike Vantongerloo"),
                                                  FieldChange(field: "favourite", value: "Persimmon"),
                                                  FieldChange(field: "notes", value: ""),
                                                  FieldChange(field: "mobile", value: "07700 900456")], context: TestStore.admin)
        #expect(changed == ["name", "favourite", "notes", "mobile"])
        let after = try test.store.read(id, context: TestStore.admin)
        #expect(after.personal.name == "Ulrike Vantongerloo" && after.personal.notes == "")
        #expect(after.personal.customFields == ["favourite": "Persimmon"])
        #expect(after.personal.phones == [LabeledPhone(label: "phone", number: "+44 20 7946 0958"), LabeledPhone(label: "mobile", number: "07700 900456")])
        #expect(after.personal.company == before.personal.company && after.personal.emails == before.personal.emails
                && after.personal.address == before.personal.address && after.personal.photo == before.personal.photo)
        #expect(after.metadata == before.metadata)
        let entry = try #require(hook.events.last { $0.action == .update })
        #expect(entry.subject == id && entry.detail == "rectify: name, favourite, notes, mobile")
        let logged = hook.events.map { "\($0.detail ?? "")" }.joined()
        #expect(!logged.contains("Ulrike") && !logged.contains("Persimmon") && !logged.contains("900456"))
        // Second act: the old mobile no longer rings, the new one and the kept number do, from another opening too.
        #expect(try test.store.callerID(number: "07700 900123", context: TestStore.caller).isEmpty)
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.callerID(number: "07700 900456", context: TestStore.caller).map(\.id) == [id])
        #expect(try reopened.callerID(number: "020 7946 0958", context: TestStore.caller).map(\.name) == ["Ulrike Vantongerloo"])
    }

    @Test("rectify moves a number from one subject to another: caller ID then finds the new holder only", arguments: TestBackend.all)
    func movesNumber(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let old = try test.store.create(Self.subject("old", phone: "+44 20 7946 0958", mobile: "07700 900123"), context: TestStore.admin)
        let new = try test.store.create(Self.subject("new", phone: "+44 20 7946 0959"), context: TestStore.admin)
        #expect(try test.store.callerID(number: "07700 900123", context: TestStore.caller).map(\.id) == [old])
        try test.store.rectify(old, [FieldChange(field: "mobile", value: "")], context: TestStore.admin)
        try test.store.rectify(new, [FieldChange(field: "mobile", value: "+44 7700 900123")], context: TestStore.admin)
        #expect(try test.store.callerID(number: "07700 900123", context: TestStore.caller).map(\.id) == [new])
        #expect(try test.store.read(old, fields: [.phones], context: TestStore.admin).personal.phones
                == [LabeledPhone(label: "phone", number: "+44 20 7946 0958")])
        // Second act: after an index rotation and from another opening, still the new holder only.
        _ = try test.store.rotateIndexKey(context: TestStore.admin)
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.callerID(number: "07700 900123", context: TestStore.caller).map(\.id) == [new])
        #expect(try reopened.callerID(number: "020 7946 0958", context: TestStore.caller).map(\.id) == [old])
    }

    @Test("rectify of the e-mail address moves the e-mail index; clearing it leaves nothing to find", arguments: TestBackend.all)
    func email(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("mail"), context: TestStore.admin)
        try test.store.rectify(id, [FieldChange(field: "email", value: "Ulrike@Example.ORG")], context: TestStore.admin)
        #expect(try test.store.find(.email("zebedee.mail@example.org"), context: Self.request).isEmpty)
        #expect(try test.store.find(.email("ulrike@example.org"), context: Self.request).map(\.id) == [id])
        try test.store.rectify(id, [FieldChange(field: "email", value: "")], context: TestStore.admin)
        #expect(try test.store.find(.email("ulrike@example.org"), context: Self.request).isEmpty)
        #expect(try test.store.read(id, fields: [.emails], context: TestStore.admin).personal.emails == [])
        // Second act: a new address is found from another opening.
        try test.store.rectify(id, [FieldChange(field: "email", value: "u@example.org")], context: TestStore.admin)
        let reopened = try test.reopen()
        defer { reopened.close() }
        #expect(try reopened.find(.email("u@example.org"), context: Self.request).map(\.id) == [id])
    }

    @Test("an unknown field, a bad number or address, a clear field is refused, echoing no value and changing nothing",
          arguments: TestBackend.all, [
            [FieldChange(field: "nmae", value: "Secret Value")], [FieldChange(field: "owner", value: "Secret Value")],
            [FieldChange(field: "mobile", value: "Secret 12")], [FieldChange(field: "email", value: "Secret Value")],
            [FieldChange(field: "name", value: "Secret Value"), FieldChange(field: "name", value: "Secret Other")], [],
          ])
    func refused(backend: TestBackend, changes: [FieldChange]) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("keep"), context: TestStore.admin)
        let before = try test.store.read(id, context: TestStore.admin)
        do {
            try test.store.rectify(id, changes, context: TestStore.admin)
            Issue.record("accepted")
        } catch {
            #expect(!"\(error)".contains("Secret"))
            switch error {
            case .unknownField, .fieldNamedTwice, .noFieldsToRectify, .invalidEmailAddress, .invalidPhoneNumber: break
            default: Issue.record("not an input error: \(error)")
            }
        }
        // Second act: nothing changed, and a valid rectification goes through.
        #expect(try test.store.read(id, context: TestStore.admin).personal == before.personal)
        try test.store.rectify(id, [FieldChange(field: "company", value: "Nimbus Ltd")], context: TestStore.admin)
        #expect(try test.store.read(id, fields: [.company], context: TestStore.admin).personal.company == "Nimbus Ltd")
    }

    @Test("a restricted subject is rectified for its own request only", arguments: TestBackend.all)
    func restricted(backend: TestBackend) throws {
        let test = try TestStore(backend)
        defer { test.cleanUp() }
        let id = try test.store.create(sampleSubject("held"), context: TestStore.admin)
        try test.store.setRestricted(true, id, context: TestStore.admin)
        #expect(throws: StoreError.self) {
            try test.store.rectify(id, [FieldChange(field: "name", value: "Other")], context: TestStore.admin)
        }
        #expect(try test.store.read(id, fields: [.name], context: Self.request).personal.name == "Zebedee Quixotic-held")
        try test.store.rectify(id, [FieldChange(field: "name", value: "Corrected")], context: Self.request)
        #expect(try test.store.read(id, fields: [.name], context: Self.request).personal.name == "Corrected")
    }
}

@Suite("Listing subjects' clear fields")
struct ListSubjectsTests {
    @Test("list filters by kind, last touch and restriction, pages through the table, decrypts nothing, and audits one entry",
          arguments: TestBackend.all)
    func filters(backend: TestBackend) throws {
        let hook = RecordingHook()
        let test = try TestStore(backend, hooks: [hook])
        defer { test.cleanUp() }
        let day: TimeInterval = 86_400
        let cutoff = Date(timeIntervalSince1970: 1_790_000_000)
        var subjects: [NewSubject] = []
        for index in 0..<9 {
            var subject = sampleSubject("l\(index)", kind: index % 2 == 0 ? .lead : .contact)
            // Before the cutoff, exactly at it, after it, or never contacted (created now: after it).
            subject.metadata.lastContactedAt = [cutoff - day, cutoff, cutoff + day, nil][index % 4]
            subjects.append(subject)
        }
        let ids = try test.store.write(subjects, context: TestStore.admin).map(\.id)
        try test.store.setRestricted(true, ids[3], context: TestStore.admin)
        func list(_ filter: SubjectListFilter) throws -> [SubjectID] {
            var listed: [SubjectID] = []
            try test.store.listSubjects(filter, pageSize: 2, context: TestStore.admin) { listed.append($0.id) }
            return listed
        }
        let decryptsBefore = hook.events.filter { $0.action == .decrypt }.count
        #expect(try list(SubjectListFilter()) == ids)
        #expect(try list(SubjectListFilter(kind: .lead)) == [ids[0], ids[2], ids[4], ids[6], ids[8]])
        #expect(try list(SubjectListFilter(untouchedSince: cutoff)) == [ids[0], ids[4], ids[8]])
        #expect(try list(SubjectListFilter(kind: .contact, untouchedSince: cutoff + 2 * day)) == [ids[1], ids[5]])
        #expect(try list(SubjectListFilter(restrictedOnly: true)) == [ids[3]])
        #expect(hook.events.filter { $0.action == .decrypt }.count == decryptsBefore)
        let listings = hook.events.filter { $0.action == .list }
        #expect(listings.count == 5 && listings.allSatisfy { $0.subject == nil })
        #expect(listings[3].detail == "subject list: kind contact, untouched since \(Int64(cutoff.timeIntervalSince1970) + 2 * 86_400)")
        var summary: SubjectSummary?
        try test.store.listSubjects(SubjectListFilter(restrictedOnly: true), context: TestStore.admin) { summary = $0 }
        #expect(summary?.isRestricted == true && summary?.metadata.externalID == "ext-l3" && summary?.metadata.source == "Website form")
        // Second act: a subject erased is no longer listed; the others are, from another opening.
        try test.store.erase(ids[0], reason: "request", context: TestStore.admin)
        let reopened = try test.reopen()
        defer { reopened.close() }
        var listed: [SubjectID] = []
        try reopened.listSubjects(SubjectListFilter(kind: .lead), context: TestStore.admin) { listed.append($0.id) }
        #expect(listed == [ids[2], ids[4], ids[6], ids[8]])
    }
}
