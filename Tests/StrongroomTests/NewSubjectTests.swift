import Foundation
@testable import Strongroom
import Testing

/// `NewSubject` shares its contents between copies (one immutable box): it must still behave as a value.
@Suite("NewSubject: a value, though its copies share their contents")
struct NewSubjectTests {
    static let subject = NewSubject(metadata: SubjectMetadata(kind: .lead, externalID: "x1", source: "Referral"),
                                    personal: PersonalData(name: "Ann", phones: [LabeledPhone(label: "mobile", number: "07700 900123")],
                                                           customFields: ["tier": "gold"]))

    @Test("a changed copy changes alone; subjects made apart with the same contents are equal and hash alike; a changed one is not equal")
    func valueSemantics() {
        var copy = NewSubjectTests.subject
        #expect(copy == NewSubjectTests.subject)
        copy.personal.name = "Bob"
        copy.metadata.externalID = "x2"
        #expect(NewSubjectTests.subject.personal.name == "Ann" && NewSubjectTests.subject.metadata.externalID == "x1")
        #expect(copy.personal.name == "Bob" && copy.metadata.externalID == "x2" && copy.personal.customFields == ["tier": "gold"])
        #expect(copy != NewSubjectTests.subject)
        let rebuilt = NewSubject(metadata: NewSubjectTests.subject.metadata, personal: NewSubjectTests.subject.personal)
        #expect(rebuilt == NewSubjectTests.subject && rebuilt.hashValue == NewSubjectTests.subject.hashValue)
        #expect(Set([rebuilt, NewSubjectTests.subject, copy]).count == 2)
        // Changed back, it equals the original again.
        copy.personal.name = "Ann"
        copy.metadata.externalID = "x1"
        #expect(copy == NewSubjectTests.subject && copy.hashValue == NewSubjectTests.subject.hashValue)
    }
}
