import StrongroomCrypto
import StrongroomTestSupport
import Testing

@Suite("Known answers of the primitives")
struct PrimitiveTests {
    @Test("HKDF-SHA256, RFC 5869 test case 1")
    func hkdfRFC5869() throws {
        let okm = try HKDFSHA256.deriveKey(inputKeyMaterial: SecretKey(copying: hexBytes("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b")),
                                           salt: hexBytes("000102030405060708090a0b0c"), info: hexBytes("f0f1f2f3f4f5f6f7f8f9"),
                                           outputByteCount: 42)
        #expect(okm == SecretKey(copying: hexBytes("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")))
    }
}
