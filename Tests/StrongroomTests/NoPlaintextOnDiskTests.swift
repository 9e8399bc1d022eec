import Foundation
import Strongroom
import Testing

@Suite("No plaintext on disk")
struct NoPlaintextOnDiskTests {
    /// Whether `needle` occurs in `haystack`.
    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        let first = needle[0]
        var index = 0
        while let start = haystack[index...].firstIndex(of: first), start + needle.count <= haystack.count {
            if haystack[start..<start + needle.count].elementsEqual(needle) { return true }
            index = start + 1
        }
        return false
    }

    func encodings(_ text: String) -> [(String, [UInt8])] {
        var little: [UInt8] = []
        var big: [UInt8] = []
        for unit in text.utf16 {
            little += [UInt8(unit & 0xFF), UInt8(unit >> 8)]
            big += [UInt8(unit >> 8), UInt8(unit & 0xFF)]
        }
        return [("UTF-8", Array(text.utf8)), ("UTF-16LE", little), ("UTF-16BE", big)]
    }

    @Test("no file of the store holds a name, e-mail, number or other field, in UTF-8 or UTF-16, after writes, updates and deletes")
    func scan() throws {
        let test = try TestStore()
        defer { test.cleanUp() }
        var secrets: [String] = []
        var ids: [SubjectID] = []
        for tag in ["aa", "bb", "cc"] {
            let subject = sampleSubject(tag, phones: ["+44 20 7946 0958", "(415) 555-2671"])
            ids.append(try test.store.create(subject, context: TestStore.admin))
            let personal = subject.personal
            secrets += [personal.name!, personal.company!, personal.emails![0], personal.address!, personal.notes!,
                        "PHOTO-\(tag)", "Kumquat-\(tag)"]
        }
        secrets += ["+44 20 7946 0958", "442079460958", "(415) 555-2671", "4155552671"]
        try test.store.update(ids[0], personal: PersonalData(name: "Updated Zanzibar Name"), context: TestStore.admin)
        secrets.append("Updated Zanzibar Name")
        _ = try test.store.read(ids[1], context: TestStore.admin)
        _ = try test.store.callerID(number: "+442079460958", context: TestStore.caller)
        try test.store.delete(ids[2], context: TestStore.admin)
        test.store.close()
        let files = test.files()
        #expect(files.contains { $0.hasSuffix("data.sqlite") } && files.contains { $0.hasSuffix(".jsonl") })
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
            for secret in secrets {
                for (encoding, needle) in encodings(secret) {
                    #expect(!contains(bytes, needle), "\(file) holds \(secret.debugDescription) in \(encoding)")
                }
            }
        }
        print("scanned \(files.count) files for \(secrets.count) values in 3 encodings: none found")
    }
}

@Suite("Erasure reaches every copy in the store folder")
struct ErasureScanTests {
    @Test("after erasure, no file of the store (key database, its WAL, data, audit) holds the erased subject's wrapped key or fields")
    func wrappedKeyGone() throws {
        let test = try TestStore()
        defer { test.cleanUp() }
        let erased = try test.store.create(sampleSubject("shred"), context: TestStore.admin)
        _ = try test.store.create(sampleSubject("stays"), context: TestStore.admin)
        let wrapped = try #require(try test.database(.keys).firstRow(
            "SELECT wrapped FROM subject_keys WHERE subject_id = ?", [.integer(erased.rawValue)]) { $0.blob(0) } ?? nil)
        try test.store.erase(erased, reason: "Art. 17 request", context: TestStore.admin)
        test.store.close()
        // The wrapped key's ciphertext-and-tag part is random: any 24-byte piece of it found on disk is a copy.
        let needle = Array(wrapped.suffix(24))
        let secrets = ["Zebedee Quixotic-shred", "zebedee.shred@example.org", "17 Xylophone Lane shred"]
        for file in test.files() {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
            #expect(!NoPlaintextOnDiskTests().contains(bytes, needle), "\(file) still holds the erased subject's wrapped key")
            for secret in secrets {
                #expect(!NoPlaintextOnDiskTests().contains(bytes, Array(secret.utf8)), "\(file) holds \(secret)")
            }
        }
        #expect(test.files().contains { $0.hasSuffix("keys.sqlite") })
    }
}
