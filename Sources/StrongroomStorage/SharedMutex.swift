#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

    /// Takes the mutex, waiting while another thread (of this process or another) holds it. Returns
    /// true when the previous holder died holding it: the mutex is taken and usable, but what it
    /// protects may be half changed.
    ///
    /// - Throws: when the mutex cannot be taken: `ENOTRECOVERABLE` if a holder that found its
    ///   predecessor dead released it without repairing it (see `pthread_mutex_consistent`); then it
    ///   stays unusable until `initialize()`.
    public func lock() throws(FileError) -> Bool {
        #if canImport(Glibc)
        let result = unsafe pthread_mutex_lock(mutex)
        switch result {
        case 0:
            return false
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
        try file.lockExclusive()
        return false
        #endif
    }

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
