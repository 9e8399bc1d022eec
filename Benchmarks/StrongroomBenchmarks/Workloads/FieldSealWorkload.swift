import Foundation
import StrongroomCrypto

/// The cost of sealing one short field (15 bytes, an e-mail address's size) with the key schedule set
/// up once and reused, as the store does, against setting it up for every field ("baseline" here:
/// what a naive per-field `EVP_EncryptInit` with the key pays).
struct FieldSealWorkload {
    let operations = 200_000

    func run() throws -> BenchmarkResult {
        let key = try SecretKey.random()
        let cipher = try AES256GCM(key: key)
        let plaintext = Array("ada@example.org".utf8)
        let aad = [UInt8](repeating: 1, count: 40)
        let nonce = try SecureRandom.bytes(count: 12)
        var reused = LatencySample()
        var perField = LatencySample()
        reused.reserve(operations)
        perField.reserve(operations)
        for _ in 0..<10_000 {
            var output: [UInt8] = []
            try cipher.seal(plaintext, nonce: nonce, authenticating: aad, appendingTo: &output)
        }
        for _ in 0..<operations {
            var output: [UInt8] = []
            output.reserveCapacity(64)
            try reused.measure { try cipher.seal(plaintext, nonce: nonce, authenticating: aad, appendingTo: &output) }
            blackHole(output)
        }
        for _ in 0..<operations {
            var output: [UInt8] = []
            output.reserveCapacity(64)
            try perField.measure { try AES256GCM(key: key).seal(plaintext, nonce: nonce, authenticating: aad, appendingTo: &output) }
            blackHole(output)
        }
        return BenchmarkResult(
            workload: "field-seal", n: plaintext.count, operations: operations, opsPerS: reused.operationsPerSecond,
            baselineOpsPerS: perField.operationsPerSecond, ratio: reused.operationsPerSecond / perField.operationsPerSecond,
            p50Us: reused.percentile(0.5), p99Us: reused.percentile(0.99), p999Us: reused.percentile(0.999),
            baselineP50Us: perField.percentile(0.5), baselineP99Us: perField.percentile(0.99), peakRssMb: peakResidentMegabytes(),
            notes: "AES-256-GCM seal of a 15-byte field with 40 bytes of AAD: key schedule reused (the store) vs set up per field (baseline here)")
    }
}
