#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Asks the kernel to back `array`'s storage with transparent huge pages (2 MiB), now: for a large
/// table read once and then looked up at random places, where every lookup would otherwise pay a TLB
/// miss and its page walk on top of the cache miss (the caller-ID hint's tables: 64 MB at a million
/// contacts). Only the 2 MiB-aligned stretches inside the storage are advised (`MADV_HUGEPAGE`) and then
/// collapsed into huge pages at once (`MADV_COLLAPSE`, Linux 6.1 and later; before, the kernel's
/// `khugepaged` collapses them in its own time). Best effort: with transparent huge pages off, on other
/// systems, or for storage under 2 MiB, nothing changes. Collapsing copies the pages, so it is for
/// tables of no secrets; the array must not be changed afterwards (a changed copy would be new storage).
///
/// <https://docs.kernel.org/admin-guide/mm/transhuge.html>
public func preferHugePages<Element>(for array: [Element]) {
    #if os(Linux)
    let hugePage = 2 << 20
    // From <linux/mman.h> (asm-generic/mman-common.h); Glibc's headers of this distribution lack it.
    let adviceCollapse: Int32 = 25
    unsafe array.withUnsafeBytes { bytes in
        guard let base = bytes.baseAddress else { return }
        let start = (Int(bitPattern: base) + hugePage - 1) & ~(hugePage - 1)
        let end = (Int(bitPattern: base) + bytes.count) & ~(hugePage - 1)
        guard end > start, let first = UnsafeMutableRawPointer(bitPattern: start) else { return }
        guard unsafe madvise(first, end - start, MADV_HUGEPAGE) == 0 else { return }
        _ = unsafe madvise(first, end - start, adviceCollapse)
    }
    #endif
}
