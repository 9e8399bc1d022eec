import CBaseline
import Foundation

/// The CPU time that timed passes of a workload took, this process's and, when the PostgreSQL server
/// runs on this machine, the server's: what wall time cannot tell apart, whether a slower round trip
/// costs more in the client or in the server.
///
/// The client's is every thread of the process (`cbaseline_process_cpu_time`; a single-client run has
/// one busy thread), split into its own code and libraries (user) and the kernel's work for it (system:
/// sending, polling, receiving), which a round trip costs every client alike. The total is exact; the
/// kernel splits it by sampling at each timer tick (250 a second on this project's machines), so the
/// split means something over a second or more of CPU time (a default run), not over a few thousand
/// lookups.
/// The server's is the time on a CPU of every child of the postmaster (`/proc/<pid>/schedstat`), so
/// other sessions' work on the same cluster counts too: meant for a throw-away cluster.
struct CPUTally {
    /// The local PostgreSQL cluster whose processes are counted; nil: the client's time only.
    let server: LocalPostgresCluster?
    private(set) var clientUserNanoseconds: UInt64 = 0
    private(set) var clientSystemNanoseconds: UInt64 = 0
    private(set) var serverNanoseconds: UInt64 = 0
    private(set) var operations = 0

    /// Runs `body`, `count` operations, and adds the CPU time it took.
    mutating func measure(operations count: Int, _ body: () throws -> Void) rethrows {
        let (clientStart, serverStart) = (cbaseline_process_cpu_time(), server?.cpuNanoseconds() ?? 0)
        try body()
        let (clientEnd, serverEnd) = (cbaseline_process_cpu_time(), server?.cpuNanoseconds() ?? 0)
        clientUserNanoseconds += clientEnd.user_ns &- clientStart.user_ns
        clientSystemNanoseconds += clientEnd.system_ns &- clientStart.system_ns
        serverNanoseconds += serverEnd >= serverStart ? serverEnd - serverStart : 0
        operations += count
    }

    /// Microseconds an operation: the client's in its own code (user) and in the kernel (system), and
    /// the server's (nil without a local cluster).
    var perOperation: (clientUser: Double, clientSystem: Double, server: Double?) {
        let count = Double(max(operations, 1))
        return (Double(clientUserNanoseconds) / 1e3 / count, Double(clientSystemNanoseconds) / 1e3 / count,
                server.map { _ in Double(serverNanoseconds) / 1e3 / count })
    }
}

/// The processes of a PostgreSQL cluster running on this machine, found from one of its backends.
struct LocalPostgresCluster {
    private let postmaster: Int

    /// The cluster of the backend whose process id is `backendPID` (`pg_backend_pid()`); nil when its
    /// process is not visible here (a server on another machine, or in another PID namespace).
    init?(backendPID: Int64) {
        // /proc/<pid>/stat: "pid (comm) state ppid …"; the command may hold spaces and parentheses.
        guard let stat = try? String(contentsOfFile: "/proc/\(backendPID)/stat", encoding: .utf8),
              let commandEnd = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: commandEnd)...].split(separator: " ")
        guard fields.count > 1, let parent = Int(fields[1]), parent > 1,
              (try? String(contentsOfFile: "/proc/\(parent)/task/\(parent)/children", encoding: .utf8)) != nil else { return nil }
        postmaster = parent
    }

    /// The CPU time the postmaster's children have run, in nanoseconds (read anew each time: backends come and go).
    func cpuNanoseconds() -> UInt64 {
        guard let children = try? String(contentsOfFile: "/proc/\(postmaster)/task/\(postmaster)/children", encoding: .utf8) else { return 0 }
        return children.split(separator: " ").reduce(0) { total, pid in
            guard let schedstat = try? String(contentsOfFile: "/proc/\(pid)/schedstat", encoding: .utf8),
                  let onCPU = schedstat.split(separator: " ").first.flatMap({ UInt64($0) }) else { return total }
            return total + onCPU
        }
    }
}
