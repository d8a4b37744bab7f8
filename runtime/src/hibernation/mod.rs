//! A process that has waited a while gives its fiber stack's pages back: the live part of the
//! suspended stack (its saved stack pointer to its top, ~2.3 KiB for a process asleep in a
//! WASI call) is kept on the heap, as what differs from the first stack of its length asleep
//! (`image`, ~0.5 KiB), the stack's pages are returned to the system, and the words are
//! written back to the same addresses before the process runs again. A sleeping process then
//! holds that instead of a page (4 KiB) or more, and no page table for its stack: below what
//! bare wasmtime needs.
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

mod image;

pub(crate) use image::Templates;

use std::cell::Cell;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

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

/// Whether engines made from now on hibernate their processes' stacks: yes unless the
/// environment's `WASMPROC_HIBERNATE` is `0` (an operator's way out, should a wasmtime
/// upgrade ever move what this module relies on before its tests catch it).
pub(crate) fn wanted() -> bool {
    wanted_by(std::env::var("WASMPROC_HIBERNATE").ok().as_deref())
}

fn wanted_by(setting: Option<&str>) -> bool {
    setting.is_none_or(|v| v.trim() != "0")
}

/// Stacks hibernated now, in every engine of this host process.
static HIBERNATED: AtomicUsize = AtomicUsize::new(0);

/// How many processes' fiber stacks are hibernated now, in every engine of this host process:
/// processes that have waited at least [`IDLE_BEFORE_HIBERNATION`] in an engine whose pool
/// takes the arena (see `README.md`, "Instances come from").
pub fn hibernated() -> usize {
    HIBERNATED.load(Ordering::Relaxed)
}

thread_local! {
    /// The stack the arena last handed out on this thread, while a [`Hibernating`] future
    /// polls its store (cleared before each poll).
    static MADE: Cell<Option<Range<usize>>> = const { Cell::new(None) };
}

/// Called by the arena when a stack that may be hibernated is handed out: the store being
/// polled on this thread made it.
pub(crate) fn stack_made(stack: Range<usize>) {
    MADE.with(|made| made.set(Some(stack)));
}

/// A store's future whose fiber stack is hibernated after [`IDLE_BEFORE_HIBERNATION`]
/// without a poll (see the module's documentation).
pub(crate) struct Hibernating<'a, F> {
    inner: F,
    /// Its program's templates (see `image`).
    templates: &'a Templates,
    /// Made at the first wait of a store that made a stack: most processes never wait, and
    /// those pay nothing but this pointer.
    idle: Option<Box<Idle>>,
    /// The store made a second stack: hibernation is off for it.
    off: bool,
}

struct Idle {
    stack: Range<usize>,
    /// Fires when the process has had no poll for [`IDLE_BEFORE_HIBERNATION`].
    timer: Sleep,
    saved: Option<Saved>,
}

/// A hibernated stack's live words, from the fiber's stack pointer to the stack's top.
struct Saved(image::Image);

impl<'a, F> Hibernating<'a, F> {
    /// `inner`, the future of a store of the program whose `templates` these are.
    pub(crate) fn new(inner: F, templates: &'a Templates) -> Self {
        Hibernating {
            inner,
            templates,
            idle: None,
            off: false,
        }
    }

    /// The stack's bytes back where they were, before anything may resume its fiber.
    fn wake(&mut self) -> bool {
        let Some(idle) = self.idle.as_mut() else {
            return false;
        };
        match idle.saved.take() {
            Some(saved) => {
                saved.restore(&idle.stack);
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
        let woke = this.wake();
        // Its timer fired (the driver saw its deadline pass) and nothing woke the store since.
        let idle_for_long = !woke && this.idle.as_ref().is_some_and(|i| i.timer.is_elapsed());
        MADE.with(|made| made.set(None));
        // SAFETY: see above.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        let outcome = inner.poll(cx);
        let made = MADE.with(|made| made.take());
        if outcome.is_ready() || this.off {
            return outcome;
        }
        // Read only by processes that wait with a stack to hibernate: a clock read is a good
        // share of the cost of a spawn.
        let now = Instant::now();
        match (&mut this.idle, made) {
            (None, None) => return Poll::Pending,
            (None, Some(stack)) => {
                this.idle = Some(Box::new(Idle {
                    stack,
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
        if idle_for_long {
            // The timer fired and this poll found the store still waiting.
            idle.saved = hibernate(this.templates, &idle.stack);
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
/// `templates`) and gives the stack's pages back; `None` (and the stack untouched) where that
/// cannot be done.
fn hibernate(templates: &Templates, stack: &Range<usize>) -> Option<Saved> {
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
    let image = image::Image::take(templates, stack, from);
    // SAFETY: the stack is a page-aligned block of a private anonymous mapping (the arena's);
    // its pages read as zero afterwards, and the live ones are written back before the fiber
    // runs again.
    let given = unsafe {
        libc::madvise(
            stack.start as *mut libc::c_void,
            stack.end - stack.start,
            libc::MADV_DONTNEED,
        )
    };
    if given != 0 {
        return None;
    }
    HIBERNATED.fetch_add(1, Ordering::Relaxed);
    Some(Saved(image))
}

impl Saved {
    /// The words back in `stack`, the one they were taken from.
    fn restore(self, stack: &Range<usize>) {
        self.0.put_back(stack);
        HIBERNATED.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake fiber stack of `pages` pages: a private anonymous mapping, as the arena's.
    struct FakeStack {
        range: Range<usize>,
    }

    impl FakeStack {
        fn new(pages: usize) -> FakeStack {
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
            let base = base as usize;
            FakeStack {
                range: base..base + len,
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
            let pages = (self.range.end - self.range.start) / 4096;
            let mut residency = vec![0u8; pages];
            // SAFETY: the mapping, and a vector of one byte per page.
            let done = unsafe {
                libc::mincore(
                    self.range.start as *mut libc::c_void,
                    self.range.end - self.range.start,
                    residency.as_mut_ptr(),
                )
            };
            assert_eq!(done, 0);
            residency.iter().filter(|&&r| r & 1 == 1).count()
        }
    }

    impl Drop for FakeStack {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`.
            unsafe {
                libc::munmap(
                    self.range.start as *mut libc::c_void,
                    self.range.end - self.range.start,
                )
            };
        }
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
        let saved = hibernate(&Templates::default(), &stack.range).expect("hibernated");
        assert!(saved.0.held() < live / 2, "the live part only, packed");
        assert_eq!(stack.resident_pages(), 0, "every page given back");
        saved.restore(&stack.range);
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
                hibernate(&Templates::default(), &stack.range).is_none(),
                "{:#x}",
                top - sp
            );
            assert_eq!(stack.resident_pages(), 2 + MAX_LIVE / 4096, "untouched");
        }
        // SAFETY: as above.
        unsafe { slot.write(top - MAX_LIVE) };
        let saved =
            hibernate(&Templates::default(), &stack.range).expect("the most that is copied");
        saved.restore(&stack.range);
    }
}
