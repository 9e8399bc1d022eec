import Foundation
import StrongroomStorage
import StrongroomTestSupport
import Testing

/// The byte at which the tests keep their mutex, as the audit log keeps its own in `audit/TAIL`.
private let mutexOffset = 256

/// A mapped block with an initialised mutex in it, on a fresh file; other handles (threads, child
/// processes) open the same path as other processes would.
private func freshMutex(_ name: String, in scratch: TemporaryDirectory) throws -> (path: String, block: MappedBlock, mutex: SharedMutex) {
    let path = scratch.path(name)
    let block = try MappedBlock(path: path, byteCount: 4096)
    let mutex = try SharedMutex(in: block, at: mutexOffset)
    try mutex.initialize()
    return (path, block, mutex)
}

/// Opens the block at `path` and its mutex: another process's handle.
private func openMutex(_ path: String) throws -> (block: MappedBlock, mutex: SharedMutex) {
    let block = try MappedBlock(path: path, byteCount: 4096)
    return (block, try SharedMutex(in: block, at: mutexOffset))
}

@Suite("Process-shared robust mutex in a mapped block")
struct SharedMutexTests {
    /// The test's files, removed after it.
    let scratch = TemporaryDirectory("strongroom-storage")

    @Test("lock and unlock; another handle waits while one holds it")
    func exclusion() throws {
        let (path, _, mutex) = try freshMutex("exclusion", in: scratch)
        #expect(try mutex.lock() == false)
        mutex.unlock()
        #expect(try mutex.lock() == false)
        let taken = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            // Its own mapping of the file, as another process has.
            guard let (_, other) = try? openMutex(path), (try? other.lock()) == false else { return }
            taken.signal()
            other.unlock()
        }
        #expect(taken.wait(timeout: .now() + .milliseconds(100)) == .timedOut, "taken while held")
        mutex.unlock()
        #expect(taken.wait(timeout: .now() + 30) == .success)
    }

    @Test("a holder that dies holding it is reported to the next one to lock it, and the mutex works on",
          arguments: ["killed", "exited"])
    func holderDied(how: String) async throws {
        let (path, _, mutex) = try freshMutex("died", in: scratch)
        await #expect(processExitsWith: how == "killed" ? .signal(SIGKILL) : .success) { [path = path as String, how = how as String] in
            let (_, mutex) = try openMutex(path)
            _ = try mutex.lock()
            if how == "killed" { kill(getpid(), SIGKILL) }
            // Ending the process ends the thread that holds it, just as a kill does.
            exit(EXIT_SUCCESS)
        }
        #expect(try mutex.lock() == true, "the dead holder is reported")
        mutex.unlock()
        #expect(try mutex.lock() == false, "reported once, then sound")
        mutex.unlock()
        // Another process takes it and lets it go as usual.
        await #expect(processExitsWith: .success) { [path = path as String] in
            let (_, mutex) = try openMutex(path)
            guard try mutex.lock() == false else { exit(EXIT_FAILURE) }
            mutex.unlock()
        }
        #expect(try mutex.lock() == false)
        mutex.unlock()
    }

    @Test("processes incrementing a counter in the block under it lose no increment")
    func counter() async throws {
        let (path, block, _) = try freshMutex("counter", in: scratch)
        let increments = 50_000
        // Each child adds itself to the arrivals (offset 8) under the mutex and waits for the other
        // before it starts, so that they really contend; then it adds `increments` to the counter
        // (offset 0), a load and a store each time: without the mutex some would be lost.
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    await #expect(processExitsWith: .success) { [path = path as String, increments = increments as Int] in
                        let (block, mutex) = try openMutex(path)
                        _ = try mutex.lock()
                        block.storeUInt64(block.loadUInt64(at: 8) + 1, at: 8)
                        mutex.unlock()
                        var arrived = UInt64(0)
                        while arrived < 2 {
                            _ = try mutex.lock()
                            arrived = block.loadUInt64(at: 8)
                            mutex.unlock()
                        }
                        for _ in 0..<increments {
                            _ = try mutex.lock()
                            block.storeUInt64(block.loadUInt64(at: 0) + 1, at: 0)
                            mutex.unlock()
                        }
                    }
                }
            }
        }
        #expect(block.loadUInt64(at: 0) == UInt64(2 * increments))
    }

    @Test("initialize() frees a mutex whose bytes say it is held, as a reboot leaves them")
    func staleAfterReboot() throws {
        let (path, block, mutex) = try freshMutex("reboot", in: scratch)
        // The bytes of a held mutex, put back once it is free: held by a thread that will never release it.
        let size = MemoryLayout<pthread_mutex_t>.size
        _ = try mutex.lock()
        let held = block.load(count: size, at: mutexOffset)
        mutex.unlock()
        #expect(block.load(count: size, at: mutexOffset) != held)
        block.store(held, at: mutexOffset)
        try mutex.initialize()
        let (_, other) = try openMutex(path)
        #expect(try other.lock() == false)
        other.unlock()
    }

    @Test("a mutex at a misaligned offset, or one that does not fit in the block, is refused",
          arguments: [4, 4096 - 8])
    func badOffset(offset: Int) async throws {
        let path = scratch.path("offset")
        _ = try MappedBlock(path: path, byteCount: 4096)
        await #expect(processExitsWith: .failure) { [path = path as String, offset = offset as Int] in
            _ = try SharedMutex(in: MappedBlock(path: path, byteCount: 4096), at: offset)
        }
    }
}
