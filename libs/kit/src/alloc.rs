//! The process allocator of the binaries that hold large arrays (the `grodt`
//! CLI and all-in-one runner, the backtest worker): the system allocator, with
//! every block of 1 MiB or more placed on whole transparent huge pages.
//!
//! Why: a one-shot backtest of 130,708 one-minute bars touched about 15,800
//! fresh 4 KiB pages (the file, its rows, the columns, the engine's bars, the
//! curves: most of them arrays of 1 MiB or more), and on a virtual machine
//! each first touch is a costly fault. glibc does the same as this with
//! `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (it cut that run's faults to about
//! 4,000 and its wall time by a sixth, docs/performance.md), but only when set
//! before the process starts.
//!
//! How: a block of [`HUGE_MIN`] bytes or more is a mapping of its own (as
//! glibc gives blocks this large), 2 MiB-aligned, rounded up to whole 2 MiB
//! pages and advised `MADV_HUGEPAGE`, so the kernel can back all of it with
//! huge pages; a zeroed one costs nothing until it is touched. The cost is at most one partly
//! used huge page per large block (a 1 MiB block may hold 2 MiB); smaller
//! blocks are untouched, so a long-running service's many small allocations
//! do not bloat. The advice is only advice: a kernel without transparent huge
//! pages, or set to `never`, leaves the memory as it was.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: grodt_kit::alloc::HugePages = grodt_kit::alloc::HugePages;
//! ```
#![allow(
    unsafe_code,
    reason = "a GlobalAlloc impl and madvise cannot be written without it; \
              each block goes back where it came from (System, or its own mapping)"
)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks this large or larger are placed on huge pages.
pub const HUGE_MIN: usize = 1 << 20;

/// The transparent huge page size on x86-64 and aarch64 with 4 KiB pages.
pub const HUGE_PAGE: usize = 2 << 20;

/// [`System`] for blocks under [`HUGE_MIN`] bytes; larger ones mapped on
/// whole huge pages (on Linux; elsewhere all are System's).
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePages;

/// Where a block of `layout` comes from: `layout` itself for System, or for a
/// large block the whole, aligned huge pages it is mapped on. A pure function
/// of `layout`, so `dealloc` gives back exactly what `alloc` took.
fn placed(layout: Layout) -> Layout {
    if layout.size() < HUGE_MIN || cfg!(not(target_os = "linux")) {
        return layout;
    }
    layout
        .size()
        .checked_next_multiple_of(HUGE_PAGE)
        .and_then(|size| Layout::from_size_align(size, layout.align().max(HUGE_PAGE)).ok())
        .unwrap_or(layout)
}

// SAFETY: a block whose `placed(layout)` differs from `layout` is mapped
// (`map`) with at least `layout`'s size and alignment and unmapped with the
// same `placed(layout)`; any other block is System's, with the caller's
// layout. `realloc` copies what the old block held.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let placed = placed(layout);
        if placed == layout {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        } else {
            map(placed)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let placed = placed(layout);
        if placed == layout {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        } else {
            // A fresh anonymous mapping reads as zeros: nothing to clear, and
            // no page is touched before it is used.
            map(placed)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let placed = placed(layout);
        if placed == layout {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) }
        } else {
            // SAFETY: `ptr` was mapped by `map(placed)` (the caller passes the
            // layout it allocated with).
            unsafe { unmap(ptr, placed) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (constructor): the caller guarantees `new_size` rounded up to
        // `layout.align()` does not overflow isize.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old_placed, new_placed) = (placed(layout), placed(new));
        if old_placed == layout && new_placed == new {
            // Both small: System's own realloc (it may grow in place).
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if old_placed == new_placed {
            // The mapping already spans the new size.
            return ptr;
        }
        // SAFETY: `new` is a valid non-zero layout (the caller's contract);
        // both blocks are live and hold at least the bytes copied.
        unsafe {
            let p = self.alloc(new);
            if !p.is_null() {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            p
        }
    }
}

/// A fresh private anonymous mapping of `placed.size()` bytes at a multiple of
/// `placed.align()`, advised `MADV_HUGEPAGE`; null when the kernel refuses.
#[cfg(target_os = "linux")]
fn map(placed: Layout) -> *mut u8 {
    let Some(len) = placed.size().checked_add(placed.align()) else {
        return std::ptr::null_mut();
    };
    // SAFETY: a new mapping the kernel places; no existing memory is named.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let base = raw as usize;
    let start = base.next_multiple_of(placed.align());
    let (lead, trail) = (start - base, base + len - (start + placed.size()));
    // SAFETY: the lead and trail lie inside the mapping just made and outside
    // the block handed out; the advice covers exactly the block. Results of
    // the trims and the advice only decide how much address space and which
    // page size the block uses, never its contents.
    unsafe {
        if lead > 0 {
            libc::munmap(raw, lead);
        }
        if trail > 0 {
            libc::munmap((start + placed.size()) as *mut libc::c_void, trail);
        }
        libc::madvise(
            start as *mut libc::c_void,
            placed.size(),
            libc::MADV_HUGEPAGE,
        );
    }
    start as *mut u8
}

/// Gives back a block from [`map`].
///
/// # Safety
/// `ptr` came from `map(placed)` and is not used again.
#[cfg(target_os = "linux")]
unsafe fn unmap(ptr: *mut u8, placed: Layout) {
    // SAFETY: the caller's contract; an error would mean the block was not
    // ours, which the contract rules out, so it is not checked.
    unsafe { libc::munmap(ptr.cast::<libc::c_void>(), placed.size()) };
}

// Elsewhere `placed` never differs from the layout: these are never called.
#[cfg(not(target_os = "linux"))]
fn map(_placed: Layout) -> *mut u8 {
    std::ptr::null_mut()
}

#[cfg(not(target_os = "linux"))]
unsafe fn unmap(_ptr: *mut u8, _placed: Layout) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("layout")
    }

    #[test]
    fn large_blocks_take_whole_aligned_huge_pages_and_small_ones_stay() {
        let m = HUGE_PAGE;
        assert_eq!(placed(layout(64, 8)), layout(64, 8));
        assert_eq!(placed(layout(HUGE_MIN - 1, 64)), layout(HUGE_MIN - 1, 64));
        assert_eq!(placed(layout(HUGE_MIN, 8)), layout(m, m));
        assert_eq!(placed(layout(m, 8)), layout(m, m));
        assert_eq!(placed(layout(m + 1, 16)), layout(2 * m, m));
        assert_eq!(placed(layout(3 * m, 4 * m)), layout(3 * m, 4 * m));
        // Too large to round: left as asked.
        let huge = layout(isize::MAX as usize - 100, 8);
        assert_eq!(placed(huge), huge);
    }

    /// The `VmFlags` of the mapping of this process that holds `addr`.
    fn vm_flags_at(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = lo <= addr && addr < hi;
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_owned();
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    fn advised(addr: usize) -> bool {
        vm_flags_at(addr).split(' ').any(|f| f == "hg")
    }

    #[test]
    fn a_large_block_is_advised_aligned_and_stays_so_when_it_grows() {
        // Without THP in the kernel madvise refuses and nothing changes: then
        // only the placement and the contents are checked.
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists();
        let big = layout(3 * HUGE_MIN, 8);
        // SAFETY: non-zero layouts; each block is written within its size and
        // freed once with the layout it was last given.
        unsafe {
            let p = HugePages.alloc_zeroed(big);
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE_PAGE, 0, "aligned to a huge page");
            assert!((0..big.size()).step_by(4096).all(|i| *p.add(i) == 0));
            std::ptr::write_bytes(p, 7, big.size());
            if thp {
                assert!(advised(p as usize), "{}", vm_flags_at(p as usize));
                assert!(advised(p as usize + big.size() - 1));
            }
            // Within its rounded size: the same block.
            let same = HugePages.realloc(p, big, 4 * HUGE_MIN);
            assert_eq!(same, p);
            let grown = HugePages.realloc(same, layout(4 * HUGE_MIN, 8), 16 * HUGE_MIN);
            assert_eq!(grown as usize % HUGE_PAGE, 0);
            assert!((0..big.size()).step_by(4093).all(|i| *grown.add(i) == 7));
            if thp {
                assert!(advised(grown as usize + 16 * HUGE_MIN - 1));
            }
            HugePages.dealloc(grown, layout(16 * HUGE_MIN, 8));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Grown and shrunk across the threshold, a block keeps what it held.
        #[test]
        fn realloc_keeps_the_contents(
            sizes in proptest::collection::vec(1usize..5 * HUGE_MIN, 2..6),
            align_log in 0u32..7,
        ) {
            let align = 1usize << align_log;
            // SAFETY: non-zero layouts, writes and reads within the current
            // size, one dealloc with the last layout.
            unsafe {
                let mut size = sizes[0];
                let mut p = HugePages.alloc(layout(size, align));
                proptest::prop_assert!(!p.is_null());
                proptest::prop_assert_eq!(p as usize % align, 0);
                for i in 0..size { *p.add(i) = (i % 251) as u8; }
                for &next in &sizes[1..] {
                    p = HugePages.realloc(p, layout(size, align), next);
                    proptest::prop_assert!(!p.is_null());
                    proptest::prop_assert_eq!(p as usize % align, 0);
                    let kept = size.min(next);
                    proptest::prop_assert!((0..kept).all(|i| *p.add(i) == (i % 251) as u8));
                    for i in kept..next { *p.add(i) = (i % 251) as u8; }
                    size = next;
                }
                HugePages.dealloc(p, layout(size, align));
            }
        }
    }
}
