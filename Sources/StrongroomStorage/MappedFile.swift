#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A file written through a shared, writable mapping (`mmap` with `MAP_SHARED`): a store into it is
/// in the operating system's page cache the moment it is made, with no `write(2)`, so a process
/// killed right after loses nothing.
///
/// Only a window of the file is mapped, moved along as stores go further, so the pages a long file
/// leaves behind do not stay in the process's resident set. Only bytes below the file's size may be
/// touched (past the end of the file a store raises SIGBUS), so every store is checked against
/// `size`, the size this handle last saw or set. The file grows with `allocate`, which reserves its
/// disk blocks (`posix_fallocate`): a full disk is then a typed error there, never a SIGBUS on a
/// later store into a page with no block behind it.
///
/// Thread safety: not thread-safe; the owner serialises calls. Across processes, hold a `FileLock`
/// around stores and size changes: another process's `truncate` under a mapped store is a SIGBUS.
public final class MappedFile {
    /// The path it was opened on.
    public let path: String
    /// The file descriptor, closed in `deinit`.
    private let descriptor: Int32
    /// How many bytes a window maps (at least).
    private let windowLength: Int
    /// The mapped window, unmapped when it moves and in `deinit`; nil before the first store. Stores
    /// read this copy; `sharedWindow` is changed with it, for the populators.
    private var window: MappedWindow?
    /// The window as this file's populators see it: they ready its pages in place, under its lock,
    /// which the window is only moved or unmapped under.
    private let sharedWindow = SharedWindow()
    /// The file's size as this handle last saw or set it: stores stay below it.
    public private(set) var size: Int64

    /// Opens the regular file `path` for reading and writing (creating it with mode 0600 if absent;
    /// anything else there is refused, `FileProblem.wrongKind`); stores map it `window` bytes at a time.
    public init(path: String, window: Int) throws(FileError) {
        let (descriptor, fileSize) = try openReadWrite(path)
        self.descriptor = descriptor
        self.path = path
        self.windowLength = pageRounded(max(window, 1))
        self.size = fileSize
    }

    deinit {
        sharedWindow.replace(with: nil)
        close(descriptor)
    }

    /// The file's size (one `fstat`, no path lookup), or nil when the file was deleted or replaced
    /// since it was opened: its link count dropped to zero, and stores into the mapping would reach
    /// no file anyone reads.
    public func sizeIfStillLinked() throws(FileError) -> Int64? {
        var status = stat()
        guard unsafe fstat(descriptor, &status) == 0 else { throw FileError(path: path, operation: "fstat", code: errno) }
        guard status.st_nlink > 0 else { return nil }
        size = Int64(status.st_size)
        return size
    }

    /// Grows the file to `length` bytes with its disk blocks reserved (`posix_fallocate`); the new
    /// bytes read as zeros. Nothing happens when the file is already that long.
    public func allocate(to length: Int64) throws(FileError) {
        guard length > size else { return }
        #if canImport(Glibc)
        // posix_fallocate returns the error instead of setting errno; a signal may interrupt it.
        let result = retryingOnInterruptResult { posix_fallocate(descriptor, off_t(size), off_t(length - size)) }
        #else
        // Darwin has no posix_fallocate: the file is extended sparse.
        let result = ftruncate(descriptor, off_t(length)) == 0 ? 0 : errno
        #endif
        // On failure the file may have grown part of the way; `size` stays where it is known good.
        guard result == 0 else { throw FileError(path: path, operation: "posix_fallocate", code: result) }
        size = length
    }

    /// Cuts (or extends with zeros) the file to `length` bytes.
    public func truncate(to length: Int64) throws(FileError) {
        guard retryingOnInterrupt({ ftruncate(descriptor, off_t(length)) }) == 0 else {
            throw FileError(path: path, operation: "ftruncate", code: errno)
        }
        size = length
    }

    /// Stores `bytes` at `offset` so that a process killed midway leaves only whole records, each
    /// ended by `terminator`: first every byte but the terminators, then the terminators, first to
    /// last. (`memcpy` may store its bytes in any order, and a kill can land between any two of
    /// them, at a page fault for instance; with the terminators stored last and in order, a record
    /// whose terminator is in place is whole.) `bytes` must not contain NUL, the value of space not
    /// yet written.
    ///
    /// - Throws: only when the window cannot be moved (`mmap`), before any byte is stored.
    /// - Precondition: `offset + bytes.count <= size`.
    public func storeRecords(_ bytes: [UInt8], at offset: Int64, terminator: UInt8) throws(FileError) {
        precondition(offset >= 0 && offset + Int64(bytes.count) <= size, "store past the end of \(path)")
        let destination = try address(of: offset, count: bytes.count)
        unsafe bytes.withUnsafeBytes { source in
            guard let start = source.baseAddress else { return }
            // The offset of the next terminator at or after `from`, or the end.
            func nextTerminator(from: Int) -> Int {
                guard let found = unsafe memchr(start + from, Int32(terminator), source.count - from) else { return source.count }
                return unsafe start.distance(to: UnsafeRawPointer(found))
            }
            var from = 0
            while from < source.count {
                let end = nextTerminator(from: from)
                unsafe (destination + from).copyMemory(from: start + from, byteCount: end - from)
                from = end + 1
            }
            from = 0
            while from < source.count {
                let end = nextTerminator(from: from)
                guard end < source.count else { break }
                // Keeps each terminator after the stores before it (a compiler barrier on x86).
                atomicMemoryFence(ordering: .releasing)
                unsafe destination.storeBytes(of: terminator, toByteOffset: end, as: UInt8.self)
                from = end + 1
            }
        }
    }

    /// A handle that flushes this file from any thread (`fdatasync`, which also writes back the pages
    /// stored through the mapping), while stores go on through this one.
    public func synchronizer() throws(FileError) -> FileSynchronizer {
        let copy = dup(descriptor)
        guard copy >= 0 else { throw FileError(path: path, operation: "dup", code: errno) }
        return FileSynchronizer(descriptor: copy, path: path)
    }

    /// A handle that makes this file's pages ready for writing from another thread, ahead of the
    /// stores that will write them (`PagePopulator`).
    public func populator() throws(FileError) -> PagePopulator {
        let copy = dup(descriptor)
        guard copy >= 0 else { throw FileError(path: path, operation: "dup", code: errno) }
        return PagePopulator(descriptor: copy, path: path, window: sharedWindow)
    }

    /// The address of the file's byte `offset`, with the `count` bytes from there mapped: the window
    /// moves (a new mapping from the page holding `offset`) when they are not inside it.
    private func address(of offset: Int64, count: Int) throws(FileError) -> UnsafeMutableRawPointer {
        if let window, offset >= window.start, offset + Int64(count) <= window.end {
            return unsafe window.base + Int(offset - window.start)
        }
        let start = offset / Int64(pageSize) * Int64(pageSize)
        let length = pageRounded(max(windowLength, Int(offset - start) + count))
        let mapped = unsafe mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, off_t(start))
        guard let base = unsafe mapped, unsafe base != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw FileError(path: path, operation: "mmap", code: errno)
        }
        #if os(Linux)
        // No read-ahead from this window's faults: stores only go forward into space `PagePopulator`
        // readies, and a fault here that read ahead would zero the next pages on the storing thread.
        _ = unsafe madvise(base, length, MADV_RANDOM)
        #endif
        // The old window's dirty pages stay in the page cache: unmapping loses nothing.
        let moved = unsafe MappedWindow(base: base, start: start, length: length)
        sharedWindow.replace(with: moved)
        window = moved
        return unsafe base + Int(offset - start)
    }
}

@available(*, unavailable, message: "A MappedFile is used by one owner at a time")
extension MappedFile: Sendable {}

/// Makes pages of a file ready for writing before a store reaches them, so that the store does not
/// wait for the kernel to allocate, zero and account a fresh page-cache page (on a virtual machine
/// whose memory is handed back to its host when free, about ten microseconds a page), nor take a
/// page fault at all.
///
/// `populate` asks for the range to be faulted in for writing (`MADV_POPULATE_WRITE`, Linux 5.14):
/// the pages enter the page cache, zero-filled, with their blocks reserved, and no byte of the file
/// changes (the kernel skips the write the fault was for). The part of the range inside the file's
/// window is readied there, under the window's lock, so the stores find their page-table entries
/// made; the rest through a shared mapping of the populator's own. A range past the end of the file,
/// say after a concurrent truncation, fails with `EFAULT`, never a SIGBUS. Elsewhere, and on kernels
/// without it, nothing is done.
///
/// Thread safety: safe from any thread; it keeps no state but its own descriptor, a flag and the
/// file's shared window.
public final class PagePopulator: Sendable {
    /// The path of the file.
    public let path: String
    /// A descriptor of its own (`dup`), closed in `deinit`.
    private let descriptor: Int32
    private let unsupported = Atomic<Bool>(false)
    private let window: SharedWindow

    init(descriptor: Int32, path: String, window: SharedWindow) {
        self.descriptor = descriptor
        self.path = path
        self.window = window
    }

    deinit {
        close(descriptor)
    }

    /// False once the system has refused to populate (no `MADV_POPULATE_WRITE`): asking again is useless.
    public var isSupported: Bool { !unsupported.load(ordering: .relaxed) }

    /// Faults in the pages holding `range` for writing; failures only lose the head start.
    public func populate(_ range: Range<Int64>) {
        #if os(Linux)
        let start = range.lowerBound / Int64(pageSize) * Int64(pageSize)
        let end = start + Int64(pageRounded(Int(range.upperBound - start)))
        guard end > start, isSupported else { return }
        let outside = window.withLock { window -> [Range<Int64>] in
            guard let window, start < window.end, window.start < end else { return [start..<end] }
            let inside = max(start, window.start)..<min(end, window.end)
            unsafe ready(window.base + Int(inside.lowerBound - window.start), length: inside.count)
            return [start..<inside.lowerBound, inside.upperBound..<end].filter { !$0.isEmpty }
        }
        for part in outside {
            let mapped = unsafe mmap(nil, part.count, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, off_t(part.lowerBound))
            guard let base = unsafe mapped, unsafe base != UnsafeMutableRawPointer(bitPattern: -1) else { return }
            unsafe ready(base, length: part.count)
            unsafe munmap(base, part.count)
        }
        #else
        unsupported.store(true, ordering: .relaxed)
        #endif
    }

    #if os(Linux)
    /// `MADV_POPULATE_WRITE` on `length` mapped bytes at `base`; an unsupported kernel turns it off.
    private func ready(_ base: UnsafeMutableRawPointer, length: Int) {
        if unsafe madvise(base, length, populateWrite) != 0, errno == EINVAL { unsupported.store(true, ordering: .relaxed) }
    }
    #endif
}

/// A mapped window of a file: `length` bytes of it from byte `start`, at `base`.
private struct MappedWindow: Sendable {
    /// The mapping's address as a number, so the window can be shared under a lock (`SharedWindow`).
    private let address: UInt
    let start: Int64
    let length: Int

    init(base: UnsafeMutableRawPointer, start: Int64, length: Int) {
        address = UInt(bitPattern: base)
        self.start = start
        self.length = length
    }

    /// Where the window is mapped.
    var base: UnsafeMutableRawPointer { unsafe UnsafeMutableRawPointer(bitPattern: address)! }

    /// The file offset just past the window.
    var end: Int64 { start + Int64(length) }
}

/// A file's current window, shared by its writer and its populators: moved and unmapped only under
/// its lock, so a populator never readies pages of a mapping that is gone.
final class SharedWindow: Sendable {
    private let current = Mutex<MappedWindow?>(nil)

    /// Runs `body` on the current window (nil when none), holding the lock.
    fileprivate func withLock<T>(_ body: (borrowing MappedWindow?) -> T) -> T {
        current.withLock { body($0) }
    }

    /// Unmaps the current window, if any, and makes `next` current.
    fileprivate func replace(with next: MappedWindow?) {
        current.withLock { window in
            if let old = window { unsafe munmap(old.base, old.length) }
            window = next
        }
    }
}

#if os(Linux)
/// `MADV_POPULATE_WRITE` (Linux 5.14, `<linux/mman.h>`), which older C libraries' headers lack.
private let populateWrite: Int32 = 23
#endif

/// A small file mapped whole, shared and writable: fixed fields that several processes read and
/// change in place, under a lock they share. Stores are in the page cache at once, so they outlive a
/// killed process (not a reboot).
///
/// Thread safety: not thread-safe; the owner serialises calls.
public final class MappedBlock {
    /// The path it was opened on.
    public let path: String
    /// The file descriptor, closed in `deinit`.
    private let descriptor: Int32
    /// The mapping of the whole block, unmapped in `deinit`.
    private let base: UnsafeMutableRawPointer
    /// The block's size in bytes.
    public let byteCount: Int

    /// Opens the regular file `path` (creating it with mode 0600, zero-filled, if absent or shorter than
    /// `byteCount`, with its blocks reserved; anything else there is refused, `FileProblem.wrongKind`)
    /// and maps its first `byteCount` bytes.
    public init(path: String, byteCount: Int) throws(FileError) {
        let (descriptor, fileSize) = try openReadWrite(path)
        if fileSize < Int64(byteCount) {
            #if canImport(Glibc)
            let result = retryingOnInterruptResult { posix_fallocate(descriptor, 0, off_t(byteCount)) }
            #else
            let result = ftruncate(descriptor, off_t(byteCount)) == 0 ? 0 : errno
            #endif
            guard result == 0 else {
                close(descriptor)
                throw FileError(path: path, operation: "posix_fallocate", code: result)
            }
        }
        let mapped = unsafe mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0)
        guard let base = unsafe mapped, unsafe base != UnsafeMutableRawPointer(bitPattern: -1) else {
            let code = errno
            close(descriptor)
            throw FileError(path: path, operation: "mmap", code: code)
        }
        self.descriptor = descriptor
        self.path = path
        unsafe self.base = base
        self.byteCount = byteCount
    }

    deinit {
        unsafe munmap(base, byteCount)
        close(descriptor)
    }

    /// Stores `bytes` at `offset`.
    ///
    /// - Precondition: `offset + bytes.count <= byteCount`.
    public func store(_ bytes: [UInt8], at offset: Int) {
        precondition(offset >= 0 && offset + bytes.count <= byteCount, "store past the end of \(path)")
        // Keeps the stores in program order (a compiler barrier on x86): a killed process leaves them in order.
        atomicMemoryFence(ordering: .releasing)
        unsafe bytes.withUnsafeBytes { source in
            guard let start = source.baseAddress else { return }
            unsafe (base + offset).copyMemory(from: start, byteCount: source.count)
        }
    }

    /// The `count` bytes at `offset`.
    ///
    /// - Precondition: `offset + count <= byteCount`.
    public func load(count: Int, at offset: Int) -> [UInt8] {
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount, "load past the end of \(path)")
        return unsafe [UInt8](UnsafeRawBufferPointer(start: base + offset, count: count))
    }

    /// The `count` bytes at `offset`: `known` itself when it holds exactly those bytes, so that reading a
    /// value this process wrote last makes no new array.
    ///
    /// - Precondition: `offset + count <= byteCount`.
    public func load(count: Int, at offset: Int, reusing known: [UInt8]?) -> [UInt8] {
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount, "load past the end of \(path)")
        if let known, known.count == count, count > 0,
           unsafe known.withUnsafeBytes({ unsafe memcmp($0.baseAddress!, base + offset, count) == 0 }) {
            return known
        }
        return load(count: count, at: offset)
    }

    /// Stores `value` (native byte order) at `offset`.
    ///
    /// - Precondition: `offset + 8 <= byteCount`.
    public func storeUInt64(_ value: UInt64, at offset: Int) {
        precondition(offset >= 0 && offset + 8 <= byteCount, "store past the end of \(path)")
        atomicMemoryFence(ordering: .releasing)
        unsafe base.storeBytes(of: value, toByteOffset: offset, as: UInt64.self)
    }

    /// The value (native byte order) at `offset`.
    ///
    /// - Precondition: `offset + 8 <= byteCount`.
    public func loadUInt64(at offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset + 8 <= byteCount, "load past the end of \(path)")
        return unsafe base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
    }

    /// The address of byte `offset`, for a value used in place in the shared mapping (`SharedMutex`).
    ///
    /// - Precondition: `offset + count <= byteCount`.
    func address(of offset: Int, count: Int) -> UnsafeMutableRawPointer {
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount, "address past the end of \(path)")
        return unsafe base + offset
    }
}

@available(*, unavailable, message: "A MappedBlock is used by one owner at a time")
extension MappedBlock: Sendable {}

/// The size of a memory page.
private let pageSize = max(Int(sysconf(Int32(_SC_PAGESIZE))), 4096)

/// Opens the regular file `path` for reading and writing (created with mode 0600 if absent): its
/// descriptor and size. Anything else there (a symbolic link, a FIFO, a device, a folder) is refused
/// (`FileProblem.wrongKind`): a mapping must reach the file the log's readers read.
private func openReadWrite(_ path: String) throws(FileError) -> (descriptor: Int32, size: Int64) {
    try openRegularFile(path, flags: O_RDWR, create: true)
}

/// `length` rounded up to a whole number of pages.
private func pageRounded(_ length: Int) -> Int {
    (length + pageSize - 1) / pageSize * pageSize
}
