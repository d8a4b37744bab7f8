//! A hibernated process's linear memories: the pages that hold data (resident or swapped out,
//! as [`crate::pagemap`] reads them), kept as what differs from a template, then given back.
//! Processes of one program asleep at the same place hold mostly the same bytes in the same
//! pages (the data segments copied in at instantiation, the same allocations made in the same
//! order), so each keeps a bit per word and the words that differ. An all-zero page is not
//! kept at all: a page given back reads as zero.
//!
//! A template is the first non-zero content seen of one page (a memory of the process, by the
//! order its memories were made, and a page of it) among one program's processes; a program
//! keeps at most [`MAX_TEMPLATES`]. A page without a template is kept against zero.
//!
//! What one process keeps is bounded by [`MAX_KEPT`], and the pages looked at by
//! [`MAX_PAGES`]: a process holding more stays as it is.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::lock::lock;
use crate::pagemap::{held_pages, page_size};

/// Page templates a program keeps: bounded (at most 64 KiB a program with 4 KiB pages), as a
/// guest chooses what its memory holds.
const MAX_TEMPLATES: usize = 16;

/// The most one process keeps of its memories, in bytes (a Rust guest asleep keeps ~0.1 KiB):
/// a guest that holds more gains little from hibernating its memory, and finding out what it
/// holds takes a worker's time (32 KiB of single-word changes: ~410 pages, ~0.6 ms measured).
/// Far below glibc's threshold for a mapping of its own (128 KiB): a map is what an arena
/// process must not cost.
const MAX_KEPT: usize = 32 << 10;

/// The most pages of data looked at for one process (zero ones count: they are read to know):
/// a worker's time, which other processes wait for, is bounded (2,048 pages of zeros took
/// 0.63 ms, measured; this is half).
const MAX_PAGES: usize = 1024;

const WORD: usize = std::mem::size_of::<u64>();

/// Words of bits a page's image has at most: pages of up to 64 KiB.
const MAX_BITS: usize = (64 << 10) / WORD / 64;

/// A kept page's header's flags (its address is page-aligned: the low bits are free).
const AGAINST_TEMPLATE: u64 = 1;
const SAME: u64 = 2;

/// A program's page templates (see the module's documentation).
#[derive(Default)]
pub(crate) struct Templates(Mutex<Vec<(Key, Arc<[u64]>)>>);

/// A page of a process's memories: the memory's rank among them, the page's index in it.
#[derive(Clone, Copy, PartialEq)]
struct Key {
    memory: u32,
    page: u32,
}

impl Key {
    fn packed(self) -> u64 {
        u64::from(self.memory) << 32 | u64::from(self.page)
    }

    fn unpacked(word: u64) -> Key {
        Key {
            memory: (word >> 32) as u32,
            page: word as u32,
        }
    }
}

impl Templates {
    /// The template of `key`, made from `words` if there is none yet and room for one.
    fn for_page(&self, key: Key, words: &[u64]) -> Option<Arc<[u64]>> {
        let mut templates = lock(&self.0);
        if let Some((_, template)) = templates.iter().find(|(k, _)| *k == key) {
            return Some(template.clone());
        }
        if templates.len() == MAX_TEMPLATES {
            return None;
        }
        let template: Arc<[u64]> = words.into();
        templates.push((key, template.clone()));
        Some(template)
    }

    /// The template a kept page was taken against (templates are never replaced).
    fn of(&self, key: Key) -> Arc<[u64]> {
        lock(&self.0)
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, template)| template.clone())
            .expect("a page kept against a template finds it again")
    }
}

/// The kept pages of a process's memories. Per page: its address with flags; the template's
/// key if against one; unless the same as its template, a bit per word set where it differs,
/// then the words that differ.
pub(super) struct Image {
    packed: Box<[u64]>,
    /// Pages that held data when taken, all-zero ones included.
    pages: usize,
}

impl Image {
    /// The pages of `memories` (the process's, in the order they were made; every one a
    /// page-aligned block of a private anonymous mapping, not in use) that hold data, against
    /// the program's `templates`; `None` where they cannot be read or hold too much.
    pub(super) fn take(templates: &Templates, memories: &[Range<usize>]) -> Option<Image> {
        let page = page_size()?;
        let words_per_page = page / WORD;
        let mut packed: Vec<u64> = Vec::new();
        let mut pages = 0;
        for (rank, memory) in memories.iter().enumerate() {
            let held = held_pages(memory, &mut |at| {
                // SAFETY: a page of the memory, whose store is not in use; read as integers
                // (whatever the guest left there).
                let words = unsafe { std::slice::from_raw_parts(at as *const u64, words_per_page) };
                pages += 1;
                if pages > MAX_PAGES {
                    return false;
                }
                if words.iter().all(|&w| w == 0) {
                    return true;
                }
                let key = Key {
                    memory: rank as u32,
                    page: ((at - memory.start) / page) as u32,
                };
                keep(&mut packed, at, key, words, templates.for_page(key, words));
                packed.len() * WORD <= MAX_KEPT
            });
            if !held? {
                return None;
            }
        }
        Some(Image {
            packed: packed.into_boxed_slice(),
            pages,
        })
    }

    /// The pages back where they were (in memories given back since, which read as zero), the
    /// same `templates` as they were taken against.
    pub(super) fn put_back(self, templates: &Templates) {
        let Some(page) = page_size() else {
            debug_assert!(self.packed.is_empty());
            return;
        };
        let words_per_page = page / WORD;
        let bits = words_per_page / 64;
        let mut packed = self.packed.iter().copied();
        let mut read = move || packed.next();
        while let Some(header) = read() {
            let page_at = (header & !(page as u64 - 1)) as usize;
            let template = (header & AGAINST_TEMPLATE != 0)
                .then(|| templates.of(Key::unpacked(read().expect("a key"))));
            let baseline = |i: usize| template.as_ref().map_or(0, |t| t[i]);
            let put = |i: usize, word: u64| {
                // Given back, the page reads as zero.
                if word != 0 {
                    // SAFETY: a word of a page of one of the process's memories, which has
                    // not been used since the page was taken.
                    unsafe { ((page_at + i * WORD) as *mut u64).write(word) }
                }
            };
            if header & SAME != 0 {
                (0..words_per_page).for_each(|i| put(i, baseline(i)));
                continue;
            }
            let differing: [u64; MAX_BITS] =
                std::array::from_fn(|b| if b < bits { read().expect("bits") } else { 0 });
            for i in 0..words_per_page {
                let word = if differing[i / 64] >> (i % 64) & 1 == 1 {
                    read().expect("a word kept for every bit set")
                } else {
                    baseline(i)
                };
                put(i, word);
            }
        }
    }

    /// The bytes it holds on the heap (besides the shared templates).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.packed.len() * WORD
    }

    /// The bytes of memory that held data when it was taken.
    pub(super) fn given(&self) -> usize {
        page_size().map_or(0, |page| self.pages * page)
    }
}

/// `words` of the page at `at` appended to `packed`, against `template` (or zero).
fn keep(packed: &mut Vec<u64>, at: usize, key: Key, words: &[u64], template: Option<Arc<[u64]>>) {
    let baseline = |i: usize| template.as_ref().map_or(0, |t| t[i]);
    let mut differing = vec![0u64; words.len() / 64];
    for (i, &word) in words.iter().enumerate() {
        if word != baseline(i) {
            differing[i / 64] |= 1 << (i % 64);
        }
    }
    let same = differing.iter().all(|&b| b == 0);
    let mut header = at as u64;
    if template.is_some() {
        header |= AGAINST_TEMPLATE;
    }
    if same {
        header |= SAME;
    }
    packed.push(header);
    if template.is_some() {
        packed.push(key.packed());
    }
    if !same {
        packed.extend_from_slice(&differing);
        packed.extend(
            (0..words.len())
                .filter(|&i| differing[i / 64] >> (i % 64) & 1 == 1)
                .map(|i| words[i]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagemap::tests::Pages;

    /// These tests' pages are of 4 KiB, and read through `/proc/self/pagemap`.
    fn testable() -> bool {
        let page = page_size();
        if page != Some(4096) {
            eprintln!("pages of {page:?} bytes (none: no /proc/self/pagemap); skipped");
        }
        page == Some(4096)
    }

    #[test]
    fn pages_like_the_templates_keep_what_differs_and_come_back_whole() {
        if !testable() {
            return;
        }
        // Two processes' memories of 8 pages (one of 2): pages 1 and 5 written alike but for
        // a word, page 3 read only (resident, zero), the rest never touched.
        let fill = |pages: &Pages, seed: u64| {
            for i in 0..512 {
                pages.write(4096 + i * 8, 0x1234_0000 + i as u64);
                pages.write(5 * 4096 + i * 8, if i % 3 == 0 { 0 } else { i as u64 });
            }
            pages.write(4096 + 40, seed);
            // SAFETY: inside the mapping.
            let _ = unsafe { ((pages.range.start + 3 * 4096) as *const u64).read_volatile() };
        };
        let (a, b, small) = (Pages::new(8), Pages::new(8), Pages::new(2));
        fill(&a, 1);
        fill(&b, 2);
        small.write(8, 99);
        let templates = Templates::default();
        let want = (a.words(), b.words(), small.words());
        let first =
            Image::take(&templates, &[a.range.clone(), small.range.clone()]).expect("taken");
        let second = Image::take(&templates, std::slice::from_ref(&b.range)).expect("taken");
        // The first made the templates: per page a header, a key.
        assert_eq!(first.held(), 3 * 2 * WORD);
        // Page 1 differs by a word (header, key, 8 words of bits, the word); page 5 is the
        // same.
        assert_eq!(second.held(), (2 + 8 + 1 + 2) * WORD);
        for pages in [&a, &b, &small] {
            pages.give_back();
        }
        first.put_back(&templates);
        second.put_back(&templates);
        assert!(a.words() == want.0 && b.words() == want.1 && small.words() == want.2);
    }

    #[test]
    fn pages_without_a_template_are_kept_against_zero_and_too_many_are_not_kept() {
        if !testable() {
            return;
        }
        let templates = Templates::default();
        let pages = Pages::new(40);
        for page in 0..MAX_TEMPLATES + 2 {
            pages.write(page * 4096 + 8, page as u64 + 1);
        }
        let want = pages.words();
        let image = Image::take(&templates, std::slice::from_ref(&pages.range)).expect("taken");
        // Templates for the first 16 pages; the next 2 against zero: header, 8 words of bits,
        // the word.
        assert_eq!(image.held(), (MAX_TEMPLATES * 2 + 2 * 10) * WORD);
        pages.give_back();
        image.put_back(&templates);
        assert!(pages.words() == want);

        // 17 pages that differ from their templates in every word: 68 KiB, past MAX_KEPT.
        let full = Pages::new(17);
        for i in 0..17 * 512 {
            full.write(i * 8, !(i as u64));
        }
        assert!(Image::take(&templates, std::slice::from_ref(&full.range)).is_none());

        // More pages of zeros than are looked at.
        let zeros = Pages::new(MAX_PAGES + 1);
        for page in 0..=MAX_PAGES {
            zeros.write(page * 4096, 0);
        }
        assert!(Image::take(&templates, std::slice::from_ref(&zeros.range)).is_none());
        let fewer = Pages::new(MAX_PAGES);
        for page in 0..MAX_PAGES {
            fewer.write(page * 4096, 0);
        }
        let image = Image::take(&templates, std::slice::from_ref(&fewer.range)).expect("taken");
        assert_eq!(image.held(), 0, "zero pages are not kept");
    }
}
