internal import CSQLite

extension SQLiteConnection {
    /// Defines the SQL function `name` of `argumentCount` arguments on this connection: it answers 1 or 0
    /// as `predicate` does for its arguments, which it reads like the columns of a row.
    ///
    /// Registered deterministic and `SQLITE_DIRECTONLY`, so schema objects (triggers, views) cannot
    /// call it: only this connection's own statements do.
    /// Related SQLite documentation: <https://www.sqlite.org/c3ref/create_function.html>
    public func definePredicate(_ name: String, argumentCount: Int, _ predicate: @escaping (any Row) -> Bool) throws(DatabaseError) {
        let box = unsafe Unmanaged.passRetained(PredicateBox(predicate)).toOpaque()
        // On failure SQLite calls the destructor itself, which releases the box.
        let code = unsafe sqlite3_create_function_v2(
            handle, name, Int32(argumentCount), SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, box,
            { context, count, values in
                let box = unsafe Unmanaged<PredicateBox>.fromOpaque(sqlite3_user_data(context)!).takeUnretainedValue()
                let answer = unsafe box.predicate(FunctionArguments(values: values!, count: Int(count)))
                unsafe sqlite3_result_int(context, answer ? 1 : 0)
            },
            nil, nil,
            { pointer in unsafe Unmanaged<PredicateBox>.fromOpaque(pointer!).release() })
        guard code == SQLITE_OK else { throw unsafe SQLiteConnection.error(handle, code: code, sql: nil) }
    }
}

/// Keeps a predicate alive for as long as SQLite holds the function that calls it.
private final class PredicateBox {
    let predicate: (any Row) -> Bool

    init(_ predicate: @escaping (any Row) -> Bool) {
        self.predicate = predicate
    }
}

/// The arguments of one SQL function call (`sqlite3_value **`), valid only during that call.
private struct FunctionArguments: Row {
    let values: UnsafeMutablePointer<OpaquePointer?>
    let count: Int

    private func value(_ index: Int) -> OpaquePointer? {
        precondition(index < count, "SQL function argument \(index) of \(count)")
        return unsafe values[index]
    }

    func isNull(_ index: Int) -> Bool { unsafe sqlite3_value_type(value(index)) == SQLITE_NULL }

    func int64(_ index: Int) -> Int64 { unsafe sqlite3_value_int64(value(index)) }

    func double(_ index: Int) -> Double { unsafe sqlite3_value_double(value(index)) }

    func text(_ index: Int) -> String? {
        let argument = value(index)
        guard let pointer = unsafe sqlite3_value_text(argument) else { return nil }
        return unsafe String(decoding: UnsafeBufferPointer(start: pointer, count: Int(sqlite3_value_bytes(argument))), as: UTF8.self)
    }

    /// The argument's bytes where SQLite keeps them, valid for this call: a predicate that only
    /// compares or hashes them copies nothing.
    func withBlob<Result>(_ index: Int, _ body: (Span<UInt8>) -> Result) -> Result {
        let argument = value(index)
        guard let pointer = unsafe sqlite3_value_blob(argument) else { return body([UInt8]().span) }
        let bytes = unsafe pointer.assumingMemoryBound(to: UInt8.self)
        return unsafe body(UnsafeBufferPointer(start: bytes, count: Int(sqlite3_value_bytes(argument))).span)
    }

    func blob(_ index: Int) -> [UInt8]? {
        let argument = value(index)
        if unsafe sqlite3_value_type(argument) == SQLITE_NULL { return nil }
        guard let pointer = unsafe sqlite3_value_blob(argument) else { return [] }
        return unsafe Array(UnsafeRawBufferPointer(start: pointer, count: Int(sqlite3_value_bytes(argument))))
    }
}
