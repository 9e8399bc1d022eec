import Foundation
import StrongroomStorage

/// The PostgreSQL server the tests use, from the `STRONGROOM_TEST_POSTGRES` environment variable.
///
/// `bash .ci/test` (the README's test command) sets the variable: to the URL of a throw-away cluster it
/// starts, or leaves a value the developer gave alone. The variable has three states:
///
/// - a URL (`postgresql://user@host:port/db`): ``url`` is that URL; tests run against that server, each
///   in its own schema (``uniqueSchema()``, ``url(schema:)``), so tests never share tables;
/// - `off`: ``isOff`` is true and ``url`` is nil; the PostgreSQL half is skipped, and ``announceIfOff()``
///   says so loudly;
/// - unset or empty: a setup mistake, not a reason to skip. ``url`` is nil and ``missingMessage`` says
///   what to do; a test turns it into a failure, so a plain `swift test` never skips silently:
///
/// ```swift
/// guard let url = PostgresTestServer.url(schema: PostgresTestServer.uniqueSchema()) else {
///     if let message = PostgresTestServer.missingMessage { Issue.record(Comment(rawValue: message)) }
///     PostgresTestServer.announceIfOff()
///     return
/// }
/// ```
public enum PostgresTestServer {
    /// The name of the environment variable that names the server: `STRONGROOM_TEST_POSTGRES`.
    public static let variable = "STRONGROOM_TEST_POSTGRES"

    /// The variable's value with surrounding blanks removed; nil when unset or empty.
    private static var value: String? {
        let raw = ProcessInfo.processInfo.environment[variable]?.trimmingCharacters(in: .whitespacesAndNewlines)
        return raw?.isEmpty == false ? raw : nil
    }

    /// True when `STRONGROOM_TEST_POSTGRES=off` (in any letter case): the PostgreSQL half is skipped.
    public static var isOff: Bool {
        value?.lowercased() == "off"
    }

    /// The server's URL; nil when the variable is `off`, and nil too when it is unset, which is a setup
    /// mistake that ``missingMessage`` describes and tests must report as a failure (never skip silently).
    public static var url: String? {
        guard let value, !isOff else { return nil }
        return value
    }

    /// Non-nil when the variable is unset or empty: a loud message telling the developer to run
    /// `bash .ci/test` or set the variable. Tests record it as an issue (`Issue.record`), so the
    /// PostgreSQL half fails rather than silently skips; nil when the variable is a URL or `off`.
    public static var missingMessage: String? {
        guard value == nil else { return nil }
        return """
            \(variable) is not set, so the PostgreSQL half of the suite cannot run. Run the tests with \
            `bash .ci/test` (it starts a throw-away PostgreSQL cluster), or set \(variable)=postgresql://USER@HOST:PORT/DB \
            to use a server you run, or \(variable)=off to test the SQLite half only.
            """
    }

    /// A fresh, unique schema name for one test: `t_` followed by 24 lowercase hex digits (96 random bits),
    /// so tests never share tables.
    public static func uniqueSchema() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = (0..<24).map { _ in String(generator.next(upperBound: UInt8(16)), radix: 16) }
        return "t_" + digits.joined()
    }

    /// ``url`` with `schema=NAME` added as a query parameter; nil when ``url`` is nil.
    ///
    /// `schema` is Strongroom's own URL parameter: the engine removes it before handing the URL to libpq
    /// and puts the store's tables in that schema.
    public static func url(schema: String) -> String? {
        url.map { PostgresConnection.url($0, schema: schema) }
    }

    /// Prints, once per process, a loud banner to standard error when `STRONGROOM_TEST_POSTGRES=off`;
    /// does nothing otherwise. Call it wherever a PostgreSQL test is skipped.
    public static func announceIfOff() {
        if isOff { _ = offBanner }
    }

    /// Writes the banner the first time it is read (a static's initialiser runs once, thread-safely).
    private static let offBanner: Void = {
        let rule = String(repeating: "*", count: 100)
        let banner = """
            \(rule)
            ***  \(variable)=off: THE POSTGRESQL HALF OF THE TEST SUITE IS SKIPPED.
            ***  Only the SQLite backend is being tested. Run `bash .ci/test` to test both backends.
            \(rule)

            """
        FileHandle.standardError.write(Data(banner.utf8))
    }()
}
