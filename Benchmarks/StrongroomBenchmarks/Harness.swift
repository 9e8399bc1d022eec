import CBaseline
import Foundation
import Synchronization

/// One benchmark's figures: Strongroom against plain SQLite (or plain PostgreSQL) doing the same job
/// in the same run.
struct BenchmarkResult: Encodable {
    let workload: String
    /// The database both sides ran on: "sqlite" or "postgresql".
    var backend = "sqlite"
    let n: Int
    let operations: Int
    let opsPerS: Double
    let baselineOpsPerS: Double
    let ratio: Double
    let p50Us: Double
    let p99Us: Double
    let p999Us: Double
    let baselineP50Us: Double
    let baselineP99Us: Double
    let peakRssMb: Double
    let notes: String
    /// Where the baseline is the C one (CBaseline.h): what the previous baseline, through the
    /// project's own Swift storage layer, made of the same job in the same run.
    var swiftBaselineOpsPerS: Double? = nil
    /// The Swift-layer baseline's median latency, where it was timed per operation.
    var swiftBaselineP50Us: Double? = nil
    /// Import on PostgreSQL: plain PostgreSQL's `COPY … FROM STDIN` of the same rows in the same batches.
    var copyBaselineOpsPerS: Double? = nil
    /// Scaling workloads: the size of the smaller store, whose time is the baseline's.
    var smallN: Int? = nil
    /// Caller ID with several clients at once: how many (`--clients`).
    var clients: Int? = nil
}

/// Latencies of single operations, in nanoseconds.
struct LatencySample {
    private(set) var nanoseconds: [UInt64] = []
    private(set) var total: UInt64 = 0

    mutating func reserve(_ count: Int) { nanoseconds.reserveCapacity(count) }

    /// Times `body` once.
    @inline(__always)
    mutating func measure(_ body: () throws -> Void) rethrows {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        record(DispatchTime.now().uptimeNanoseconds - start)
    }

    /// Adds one operation's time, measured by the caller (an operation that is not one call).
    mutating func record(_ elapsed: UInt64) {
        nanoseconds.append(elapsed)
        total += elapsed
    }

    /// Adds `other`'s latencies to these.
    mutating func merge(_ other: LatencySample) {
        nanoseconds += other.nanoseconds
        total += other.total
    }

    /// Operations per second over the measured time.
    var operationsPerSecond: Double { Double(nanoseconds.count) / (Double(total) / 1e9) }

    /// The `fraction` percentile in microseconds.
    func percentile(_ fraction: Double) -> Double {
        guard !nanoseconds.isEmpty else { return 0 }
        let sorted = nanoseconds.sorted()
        return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]) / 1000
    }
}

/// Keeps the optimiser from deleting work whose result is unused.
@inline(never)
func blackHole<T>(_ value: T) {}

/// The process's peak resident set size in MiB (VmHWM of /proc/self/status).
func peakResidentMegabytes() -> Double {
    processStatusMegabytes("VmHWM:")
}

/// The process's resident size now, in megabytes (0 where /proc is missing).
func residentMegabytes() -> Double {
    processStatusMegabytes("VmRSS:")
}

/// The field `name` of /proc/self/status (a size in kB), in megabytes; 0 where it cannot be read.
private func processStatusMegabytes(_ name: String) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
          let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
    return kilobytes / 1024
}

/// The heap the process holds allocated now (`cbaseline_heap_in_use`), in megabytes; unlike the
/// resident size, it does not hide an allocation that reuses memory freed earlier.
func heapInUseMegabytes() -> Double {
    Double(cbaseline_heap_in_use()) / 1_048_576
}


/// A scratch folder for one benchmark, removed afterwards.
func withScratchDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("strongroom-bench-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// Prints progress of set-up steps to standard error (the results go to standard output).
func note(_ message: String) {
    FileHandle.standardError.write(Data("[bench] \(message)\n".utf8))
}

/// Runs `clients` threads at once. Each first calls `prepare` with its number (opening its own handles,
/// untimed) and, once every thread is ready, the lookups `prepare` returned. Returns the wall-clock
/// seconds from the start signal to the last thread's end and all the threads' latencies.
func concurrentLatencies(clients: Int, _ prepare: @escaping @Sendable (Int) throws -> () throws -> LatencySample) throws
    -> (seconds: Double, sample: LatencySample) {
    let ready = DispatchGroup(), done = DispatchGroup()
    let start = DispatchSemaphore(value: 0)
    let outcomes = Mutex<[Result<LatencySample, any Error>]>([])
    for client in 0..<clients {
        ready.enter()
        done.enter()
        Thread {
            let run = Result { try prepare(client) }
            ready.leave()
            start.wait()
            let outcome = run.flatMap { lookups in Result { try lookups() } }
            outcomes.withLock { $0.append(outcome) }
            done.leave()
        }.start()
    }
    ready.wait()
    let began = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<clients { start.signal() }
    done.wait()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9
    var merged = LatencySample()
    for outcome in outcomes.withLock({ $0 }) { merged.merge(try outcome.get()) }
    return (seconds, merged)
}
