//! One process: Init (instantiate, capture arguments) → Step (run the export) → Close (the
//! guest is done; its store goes to `release`), and the EXIT event that reports how it ended.
//!
//! A process always produces exactly one EXIT: its outcome is sent by `ExitGuard`, which also
//! fires when the task panics or is dropped before it finished. This module supervises a run
//! (its phases, its deadline, panics, the EXIT); `store` runs a WebAssembly store; `release`
//! drops finished stores when their worker has a moment.

mod release;
mod store;

pub(crate) use release::{all as release_finished_stores, worker_started};
pub(crate) use store::{guest_error, meter, new_store, starting_fuel};

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::ErrorKind;
use crate::event::{Accounting, Exit, ExitError, Lifecycle, Phase, Pid, TraceSink};
use crate::hibernation::Hibernating;
use crate::host::QueuePlace;
use crate::limits::{Limits, MemoryUsage};
use crate::loader::Program;
use crate::registry::{Proc, Registry};
use crate::store_data::SpawnContext;
use crate::value::Params;
use crate::wasi::Captured;
use crate::write_quota::WriteQuota;

/// Everything a process needs to run, captured at spawn.
pub(crate) struct Launch {
    /// The process's place in its host's queue, left at Init.
    pub place: QueuePlace,
    /// Its pool slot, when one was free at the spawn: processes then start in the order they
    /// were spawned, not in the order workers happen to poll their tasks (without it, on a
    /// one-slot pool under load, the second process took the slot first one time in four).
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
    pub program: Arc<Program>,
    pub params: Params,
    pub state: SpawnContext,
    pub limits: Limits,
}

/// Emits Close and delivers the EXIT when dropped, so that no path out of a process (return,
/// panic, the task aborted by a signal or dropped by a host shutting down) loses them.
pub(crate) struct ExitGuard {
    /// The process as the registry knows it (its PID too), which the EXIT ends.
    proc: Arc<Proc>,
    registry: Arc<Registry>,
    /// Set at Init: a process that never got there ran for no time.
    started: Option<Instant>,
    outcome: Option<Result<Value, ExitError>>,
    counters: Counters,
    usage: Usage,
    captured: Option<Captured>,
    trace: Option<TraceSink>,
}

/// What a process's store reports, as far as it got.
#[derive(Default)]
pub(super) struct Usage {
    /// Known when the process finished with its store (not after a timeout or a signal).
    pub(super) fuel_used: Option<u64>,
    /// The store's memory record, from Init on (none for a Lua script).
    pub(super) memory: Option<Arc<MemoryUsage>>,
    /// Its write quota, where `limits.max_written` sets one.
    pub(super) written: Option<Arc<WriteQuota>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    steps: u32,
    yields: u32,
}

impl ExitGuard {
    pub(crate) fn new(
        proc: Arc<Proc>,
        registry: Arc<Registry>,
        captured: Option<Captured>,
        trace: Option<TraceSink>,
    ) -> Self {
        ExitGuard {
            proc,
            registry,
            started: None,
            outcome: None,
            counters: Counters::default(),
            usage: Usage::default(),
            captured,
            trace,
        }
    }

    fn pid(&self) -> Pid {
        self.proc.pid()
    }

    /// The process finished with `outcome`: the EXIT reports it when the guard goes.
    fn finish(&mut self, outcome: Result<Value, ExitError>) {
        self.outcome = Some(outcome);
    }

    /// Init: the process starts running now. Wall time is Init to Close: waiting for a
    /// worker or a pool slot is not running.
    fn init(&mut self) {
        self.started = Some(Instant::now());
        emit(self.trace.as_ref(), self.pid(), Phase::Init);
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        // Close: the store went with the process's task (a process that never reached Init
        // had none).
        if self.started.is_some() {
            emit(self.trace.as_ref(), self.pid(), Phase::Close);
        }
        let finished = self.outcome.is_some();
        // Unless a signal aborted the task (the registry knows which), its host shut down.
        let outcome = self.outcome.take().unwrap_or_else(|| {
            Err(ExitError::new(
                ErrorKind::HostFailure,
                "the process was dropped before it finished (its host shut down)",
            ))
        });
        let ended = Instant::now();
        let started = self.started.unwrap_or(ended);
        let exit = Exit {
            from: self.pid(),
            outcome,
            accounting: Accounting {
                wall_time: ended - started,
                started,
                ended,
                steps: self.counters.steps,
                yields: self.counters.yields,
                fuel_used: self.usage.fuel_used,
                peak_memory: self.usage.memory.as_ref().map_or(0, |m| m.peak()),
            },
            output: self.captured.as_ref().map(Captured::output),
            trimmed: false,
        };
        tracing::debug!(pid = %self.pid(), ok = exit.outcome.is_ok(), "exit");
        self.registry.finish(&self.proc, exit, finished);
    }
}

/// A process's run as its task polls it: each poll is a Step and each `Pending` a Yield; the
/// `max_execution_ms` deadline stops the run (a signal aborts the whole task, see the
/// registry); a panic in host code ends it with `host_failure`, and the worker and the other
/// processes go on. One flat future, since its size is what every spawn allocates and copies
/// (nested combinators were several KiB).
struct Supervised<'a, F> {
    /// Pinned where the caller's future lives (no box: one allocation fewer per process).
    run: Pin<&'a mut F>,
    /// Boxed: a timer is large, and most processes have no such limit.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
    counters: &'a mut Counters,
    pid: Pid,
    trace: Option<&'a TraceSink>,
}

impl<'a, F: Future<Output = Result<Value, ExitError>>> Supervised<'a, F> {
    /// Supervises `run`, stopped after `limit` (`max_execution_ms`) when there is one.
    fn new(
        run: Pin<&'a mut F>,
        limit: Option<Duration>,
        counters: &'a mut Counters,
        pid: Pid,
        trace: Option<&'a TraceSink>,
    ) -> Self {
        Supervised {
            run,
            deadline: limit.map(|limit| Box::pin(tokio::time::sleep(limit))),
            limit: limit.unwrap_or_default(),
            counters,
            pid,
            trace,
        }
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Result<Value, ExitError>> {
        self.counters.steps += 1;
        emit(self.trace, self.pid, Phase::Step);
        if let Poll::Ready(outcome) = self.run.as_mut().poll(cx) {
            return Poll::Ready(outcome);
        }
        self.counters.yields += 1;
        emit(self.trace, self.pid, Phase::Yield);
        // Between two turns: the processes that woke and finished before this one yielded
        // have had theirs.
        release::few();
        let expired = (self.deadline.as_mut()).is_some_and(|d| d.as_mut().poll(cx).is_ready());
        if expired {
            return Poll::Ready(Err(ExitError::new(
                ErrorKind::LimitExceeded,
                format!("max_execution_ms ({} ms) exceeded", self.limit.as_millis()),
            )));
        }
        Poll::Pending
    }
}

impl<F: Future<Output = Result<Value, ExitError>>> Future for Supervised<'_, F> {
    type Output = Result<Value, ExitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        std::panic::catch_unwind(AssertUnwindSafe(|| this.poll_run(cx)))
            .unwrap_or_else(|panic| Poll::Ready(Err(host_panicked(panic))))
    }
}

fn emit(trace: Option<&TraceSink>, pid: Pid, phase: Phase) {
    if let Some(trace) = trace {
        let _ = trace.send(Lifecycle {
            pid,
            phase,
            at: Instant::now(),
        });
    }
}

/// Runs a process to its end (or its limit, or a stop request); the guard delivers the EXIT.
///
/// An async block, not an async fn: an async fn's future holds its arguments twice (as passed,
/// and as moved into its body), 400 bytes more that every spawn allocates and copies. For the
/// same reason the launch's fields are used where they are, never bound to locals.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run(launch: Launch, mut guard: ExitGuard) -> impl Future<Output = ()> + Send {
    async move {
        let pid = guard.pid();
        // Stores that ended on this worker first: the pool then hands this process the slot
        // its module last used, pages still resident.
        release::few();
        // Held by the store until `release` drops it, which gives the pool slot back.
        // (The semaphore is never closed, so acquiring only waits.)
        let slot = match launch.slot {
            Some(slot) => Some(slot),
            None => launch.program.admission.clone().acquire_owned().await.ok(),
        };
        drop(launch.place);
        guard.init();
        // A block, so that the run (its store, and its borrow of the guard's usage) ends before
        // the outcome is recorded.
        let outcome = {
            let run = std::pin::pin!(Hibernating::new(
                store::init_step_close(
                    &launch.program,
                    &launch.params,
                    launch.state,
                    &launch.limits,
                    &mut guard.usage,
                    slot,
                ),
                launch.program.hibernation.as_ref(),
            ));
            let limit = launch.limits.max_execution;
            Supervised::new(run, limit, &mut guard.counters, pid, guard.trace.as_ref()).await
        };
        // The store is gone by now: the guard emits Close when it goes.
        let outcome = outcome.map_err(|e| blame_limits(e, &launch.limits, &guard.usage));
        guard.finish(outcome);
    }
}

/// Runs a process that is not a WebAssembly store (a Lua script): Init, a Step per poll of
/// `body`, Close; a panic in host code ends it with `host_failure`.
#[cfg(feature = "lua")]
pub(crate) async fn supervise(
    mut guard: ExitGuard,
    place: QueuePlace,
    body: impl Future<Output = Result<Value, ExitError>>,
) {
    drop(place);
    guard.init();
    let body = std::pin::pin!(body);
    let pid = guard.pid();
    let outcome = Supervised::new(body, None, &mut guard.counters, pid, guard.trace.as_ref()).await;
    guard.finish(outcome);
}

/// A panic in host code while a process runs ends that process with `host_failure`.
fn host_panicked(panic: Box<dyn std::any::Any + Send>) -> ExitError {
    ExitError::new(
        ErrorKind::HostFailure,
        format!(
            "host code panicked while running the process: {}",
            panic_message(&*panic)
        ),
    )
}

/// What a caught panic said, when it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// wasmtime's error when a memory or table the binary declares is refused by the limiter as
/// the instance is made ("memory minimum size of N pages exceeds memory limits").
fn refused_at_instantiation(e: &ExitError) -> bool {
    e.kind == ErrorKind::HostFailure
        && (e.message.contains("exceeds memory limits")
            || e.message.contains("exceeds table limits"))
}

/// A failure a limit caused is reported as that limit, the original message kept: a trap
/// after a denied `memory.grow` or `table.grow`, or an instantiation that failed because a
/// memory or table the binary declares does not fit (wasmtime reports that as an error, not a
/// trap: it was a `host_failure`), is `max_memory`'s; a trap after the write quota refused a
/// call (a guest that unwraps a failed write) is `max_written`'s.
fn blame_limits(failure: ExitError, limits: &Limits, usage: &Usage) -> ExitError {
    let trapped = failure.kind == ErrorKind::Trap;
    let then = if trapped {
        "then the guest trapped"
    } else {
        "so the process could not go on"
    };
    let memory = usage.memory.as_ref().and_then(|memory| memory.denied());
    if let (Some(max), Some(wanted), true) = (
        limits.max_memory,
        memory,
        trapped || refused_at_instantiation(&failure),
    ) {
        return ExitError::new(
            ErrorKind::LimitExceeded,
            format!(
                "max_memory ({max} bytes) exceeded: growing memories and tables to {wanted} bytes was denied, {then}: {}",
                failure.message
            ),
        );
    }
    let quota = usage
        .written
        .as_ref()
        .and_then(|quota| quota.refused().map(|n| (n, quota.used())));
    if let (Some(max), Some((refused, used)), true) = (limits.max_written, quota, trapped) {
        return ExitError::new(
            ErrorKind::LimitExceeded,
            format!(
                "max_written ({max} bytes) exceeded: a write of {refused} bytes was refused after {used} bytes, {then}: {}",
                failure.message
            ),
        );
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::mailbox::Mailbox;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn supervised(run: impl Future<Output = Result<Value, ExitError>>) -> Result<Value, ExitError> {
        let mut counters = Counters::default();
        block_on(Supervised::new(
            std::pin::pin!(run),
            None,
            &mut counters,
            Pid(1),
            None,
        ))
    }

    #[test]
    fn a_panic_in_host_code_becomes_a_host_failure() {
        let outcome = supervised(async {
            if std::hint::black_box(true) {
                panic!("the table is gone");
            }
            Ok(Value::Null)
        });
        let error = outcome.unwrap_err();
        assert_eq!(error.kind, ErrorKind::HostFailure);
        assert!(error.message.contains("the table is gone"), "{error}");
        assert_eq!(
            supervised(async { Ok(Value::from(42)) }),
            Ok(Value::from(42))
        );
    }

    #[test]
    fn a_process_dropped_before_it_finished_still_sends_one_exit() {
        let registry = Arc::new(Registry::default());
        let mut mailbox = Mailbox::new();
        let pid = Pid(7);
        let proc = registry.start(pid, smallvec::smallvec![mailbox.address()], None);
        // Panicking with the guard alive, as a task does when its worker unwinds.
        let guard = ExitGuard::new(proc, registry.clone(), None, None);
        let unwound = std::panic::catch_unwind(AssertUnwindSafe(move || {
            let _guard = guard;
            panic!("unwinding through the process");
        }));
        assert!(unwound.is_err());
        let exit = mailbox.try_receive().and_then(Event::into_exit).unwrap();
        assert_eq!(exit.from, pid);
        assert_eq!(exit.outcome.unwrap_err().kind, ErrorKind::HostFailure);
        assert_eq!(mailbox.try_receive(), None, "exactly one EXIT");
    }
}
