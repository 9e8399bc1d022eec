import Foundation

/// Why a child process of a test (an exit test) gave up, in words for the parent's report.
struct ChildFailure: Error, CustomStringConvertible {
    let description: String
}

/// Runs a child's job and ends the process: success, or failure with the reason written to
/// `errorFile` (for the parent to report) after `afterFailure` has run.
func runChild(errorFile: String, _ job: () throws -> Void, afterFailure: (any Error) -> Void = { _ in }) -> Never {
    do {
        try job()
        exit(EXIT_SUCCESS)
    } catch {
        try? "\(error)".write(toFile: errorFile, atomically: true, encoding: .utf8)
        afterFailure(error)
        exit(EXIT_FAILURE)
    }
}

/// A barrier between child processes: marks this one arrived (a file `prefix` + `name` in `folder`),
/// then waits until `parties` have, `seconds` at most.
func meet(in folder: String, prefix: String, name: String, parties: Int, within seconds: TimeInterval) throws {
    guard FileManager.default.createFile(atPath: folder + "/" + prefix + name, contents: nil) else {
        throw ChildFailure(description: "cannot write in \(folder)")
    }
    let deadline = Date().addingTimeInterval(seconds)
    while try FileManager.default.contentsOfDirectory(atPath: folder).filter({ $0.hasPrefix(prefix) }).count < parties {
        guard Date() < deadline else { throw ChildFailure(description: "the other processes did not arrive within \(Int(seconds)) s") }
        usleep(1000)
    }
}
