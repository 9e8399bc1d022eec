/// A value bound to a statement parameter.
public enum SQLValue: Sendable, Equatable {
    /// SQL `NULL`.
    case null
    /// A 64-bit integer.
    case integer(Int64)
    /// A double.
    case real(Double)
    /// UTF-8 text.
    case text(String)
    /// Bytes.
    case blob([UInt8])
}

extension SQLValue {
    /// `.integer`, or `.null` for nil.
    public static func integer(_ value: Int64?) -> SQLValue { value.map(SQLValue.integer) ?? .null }
    /// `.integer` of an `Int`.
    public static func int(_ value: Int) -> SQLValue { .integer(Int64(value)) }
    /// `.text`, or `.null` for nil.
    public static func text(_ value: String?) -> SQLValue { value.map(SQLValue.text) ?? .null }
    /// `.blob`, or `.null` for nil.
    public static func blob(_ value: [UInt8]?) -> SQLValue { value.map(SQLValue.blob) ?? .null }
}
