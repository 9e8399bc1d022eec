import Foundation
import Strongroom

/// `strongroom-bench`: Strongroom's speed as ratios against plain SQLite measured in the same run.
@main
enum StrongroomBench {
    static let usage = """
        Usage: strongroom-bench WORKLOAD [--contacts N] [--small N] [--lookups M] [--backend sqlite|postgres]
                                [--clients N] [--audit-durability written|synced] [--batch N] [--json]

        Workloads: callerid, import, rotate-master, rotate-kek, rotate-data, rotate-index, rotate-all,
        audit-overhead, audit-verify, field-seal, export-all, all (every one but scaling and rotate-all), scaling.
        Each reports its figure next to a plain-SQLite baseline doing the same job in the same run
        (numbers in clear, an index, prepared statements; for callerid, import and export-all written in C
        against the sqlite3 API), and the ratio.
        scaling times each per-subject operation (create, update, erase, call record, consent, a step
        of each rotation) in a store of --small contacts (default 10000, at least \(ScalingWorkload.minimumContacts)) and one of
        --contacts, both open and timed in turns (three rounds; the whole-store rotations two), and
        fails (exit 1, a FAIL line) when one's cheapest round costs more than 1.5 times the CPU time
        in the large store as in the small one.
        rotate-all runs the four rotations of one store in turn (master, KEK, data, index) and reports
        each and their sum, judged against 10 minutes per million subjects.
        Build with -c release: a debug build is refused.

          --contacts N   contacts to load (default: callerid 1000000, rotate-master 1000000,
                         rotate-all 1000000 (postgres 100000); import, rotate-kek, rotate-data,
                         rotate-index, audit-overhead and export-all 100000;
                         scaling: the large store, 200000; audit-verify: entries, 300000)
          --small N      scaling: contacts in the small store (default 10000)
          --lookups M    caller-ID lookups to time (default 200000)
          --backend B    callerid, import, export-all, rotate-kek, rotate-data, rotate-index and
                         rotate-all: sqlite (default) or postgres, which runs the store and a
                         plain-PostgreSQL baseline in fresh schemas (dropped afterwards) on the server
                         named by --postgres URL or STRONGROOM_BENCH_POSTGRES (default contacts on
                         postgres: 100000; callerid's baseline is C through libpq, and its notes
                         give a lookup's CPU time in the client (its own code and the kernel's) and,
                         on a server on this machine, in the server; import's: prepared multi-row
                         INSERTs, with COPY reported beside it)
          --clients N    callerid only: N threads looking up at once, each with its own store
                         handle and baseline connection; aggregate lookups/s and p99 (default 1)
          --audit-durability D
                         callerid only: the store's audit durability, written (default) or synced
                         (each entry flushed to stable storage before the answer)
          --batch N      import on sqlite: rows to a transaction, for the store's import and
                         its baselines alike (default \(ImportOptions().batchSize), the import's own default)
          --json         one JSON object per workload per line

        Example:
          swift run -c release strongroom-bench callerid --contacts 1000000
          swift run -c release strongroom-bench scaling --contacts 1000000 --json
          swift run -c release strongroom-bench callerid --backend postgres \\
              --postgres postgresql://bench@127.0.0.1:5432/bench
          swift run -c release strongroom-bench import --backend postgres --contacts 100000
          swift run -c release strongroom-bench callerid --clients 8 --audit-durability synced
        """

    static func main() {
        var debug = false
        assert({ debug = true; return true }())
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.isEmpty || arguments.contains("--help") {
            print(usage)
            exit(arguments.isEmpty ? 2 : 0)
        }
        if debug {
            FileHandle.standardError.write(Data("strongroom-bench: a debug build measures nothing useful; build with -c release\n".utf8))
            exit(2)
        }
        func option(_ name: String) -> Int? {
            guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
            defer { arguments.removeSubrange(index...(index + 1)) }
            return Int(arguments[index + 1])
        }
        let contacts = option("--contacts")
        let lookups = option("--lookups") ?? 200_000
        let small = option("--small")
        let clients = option("--clients") ?? 1
        let batch = option("--batch") ?? ImportOptions().batchSize
        guard batch >= 1 else {
            FileHandle.standardError.write(Data("strongroom-bench: --batch is a number of rows, 1 or more\n".utf8))
            exit(2)
        }
        guard clients >= 1 else {
            FileHandle.standardError.write(Data("strongroom-bench: --clients is a number of clients, 1 or more\n".utf8))
            exit(2)
        }
        func textOption(_ name: String) -> String? {
            guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
            defer { arguments.removeSubrange(index...(index + 1)) }
            return arguments[index + 1]
        }
        let backend: BenchmarkBackend
        switch textOption("--backend") ?? "sqlite" {
        case "sqlite":
            backend = .sqlite
        case "postgres", "postgresql":
            guard let url = textOption("--postgres") ?? ProcessInfo.processInfo.environment["STRONGROOM_BENCH_POSTGRES"] else {
                FileHandle.standardError.write(Data("strongroom-bench: --backend postgres needs --postgres URL or STRONGROOM_BENCH_POSTGRES\n".utf8))
                exit(2)
            }
            backend = .postgres(url: url)
        default:
            FileHandle.standardError.write(Data("strongroom-bench: --backend is sqlite or postgres\n".utf8))
            exit(2)
        }
        var auditDurability: AuditDurability?
        if let durability = textOption("--audit-durability") {
            guard let chosen = AuditDurability(rawValue: durability) else {
                FileHandle.standardError.write(Data("strongroom-bench: --audit-durability is written or synced\n".utf8))
                exit(2)
            }
            auditDurability = chosen
        }
        let json = arguments.contains("--json")
        arguments.removeAll { $0 == "--json" }
        let workloads = ["callerid", "import", "rotate-master", "rotate-kek", "rotate-data", "rotate-index", "rotate-all", "audit-overhead",
                         "audit-verify", "field-seal", "export-all", "scaling"]
        guard let workload = arguments.first, (workloads + ["all"]).contains(workload), arguments.count == 1 else {
            FileHandle.standardError.write(Data("strongroom-bench: unknown arguments \(arguments); see --help\n".utf8))
            exit(2)
        }
        let postgresWorkloads = ["callerid", "import", "export-all", "rotate-kek", "rotate-data", "rotate-index", "rotate-all"]
        if case .postgres = backend, !postgresWorkloads.contains(workload) {
            FileHandle.standardError.write(Data("strongroom-bench: --backend postgres runs \(postgresWorkloads.joined(separator: ", ")) only\n".utf8))
            exit(2)
        }
        do {
            var results: [BenchmarkResult] = []
            if workload == "callerid" || workload == "all" {
                let defaultContacts = if case .postgres = backend { 100_000 } else { 1_000_000 }
                results.append(try CallerIDWorkload(contacts: contacts ?? defaultContacts, lookups: lookups, backend: backend,
                                                    clients: clients, auditDurability: auditDurability).run())
            }
            if workload == "import", case .postgres = backend {
                results.append(try PostgresImportWorkload(contacts: contacts ?? 100_000, backend: backend).run())
            } else if workload == "import" || workload == "all" {
                results.append(try ImportWorkload(contacts: contacts ?? 100_000, batch: batch).run())
            }
            if workload == "rotate-master" || workload == "all" {
                results.append(try RotateMasterWorkload(contacts: contacts ?? 1_000_000).run())
            }
            for kind in ["kek", "data", "index"] where workload == "rotate-\(kind)" || workload == "all" {
                results.append(try RotateWorkload(kind: kind, contacts: contacts ?? 100_000, backend: backend).run())
            }
            if workload == "rotate-all" {
                let defaultContacts = if case .postgres = backend { 100_000 } else { 1_000_000 }
                results.append(contentsOf: try RotateAllWorkload(contacts: contacts ?? defaultContacts, backend: backend).run())
            }
            if workload == "audit-overhead" || workload == "all" {
                results.append(try AuditOverheadWorkload(contacts: contacts ?? 100_000, lookups: min(lookups, 100_000)).run())
            }
            if workload == "audit-verify" || workload == "all" {
                results.append(try AuditVerifyWorkload(entries: contacts ?? 300_000).run())
            }
            if workload == "field-seal" || workload == "all" {
                results.append(try FieldSealWorkload().run())
            }
            if workload == "export-all" || workload == "all" {
                results.append(try ExportAllWorkload(contacts: contacts ?? 100_000, backend: backend).run())
            }
            if workload == "scaling" {
                let (small, large) = (small ?? 10_000, contacts ?? 200_000)
                guard small >= ScalingWorkload.minimumContacts, large >= small else {
                    FileHandle.standardError.write(Data("strongroom-bench: scaling needs --small of \(ScalingWorkload.minimumContacts) or more and --contacts no smaller\n".utf8))
                    exit(2)
                }
                results.append(contentsOf: try ScalingWorkload(small: small, large: large).run())
            }
            report(results, json: json)
            let failures = results.filter { $0.smallN != nil && $0.ratio > ScalingWorkload.limit }
            for failure in failures {
                FileHandle.standardError.write(Data(String(format: "FAIL %@: %.2f× the CPU time per operation at %d contacts as at %d (limit %.1f×)\n",
                                                           failure.workload as NSString, failure.ratio, failure.n, failure.smallN ?? 0,
                                                           ScalingWorkload.limit).utf8))
            }
            if !failures.isEmpty { exit(1) }
        } catch {
            FileHandle.standardError.write(Data("strongroom-bench: \(error)\n".utf8))
            exit(1)
        }
    }

    static func report(_ results: [BenchmarkResult], json: Bool) {
        if json {
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.sortedKeys]
            for result in results { print(String(decoding: try! encoder.encode(result), as: UTF8.self)) }
            return
        }
        let scaling = results.filter { $0.smallN != nil }
        if let first = scaling.first {
            print("operation (CPU µs each)  at \(first.smallN ?? 0)".padding(toLength: 36, withPad: " ", startingAt: 0)
                  + "at \(first.n)".padding(toLength: 14, withPad: " ", startingAt: 0) + "ratio")
            for result in scaling {
                print(result.workload.padding(toLength: 24, withPad: " ", startingAt: 0)
                      + String(format: "%-12.1f %-13.1f %.2f  ", result.baselineP50Us, result.p50Us, result.ratio) + result.notes)
            }
            print(String(format: "peak RSS %.0f MB", first.peakRssMb))
        }
        let others = results.filter { $0.smallN == nil }
        guard !others.isEmpty else { return }
        print("workload     n         ops/s      baseline ops/s  ratio   p50 µs  p99 µs  p99.9 µs  base p50  peak RSS MB")
        for result in others {
            print(String(format: "%-12@ %-9d %-10.0f %-15.0f %-7.2f %-7.1f %-7.1f %-9.1f %-9.1f %.0f",
                         (result.backend == "sqlite" ? result.workload : result.workload + "/pg") as NSString, result.n, result.opsPerS, result.baselineOpsPerS, result.ratio,
                         result.p50Us, result.p99Us, result.p999Us, result.baselineP50Us, result.peakRssMb))
            if !result.notes.isEmpty { print("  \(result.notes)") }
        }
    }
}
