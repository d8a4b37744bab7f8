//! A process that has waited a while gives its fiber stack's pages back, and its linear
//! memories' pages: the live part of the suspended stack (its saved stack pointer to its top,
//! ~2.3 KiB for a process asleep in a WASI call) is kept on the heap, as what differs from the
//! first stack of its length asleep (`image`, ~0.5 KiB); so are the memories' pages that hold
//! data, as what differs from the same pages of the first process of its program that held
//! them (`memory`: a Rust guest's data segment page, ~0.1 KiB). The pages are returned to the
//! system, and the words are written back to the same addresses before the process runs
//! again. A sleeping process then holds that instead of a page (4 KiB) or more for each, and
//! no page table for its stack or a memory of 2 MiB or more: below what bare wasmtime needs.
//!
//! Invariants that make moving a suspended stack's bytes sound:
//! - A suspended fiber's stack is touched only by that fiber, which runs only while its
//!   store's future is polled or dropped (a drop resumes it to unwind). `Hibernating` owns
//!   that future and restores the bytes before either, and hibernates only between polls.
//! - Nothing outside the stack points into its dead part, and what points into the live part
//!   finds the same bytes at the same addresses once restored. Such pointers are read only
//!   by the fiber itself or by wasmtime when it resumes it, never while it is suspended: the
//!   futures a fiber suspends on are boxed on the heap (wasmtime pins host functions'
//!   futures and the epoch yield's as `Pin<Box<dyn Future>>`), so no timer wheel, waker list
//!   or channel holds a pointer into a stack. The limiter is synchronous (it never suspends a
//!   fiber inside `memory.grow`, whose future wasmtime pins on the stack).
//! - Only stacks of the main engine's arena are hibernated (the stack a store first makes is
//!   the only one it uses: wasmtime keeps it for its next fiber until the store drops). The
//!   concurrent engine's stores may make more than one fiber and give one back while
//!   another waits, so its stacks are never recorded.
//! - The suspended fiber's stack pointer is where wasmtime-fiber keeps it on Unix, 16 bytes
//!   below the stack's top (its documented layout); a value outside the stack or misaligned
//!   means no hibernation, never a guess.
//!
//! And a memory's:
//! - Linear memory is read and written only by its store's guest and by host calls on its
//!   behalf, inside a poll of the store's future: host futures that wait (WASI preview 1's
//!   hold the memory across their waits) run only when polled, and work handed to other
//!   threads (file operations, name lookups) reads and writes buffers of its own, copied in
//!   and out in a poll. Shared memories, which other threads could touch, are not compiled
//!   in (no `threads` feature).
//! - The arena tells which memories the polled store made (each is the store's until it
//!   drops), and where each is now: a memory that grows past its block moves, so its place
//!   is read when it is hibernated. A memory dropped while a store lives (never seen: a
//!   store's memories drop with it) makes that store's memories unknown: not hibernated.
//! - Pages that hold data are those `/proc/self/pagemap` says are in memory or in swap (a
//!   page not resident could be swapped out, not zero); without it, memories stay as they
//!   are.

mod image;
mod memory;

use std::cell::Cell;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::arena::MemoryPlace;

/// How long a process waits, with no poll of its store, before its stack is hibernated: long
/// enough that copying and faulting its page back in (a few µs) is noise against the wait.
pub const IDLE_BEFORE_HIBERNATION: Duration = Duration::from_millis(100);

/// How late past [`IDLE_BEFORE_HIBERNATION`] it may happen: the idle timer is moved only when
/// it would move by more, so a busy process moves it once per this much time, not every poll.
const SLACK: Duration = Duration::from_millis(10);

/// The most live stack copied: a larger copy would leave glibc's heap for a mapping of its
/// own, and a map is what an arena process must not cost.
const MAX_LIVE: usize = 64 << 10;

/// Where wasmtime-fiber keeps a suspended fiber's stack pointer on Unix: this far below the
/// stack's top.
const SAVED_SP_BELOW_TOP: usize = 0x10;

/// Whether an engine made now with `allocation` hibernates its processes: the main engine
/// (not `concurrent`: its stores may hold several fibers) whose pool takes the arena, unless
/// the environment says otherwise ([`wanted`]). The one rule the engine's configuration, its
/// capacity log and the loader's programs follow.
pub(crate) fn in_engine(allocation: crate::capacity::Allocation, concurrent: bool) -> bool {
    !concurrent && allocation == crate::capacity::Allocation::Arena && wanted()
}

/// Whether engines made from now on may hibernate their processes: yes unless the
/// environment's `WASMPROC_HIBERNATE` is `0` (an operator's way out, should a wasmtime
/// upgrade ever move what this module relies on before its tests catch it).
fn wanted() -> bool {
    wanted_by(std::env::var("WASMPROC_HIBERNATE").ok().as_deref())
}

fn wanted_by(setting: Option<&str>) -> bool {
    setting.is_none_or(|v| v.trim() != "0")
}

/// Stacks hibernated now, in every engine of this host process.
static HIBERNATED: AtomicUsize = AtomicUsize::new(0);

/// Bytes of linear memory that held data and are given back now.
static HIBERNATED_MEMORY: AtomicUsize = AtomicUsize::new(0);

/// How many processes' fiber stacks are hibernated now, in every engine of this host process:
/// processes that have waited at least [`IDLE_BEFORE_HIBERNATION`] in an engine whose pool
/// takes the arena (see `README.md`, "Instances come from").
pub fn hibernated() -> usize {
    HIBERNATED.load(Ordering::Relaxed)
}

/// Bytes of linear memory that held data (pages resident or swapped out) and are given back
/// now, in every engine of this host process: the memories of the processes [`hibernated`].
pub fn hibernated_memory() -> usize {
    HIBERNATED_MEMORY.load(Ordering::Relaxed)
}

/// What a program's processes' hibernated stacks and memories are kept against (see `image`
/// and `memory`).
#[derive(Default)]
pub(crate) struct Templates {
    stacks: image::Templates,
    pages: memory::Templates,
}

/// The memories a process has at most (the store's limiter refuses more).
const MEMORIES: usize = crate::limits::MEMORIES_PER_PROCESS as usize;

/// What the arena handed out, or took back, on this thread while a [`Hibernating`] future
/// polled its store.
#[derive(Default, Clone, Copy)]
struct Made {
    /// The last stack: its start and end.
    stack: Option<(usize, usize)>,
    /// Memories: the store's, in the order it made them.
    memories: Memories,
}

/// A store's memories, as far as hibernation knows them.
#[derive(Default, Clone, Copy)]
struct Memories {
    places: [Option<MemoryPlace>; MEMORIES],
    /// More than fit, or one was dropped while the store lived on: the memories are not
    /// hibernated, so that a place never outlives its memory.
    lost: bool,
}

impl Memories {
    fn made(&mut self, place: MemoryPlace) {
        match self.places.iter_mut().find(|p| p.is_none()) {
            Some(free) => *free = Some(place),
            None => self.lose(),
        }
    }

    fn lose(&mut self) {
        *self = Memories {
            places: [None; MEMORIES],
            lost: true,
        };
    }

    /// Those made in a poll added to these.
    fn add(&mut self, made: Memories) {
        if made.lost {
            self.lose();
        }
        for place in made.places.into_iter().flatten() {
            if !self.lost {
                self.made(place);
            }
        }
    }
}

thread_local! {
    /// Cleared before each poll of a [`Hibernating`] future, read after it.
    static MADE: Cell<Made> = Cell::new(Made::default());
}

/// Called by the arena when a stack that may be hibernated is handed out: the store being
/// polled on this thread made it.
pub(crate) fn stack_made(stack: Range<usize>) {
    MADE.with(|made| {
        made.set(Made {
            stack: Some((stack.start, stack.end)),
            ..made.get()
        })
    });
}

/// Called by the arena when a memory that may be hibernated is made: the store being polled
/// on this thread made it, and holds it until it drops.
pub(crate) fn memory_made(place: MemoryPlace) {
    MADE.with(|made| {
        let mut now = made.get();
        now.memories.made(place);
        made.set(now);
    });
}

/// Called by the arena when such a memory is dropped: were it the polled store's (a store
/// drops its memories only when it drops, so this is never expected), its place must not be
/// used again.
pub(crate) fn memory_gone() {
    MADE.with(|made| {
        let mut now = made.get();
        now.memories.lose();
        made.set(now);
    });
}

/// A store's future whose fiber stack is hibernated after [`IDLE_BEFORE_HIBERNATION`]
/// without a poll (see the module's documentation).
pub(crate) struct Hibernating<'a, F> {
    inner: F,
    /// Its program's templates (see `image` and `memory`); `None` where its engine does not
    /// hibernate: the future is then only polled.
    templates: Option<&'a Templates>,
    /// Made at the first wait of a store that made a stack: most processes never wait, and
    /// those pay nothing but this pointer.
    idle: Option<Box<Idle>>,
    /// The store made a second stack: hibernation is off for it.
    off: bool,
}

struct Idle {
    stack: Range<usize>,
    memories: Memories,
    /// Fires when the process has had no poll for [`IDLE_BEFORE_HIBERNATION`].
    timer: Sleep,
    saved: Option<Saved>,
}

/// A hibernated stack's live words, from the fiber's stack pointer to the stack's top, and
/// its memories' pages that held data (unless they could not be taken).
struct Saved {
    stack: image::Image,
    memory: Option<memory::Image>,
}

impl<'a, F> Hibernating<'a, F> {
    /// `inner`, the future of a store of the program whose `templates` these are (`None`
    /// where its engine does not hibernate).
    pub(crate) fn new(inner: F, templates: Option<&'a Templates>) -> Self {
        Hibernating {
            inner,
            templates,
            idle: None,
            off: false,
        }
    }

    /// The stack's bytes back where they were, before anything may resume its fiber.
    fn wake(&mut self) -> bool {
        // Without templates there is never an `Idle`: `poll` only polls.
        let (Some(templates), Some(idle)) = (self.templates, self.idle.as_mut()) else {
            return false;
        };
        match idle.saved.take() {
            Some(saved) => {
                saved.restore(templates, &idle.stack);
                true
            }
            None => false,
        }
    }
}

impl<F: Future> Future for Hibernating<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is never moved out of a pinned `Hibernating` (structural pinning:
        // the drop below only restores bytes), and the other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(templates) = this.templates else {
            // SAFETY: see above.
            return unsafe { Pin::new_unchecked(&mut this.inner) }.poll(cx);
        };
        let woke = this.wake();
        // Its timer fired (the driver saw its deadline pass) and nothing woke the store since.
        let idle_for_long = !woke && this.idle.as_ref().is_some_and(|i| i.timer.is_elapsed());
        MADE.with(|made| made.set(Made::default()));
        // SAFETY: see above.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        let outcome = inner.poll(cx);
        let made = MADE.with(|made| made.get());
        if outcome.is_ready() || this.off {
            return outcome;
        }
        let stack = made.stack.map(|(start, end)| start..end);
        if this.idle.is_none() && stack.is_none() {
            // Memories made without a stack (never seen: instances are made on the fiber) are
            // forgotten: they are only not hibernated.
            return Poll::Pending;
        }
        // Read only by processes that wait with a stack to hibernate: a clock read is a good
        // share of the cost of a spawn.
        let now = Instant::now();
        match (&mut this.idle, stack) {
            (None, None) => return Poll::Pending,
            (None, Some(stack)) => {
                this.idle = Some(Box::new(Idle {
                    stack,
                    memories: Memories::default(),
                    timer: tokio::time::sleep_until(now + IDLE_BEFORE_HIBERNATION),
                    saved: None,
                }));
            }
            (Some(idle), Some(stack)) if idle.stack != stack => {
                this.off = true;
                return Poll::Pending;
            }
            (Some(_), _) => {}
        }
        let idle = this.idle.as_mut().expect("made above");
        idle.memories.add(made.memories);
        if idle_for_long {
            // The timer fired and this poll found the store still waiting.
            idle.saved = hibernate(templates, &idle.stack, &mut idle.memories);
            if idle.saved.is_some() {
                return Poll::Pending;
            }
        }
        // SAFETY: the box does not move while the timer is registered; it is dropped whole.
        let mut timer = unsafe { Pin::new_unchecked(&mut idle.timer) };
        let later = now + IDLE_BEFORE_HIBERNATION;
        if later > timer.deadline() + SLACK {
            timer.as_mut().reset(later);
        }
        let _ = timer.poll(cx);
        Poll::Pending
    }
}

impl<F> Drop for Hibernating<'_, F> {
    fn drop(&mut self) {
        // Dropping the store's future resumes its fiber to unwind: its stack must be whole.
        self.wake();
    }
}

/// Keeps the live part of the suspended fiber's `stack` on the heap (against its program's
/// `templates`) and gives the stack's pages back, and the same for its store's `memories`'
/// pages that hold data; `None` (and the stack and memories untouched) where the stack cannot
/// be. Memories that cannot be (too much data) are left as they are, and never tried again.
fn hibernate(
    templates: &Templates,
    stack: &Range<usize>,
    memories: &mut Memories,
) -> Option<Saved> {
    let top = stack.end;
    // SAFETY: the stack is the store's, its fiber suspended (the store's future returned
    // `Pending`) and not running anywhere; the slot is inside the stack.
    let from = unsafe { ((top - SAVED_SP_BELOW_TOP) as *const usize).read() };
    if !cfg!(all(
        unix,
        any(target_arch = "x86_64", target_arch = "aarch64")
    )) || !(stack.start..top - SAVED_SP_BELOW_TOP).contains(&from)
        || from % 8 != 0
        || top - from > MAX_LIVE
    {
        return None;
    }
    let image = image::Image::take(&templates.stacks, stack, from);
    // SAFETY: the stack is a page-aligned block of a private anonymous mapping (the arena's);
    // its pages read as zero afterwards, and the live ones are written back before the fiber
    // runs again.
    if unsafe { give_back(stack) }.is_err() {
        return None;
    }
    let memory = hibernate_memories(templates, memories);
    if memory.is_none() {
        memories.lose();
    }
    HIBERNATED.fetch_add(1, Ordering::Relaxed);
    Some(Saved {
        stack: image,
        memory,
    })
}

/// The pages of the store's `memories` that hold data, kept on the heap, and the memories'
/// pages given back; `None` (and the memories as they were) where they cannot be.
fn hibernate_memories(templates: &Templates, memories: &Memories) -> Option<memory::Image> {
    if memories.lost {
        return None;
    }
    // SAFETY: each place is of a memory its store made and holds until it drops (a memory
    // dropped earlier made them `lost`); the store is not in use (its future is pending).
    let extents: [(Range<usize>, Range<usize>); MEMORIES] =
        std::array::from_fn(|i| memories.places[i].map_or((0..0, 0..0), |p| unsafe { p.extent() }));
    let written = extents.clone().map(|(written, _)| written);
    let image = memory::Image::take(&templates.pages, &written)?;
    // Whole blocks, not only what may have been written: a page table is given back only
    // with all of the 2 MiB it maps (a block of 2 MiB or more covers its own).
    for (_, block) in &extents {
        // SAFETY: a page-aligned block of the arena's (a private anonymous mapping): its
        // pages read as zero afterwards, and those that held data are written back before
        // the store is used again.
        if unsafe { give_back(block) }.is_err() {
            // Pages given back so far read as zero: write them back now.
            image.put_back(&templates.pages);
            return None;
        }
    }
    HIBERNATED_MEMORY.fetch_add(image.given(), Ordering::Relaxed);
    Some(image)
}

/// `range`'s pages back to the system: they read as zero afterwards.
///
/// # Safety
/// `range` is page-aligned, in a private anonymous mapping, and nothing needs its bytes.
unsafe fn give_back(range: &Range<usize>) -> Result<(), ()> {
    if range.is_empty() {
        return Ok(());
    }
    // SAFETY: the caller's promise.
    let given = unsafe {
        libc::madvise(
            range.start as *mut libc::c_void,
            range.len(),
            libc::MADV_DONTNEED,
        )
    };
    if given == 0 {
        Ok(())
    } else {
        Err(())
    }
}

impl Saved {
    /// The words back in `stack`, the one they were taken from, and the memories' pages in
    /// theirs, against the program's `templates`.
    fn restore(self, templates: &Templates, stack: &Range<usize>) {
        self.stack.put_back(stack);
        if let Some(memory) = self.memory {
            HIBERNATED_MEMORY.fetch_sub(memory.given(), Ordering::Relaxed);
            memory.put_back(&templates.pages);
        }
        HIBERNATED.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagemap::tests::Pages;

    /// A fake fiber stack of `pages` pages: a private anonymous mapping, as the arena's.
    struct FakeStack {
        range: Range<usize>,
        _pages: Pages,
    }

    impl FakeStack {
        fn new(pages: usize) -> FakeStack {
            let pages = Pages::new(pages);
            FakeStack {
                range: pages.range.clone(),
                _pages: pages,
            }
        }

        /// The stack as a suspended fiber leaves it: `live` bytes of a pattern under the
        /// top, the saved stack pointer where wasmtime-fiber keeps it, garbage below.
        fn suspend(&self, live: usize) -> usize {
            let from = self.range.end - live;
            for (i, at) in self.range.clone().enumerate() {
                // SAFETY: inside the mapping.
                unsafe { (at as *mut u8).write((i % 251) as u8 + 1) };
            }
            // SAFETY: inside the mapping, aligned.
            unsafe { ((self.range.end - SAVED_SP_BELOW_TOP) as *mut usize).write(from) };
            from
        }

        fn byte(&self, at: usize) -> u8 {
            // SAFETY: inside the mapping.
            unsafe { (at as *const u8).read() }
        }

        fn resident_pages(&self) -> usize {
            crate::pagemap::tests::resident_pages(&self.range)
        }
    }

    #[test]
    fn a_store_with_a_memory_dropped_or_more_memories_than_known_hibernates_none() {
        let place = |n: usize| crate::arena::MemoryPlace::at(n.try_into().unwrap());
        let mut known = Memories::default();
        let mut made = Memories::default();
        made.made(place(1));
        known.add(made);
        assert_eq!(known.places, [Some(place(1)), None]);
        let mut gone = Memories::default();
        gone.made(place(2));
        gone.lose();
        known.add(gone);
        assert!(known.lost && known.places == [None, None]);
        let mut more = Memories::default();
        more.made(place(3));
        known.add(more);
        assert!(known.lost && known.places == [None, None], "lost for good");

        let mut three = Memories::default();
        for n in 1..=3 {
            three.made(place(n));
        }
        assert!(three.lost && three.places == [None, None]);
    }

    #[test]
    fn only_a_zero_turns_hibernation_off() {
        assert!(wanted_by(None));
        assert!(wanted_by(Some("1")));
        assert!(!wanted_by(Some("0")));
        assert!(!wanted_by(Some(" 0\n")));
    }

    #[test]
    fn the_live_bytes_come_back_to_their_addresses_and_the_pages_go_back_meanwhile() {
        let stack = FakeStack::new(4);
        let live = 4096 + 2344; // Across a page boundary.
        let from = stack.suspend(live);
        let expected: Vec<u8> = (from..stack.range.end).map(|at| stack.byte(at)).collect();
        assert_eq!(stack.resident_pages(), 4);
        let saved = hibernate(
            &Templates::default(),
            &stack.range,
            &mut Memories::default(),
        )
        .expect("hibernated");
        assert!(saved.stack.held() < live / 2, "the live part only, packed");
        assert_eq!(stack.resident_pages(), 0, "every page given back");
        saved.restore(&Templates::default(), &stack.range);
        let back: Vec<u8> = (from..stack.range.end).map(|at| stack.byte(at)).collect();
        assert!(back == expected, "the live bytes, where they were");
        assert_eq!(stack.byte(from - 1), 0, "the dead part is not copied back");
    }

    #[test]
    fn a_saved_stack_pointer_outside_the_stack_misaligned_or_too_deep_leaves_it_alone() {
        let stack = FakeStack::new(2 + MAX_LIVE / 4096);
        let top = stack.range.end;
        stack.suspend(64);
        let slot = (top - SAVED_SP_BELOW_TOP) as *mut usize;
        for sp in [
            stack.range.start - 8,
            top,
            top + 4096,
            top - 64 - 3,
            top - MAX_LIVE - 8,
        ] {
            // SAFETY: inside the mapping, aligned.
            unsafe { slot.write(sp) };
            assert!(
                hibernate(
                    &Templates::default(),
                    &stack.range,
                    &mut Memories::default()
                )
                .is_none(),
                "{:#x}",
                top - sp
            );
            assert_eq!(stack.resident_pages(), 2 + MAX_LIVE / 4096, "untouched");
        }
        // SAFETY: as above.
        unsafe { slot.write(top - MAX_LIVE) };
        let saved = hibernate(
            &Templates::default(),
            &stack.range,
            &mut Memories::default(),
        )
        .expect("the most that is copied");
        saved.restore(&Templates::default(), &stack.range);
    }
}
