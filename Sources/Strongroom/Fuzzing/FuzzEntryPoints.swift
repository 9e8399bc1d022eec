import Foundation
import StrongroomCrypto
import StrongroomPhone
import StrongroomStorage

/// The parsers that read untrusted bytes, each behind one function that takes arbitrary input and must
/// neither crash nor hang: the coverage-guided fuzzer (`Tests/Fuzz`, run by `.ci/fuzz`) and the corpus
/// replay test (`FuzzCorpusTests`) call the same functions.
///
/// They only parse and validate. They never print, log or return what they read; a broken invariant
/// stops the process (a `precondition`), which the fuzzer records as a crash.
package enum FuzzEntryPoints {
    /// The fuzz targets by name, as `.ci/fuzz`, `STRONGROOM_FUZZ_TARGET` and `Fixtures/fuzz-corpus/` name them:
    /// the one list of them (`.ci/fuzz` reads it from the fuzz binary, `STRONGROOM_FUZZ_LIST=1`).
    package static let targets: [String: @Sendable ([UInt8]) -> Void] = [
        "envelope": envelope, "csv": csv, "phone": phone, "key-file": keyFile, "audit-log": auditLog,
    ]

    /// The ciphertext envelope: `Envelope.header(of:)`, then the location, key-version and key-identifier
    /// checks and the authenticated open of a wrapped key that follow it, under a fixed key.
    ///
    /// An input reaches the open when its header names slot `subjectKey`, record 1, key version 1 and
    /// key identifier 0; the GCM tag then fails (the fuzzer cannot forge it), so what is exercised is
    /// every length and field the parser and the crypto layer see before authentication.
    package static func envelope(_ data: [UInt8]) {
        _ = try? Envelope.header(of: data)
        _ = try? Envelope.openKey(data, at: EnvelopeLocation(slot: .subjectKey, recordID: 1), under: fixedEnvelopeKey,
                                  storeID: [UInt8](repeating: 1, count: 16))
    }

    /// The CSV reader (`CSVReader`) read to the end, going on after errors as the importer does.
    ///
    /// Checks that every call consumes input (so `count + 2` calls reach the end: more is a hang) and
    /// that the records' line numbers increase.
    package static func csv(_ data: [UInt8]) {
        var reader = CSVReader(bytes: data)
        var lastLine = 0
        for _ in 0...(data.count + 1) {
            do {
                guard let record = try reader.next() else { return }
                precondition(record.line > lastLine, "CSVReader: a record's line is not after the previous record's")
                precondition(!record.fields.isEmpty, "CSVReader: a record without fields")
                lastLine = record.line
            } catch {
                continue
            }
        }
        preconditionFailure("CSVReader: no end after \(data.count + 2) calls on \(data.count) bytes")
    }

    /// The phone normaliser (`PhoneNormalizer.normalize`). The first byte picks the default region;
    /// when it is 0xF0 or more, the next two bytes are also passed as the `region:` argument (a region
    /// code in any case, or garbage). The rest is the number, decoded as UTF-8 with replacement, as a
    /// `String` from any caller would be.
    package static func phone(_ data: [UInt8]) {
        guard let first = data.first else { return }
        let regions = supportedRegions
        guard let normalizer = try? PhoneNormalizer(defaultRegion: regions[Int(first) % regions.count]) else { return }
        var rest = data.dropFirst()
        var region: String?
        if first >= 0xF0 {
            region = String(decoding: rest.prefix(2), as: UTF8.self)
            rest = rest.dropFirst(2)
        }
        _ = try? normalizer.normalize(String(decoding: rest, as: UTF8.self), region: region)
    }

    /// The key-file loader (`KeyFile.load(from:)`) on the input written to a fresh file of mode 0600, as
    /// a key file is.
    package static func keyFile(_ data: [UInt8]) {
        let path = scratchPath("key")
        defer { try? FileManager.default.removeItem(atPath: path) }
        guard writeScratchFile(data, to: path) else { return }
        _ = try? KeyFile.load(from: path)
    }

    /// The audit-log reader: each line split into body, MAC and sequence (`AuditLineFormat.split`) and
    /// decoded as `Store.auditEntries` decodes it (JSON, then its time); then the whole input verified
    /// as a log segment by `AuditVerifier`, twice, under a fixed key: as it is (which stops at the first
    /// MAC), and with the MAC of every line that splits replaced by its correct chain MAC, so that the
    /// sequence, torn-line and ordering checks after the first line are reached too.
    package static func auditLog(_ data: [UInt8]) {
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for line in lines {
            if let entry = AuditLineFormat.split(line) {
                precondition(entry.mac.count == 32 && entry.body.count < line.count, "AuditLineFormat.split: bad split")
            }
            if let entry = try? JSONDecoder().decode(AuditEntry.self, from: Data(line)) { _ = Timestamp.parse(entry.time) }
        }

        var signed: [UInt8] = []
        signed.reserveCapacity(data.count)
        var previous = fixedAuditGenesis
        for (index, line) in lines.enumerated() {
            if index > 0 { signed.append(UInt8(ascii: "\n")) }
            guard let entry = AuditLineFormat.split(line),
                  let code = try? fixedAuditMAC.authenticationCode(for: [previous, Array(entry.body)]) else {
                signed.append(contentsOf: line)
                continue
            }
            AuditLineFormat.line(body: Array(entry.body), mac: code, into: &signed)
            signed.removeLast()   // `line` ends with its newline; the input's own newlines are kept above
            previous = code
        }
        verifyAuditSegment(data)
        if signed != data { verifyAuditSegment(signed) }
    }

    /// Verifies `bytes` as the one segment of an audit log in a fresh temporary folder.
    private static func verifyAuditSegment(_ bytes: [UInt8]) {
        let directory = scratchPath("audit")
        guard (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)) != nil else { return }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard writeScratchFile(bytes, to: directory + "/" + AuditLog.segmentName(1)) else { return }
        guard let log = try? AuditLog(directory: directory, mac: fixedAuditMAC, storeID: [], durability: .written,
                                      segmentByteLimit: .max, lockTimeout: StoreConfiguration().auditLockTimeout,
                                      headStore: NoAuditHead()) else { return }
        _ = try? AuditVerifier(trail: log, mac: fixedAuditMAC, genesis: fixedAuditGenesis, head: nil).verify()
    }

    /// A fresh path in the temporary folder, unique to this call (callers may run concurrently).
    private static func scratchPath(_ kind: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-fuzz-\(kind)-\(getpid())-\(UUID().uuidString)").path
    }

    /// Creates `path` with mode 0600 and writes `bytes`, without the fsync Foundation's writes do (which
    /// would hold the fuzzer to a few hundred inputs a second).
    private static func writeScratchFile(_ bytes: [UInt8], to path: String) -> Bool {
        guard let file = try? AppendOnlyFile(path: path) else { return false }
        return (try? file.append(bytes)) != nil
    }

    // Fixed keys: made once, so that each input costs only the parsing.
    private static let supportedRegions = PhoneNormalizer.supportedRegions
    private static let fixedEnvelopeKey: KeyHandle = {
        guard let cipher = try? AES256GCM(key: SecretKey(copying: [UInt8](repeating: 7, count: 32))) else {
            preconditionFailure("AES-256-GCM is unavailable")
        }
        return KeyHandle(cipher: cipher, version: 1, identifier: 0)
    }()
    private static let fixedAuditMAC: HMACSHA256 = {
        guard let mac = try? HMACSHA256(key: SecretKey(copying: [1, 2, 3])) else { preconditionFailure("HMAC-SHA256 is unavailable") }
        return mac
    }()
    private static let fixedAuditGenesis = [UInt8](repeating: 0, count: 32)
}

/// No signed head: the fuzzer verifies segments on their own and appends nothing.
private struct NoAuditHead: AuditHeadStore {
    func auditHead() throws(StoreError) -> (head: AuditHead, code: [UInt8])? { nil }
    func saveAuditHead(_ head: AuditHead, mode: AuditHeadSaveMode) -> AuditHeadSave { .saved }
}
