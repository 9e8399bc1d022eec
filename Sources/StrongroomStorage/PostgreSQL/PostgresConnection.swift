internal import CPostgreSQL

/// One PostgreSQL connection (libpq) and its prepared statements: the backend for stores shared by
/// several service instances.
///
/// A store's tables live in one schema, named by Strongroom's own `schema=` URL parameter (taken out
/// before the rest goes to libpq) and set as the connection's `search_path`, so the engine's SQL is the
/// same on both backends. Parameters go as text, bytes as binary; a prepared statement's results come
/// back in binary format, what the simple query protocol runs as text (`PostgresResult`).
///
/// Thread safety: not thread-safe. A connection is confined to one thread at a time; the engine
/// keeps each one behind a lock.
public final class PostgresConnection: Database {
    /// The raw handle: `PGconn *`, closed in `deinit`.
    let handle: OpaquePointer
    /// Prepared statement names, keyed by the engine's SQL text.
    private var prepared: [String: String] = [:]
    /// The statement `preparedName` gave last, looked at before `prepared`: a service runs the same
    /// statement again and again (a lookup's, whose text is a kilobyte), and the same string compares
    /// equal at once, where the dictionary would hash all of it.
    private var lastPrepared: (sql: String, name: String)?
    /// Rows changed by the last statement (`PQcmdTuples`).
    private var lastChanges = 0
    /// The key of the advisory lock that serialises write transactions (see `transaction`); a
    /// statement that must wait for them takes it too (`pg_advisory_xact_lock`).
    public let writeLockKey: Int64
    /// The statements that set up a session: run after connecting and after a reconnect.
    private let sessionSetup: String
    /// True inside `transaction`: a connection lost there is not re-established until it ends, so
    /// the rest of the body cannot run outside the transaction it belonged to.
    var inTransaction = false
    /// The schema holding the store's tables.
    public let schema: String
    /// The channel this connection listens on (`listen`), subscribed again after a reconnect.
    private var listeningChannel: String?
    /// Set when the connection was re-established while listening: notifications sent meanwhile are lost.
    private var notificationsMayBeLost = false

    /// `resultFormat` 1 of `PQexecPrepared` and `PQsendQueryPrepared`: every column in binary format.
    static let binaryResults: Int32 = 1

    /// The schema a URL without `schema=` uses.
    public static let defaultSchema = "strongroom"

    /// Connects to the server named by `url` (a libpq connection URI, `postgresql://user@host:port/db`,
    /// plus an optional `schema=NAME` parameter).
    ///
    /// - Parameters:
    ///   - url: the connection URI.
    ///   - create: create the schema when it does not exist.
    ///   - writeLock: names the advisory lock this connection's write transactions take; connections
    ///     that must not wait for each other (a database and the audit log beside it) use different names.
    ///   - durableCommits: every commit of this session waits for its WAL to be flushed
    ///     (`synchronous_commit = on`), whatever the server's or the database's default, in this session
    ///     and in any it reconnects to.
    public init(url: String, create: Bool, writeLock: String, durableCommits: Bool = false) throws(DatabaseError) {
        let (connectionInfo, schema) = try PostgresConnection.split(url)
        guard let connection = unsafe PQconnectdb(connectionInfo) else {
            throw DatabaseError(code: .postgresql(sqlState: "08000"), message: "libpq could not allocate a connection")
        }
        guard unsafe PQstatus(connection) == CONNECTION_OK else {
            let message = unsafe PostgresConnection.trimmed(String(cString: PQerrorMessage(connection)))
            unsafe PQfinish(connection)
            throw DatabaseError(code: .postgresql(sqlState: "08000"), message: "cannot connect: \(message)")
        }
        unsafe self.handle = connection
        self.schema = schema
        // FNV-1a over schema and lock name: a stable 64-bit advisory lock key per (schema, purpose).
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "strongroom/\(schema)/\(writeLock)".utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        writeLockKey = Int64(bitPattern: hash)
        // Notices ("schema already exists, skipping") stay out of the tool's output; a lock wait ends
        // in an error after 30 s, as SQLite's busy timeout does after 10 s.
        sessionSetup = """
            SET client_min_messages = warning; SET lock_timeout = '30s';
            \(durableCommits ? "SET synchronous_commit = on;" : "")
            \(create ? "CREATE SCHEMA IF NOT EXISTS \"\(schema)\";" : "")
            SET search_path TO "\(schema)"
            """
        try execute(sessionSetup)
    }

    deinit {
        unsafe PQfinish(handle)
    }

    /// Splits Strongroom's `schema=` parameter off a connection URI; the schema must be a plain
    /// lower-case identifier (it is written into SQL, so nothing else is accepted).
    public static func split(_ url: String) throws(DatabaseError) -> (connectionInfo: String, schema: String) {
        guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
            throw DatabaseError(code: .postgresql(sqlState: "08000"), message: "not a PostgreSQL URL (postgresql://user@host:port/database?schema=name)")
        }
        guard let question = url.firstIndex(of: "?") else { return (url, defaultSchema) }
        var schema = defaultSchema
        var kept: [Substring] = []
        for parameter in url[url.index(after: question)...].split(separator: "&") {
            if parameter.hasPrefix("schema=") {
                schema = String(parameter.dropFirst(7))
            } else {
                kept.append(parameter)
            }
        }
        let valid = !schema.isEmpty && schema.utf8.count <= 63 && schema.utf8.allSatisfy {
            ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: "_")
        } && !(schema.utf8.first! >= UInt8(ascii: "0") && schema.utf8.first! <= UInt8(ascii: "9"))
        guard valid else {
            throw DatabaseError(code: .postgresql(sqlState: "08000"), message: "schema must be 1–63 characters of a–z, 0–9 and _, not starting with a digit")
        }
        let base = String(url[..<question])
        return (kept.isEmpty ? base : base + "?" + kept.joined(separator: "&"), schema)
    }

    /// `url` with its `schema=` parameter set to `schema`: appended to the query (which is kept, but
    /// for an earlier `schema` parameter, which this one replaces), before any `#fragment`, the name
    /// percent-encoded where a query needs it (RFC 3986 §3.4).
    public static func url(_ url: String, schema: String) -> String {
        var rest = Substring(url)
        var fragment = Substring("")
        if let hash = rest.firstIndex(of: "#") {
            fragment = rest[hash...]
            rest = rest[..<hash]
        }
        var query: [Substring] = []
        if let question = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: question)...].split(separator: "&")
                .filter { !$0.isEmpty && $0 != "schema" && !$0.hasPrefix("schema=") }
            rest = rest[..<question]
        }
        var name = ""
        for byte in schema.utf8 {
            // Unreserved characters and the sub-delimiters a query value may hold, less & = + (RFC 3986 §2).
            if (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7a) || "-._~!$'()*,;:@/?".utf8.contains(byte) {
                name.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let digits = Array("0123456789ABCDEF".utf8)
                name += "%" + String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]], as: UTF8.self)
            }
        }
        query.append(Substring("schema=" + name))
        return String(rest) + "?" + query.joined(separator: "&") + fragment
    }

    /// PostgreSQL.
    public var dialect: SQLDialect { .postgresql }

    /// Runs one or more statements through the simple query protocol.
    public func execute(_ sql: String) throws(DatabaseError) {
        try reconnectIfLost()
        let result = PostgresResult(unsafe PQexec(handle, sql))
        try check(result, sql: sql)
        lastChanges = result.changes
    }

    public func run(_ sql: String, _ values: [SQLValue]) throws(DatabaseError) {
        lastChanges = try query(sql, values).changes
    }

    public func forEachRow(_ sql: String, _ values: [SQLValue], _ row: (any Row) throws(DatabaseError) -> Void) throws(DatabaseError) {
        for each in try query(sql, values).rows(sql: sql) { try row(each) }
    }

    public func firstRow<T>(_ sql: String, _ values: [SQLValue], _ map: (any Row) throws(DatabaseError) -> T) throws(DatabaseError) -> T? {
        guard let first = try query(sql, values).rows(sql: sql).first else { return nil }
        return try map(first)
    }

    /// Runs `body` in a transaction that first takes this connection's advisory write lock, so write
    /// transactions on one store's database run one at a time, as on SQLite (`BEGIN IMMEDIATE`): the
    /// engine's read-then-write steps (current-KEK checks, consent tokens, rotation cursors) rely on it.
    /// A COMMIT that PostgreSQL turned into a rollback (the transaction had failed) is an error.
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS>
    public func transaction<T, Failure: DatabaseFailure>(_ body: () throws(Failure) -> T) throws(Failure) -> T {
        do { try execute("BEGIN; SELECT pg_advisory_xact_lock(\(writeLockKey))") } catch { throw Failure(error) }
        inTransaction = true
        defer { inTransaction = false }
        let value: T
        do {
            value = try body()
        } catch {
            _ = PostgresResult(unsafe PQexec(handle, "ROLLBACK"))
            throw error
        }
        // COMMIT ends the transaction whatever it answers: no ROLLBACK after it.
        let result = PostgresResult(unsafe PQexec(handle, "COMMIT"))
        do { try check(result, sql: "COMMIT") } catch { throw Failure(error) }
        guard result.commandStatus == "COMMIT" else {
            throw Failure(DatabaseError(code: .postgresql(sqlState: "40000"), message: "the transaction was rolled back by the server", sql: "COMMIT"))
        }
        return value
    }

    public var changes: Int { lastChanges }

    /// The version in the schema's `strongroom_schema_version` table (0 when it has none).
    public func schemaVersion() throws(DatabaseError) -> Int {
        guard try scalarText("SELECT to_regclass('strongroom_schema_version')::text") != nil else { return 0 }
        return Int(try scalarInteger("SELECT version FROM strongroom_schema_version") ?? 0)
    }

    public func setSchemaVersion(_ version: Int) throws(DatabaseError) {
        try execute("""
            CREATE TABLE IF NOT EXISTS strongroom_schema_version (version BIGINT NOT NULL);
            DELETE FROM strongroom_schema_version; INSERT INTO strongroom_schema_version VALUES (\(version))
            """)
    }

    /// Nothing to do here: PostgreSQL keeps a deleted row's old version until VACUUM reclaims it and
    /// its WAL until a checkpoint recycles it, both beyond a client's reach; SECURITY.md says what that
    /// means for erasure. Always true: no reader of this connection's making holds anything back.
    public func discardDeletedContent(waitingUpTo milliseconds: Int32?) -> Bool { true }

    /// Prepares `sql` once (with `?` rewritten to `$1…$n`) and runs it with `values`; its rows come in
    /// binary format (`PostgresResult`).
    private func query(_ sql: String, _ values: [SQLValue]) throws(DatabaseError) -> PostgresResult {
        try reconnectIfLost()
        let name = try preparedName(sql)
        let result = try withParameters(values, sql: sql) { count, pointers, lengths, formats in
            unsafe PostgresResult(PQexecPrepared(handle, name, count, pointers, lengths, formats, PostgresConnection.binaryResults))
        }
        try check(result, sql: sql)
        return result
    }

    /// The name of `sql`'s prepared statement, prepared first (with `?` rewritten to `$1…$n`) if it is not yet.
    func preparedName(_ sql: String) throws(DatabaseError) -> String {
        if let lastPrepared, lastPrepared.sql == sql { return lastPrepared.name }
        if let known = prepared[sql] {
            lastPrepared = (sql, known)
            return known
        }
        let name = "s\(prepared.count + 1)"
        let result = PostgresResult(unsafe PQprepare(handle, name, PostgresConnection.numberedParameters(sql), 0, nil))
        try check(result, sql: sql)
        prepared[sql] = name
        lastPrepared = (sql, name)
        return name
    }

    /// Calls `body` with `values` as libpq takes a statement's parameters: their count, values, lengths and
    /// formats (`PQexecPrepared`'s `nParams`, `paramValues`, `paramLengths`, `paramFormats`), valid for the call.
    func withParameters<T>(_ values: [SQLValue], sql: String,
                           _ body: (Int32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> T)
        throws(DatabaseError) -> T {
        // All parameters in one buffer: text as NUL-terminated UTF-8 (libpq reads text parameters up
        // to their NUL), bytes as binary with a length, so they need no escaping. The lengths, then the
        // formats, in one array: three allocations a statement, whatever its parameters.
        var buffer: [UInt8] = []
        buffer.reserveCapacity(values.reduce(1) { size, value in
            if case .blob(let bytes) = value { return size + bytes.count }
            return size + 24
        })
        let count = values.count
        // From `repeatElement`, specialised: `[Int32](repeating:count:)` takes the standard library's
        // unspecialised allocator, which looks up the storage's metadata on every call (about 45 ns).
        var lengthsAndFormats = Array(repeatElement(Int32(0), count: 2 * count))
        for (index, value) in values.enumerated() {
            let start = buffer.count
            switch value {
            case .null:
                lengthsAndFormats[index] = -1   // no value: a NULL pointer (libpq ignores its length)
                continue
            case .integer(let integer):
                buffer.append(contentsOf: String(integer).utf8)
            case .real(let real):
                buffer.append(contentsOf: "\(real)".utf8)
            case .text(let text):
                guard !text.utf8.contains(0) else {
                    throw DatabaseError(code: .postgresql(sqlState: "22000"), message: "PostgreSQL text cannot hold a NUL character", sql: sql)
                }
                buffer.append(contentsOf: text.utf8)
            case .blob(let bytes):
                buffer.append(contentsOf: bytes)
                lengthsAndFormats[count + index] = 1
            }
            lengthsAndFormats[index] = Int32(buffer.count - start)
            if lengthsAndFormats[count + index] == 0 { buffer.append(0) }
        }
        buffer.append(0)   // an address for an empty last value
        return unsafe buffer.withUnsafeBufferPointer { bytes in
            unsafe lengthsAndFormats.withUnsafeBufferPointer { lengthsAndFormats in
                unsafe withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: max(count, 1)) { pointers in
                    // Each value where the one before it ends (a text value's NUL after it).
                    var offset = 0
                    for index in 0..<count {
                        let length = unsafe Int(lengthsAndFormats[index])
                        guard length >= 0 else {
                            unsafe pointers.initializeElement(at: index, to: nil)
                            continue
                        }
                        unsafe pointers.initializeElement(at: index, to: UnsafeRawPointer(bytes.baseAddress! + offset).assumingMemoryBound(to: CChar.self))
                        offset += unsafe length + (lengthsAndFormats[count + index] == 0 ? 1 : 0)
                    }
                    return unsafe body(Int32(count), UnsafePointer(pointers.baseAddress), lengthsAndFormats.baseAddress,
                                       lengthsAndFormats.baseAddress.map { unsafe $0 + count })
                }
            }
        }
    }

    /// Rewrites SQLite's placeholders as PostgreSQL's, leaving quoted text and identifiers alone: a
    /// numbered `?N` becomes `$N`, and a bare `?` takes, as in SQLite, the number one greater than the
    /// largest already used. Related SQLite documentation: <https://www.sqlite.org/lang_expr.html#varparam>
    static func numberedParameters(_ sql: String) -> String {
        var output = ""
        output.reserveCapacity(sql.utf8.count + 16)
        var largest = 0
        var quote: Character?
        var characters = sql.makeIterator()
        var pending = characters.next()
        while let character = pending {
            pending = characters.next()
            if let open = quote {
                if character == open { quote = nil }
                output.append(character)
            } else if character == "'" || character == "\"" {
                quote = character
                output.append(character)
            } else if character == "?" {
                var digits = ""
                while let next = pending, next.isASCII, next.isNumber {
                    digits.append(next)
                    pending = characters.next()
                }
                let number = Int(digits) ?? largest + 1
                largest = max(largest, number)
                output += "$\(number)"
            } else {
                output.append(character)
            }
        }
        return output
    }

    /// Reconnects once when the server closed the connection (a restart or failover); prepared
    /// statements are gone with the session, so they are prepared again.
    func reconnectIfLost() throws(DatabaseError) {
        guard unsafe PQstatus(handle) != CONNECTION_OK else { return }
        guard !inTransaction else {
            throw DatabaseError(code: .postgresql(sqlState: "08006"), message: "connection lost inside a transaction, which was rolled back")
        }
        unsafe PQreset(handle)
        guard unsafe PQstatus(handle) == CONNECTION_OK else {
            throw DatabaseError(code: .postgresql(sqlState: "08006"), message: "connection lost: \(unsafe PostgresConnection.trimmed(String(cString: PQerrorMessage(handle))))")
        }
        prepared.removeAll()
        lastPrepared = nil
        let result = PostgresResult(unsafe PQexec(handle, sessionSetup))
        try check(result, sql: nil)
        if let listeningChannel {
            notificationsMayBeLost = true
            try check(PostgresResult(unsafe PQexec(handle, PostgresConnection.listenSQL(listeningChannel))), sql: nil)
        }
    }

    /// Subscribes the connection to notifications on `channel` (`LISTEN`), again after any reconnect.
    /// Related PostgreSQL documentation: <https://www.postgresql.org/docs/current/sql-listen.html>
    public func listen(_ channel: String) throws(DatabaseError) {
        try execute(PostgresConnection.listenSQL(channel))
        listeningChannel = channel
    }

    /// Whether a notification arrived on the channel the connection listens on since the last call, or
    /// may have been missed (the connection was re-established, or cannot be read). Reads only what the
    /// server has already sent: no round trip.
    /// The corresponding C functions are `PQconsumeInput` and `PQnotifies`.
    public func takeNotifications() -> Bool {
        var arrived = notificationsMayBeLost
        notificationsMayBeLost = false
        guard unsafe PQconsumeInput(handle) == 1 else { return true }
        while let notification = unsafe PQnotifies(handle) {
            arrived = true
            unsafe PQfreemem(notification)
        }
        return arrived
    }

    /// `LISTEN` for `channel`, quoted as an identifier.
    private static func listenSQL(_ channel: String) -> String {
        "LISTEN \"\(channel.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\""))\""
    }

    /// Throws the result's error unless it succeeded.
    func check(_ result: PostgresResult, sql: String?) throws(DatabaseError) {
        if let error = result.error(connection: handle, sql: sql) { throw error }
    }

    static func trimmed(_ message: String) -> String {
        String(message.split(separator: "\n").first ?? "").trimmingSpaces
    }
}

@available(*, unavailable, message: "A PostgresConnection is confined to one thread at a time; keep it behind a lock")
extension PostgresConnection: Sendable {}

extension String {
    /// The string without leading or trailing spaces.
    fileprivate var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
