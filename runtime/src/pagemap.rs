//! Which pages of this process's memory hold data, as `/proc/self/pagemap` tells: those in
//! memory or in swap. `mincore` would not do: it calls a swapped-out page absent, and an
//! absent page is taken to read as zero.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

/// Pagemap entries read at once.
const BATCH: usize = 512;

/// A pagemap entry's bits: the page is in memory, or in swap.
const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;

const ENTRY: usize = std::mem::size_of::<u64>();

/// The most bytes of a page the callers handle: pages of up to 64 KiB.
const MAX_PAGE: usize = 64 << 10;

fn pagemap() -> Option<&'static (File, usize)> {
    static PAGEMAP: OnceLock<Option<(File, usize)>> = OnceLock::new();
    PAGEMAP
        .get_or_init(|| {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
            let file = File::open("/proc/self/pagemap").ok()?;
            (page.is_power_of_two() && (4096..=MAX_PAGE).contains(&page)).then_some((file, page))
        })
        .as_ref()
}

/// The page size, where the pages that hold data can be told (a power of two, 4-64 KiB);
/// `None` where they cannot (no `/proc/self/pagemap`, as in some sandboxes).
pub(crate) fn page_size() -> Option<usize> {
    pagemap().map(|(_, page)| *page)
}

/// Calls `each` with the address of every page of `range` that is resident or swapped out,
/// in order, while it returns `true`; `Some(false)` if it stopped, `None` if the pages could
/// not be read.
pub(crate) fn held_pages(
    range: &Range<usize>,
    each: &mut dyn FnMut(usize) -> bool,
) -> Option<bool> {
    let (file, page) = pagemap()?;
    let mut entries = [0u64; BATCH];
    let mut at = range.start;
    while at < range.end {
        let n = ((range.end - at).div_ceil(*page)).min(BATCH);
        // SAFETY: the entries as the bytes the kernel fills.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(entries.as_mut_ptr().cast::<u8>(), n * ENTRY) };
        file.read_exact_at(bytes, (at / page * ENTRY) as u64).ok()?;
        for (i, entry) in entries[..n].iter().enumerate() {
            if entry & (PRESENT | SWAPPED) != 0 && !each(at + i * page) {
                return Some(false);
            }
        }
        at += n * page;
    }
    Some(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Private anonymous pages of 4 KiB, as the arena's.
    pub(crate) struct Pages {
        pub(crate) range: Range<usize>,
    }

    impl Pages {
        pub(crate) fn new(pages: usize) -> Pages {
            let len = pages * 4096;
            // SAFETY: a fresh anonymous mapping at an address of the kernel's choice.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED);
            Pages {
                range: base as usize..base as usize + len,
            }
        }

        pub(crate) fn write(&self, offset: usize, word: u64) {
            assert!(offset + 8 <= self.range.len());
            // SAFETY: inside the mapping, aligned by the callers.
            unsafe { ((self.range.start + offset) as *mut u64).write(word) };
        }

        pub(crate) fn words(&self) -> Vec<u64> {
            // SAFETY: the mapping.
            unsafe {
                std::slice::from_raw_parts(self.range.start as *const u64, self.range.len() / 8)
            }
            .to_vec()
        }

        pub(crate) fn give_back(&self) {
            // SAFETY: the mapping, which reads as zero afterwards.
            unsafe {
                libc::madvise(
                    self.range.start as *mut libc::c_void,
                    self.range.len(),
                    libc::MADV_DONTNEED,
                )
            };
        }
    }

    /// The pages of `range` in memory, as `mincore` tells.
    pub(crate) fn resident_pages(range: &Range<usize>) -> usize {
        let mut residency = vec![0u8; range.len().div_ceil(4096)];
        // SAFETY: a mapped range, and a vector of one byte per page.
        let done = unsafe {
            libc::mincore(
                range.start as *mut libc::c_void,
                range.len(),
                residency.as_mut_ptr(),
            )
        };
        assert_eq!(done, 0);
        residency.iter().filter(|&&r| r & 1 == 1).count()
    }

    impl Drop for Pages {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`.
            unsafe { libc::munmap(self.range.start as *mut libc::c_void, self.range.len()) };
        }
    }

    #[test]
    fn only_pages_that_hold_data_are_visited() {
        if page_size() != Some(4096) {
            eprintln!(
                "pages of {:?} bytes (none: no /proc/self/pagemap); skipped",
                page_size()
            );
            return;
        }
        let pages = Pages::new(BATCH + 8);
        let written = [0, 7, BATCH - 1, BATCH, BATCH + 7];
        for page in written {
            pages.write(page * 4096, 1);
        }
        let mut seen = Vec::new();
        let held = held_pages(&pages.range, &mut |at| {
            seen.push((at - pages.range.start) / 4096);
            true
        });
        assert_eq!(held, Some(true));
        assert_eq!(seen, written);
        let stopped = held_pages(&pages.range, &mut |_| false);
        assert_eq!(stopped, Some(false));
    }
}
