import Foundation
import StrongroomTestSupport

/// The shape shared by every Wycheproof `testvectors_v1` file (C2SP/wycheproof, Apache-2.0).
struct WycheproofFile<Group: Decodable & Sendable>: Decodable, Sendable {
    let algorithm: String
    let numberOfTests: Int
    let testGroups: [Group]

    /// Decodes `Fixtures/wycheproof/<name>`.
    static func load(_ name: String) throws -> WycheproofFile<Group> {
        try JSONDecoder().decode(WycheproofFile<Group>.self, from: Fixture.data("wycheproof/\(name)"))
    }
}

/// A Wycheproof verdict. "acceptable" marks inputs a strict implementation may refuse.
enum WycheproofResult: String, Decodable, Sendable {
    case valid, invalid, acceptable
}

/// `aead_test_schema_v1.json`.
struct AEADTestGroup: Decodable, Sendable {
    let keySize: Int
    let ivSize: Int
    let tagSize: Int
    let tests: [AEADTestVector]
}

struct AEADTestVector: Decodable, Sendable {
    let tcId: Int
    let comment: String
    let flags: [String]
    let key: String
    let iv: String
    let aad: String
    let msg: String
    let ct: String
    let tag: String
    let result: WycheproofResult
}

/// `mac_test_schema_v1.json`.
struct MACTestGroup: Decodable, Sendable {
    let keySize: Int
    let tagSize: Int
    let tests: [MACTestVector]
}

struct MACTestVector: Decodable, Sendable {
    let tcId: Int
    let comment: String
    let flags: [String]
    let key: String
    let msg: String
    let tag: String
    let result: WycheproofResult
}

/// `hkdf_test_schema_v1.json`.
struct HKDFTestGroup: Decodable, Sendable {
    let keySize: Int
    let tests: [HKDFTestVector]
}

struct HKDFTestVector: Decodable, Sendable {
    let tcId: Int
    let comment: String
    let flags: [String]
    let ikm: String
    let salt: String
    let info: String
    let size: Int
    let okm: String
    let result: WycheproofResult
}

/// Lower-case hex, for failure messages about public test data (never for key material under test).
func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}
