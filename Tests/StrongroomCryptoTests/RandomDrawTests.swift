import StrongroomCrypto
import Testing

@Suite("Random bytes drawn at once and handed out in pieces")
struct RandomDrawTests {
    @Test("pieces of one draw, and of the draws that follow when it runs out, never repeat a nonce")
    func piecesNeverRepeat() throws {
        var draw = try RandomDraw(byteCount: 5 * 12)
        var nonces = Set<[UInt8]>()
        // 5 nonces from the first draw, then 9,995 more from the requests made when it runs out.
        for _ in 0..<10_000 {
            let nonce = try draw.take(12)
            #expect(nonce.count == 12)
            nonces.insert(nonce)
        }
        #expect(nonces.count == 10_000)
        // Not all zero or constant: 10,000 random 96-bit values hold every byte value many times.
        #expect(Set(nonces.joined()).count == 256)
    }

    @Test("pieces of mixed sizes, a piece larger than the whole draw, and an empty draw")
    func sizes() throws {
        var draw = try RandomDraw(byteCount: 16)
        let identifier = try draw.take(4), nonce = try draw.take(12)
        #expect(identifier.count == 4 && nonce.count == 12)
        let large = try draw.take(100)
        #expect(large.count == 100 && Set(large).count > 1)
        var empty = try RandomDraw(byteCount: 0)
        #expect(try empty.take(0).isEmpty)
        let afterEmpty = try empty.take(12)
        #expect(afterEmpty.count == 12 && afterEmpty != nonce)
    }

    @Test("keys come from the private generator: distinct, full length, every length allowed")
    func privateBytes() throws {
        #expect(try SecureRandom.privateBytes(count: 0).isEmpty)
        let keys = try (0..<1_000).map { _ in try SecureRandom.privateBytes(count: 32) }
        #expect(Set(keys).count == 1_000 && keys.allSatisfy { $0.count == 32 })
        let first = try SecretKey.random(), second = try SecretKey.random()
        #expect(first.byteCount == 32 && first != second)
    }

    @Test("keys drawn at once: distinct, full length, of the length asked for, and still distinct past the draw's expected need")
    func secretKeyDraw() throws {
        // 8 keys from the first draw, then 992 more from the requests made when it runs out.
        var draw = try SecretKeyDraw(keys: 8)
        let keys = try (0..<1_000).map { _ in try draw.take() }
        #expect(keys.allSatisfy { $0.byteCount == 32 })
        #expect(Set(keys.map { $0.base64EncodedBytes() }).count == 1_000)
        var short = try SecretKeyDraw(keys: 2, byteCount: 16)
        let first = try short.take(), second = try short.take(), third = try short.take()
        #expect(first.byteCount == 16 && third.byteCount == 16 && first != second && second != third && first != third)
        var none = try SecretKeyDraw(keys: 0)
        #expect(try none.take().byteCount == 32)
    }
}
