/// The seeded generator lives in a target of its own so that the benchmarks, which must not link the
/// test support, can share it; tests get it through this module as before.
@_exported import DeterministicRandom
