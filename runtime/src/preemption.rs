//! How a guest that computes without calling the host shares its worker.
//!
//! Invariant: a guest computes at most one slice ([`SLICE_TICKS`] epoch ticks the first time,
//! [`PREEMPTED_SLICE_TICKS`] after) per turn, and
//! its next turn comes after the worker has looked at its timers and I/O and run the tasks
//! they woke. So a guest waiting for a timer waits for at most the rest of one slice per
//! spinning guest ahead of it on its worker, never for a run of slices.
//!
//! Why not wasmtime's own `UpdateDeadline::Yield`: it wakes the task at once, and tokio looks
//! at its timers only every 61 polls (`event_interval`) while a worker has tasks to run, which
//! a spinner always gives it. With a spinner on each of 2 workers, 1,000 sleepers of 10 ms
//! woke with p99 lateness ~0.8-1 s and the last one 3.5 s after the spawns (measured).
//! tokio's `yield_now` (what wasmtime's docs suggest under tokio) defers the wake until the
//! worker has polled its timers, but then wakes the guest into the worker's LIFO slot, ahead
//! of the tasks the timers woke: each of those waited one more slice (p99 ~0.19 s). Hence the
//! second step of [`next_turn`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use wasmtime::{StoreContextMut, UpdateDeadline};

use crate::engine::PREEMPTED_SLICE_TICKS;
#[cfg(doc)]
use crate::engine::SLICE_TICKS;

/// The epoch deadline callback: the slice is over, the guest yields until [`next_turn`], then
/// gets a new, shorter slice. A function, not a capturing closure: wasmtime boxes the callback
/// of every store, and a zero-sized one costs no allocation (this future's box is made only on
/// yields).
pub(crate) fn end_of_slice<T>(_: StoreContextMut<'_, T>) -> wasmtime::Result<UpdateDeadline> {
    Ok(UpdateDeadline::YieldCustom(
        PREEMPTED_SLICE_TICKS,
        Box::pin(next_turn()),
    ))
}

/// Waits until the worker has polled its timers and I/O (`yield_now` defers the wake until
/// then), then goes behind the tasks that woke ([`Requeue`]).
pub(crate) async fn next_turn() {
    tokio::task::yield_now().await;
    Requeue::default().await;
}

/// Pending once, waking its own task: tokio puts a task that woke itself while it was polled
/// at the back of the worker's run queue (the LIFO slot is only for tasks woken by others).
#[derive(Default)]
struct Requeue {
    woke: bool,
}

impl Future for Requeue {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.woke {
            return Poll::Ready(());
        }
        self.woke = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
