import Foundation
import Strongroom

// One executable for every fuzz target: STRONGROOM_FUZZ_TARGET names it (see FuzzEntryPoints.targets);
// STRONGROOM_FUZZ_LIST=1 prints the targets' names, one a line, and exits (`.ci/fuzz` reads them so).
//
// Built two ways from this one file:
// - by `.ci/fuzz` with `-sanitize=fuzzer,address -DFUZZING`: libFuzzer drives the target;
// - by a plain `swift build` / `swift test` (no flags): it replays the files given as arguments.
//
// SwiftPM links every executable with `--defsym main=<Module>_main` and compiles it with
// `-entry-point-function-name <Module>_main`. With FUZZING there is no `@main`, so this file supplies
// `StrongroomFuzz_main` itself and hands control to libFuzzer's driver (`LLVMFuzzerRunDriver`, in the
// runtime that `-sanitize=fuzzer` links in); libFuzzer's own `main` is then never linked, and no C
// target is needed.

/// The target named by STRONGROOM_FUZZ_TARGET, or nil when unset or unknown.
private let selectedTarget: (@Sendable ([UInt8]) -> Void)? =
    ProcessInfo.processInfo.environment["STRONGROOM_FUZZ_TARGET"].flatMap { FuzzEntryPoints.targets[$0] }

/// When STRONGROOM_FUZZ_LIST is set: prints every target's name, one a line, sorted, and exits with status 0.
private func listTargetsIfAsked() {
    guard ProcessInfo.processInfo.environment["STRONGROOM_FUZZ_LIST"] != nil else { return }
    print(FuzzEntryPoints.targets.keys.sorted().joined(separator: "\n"))
    exit(0)
}

/// Says how to choose a target and exits with status 2.
private func usage() -> Never {
    let names = FuzzEntryPoints.targets.keys.sorted().joined(separator: "|")
    FileHandle.standardError.write(Data("""
        usage: STRONGROOM_FUZZ_TARGET=\(names) StrongroomFuzz FILE...            (plain build: replay files)
               STRONGROOM_FUZZ_TARGET=\(names) StrongroomFuzz [libFuzzer flags] [CORPUS_DIR...]   (.ci/fuzz build)
               STRONGROOM_FUZZ_LIST=1 StrongroomFuzz                                (the targets, one a line)

        """.utf8))
    exit(2)
}

#if FUZZING
/// libFuzzer's driver, from the fuzzer runtime (C signature:
/// `int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size))`).
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                                 _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// The executable's entry point under the name SwiftPM links as `main`: starts libFuzzer's driver.
@_cdecl("StrongroomFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    listTargetsIfAsked()
    guard selectedTarget != nil else { usage() }
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = unsafe argv
    return unsafe LLVMFuzzerRunDriver(&count, &arguments) { data, size in
        unsafe fuzzOneInput(data, size)
    }
}

/// libFuzzer's per-input entry point: the bytes go to the selected target. Also exported under its
/// standard name, so that other libFuzzer-compatible drivers can load this binary's code.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target = selectedTarget else { usage() }
    target(unsafe size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
/// Without the fuzzer: replays the files given as arguments through the selected target, to reproduce
/// a crash or hang the fuzzer found (`swift run StrongroomFuzz FILE...`).
@main
enum StrongroomFuzz {
    static func main() {
        listTargetsIfAsked()
        guard let target = selectedTarget else { usage() }
        for path in CommandLine.arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("cannot read \(path)\n".utf8))
                exit(2)
            }
            let start = Date()
            target([UInt8](data))
            print("ok: \(path) (\(Int(Date().timeIntervalSince(start) * 1000)) ms)")
        }
    }
}
#endif
