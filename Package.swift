// swift-tools-version:6.2
import PackageDescription

/// Settings for every target above the C layer: an unsafe pointer there is a build error.
let safeSwift: [SwiftSetting] = [
    .strictMemorySafety(),
    .treatWarning("StrictMemorySafety", as: .error),
]

let package = Package(
    name: "Strongroom",
    products: [
        .library(name: "Strongroom", targets: ["Strongroom"]),
        .executable(name: "strongroom", targets: ["StrongroomTool"]),
        .executable(name: "strongroom-bench", targets: ["StrongroomBenchmarks"]),
    ],
    targets: [
        // C layer: module maps and static inline shims over the system libraries.
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CPostgreSQL", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),

        // The only Swift code that touches C and unsafe pointers.
        .target(name: "StrongroomCrypto", dependencies: ["COpenSSL"]),
        .target(name: "StrongroomStorage", dependencies: ["CSQLite", "CPostgreSQL"]),

        // Phone normaliser, engine, tool and benchmarks: memory-safe Swift only.
        .target(name: "StrongroomPhone", swiftSettings: safeSwift),
        .target(name: "Strongroom", dependencies: ["StrongroomCrypto", "StrongroomStorage", "StrongroomPhone"],
                swiftSettings: safeSwift),
        .executableTarget(name: "StrongroomTool", dependencies: ["Strongroom", "StrongroomPhone"],
                          swiftSettings: safeSwift),
        .executableTarget(name: "StrongroomBenchmarks", dependencies: ["Strongroom", "StrongroomStorage", "CBaseline", "DeterministicRandom"],
                          path: "Benchmarks/StrongroomBenchmarks", swiftSettings: safeSwift),
        // The benchmarks' plain baselines in C: SQLite through the sqlite3 API (CBaseline.h), PostgreSQL through libpq (CBaselinePostgres.h).
        .target(name: "CBaseline", dependencies: ["CSQLite", "CPostgreSQL"], path: "Benchmarks/CBaseline"),
        // The seeded generator benchmarks and tests share (re-exported by StrongroomTestSupport).
        .target(name: "DeterministicRandom", path: "Tests/DeterministicRandom", swiftSettings: safeSwift),

        // Fuzzing (.ci/fuzz builds it with -sanitize=fuzzer,address -DFUZZING); a plain build replays
        // inputs instead. Its few unsafe pointers (libFuzzer's C interface) are marked `unsafe`.
        .executableTarget(name: "StrongroomFuzz", dependencies: ["Strongroom"], path: "Tests/Fuzz",
                          swiftSettings: safeSwift),

        .target(name: "StrongroomTestSupport", dependencies: ["StrongroomStorage", "DeterministicRandom"], path: "Tests/Support"),
        .testTarget(name: "StrongroomCryptoTests", dependencies: ["StrongroomCrypto", "StrongroomTestSupport"]),
        .testTarget(name: "StrongroomStorageTests", dependencies: ["StrongroomStorage", "StrongroomTestSupport"]),
        .testTarget(name: "StrongroomTests",
                    dependencies: ["Strongroom", "StrongroomPhone", "StrongroomCrypto", "StrongroomStorage", "StrongroomTestSupport"]),
        .testTarget(name: "StrongroomToolTests",
                    dependencies: ["StrongroomTool", "Strongroom", "StrongroomCrypto", "StrongroomStorage", "StrongroomTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
