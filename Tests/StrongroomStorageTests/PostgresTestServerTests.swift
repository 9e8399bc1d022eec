import StrongroomStorage
import StrongroomTestSupport
import Testing

@Suite("PostgreSQL URLs: the schema parameter and the test server (no server needed)")
struct PostgresTestServerTests {
    @Test("schema= joins a URL without a query with ?")
    func withoutQuery() {
        #expect(PostgresConnection.url("postgresql://strongroom@127.0.0.1:55432/postgres", schema: "t_abc")
                == "postgresql://strongroom@127.0.0.1:55432/postgres?schema=t_abc")
        #expect(PostgresConnection.url("postgresql://h/db?", schema: "t_abc") == "postgresql://h/db?schema=t_abc")
    }

    @Test("schema= joins a URL with a query with &, keeping the query and replacing an earlier schema")
    func withQuery() {
        #expect(PostgresConnection.url("postgresql://u:p@h:5432/db?sslmode=require&connect_timeout=5", schema: "t_abc")
                == "postgresql://u:p@h:5432/db?sslmode=require&connect_timeout=5&schema=t_abc")
        #expect(PostgresConnection.url("postgresql://h/db?schema=old&sslmode=disable", schema: "t_new")
                == "postgresql://h/db?sslmode=disable&schema=t_new")
    }

    @Test("a schema name is percent-encoded where a query needs it, and goes before a fragment")
    func encodingAndFragment() {
        #expect(PostgresConnection.url("postgresql://h/db", schema: "a&b=c d") == "postgresql://h/db?schema=a%26b%3Dc%20d")
        #expect(PostgresConnection.url("postgresql://h/db?x=1#frag", schema: "t_1") == "postgresql://h/db?x=1&schema=t_1#frag")
    }

    @Test("unique schema names are t_ and 24 lowercase hex digits, and differ")
    func uniqueSchemas() {
        let names = (0..<100).map { _ in PostgresTestServer.uniqueSchema() }
        #expect(Set(names).count == names.count)
        for name in names {
            #expect(name.count == 26 && name.hasPrefix("t_"))
            #expect(name.dropFirst(2).allSatisfy { "0123456789abcdef".contains($0) })
        }
    }

    @Test("the variable is either a URL, off, or missing with a message saying what to do")
    func states() {
        if PostgresTestServer.isOff {
            #expect(PostgresTestServer.url == nil && PostgresTestServer.missingMessage == nil)
            PostgresTestServer.announceIfOff()
        } else if let url = PostgresTestServer.url {
            #expect(PostgresTestServer.missingMessage == nil)
            #expect(PostgresTestServer.url(schema: "t_x") == PostgresConnection.url(url, schema: "t_x"))
        } else {
            let message = PostgresTestServer.missingMessage ?? ""
            #expect(message.contains("bash .ci/test") && message.contains(PostgresTestServer.variable))
        }
    }
}
