/// Turns each personal field into the bytes that get encrypted, and back.
///
/// A compact length-prefixed layout (LEB128 lengths, UTF-8 strings) rather than JSON: it is on the
/// caller-ID path, where every candidate's phone list is decoded.
enum FieldCodec {
    /// The plaintext bytes of `field` in `data`, or nil when the field is absent.
    static func encode(_ field: PersonalField, of data: PersonalData) -> [UInt8]? {
        switch field {
        case .name: return data.name.map { Array($0.utf8) }
        case .company: return data.company.map { Array($0.utf8) }
        case .address: return data.address.map { Array($0.utf8) }
        case .notes: return data.notes.map { Array($0.utf8) }
        case .photo: return data.photo
        case .emails: return data.emails.map { encodeStrings($0) }
        case .phones: return data.phones.map { encodeStrings($0.flatMap { [$0.label, $0.number] }) }
        case .customFields:
            return data.customFields.map { fields in
                encodeStrings(fields.sorted { $0.key < $1.key }.flatMap { [$0.key, $0.value] })
            }
        }
    }

    /// Sets `field` of `data` from its decrypted bytes.
    static func decode(_ field: PersonalField, from bytes: [UInt8], into data: inout PersonalData) throws(FieldCodecError) {
        switch field {
        case .name: data.name = try string(bytes)
        case .company: data.company = try string(bytes)
        case .address: data.address = try string(bytes)
        case .notes: data.notes = try string(bytes)
        case .photo: data.photo = bytes
        case .emails: data.emails = try decodeStrings(bytes)
        case .phones:
            let flat = try decodeStrings(bytes)
            guard flat.count.isMultiple(of: 2) else { throw .malformed }
            data.phones = stride(from: 0, to: flat.count, by: 2).map { LabeledPhone(label: flat[$0], number: flat[$0 + 1]) }
        case .customFields:
            let flat = try decodeStrings(bytes)
            guard flat.count.isMultiple(of: 2) else { throw .malformed }
            var fields: [String: String] = [:]
            for index in stride(from: 0, to: flat.count, by: 2) { fields[flat[index]] = flat[index + 1] }
            data.customFields = fields
        }
    }

    private static func string(_ bytes: [UInt8]) throws(FieldCodecError) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .malformed }
        return text
    }

    static func encodeStrings(_ strings: [String]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(strings.reduce(1) { $0 + $1.utf8.count + 1 })
        appendLength(strings.count, to: &output)
        for string in strings {
            appendLength(string.utf8.count, to: &output)
            output.append(contentsOf: string.utf8)
        }
        return output
    }

    static func decodeStrings(_ bytes: [UInt8]) throws(FieldCodecError) -> [String] {
        var position = 0
        let count = try readLength(bytes, at: &position)
        // Each string needs at least its length byte: a count beyond that is corrupt, not a huge allocation.
        guard count <= bytes.count - position else { throw .malformed }
        var strings: [String] = []
        strings.reserveCapacity(count)
        for _ in 0..<count {
            let length = try readLength(bytes, at: &position)
            guard length <= bytes.count - position else { throw .malformed }
            guard let string = String(validating: bytes[position..<position + length], as: UTF8.self) else {
                throw .malformed
            }
            strings.append(string)
            position += length
        }
        guard position == bytes.count else { throw .malformed }
        return strings
    }

    private static func appendLength(_ length: Int, to output: inout [UInt8]) {
        var value = UInt64(length)
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value != 0 { byte |= 0x80 }
            output.append(byte)
        } while value != 0
    }

    private static func readLength(_ bytes: [UInt8], at position: inout Int) throws(FieldCodecError) -> Int {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < bytes.count, shift < 35 else { throw .malformed }
            let byte = bytes[position]
            position += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return Int(value) }
            shift += 7
        }
    }
}

/// Decrypted bytes that do not decode as their field's layout (only possible with a bug or a forged key).
enum FieldCodecError: Error {
    case malformed
}
