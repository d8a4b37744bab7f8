//! When a finished process's store is dropped: not in the poll that finished it, but when its
//! worker is next between urgent things to do.
//!
//! Dropping a store is most of what ending a process costs (its pool slot reset in place, its
//! tables and WASI context freed: ~40% of a sleeper's CPU, measured). Done inline, a burst of
//! processes waking at once pays for each one's drop before the next one resumes, so the last
//! ones wake late. Instead the store and its pool slot go to a queue on the worker that ran it
//! and are dropped there (the same core: dropping elsewhere cost a spawn 2.5x its CPU, measured,
//! through cross-core TLB shootdowns and cold caches):
//! - all of them when the worker runs out of tasks (about to park) or stops;
//! - the oldest [`FEW`] when a process on that worker reaches Init (so a spawn reuses the slot
//!   an EXIT just freed: the pool hands out the slot its module last used, pages still
//!   resident) or yields (waiting, or preempted: a worker busy with spinning guests still
//!   gives slots back every slice);
//! - the oldest at once past [`MAX_WAITING`] on the worker.
//!
//! A few, not all, between turns: a worker that dropped its whole queue at a spinner's yield
//! stopped waking sleepers for 3-4 ms in the middle of a burst (measured per millisecond).
//! With a spinner on each of 2 workers, 1,000 sleepers of 10 ms spawned at once then woke with
//! p99 lateness 7.6-7.8 ms, against 14.0-15.9 ms with every store dropped inline.
//!
//! So a worker gives slots back even while spinning guests keep it from ever running out of
//! tasks, and a spawn that needs one meanwhile waits for it as for any busy slot (queued,
//! never failed).
//!
//! Off a host's workers (there is no idle point to wait for) a store is dropped at once.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use crate::store_data::{ComponentData, ModuleData};

/// Stores dropped between two turns: ~0.1-0.2 ms of work, and more than a worker ends between
/// two Inits or yields unless it is in a burst.
pub(crate) const FEW: usize = 16;

/// The time dropping [`FEW`] may take before it stops early: a store whose guest dirtied a
/// large memory takes ~4-5 ms to drop (its slot's pages given back), and 7 of them dropped at
/// one yield held the worker 28 ms (measured; 16 would be ~70 ms), where ordinary stores take
/// ~10 us each.
pub(crate) const FEW_BUDGET: Duration = Duration::from_micros(250);

/// Stores one worker keeps at most before it drops the oldest at once: a burst of 1,000 ends
/// fits on 2 workers; the pool's slots bound the memory they hold in any case.
pub(crate) const MAX_WAITING: usize = 1024;

/// A finished process's store.
#[allow(dead_code)] // Held only to be dropped.
pub(crate) enum Store {
    Component(wasmtime::Store<ComponentData>),
    Module(wasmtime::Store<ModuleData>),
}

/// A store and the pool slot it holds. Fields drop in declaration order, and that order is
/// load-bearing: a permit released before its store would let a spawn instantiate into a
/// slot that is still taken (and fail for want of one).
#[allow(dead_code)] // Held only to be dropped.
struct Finished {
    store: Store,
    slot: Option<OwnedSemaphorePermit>,
}

thread_local! {
    /// The stores waiting on this thread; `None` off a host's worker (where nothing would
    /// drop them).
    static WAITING: RefCell<Option<VecDeque<Finished>>> = const { RefCell::new(None) };
}

/// Marks the calling thread as a host's worker (tokio's `on_thread_start`).
pub(crate) fn worker_started() {
    WAITING.with(|waiting| *waiting.borrow_mut() = Some(VecDeque::new()));
}

/// Queues a finished process's store and pool slot on this worker, or drops them now off a
/// worker or past [`MAX_WAITING`].
pub(crate) fn later(store: Store, slot: Option<OwnedSemaphorePermit>) {
    let finished = Finished { store, slot };
    let now = WAITING.with(|waiting| match waiting.borrow_mut().as_mut() {
        None => Some(finished),
        Some(waiting) => {
            waiting.push_back(finished);
            (waiting.len() > MAX_WAITING)
                .then(|| waiting.pop_front())
                .flatten()
        }
    });
    if let Some(finished) = now {
        drop_quietly(finished);
    }
}

/// Drops every store waiting on this worker (cheap when none are): it has nothing else to do.
pub(crate) fn all() {
    while drop_oldest() {}
}

/// Drops the oldest [`FEW`] stores waiting on this worker, or fewer once [`FEW_BUDGET`] is
/// spent (cheap when none wait): between two processes' turns, where a whole queue (a few ms
/// for a burst's) would hold up the next.
pub(crate) fn few() {
    drop_within(FEW, FEW_BUDGET);
}

/// Drops the oldest waiting stores, at most `most`, and no more once `budget` has passed
/// (always one, if any wait, so the queue moves however slow a drop is). The clock is read
/// only when a second store waits: between two turns there is usually one, or none.
fn drop_within(most: usize, budget: Duration) {
    let Some((oldest, more)) = pop_oldest() else {
        return;
    };
    let start = more.then(Instant::now);
    drop_quietly(oldest);
    let Some(start) = start else {
        return;
    };
    for _ in 1..most {
        if start.elapsed() >= budget || !drop_oldest() {
            return;
        }
    }
}

/// Whether there was a store to drop.
fn drop_oldest() -> bool {
    let Some((oldest, _)) = pop_oldest() else {
        return false;
    };
    drop_quietly(oldest);
    true
}

/// The oldest store waiting on this worker, and whether others wait after it. Taken out of
/// the queue before it is dropped: a store's drop never queues another, but if it did, it
/// would find the queue free.
fn pop_oldest() -> Option<(Finished, bool)> {
    WAITING.with(|waiting| {
        let mut waiting = waiting.borrow_mut();
        let waiting = waiting.as_mut()?;
        let oldest = waiting.pop_front()?;
        Some((oldest, !waiting.is_empty()))
    })
}

/// How many stores wait on this thread.
#[cfg(test)]
fn waiting() -> usize {
    WAITING.with(|waiting| waiting.borrow().as_ref().map_or(0, VecDeque::len))
}

/// Drops a store where no process is there to blame for a panic in its drop (wasmtime's, or a
/// WASI resource's): logged, and the worker goes on.
fn drop_quietly(finished: Finished) {
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(finished))) {
        tracing::error!(
            "dropping a finished process's store panicked: {}",
            super::panic_message(&*panic)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    /// Ends `n` processes on this thread, each store holding a place of `slots`.
    fn end(engine: &wasmtime::Engine, slots: &Arc<Semaphore>, n: usize) {
        for _ in 0..n {
            let slot = slots.clone().try_acquire_owned().unwrap();
            later(finished(engine), Some(slot));
        }
    }

    fn finished(engine: &wasmtime::Engine) -> Store {
        let data = ComponentData::new(
            None,
            crate::limits::MemoryLimiter::new(None),
            None,
            None,
            false,
        );
        Store::Component(wasmtime::Store::new(engine, data))
    }

    /// Runs `f` on a fresh thread, so that its thread-locals start empty.
    fn on_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::spawn(f).join().unwrap()
    }

    #[test]
    fn off_a_worker_a_store_and_its_slot_go_at_once() {
        on_thread(|| {
            let engine = wasmtime::Engine::default();
            let slots = Arc::new(Semaphore::new(1));
            end(&engine, &slots, 1);
            assert_eq!(waiting(), 0);
            assert_eq!(slots.available_permits(), 1, "the slot is back");
        });
    }

    #[test]
    fn on_a_worker_stores_wait_for_now_and_keep_their_slots_until_then() {
        on_thread(|| {
            worker_started();
            let engine = wasmtime::Engine::default();
            let slots = Arc::new(Semaphore::new(2));
            end(&engine, &slots, 2);
            assert_eq!(waiting(), 2);
            assert_eq!(
                slots.available_permits(),
                0,
                "slots held until the stores go"
            );
            all();
            assert_eq!(waiting(), 0);
            assert_eq!(slots.available_permits(), 2);
        });
    }

    #[test]
    fn between_turns_a_few_go_oldest_first_and_a_parking_worker_drops_the_rest() {
        on_thread(|| {
            worker_started();
            let engine = wasmtime::Engine::default();
            // The first FEW stores hold places of `older`, the 4 after them of `newer`.
            let older = Arc::new(Semaphore::new(FEW));
            let newer = Arc::new(Semaphore::new(4));
            end(&engine, &older, FEW);
            end(&engine, &newer, 4);
            few();
            assert_eq!(waiting(), 4);
            assert_eq!(older.available_permits(), FEW, "the oldest went");
            assert_eq!(newer.available_permits(), 0);
            all();
            assert_eq!(waiting(), 0);
            assert_eq!(newer.available_permits(), 4);
            few();
            all();
            assert_eq!(waiting(), 0, "nothing to drop is no error");
        });
    }

    #[test]
    fn between_turns_a_spent_budget_stops_the_drops_after_one() {
        on_thread(|| {
            worker_started();
            let engine = wasmtime::Engine::default();
            let slots = Arc::new(Semaphore::new(3));
            end(&engine, &slots, 3);
            // However slow the drops (a budget already spent), one goes and the rest wait.
            drop_within(FEW, Duration::ZERO);
            assert_eq!(waiting(), 2);
            drop_within(FEW, Duration::MAX);
            assert_eq!(waiting(), 0);
        });
    }

    #[test]
    fn past_the_bound_the_oldest_store_goes_at_once() {
        on_thread(|| {
            worker_started();
            let engine = wasmtime::Engine::default();
            let slots = Arc::new(Semaphore::new(MAX_WAITING + 1));
            end(&engine, &slots, MAX_WAITING + 1);
            assert_eq!(waiting(), MAX_WAITING);
            assert_eq!(
                slots.available_permits(),
                1,
                "the oldest gave its slot back"
            );
        });
    }

    #[test]
    fn a_host_worker_that_runs_out_of_tasks_drops_the_stores_waiting_on_it() {
        let host = crate::host::ProcessHost::one_worker();
        let engine = wasmtime::Engine::default();
        let slots = Arc::new(Semaphore::new(1));
        let slot = slots.clone().try_acquire_owned().unwrap();
        let store = finished(&engine);
        host.spawn_task(async move { later(store, Some(slot)) })
            .unwrap();
        // Nothing else runs there: the worker parks, and gives the slot back first.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while slots.available_permits() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the slot never came back"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
