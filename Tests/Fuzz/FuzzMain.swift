import Foundation
import Strongroom

// The fuzz target to run, chosen once per process (STRONGROOM_FUZZ_TARGET), or nil when unknown.
private let selectedTarget: (@Sendable ([UInt8]) -> Void)? =
    ProcessInfo.processInfo.environment["STRONGROOM_FUZZ_TARGET"].flatMap { FuzzEntryPoints.targets[$0] }

#if FUZZING
/// libFuzzer's driver (in the fuzzer runtime that `-sanitize=fuzzer` links in).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

/// The executable's entry point as SwiftPM names it: hands control to libFuzzer's driver.
@_cdecl("StrongroomFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var count = argc
    var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}

/// libFuzzer's entry point (built with `-sanitize=fuzzer -DFUZZING`, see `.ci/fuzz`): one input to the
/// target named by STRONGROOM_FUZZ_TARGET.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let target = selectedTarget else { fatalError("set STRONGROOM_FUZZ_TARGET to one of \(FuzzEntryPoints.targets.keys.sorted())") }
    target(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
/// Without the fuzzer: replays the files given as arguments through the target named by
/// STRONGROOM_FUZZ_TARGET, to reproduce a crash the fuzzer found.
@main
enum StrongroomFuzz {
    static func main() {
        guard let target = selectedTarget else {
            print("usage: STRONGROOM_FUZZ_TARGET=\(FuzzEntryPoints.targets.keys.sorted().joined(separator: "|")) strongroom-fuzz FILE...")
            exit(2)
        }
        for path in CommandLine.arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            target([UInt8](data))
            print("ok: \(path)")
        }
    }
}
#endif
