import Foundation
import StrongroomCrypto

/// The parsers that read untrusted bytes, each behind one function that takes arbitrary input and must
/// neither crash nor hang: the coverage-guided fuzzer (`.ci/fuzz`) and the corpus replay test call them.
/// They only parse and validate; they never print or return what they read.
public enum FuzzEntryPoints {
    /// The fuzz targets by name, as `.ci/fuzz` and `Fixtures/fuzz-corpus/` name them.
    public static let targets: [String: @Sendable ([UInt8]) -> Void] = [
        "envelope": envelope, "csv": csv, "phone": phone, "key-file": keyFile, "audit-log": auditLog,
    ]

    /// The ciphertext envelope: header parsing, location and key checks, and the open that follows
    /// (under a fixed key: the parser runs before any key could be right).
    public static func envelope(_ data: [UInt8]) {
        _ = try? Envelope.header(of: data)
        guard let cipher = try? AES256GCM(key: SecretKey(copying: [UInt8](repeating: 7, count: 32))) else { return }
        _ = try? Envelope.openKey(data, at: EnvelopeLocation(slot: .subjectKey, recordID: 1), under: KeyHandle(cipher: cipher, version: 1, identifier: 0),
                                  storeID: [UInt8](repeating: 1, count: 16))
    }

    /// The CSV reader, read to the end, going on after errors as the importer does.
    public static func csv(_ data: [UInt8]) {
        var reader = CSVReader(bytes: data)
        for _ in 0...(data.count + 1) {
            do {
                guard try reader.next() != nil else { return }
            } catch {
                continue
            }
        }
    }

    /// The phone normaliser, under a region chosen by the first byte.
    public static func phone(_ data: [UInt8]) {
        guard let first = data.first else { return }
        let regions = PhoneNormalizer.supportedRegions
        guard let normalizer = try? PhoneNormalizer(defaultRegion: regions[Int(first) % regions.count]) else { return }
        _ = try? normalizer.normalize(String(decoding: data.dropFirst(), as: UTF8.self))
    }

    /// The key-file loader, on the bytes written to a private temporary file (mode 0600).
    public static func keyFile(_ data: [UInt8]) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-fuzz-\(getpid()).key").path
        guard FileManager.default.createFile(atPath: path, contents: Data(data), attributes: [.posixPermissions: 0o600]) else { return }
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try? KeyFile.load(from: path)
    }

    /// The audit log reader: each line split into body and MAC, its time parsed, its JSON decoded, and
    /// the whole verified as a chain under a fixed key.
    public static func auditLog(_ data: [UInt8]) {
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            _ = AuditLineFormat.split(line)
            if let entry = try? JSONDecoder().decode(AuditEntry.self, from: Data(line)) { _ = Timestamp.parse(entry.time) }
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-fuzz-audit-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard FileManager.default.createFile(atPath: directory + "/00000001.jsonl", contents: Data(data)),
              let mac = try? HMACSHA256(key: SecretKey(copying: [1, 2, 3])) else { return }
        _ = try? AuditVerifier(directory: directory, mac: mac, genesis: [UInt8](repeating: 0, count: 32), head: nil).verify()
    }
}
