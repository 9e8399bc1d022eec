internal import CPostgreSQL

/// A libpq result (`PGresult *`), cleared when the last row referring to it is gone.
///
/// A prepared statement's result (`PQexecPrepared`, `PQsendQueryPrepared`) comes in binary format
/// (`resultFormat` 1): an integer as its bytes in network order, `bytea` as its bytes, text as its UTF-8,
/// each read where libpq keeps it, with no digits to parse and no hex to decode. What the simple query
/// protocol runs (`PQexec`: session setup, a turn's first read) has no binary form and comes as text.
/// Each column says which (`PQfformat`), and `PostgresRow` reads both.
/// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-FORMAT-CODES>
final class PostgresResult {
    private let handle: OpaquePointer?
    /// Each column's format, read once (a row's reads then ask libpq for values only); nil for a binary
    /// column of a type not read, which `rows(sql:)` refuses. A constant: a class's variable would be
    /// checked for exclusive access on every read.
    private let formats: [PostgresColumnFormat?]

    init(_ handle: OpaquePointer?) {
        unsafe self.handle = handle
        formats = unsafe (0..<PQnfields(handle)).map { column in
            let oid = unsafe PQftype(handle, column)
            guard unsafe PQfformat(handle, column) == 1 else { return .text(isBytes: oid == PostgresColumnType.byteaOID) }
            return PostgresColumnType(oid: oid).map { .binary($0) }
        }
    }

    deinit {
        unsafe PQclear(handle)
    }

    /// The error this result reports, or nil when the command succeeded.
    func error(connection: OpaquePointer, sql: String?) -> DatabaseError? {
        guard let handle else {
            return DatabaseError(code: .postgresql(sqlState: "08006"), message: unsafe PostgresConnection.trimmed(String(cString: PQerrorMessage(connection))), sql: sql)
        }
        switch unsafe PQresultStatus(handle) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return nil
        default:
            // The primary message only: the DETAIL field can quote the values of a conflicting row.
            let state = unsafe PQresultErrorField(handle, Int32(UInt8(ascii: "C"))).map { unsafe String(cString: $0) } ?? "XX000"
            let connectionMessage = unsafe PostgresConnection.trimmed(String(cString: PQerrorMessage(connection)))
            let message = unsafe PQresultErrorField(handle, Int32(UInt8(ascii: "M"))).map { unsafe String(cString: $0) } ?? connectionMessage
            return DatabaseError(code: .postgresql(sqlState: state), message: message, sql: sql)
        }
    }

    var rowCount: Int32 { unsafe PQntuples(handle) }

    /// Rows changed by an INSERT, UPDATE or DELETE (0 for other commands).
    var changes: Int { unsafe Int(String(cString: PQcmdTuples(handle))) ?? 0 }

    /// True when the server waits for `COPY … FROM STDIN` data.
    var isCopyIn: Bool { unsafe PQresultStatus(handle) == PGRES_COPY_IN }

    /// The command tag ("COMMIT", "ROLLBACK", "INSERT 0 1", …).
    var commandStatus: String { unsafe String(cString: PQcmdStatus(handle)) }

    /// The rows, once every binary column is checked to have a type `PostgresRow` reads: a column of
    /// another type is a `DatabaseError` (SQLSTATE 42804, "datatype mismatch") before any row is read,
    /// never a value misread. `sql` names the statement in that error.
    func rows(sql: String?) throws(DatabaseError) -> LazyMapSequence<Range<Int32>, PostgresRow> {
        if let column = formats.firstIndex(of: nil) {
            throw DatabaseError(code: .postgresql(sqlState: "42804"),
                                message: "result column \(column + 1) has the type of OID \(unsafe PQftype(handle, Int32(column))), which Strongroom does not read",
                                sql: sql)
        }
        return (0..<rowCount).lazy.map { PostgresRow(result: self, row: $0) }
    }

    func isNull(row: Int32, column: Int32) -> Bool { unsafe PQgetisnull(handle, row, column) == 1 }

    /// How the column's values are written: text, or binary of a type `rows(sql:)` checked.
    func format(column: Int32) -> PostgresColumnFormat {
        guard let format = formats[Int(column)] else { preconditionFailure("a column of a type not read, which rows(sql:) refuses") }
        return format
    }

    /// Calls `body` with the value's bytes where libpq keeps them (its text form for a text column).
    func withBytes<T>(row: Int32, column: Int32, _ body: (UnsafeBufferPointer<UInt8>) -> T) -> T {
        let length = Int(unsafe PQgetlength(handle, row, column))
        let start = unsafe UnsafeRawPointer(PQgetvalue(handle, row, column)).assumingMemoryBound(to: UInt8.self)
        return unsafe body(UnsafeBufferPointer(start: start, count: length))
    }
}

/// How a result column's values are written (`PostgresResult.format(column:)`).
enum PostgresColumnFormat: Equatable {
    /// Text (PostgreSQL's output functions); `isBytes` for `bytea`, written `\x` and hex digits.
    case text(isBytes: Bool)
    /// Binary (PostgreSQL's send functions), of this type.
    case binary(PostgresColumnType)
}

/// The column types `PostgresRow` reads in binary format, by their OIDs, which are fixed for built-in
/// types (`pg_type.dat` in PostgreSQL's source). Every type the engine's statements return is here:
/// `bigint` and `integer` columns, `count(*)`, `max`, `nextval` (int8 and int4), `EXISTS` and
/// `bool_or` (bool), `bytea`, `text`, a literal (int4, or `unknown` text), `double precision`.
enum PostgresColumnType: Equatable {
    case boolean, bytes, text, int2, int4, int8, oid, float4, float8

    /// `bytea`'s OID.
    static let byteaOID: UInt32 = 17

    /// The type of OID `oid`, nil for one not read in binary.
    init?(oid: UInt32) {
        switch oid {
        case 16: self = .boolean
        case PostgresColumnType.byteaOID: self = .bytes
        case 19, 25, 705, 1042, 1043: self = .text   // name, text, unknown, character, character varying
        case 20: self = .int8
        case 21: self = .int2
        case 23: self = .int4
        case 26: self = .oid
        case 700: self = .float4
        case 701: self = .float8
        default: return nil
        }
    }
}

/// One row of a `PostgresResult`. Each accessor reads what the column holds, in either format, and a
/// column of another kind as its text form would read: `int64` of a boolean is 1 or 0, `text` of an
/// integer its digits, `blob` of anything but `bytea` or text the bytes of its text form.
struct PostgresRow: Row {
    let result: PostgresResult
    let row: Int32

    func isNull(_ index: Int) -> Bool { result.isNull(row: row, column: Int32(index)) }

    func int64(_ index: Int) -> Int64 {
        let column = Int32(index)
        guard !result.isNull(row: row, column: column) else { return 0 }
        switch result.format(column: column) {
        case .binary(.int8), .binary(.int4), .binary(.int2), .binary(.boolean):
            // Signed, in network order, of 8, 4, 2 or 1 byte(s) (a boolean's byte is 0 or 1).
            return result.withBytes(row: row, column: column) { PostgresRow.signedBigEndian($0) }
        case .binary(.oid):
            return result.withBytes(row: row, column: column) { Int64(PostgresRow.unsignedBigEndian($0)) }
        case .binary(.float4), .binary(.float8):
            let real = double(index)
            return real.isFinite && abs(real) < 0x1p63 ? Int64(real) : 0
        case .binary(.bytes):
            return 0   // as its text form, `\x` and hex digits, reads
        case .text, .binary(.text):
            return result.withBytes(row: row, column: column) { PostgresRow.integer(text: $0) }
        }
    }

    func double(_ index: Int) -> Double {
        let column = Int32(index)
        guard !result.isNull(row: row, column: column) else { return 0 }
        switch result.format(column: column) {
        case .binary(.float8):
            return result.withBytes(row: row, column: column) { Double(bitPattern: PostgresRow.unsignedBigEndian($0)) }
        case .binary(.float4):
            return result.withBytes(row: row, column: column) { Double(Float(bitPattern: UInt32(truncatingIfNeeded: PostgresRow.unsignedBigEndian($0)))) }
        case .binary(.int8), .binary(.int4), .binary(.int2), .binary(.boolean), .binary(.oid):
            return Double(int64(index))
        case .text, .binary(.bytes), .binary(.text):
            return text(index).flatMap(Double.init) ?? 0
        }
    }

    func text(_ index: Int) -> String? {
        let column = Int32(index)
        guard !result.isNull(row: row, column: column) else { return nil }
        switch result.format(column: column) {
        case .text, .binary(.text):
            return result.withBytes(row: row, column: column) { unsafe String(decoding: $0, as: UTF8.self) }
        case .binary(.bytes):
            // bytea's text form: \x and two lower-case hex digits a byte.
            return result.withBytes(row: row, column: column) { bytes in
                let digits = Array("0123456789abcdef".utf8)
                var text: [UInt8] = Array("\\x".utf8)
                text.reserveCapacity(2 + 2 * bytes.count)
                for byte in bytes {
                    text.append(digits[Int(byte >> 4)])
                    text.append(digits[Int(byte & 0x0F)])
                }
                return String(decoding: text, as: UTF8.self)
            }
        case .binary(.boolean):
            return int64(index) != 0 ? "t" : "f"
        case .binary(.float4), .binary(.float8):
            // PostgreSQL's words for the values without digits; otherwise Swift's shortest exact form.
            let real = double(index)
            return real.isNaN ? "NaN" : real.isInfinite ? (real < 0 ? "-Infinity" : "Infinity") : "\(real)"
        case .binary(.int8), .binary(.int4), .binary(.int2), .binary(.oid):
            return String(int64(index))
        }
    }

    func blob(_ index: Int) -> [UInt8]? {
        let column = Int32(index)
        guard !result.isNull(row: row, column: column) else { return nil }
        switch result.format(column: column) {
        case .binary(.bytes), .binary(.text), .text(isBytes: false):
            return result.withBytes(row: row, column: column) { unsafe Array($0) }
        case .text(isBytes: true):
            return result.withBytes(row: row, column: column) { PostgresRow.bytes(hex: $0) }
        case .binary:
            return text(index).map { Array($0.utf8) }
        }
    }

    /// Reads `bytea` and text where libpq keeps them, valid for this call (a check compared in place
    /// copies nothing); anything else as `blob` gives it.
    func withBlob<Result>(_ index: Int, _ body: (Span<UInt8>) -> Result) -> Result {
        let column = Int32(index)
        guard !result.isNull(row: row, column: column) else { return body([UInt8]().span) }
        switch result.format(column: column) {
        case .binary(.bytes), .binary(.text), .text(isBytes: false):
            return result.withBytes(row: row, column: column) { unsafe body($0.span) }
        default:
            let bytes = blob(index) ?? []
            return body(bytes.span)
        }
    }

    /// The signed integer of 1, 2, 4 or 8 bytes in network order (0 for another length).
    private static func signedBigEndian(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64 {
        let raw = UnsafeRawBufferPointer(bytes)
        switch raw.count {
        case 8: return unsafe Int64(bigEndian: raw.loadUnaligned(as: Int64.self))
        case 4: return unsafe Int64(Int32(bigEndian: raw.loadUnaligned(as: Int32.self)))
        case 2: return unsafe Int64(Int16(bigEndian: raw.loadUnaligned(as: Int16.self)))
        case 1: return unsafe Int64(Int8(bitPattern: raw[0]))
        default: return 0
        }
    }

    /// The unsigned integer of 4 or 8 bytes in network order (0 for another length).
    private static func unsignedBigEndian(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        let raw = UnsafeRawBufferPointer(bytes)
        switch raw.count {
        case 8: return unsafe UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self))
        case 4: return unsafe UInt64(UInt32(bigEndian: raw.loadUnaligned(as: UInt32.self)))
        default: return 0
        }
    }

    /// A decimal integer's text form read as far as it goes ("t", a boolean's text form, is 1).
    private static func integer(text bytes: UnsafeBufferPointer<UInt8>) -> Int64 {
        if bytes.count == 1, unsafe bytes[0] == UInt8(ascii: "t") { return 1 }
        // The magnitude in 64 unsigned bits, so that Int64.min's reads back without overflow.
        var magnitude: UInt64 = 0
        var negative = false
        for (position, byte) in unsafe bytes.enumerated() {
            if position == 0, byte == UInt8(ascii: "-") { negative = true; continue }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { break }
            magnitude = magnitude &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
        }
        return Int64(bitPattern: negative ? 0 &- magnitude : magnitude)
    }

    /// The bytes of `bytea`'s text form (`\x` and hex digits); anything else as it is.
    private static func bytes(hex text: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        guard text.count >= 2, unsafe text[0] == UInt8(ascii: "\\"), unsafe text[1] == UInt8(ascii: "x") else { return unsafe Array(text) }
        func nibble(_ digit: UInt8) -> UInt8 {
            digit <= UInt8(ascii: "9") ? digit &- UInt8(ascii: "0") : (digit | 0x20) &- UInt8(ascii: "a") &+ 10
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((text.count - 2) / 2)
        var position = 2
        while position + 1 < text.count {
            unsafe bytes.append(nibble(text[position]) << 4 | nibble(text[position + 1]))
            position += 2
        }
        return bytes
    }
}
