#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A moment on the monotonic clock (`CLOCK_MONOTONIC`, which setting the wall clock does not move) up
/// to which a lock is waited for: one deadline can bound several waits in a row.
public struct LockDeadline: Sendable {
    /// The moment, as `clock_gettime(CLOCK_MONOTONIC)` counts.
    private let time: timespec
    /// The wait it was set for, in seconds (for errors).
    public let seconds: Double

    /// The moment `seconds` from now (a negative or not-a-number wait counts as none; one over a
    /// billion seconds as a billion).
    public init(secondsFromNow wait: Double) {
        let seconds = wait.isNaN ? 0 : min(max(wait, 0), 1e9)
        var now = timespec()
        _ = unsafe clock_gettime(CLOCK_MONOTONIC, &now)
        let nanoseconds = Int(now.tv_nsec) + Int((seconds - seconds.rounded(.towardZero)) * 1e9)
        time = timespec(tv_sec: now.tv_sec + Int(seconds.rounded(.towardZero)) + nanoseconds / 1_000_000_000,
                        tv_nsec: nanoseconds % 1_000_000_000)
        self.seconds = seconds
    }

    /// Microseconds left until the moment (zero or less once it has passed).
    var remainingMicroseconds: Int64 {
        var now = timespec()
        _ = unsafe clock_gettime(CLOCK_MONOTONIC, &now)
        return (Int64(time.tv_sec) - Int64(now.tv_sec)) * 1_000_000 + (Int64(time.tv_nsec) - Int64(now.tv_nsec)) / 1_000
    }
}

/// A lock shared by every process that maps the same file: a process-shared, robust pthread mutex
/// stored in place in a `MappedBlock`. Taking it while nobody holds it makes no system call (glibc
/// takes a free mutex with one atomic compare-and-swap on its futex word, and releases it without a
/// `futex` wake when nobody waits); a process that has to wait sleeps in the kernel.
///
/// Robust: when the holder dies holding it (killed, or its thread ends), the kernel releases it
/// (glibc keeps each thread's held robust mutexes on a list the kernel walks when the thread exits),
/// and the next `lock()` reports that. Whatever the dead holder was changing under the lock may be
/// half done: the caller repairs it before relying on it.
///
/// The mutex lives in the file, so it outlives the processes that use it, and a reboot leaves it as
/// it was: possibly held by a thread that no longer exists and will never be cleaned up after.
/// `initialize()` resets it; the caller must know that no other process is using it then (for
/// instance because every user holds some other lock, shared, for as long as it uses the mutex).
/// Owners are told apart by thread ID, so the processes sharing one must share a PID namespace.
///
/// On platforms without robust mutexes (Darwin), it is an exclusive `flock(2)` on the block's own
/// file instead, which the kernel drops when its holder dies, so `lock()` never reports a dead
/// holder, and several `SharedMutex`es in one block are one lock there. That fallback is not built or
/// tested on Linux, where this project is tested.
///
/// Thread safety: not thread-safe; the owner serialises calls on one handle, and the thread that
/// locks it unlocks it. Handles on the same block exclude one another, in one process or several.
public final class SharedMutex {
    /// The block the mutex is stored in, kept mapped while the handle lives.
    private let block: MappedBlock
    #if canImport(Glibc)
    /// The mutex, inside `block`'s mapping.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    #else
    /// The lock standing in for the mutex: the block's file.
    private let file: FileLock
    #endif

    /// The mutex at byte `offset` of `block`. It is usable once some process has called `initialize()`
    /// on it (since the file was created, and since the last reboot).
    ///
    /// - Precondition: `offset` is aligned for a `pthread_mutex_t`, and one fits in the block there.
    public init(in block: MappedBlock, at offset: Int) throws(FileError) {
        precondition(offset % MemoryLayout<pthread_mutex_t>.alignment == 0, "misaligned mutex in \(block.path)")
        // The mapping starts on a page boundary, so an aligned offset is an aligned address.
        let address = block.address(of: offset, count: MemoryLayout<pthread_mutex_t>.size)
        self.block = block
        #if canImport(Glibc)
        mutex = unsafe address.bindMemory(to: pthread_mutex_t.self, capacity: 1)
        #else
        _ = address // only checked here, so that an offset taken on Darwin is taken on Linux too
        file = try FileLock(path: block.path)
        #endif
    }

    /// Makes the mutex a fresh, unlocked, process-shared and robust one, whatever its bytes held
    /// before. Only when no other process can be using it: one waiting or holding it would be left
    /// with a lock that no longer excludes anyone. (Nothing to do on Darwin: the kernel drops a
    /// `flock` with its holder, and at a reboot.)
    public func initialize() throws(FileError) {
        #if canImport(Glibc)
        var attributes = pthread_mutexattr_t()
        try check(unsafe pthread_mutexattr_init(&attributes), "pthread_mutexattr_init")
        defer { _ = unsafe pthread_mutexattr_destroy(&attributes) }
        try check(unsafe pthread_mutexattr_setpshared(&attributes, Int32(PTHREAD_PROCESS_SHARED)), "pthread_mutexattr_setpshared")
        try check(unsafe pthread_mutexattr_setrobust(&attributes, Int32(PTHREAD_MUTEX_ROBUST)), "pthread_mutexattr_setrobust")
        // pthread_mutex_init writes every field, so stale bytes (a lock held before a reboot) are gone.
        try check(unsafe pthread_mutex_init(mutex, &attributes), "pthread_mutex_init")
        #endif
    }

    /// Takes the mutex, waiting while another thread (of this process or another) holds it, until
    /// `deadline` at most. Returns true when the previous holder died holding it: the mutex is taken
    /// and usable, but what it protects may be half changed. A free mutex is taken even when the
    /// deadline has passed.
    ///
    /// - Throws: when the mutex cannot be taken: `FileProblem.lockHeld` (`ETIMEDOUT`) with the
    ///   holder's process ID when it is still held at `deadline` (a holder that is stopped or stuck,
    ///   not dead: a dead one's is released by the kernel); `ENOTRECOVERABLE` if a holder that found its
    ///   predecessor dead released it without repairing it (see `pthread_mutex_consistent`), and then
    ///   it stays unusable until `initialize()`.
    public func lock(until deadline: LockDeadline) throws(FileError) -> Bool {
        #if canImport(Glibc)
        let result = timedLock(until: deadline)
        switch result {
        case 0:
            return false
        case ETIMEDOUT:
            throw FileError(path: block.path, operation: "pthread_mutex_timedlock", code: result,
                            problem: .lockHeld(holder: holderProcessID(), waitedSeconds: deadline.seconds))
        case EOWNERDEAD:
            // Held now, but marked inconsistent: unlocked as it is, it would become ENOTRECOVERABLE
            // for every process. The caller repairs the state; the mutex is declared sound first.
            let consistent = unsafe pthread_mutex_consistent(mutex)
            guard consistent == 0 else {
                // Cannot happen to a robust mutex just reported EOWNERDEAD (its only error is EINVAL).
                // Should it, every later lock fails (ENOTRECOVERABLE) rather than waits forever.
                _ = unsafe pthread_mutex_unlock(mutex)
                throw FileError(path: block.path, operation: "pthread_mutex_consistent", code: consistent)
            }
            return true
        default:
            throw FileError(path: block.path, operation: "pthread_mutex_lock", code: result)
        }
        #else
        try file.lockExclusive(until: deadline)
        return false
        #endif
    }

    #if canImport(Glibc)
    /// `pthread_mutex_timedlock` until `deadline`: 0, `EOWNERDEAD`, `ETIMEDOUT` or another error.
    ///
    /// Its timeout is a moment of the wall clock (`CLOCK_REALTIME`; `pthread_mutex_clocklock`, which
    /// takes `CLOCK_MONOTONIC`, is a GNU extension the Swift Glibc module does not declare), which may be
    /// set while waiting. So the wait goes in slices of at most a second of wall-clock time, and ends
    /// when the monotonic `deadline` has passed: setting the clock forward cannot cut the wait short,
    /// and setting it back stretches one slice only.
    private func timedLock(until deadline: LockDeadline) -> Int32 {
        // A free mutex (the common case) is taken without reading the clock.
        let tried = unsafe pthread_mutex_trylock(mutex)
        guard tried == EBUSY else { return tried }
        while true {
            let slice = min(max(deadline.remainingMicroseconds, 0), 1_000_000)
            var time = timespec()
            _ = unsafe clock_gettime(CLOCK_REALTIME, &time)
            let nanoseconds = Int(time.tv_nsec) + Int(slice) * 1_000
            time.tv_sec += nanoseconds / 1_000_000_000
            time.tv_nsec = nanoseconds % 1_000_000_000
            // A free mutex is taken even when the moment has passed (POSIX): a zero slice is a try.
            let result = unsafe pthread_mutex_timedlock(mutex, &time)
            guard result == ETIMEDOUT, deadline.remainingMicroseconds > 0 else { return result }
        }
    }

    /// The process whose thread holds the mutex, read from the mutex itself: a robust mutex's futex word
    /// holds its owner's thread ID (the kernel's robust-futex ABI, `FUTEX_TID_MASK`; Linux
    /// Documentation/locking/robust-futex-ABI.rst), and `/proc/<tid>/status` names the thread's process
    /// (`Tgid`). Nil when it cannot be told (released meanwhile, or no `/proc`).
    private func holderProcessID() -> Int32? {
        // The futex word is the first field of glibc's `struct __pthread_mutex_s` (`__lock`).
        let word = unsafe UnsafeRawPointer(mutex).load(as: Int32.self)
        let thread = word & 0x3FFF_FFFF
        guard thread > 0 else { return nil }
        guard let status = try? AppendOnlyFile.readAll(path: "/proc/\(thread)/status") else { return nil }
        for line in String(decoding: status, as: UTF8.self).split(separator: "\n") where line.hasPrefix("Tgid:") {
            return Int32(line.dropFirst(5).trimmingPrefix(while: { $0 == " " || $0 == "\t" }))
        }
        return nil
    }
    #endif

    /// Releases the mutex.
    ///
    /// - Precondition: the calling thread holds it (`lock()` returned).
    public func unlock() {
        #if canImport(Glibc)
        // A robust mutex refuses (EPERM) a thread that does not hold it: a caller's bug.
        let result = unsafe pthread_mutex_unlock(mutex)
        precondition(result == 0, "pthread_mutex_unlock \(block.path): error \(result)")
        #else
        file.unlock()
        #endif
    }

    #if canImport(Glibc)
    /// Throws `result` (a pthread function's return value: the error itself, not `errno`) unless it is 0.
    private func check(_ result: Int32, _ operation: String) throws(FileError) {
        guard result == 0 else { throw FileError(path: block.path, operation: operation, code: result) }
    }
    #endif
}

@available(*, unavailable, message: "A SharedMutex is used by one owner at a time")
extension SharedMutex: Sendable {}
