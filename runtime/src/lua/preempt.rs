//! How a script shares its worker and is stopped, wherever it is computing.
//!
//! Invariants:
//! - a script yields its worker at most [`SLICE`] after it was last polled, wherever it can
//!   yield: its own thread, or a coroutine it created (the yield is passed up by the
//!   sandbox's `coroutine.resume`);
//! - where it cannot yield (Lua code called by a C function: a metamethod, `load`'s reader, a
//!   coroutine resumed from there), it may compute at most [`UNPREEMPTIBLE`] before it ends with
//!   `limit_exceeded`, so no script holds a worker longer than that;
//! - a signal that stops it (terminate, a link going down) is seen within a slice there too,
//!   and ends it: the hook raises an error at every look until the script unwinds to a point
//!   where it can yield, and `pcall`, `xpcall` and `coroutine.resume` pass that error on.
//!
//! Library functions that run long in C without calling Lua are bounded elsewhere: pattern
//! matching by its budget (`pattern.rs`), `table.sort` by being Lua code, a full collection by
//! being disabled; the rest by the script's memory limit. A long instruction (one such call,
//! a concatenation) delays the hook's count by its length at most: the worker's CPU-time alarm
//! ([`alarm`]) makes the hook look at the instruction after the slice.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use mlua::{ffi, Lua, VmState};

use super::alarm::{self, Running};
use super::{cpu_time, ScriptProcess};
use crate::error::ErrorKind;
use crate::event::{Event, ExitError};
use crate::lock::lock;
use crate::registry::{Signal, Signals};

/// How long a script may compute (CPU time) before it yields its worker, as short as a
/// WebAssembly guest's slices after its first: 100 sleepers of 10 ms beside 5 spinning scripts
/// on one worker woke with p99 lateness 15.5-16.3 ms, against 90-92 ms with 10 ms slices (debug
/// build); a script computing 3 s took ~1% longer (3.13-3.26 s against 3.11-3.21, release).
pub(super) const SLICE: Duration = Duration::from_millis(2);
/// How long a script may compute (CPU time) where it cannot yield before it is ended.
pub const UNPREEMPTIBLE: Duration = Duration::from_millis(50);
/// Instructions between two looks at the clock (the alarm makes it look sooner when single
/// instructions are long).
const HOOK_EVERY: u32 = 10_000;

/// What the hook, the sandbox's Lua half and the task's poll share.
pub(crate) struct Preemption {
    /// The script's own thread (its pointer): a yield there reaches the scheduler directly.
    own: AtomicUsize,
    /// The thread the script is running (its own or a coroutine), for the alarm to tap.
    running: Running,
    /// The coroutine in `running`, held so that it lives while the alarm may tap it.
    entered: Mutex<Option<mlua::Thread>>,
    /// The script's own thread, held likewise: its chunk may end, and the collector free an
    /// unreferenced thread, before the poll (and its alarm) does.
    own_thread: Mutex<Option<mlua::Thread>>,
    /// The worker thread's CPU time when the task was last polled, i.e. when the script last
    /// had its worker back: bounds are CPU time, so that a loaded machine never ends a script.
    polled: Mutex<Duration>,
    /// The script's signals, once it is filed in the registry ([`Preemption::listen`]).
    signals: Mutex<SignalStream>,
    /// How the script ends, once it must (taken by the task's poll).
    ending: Mutex<Option<ExitError>>,
    /// `ending` was set (stays set once taken).
    ended: AtomicBool,
    /// The hook yielded a coroutine (not the script's thread): its resumer passes it on.
    preempted: AtomicBool,
    /// The waker the chunk is polled with; see [`Requeue`].
    requeue: Arc<Requeue>,
    /// A preempted script's turn waits for this (`preemption::next_turn`).
    yielding: Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>,
}

/// The chunk's waker. A preempted script's thread wakes its task at once (mlua does, when the
/// hook yields), and tokio then polls it again before anything else: its timers and I/O are
/// looked at only every 61 polls, 610 ms of the 10 ms slices scripts had then, so sleepers
/// beside a spinning script woke ~2 s late (measured). The task's own wake during its poll is
/// held back here and replaced by a guest's next turn (`preemption::next_turn`): after tokio
/// has looked at timers and I/O, and behind the tasks they woke.
struct Requeue {
    task: Mutex<Option<std::task::Waker>>,
    /// The chunk is being polled: a wake now is the chunk's own.
    polling: AtomicBool,
    /// It woke itself during the poll.
    woke: AtomicBool,
}

impl std::task::Wake for Requeue {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::Relaxed) {
            self.woke.store(true, Ordering::Relaxed);
        } else if let Some(task) = lock(&self.task).as_ref() {
            task.wake_by_ref();
        }
    }
}

struct SignalStream {
    signals: Option<Signals>,
    open: bool,
}

impl Preemption {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Preemption {
            own: AtomicUsize::new(0),
            running: Running::new(std::ptr::null_mut()),
            entered: Mutex::new(None),
            own_thread: Mutex::new(None),
            polled: Mutex::new(cpu_time::now()),
            signals: Mutex::new(SignalStream {
                signals: None,
                open: true,
            }),
            ending: Mutex::new(None),
            ended: AtomicBool::new(false),
            preempted: AtomicBool::new(false),
            requeue: Arc::new(Requeue {
                task: Mutex::new(None),
                polling: AtomicBool::new(false),
                woke: AtomicBool::new(false),
            }),
            yielding: Mutex::new(None),
        })
    }

    pub(crate) fn listen(&self, signals: Signals) {
        lock(&self.signals).signals = Some(signals);
    }

    pub(super) fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Whether the coroutine that just yielded was preempted (and forgets it).
    pub(super) fn take_preempted(&self) -> bool {
        self.preempted.swap(false, Ordering::Relaxed)
    }

    /// Whether the script has computed for its slice since it last had its worker back.
    pub(super) fn slice_over(&self) -> bool {
        cpu_time::now().saturating_sub(*lock(&self.polled)) >= SLICE
    }

    fn end(&self, error: ExitError) {
        let mut ending = lock(&self.ending);
        if ending.is_none() && !self.ended() {
            *ending = Some(error);
            self.ended.store(true, Ordering::Relaxed);
        }
    }

    fn ending_message(&self) -> String {
        lock(&self.ending)
            .as_ref()
            .map_or_else(|| "the script is being stopped".into(), |e| e.to_string())
    }

    /// Handles the signals that have arrived: CANCEL (and LINK_DOWN when trapped) become
    /// events; any other ends the script. With `cx`, the task is woken by the next one. A
    /// script whose mailbox refused an event for want of room ends here too.
    fn hear(&self, script: &ScriptProcess, mut cx: Option<&mut Context<'_>>) {
        if script.address.overflowed() {
            self.end(ExitError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "the script's unreceived events outgrew its mailbox ({} MiB): receive \
                     them, or ask for fewer (each `monitor` of an ended process sends its \
                     EXIT again; each `cancel` sends a CANCEL)",
                    super::MAILBOX_BYTES >> 20
                ),
            ));
        }
        let mut stream = lock(&self.signals);
        let SignalStream { signals, open } = &mut *stream;
        let Some(signals) = signals else { return };
        while *open {
            let signal = match cx.as_deref_mut() {
                Some(cx) => match signals.poll_recv(cx) {
                    Poll::Ready(signal) => signal,
                    Poll::Pending => return,
                },
                None => match signals.try_recv() {
                    Ok(signal) => Some(signal),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
                },
            };
            match signal.map(|signal| *signal) {
                None => *open = false,
                Some(Signal::Cancel { reason, from }) => {
                    script.address.send(Event::Cancel { from, reason });
                }
                Some(Signal::LinkDown(exit)) if script.trap_links.load(Ordering::Relaxed) => {
                    script.address.send(Event::LinkDown(*exit));
                }
                Some(signal) => self.end(signal.ending()),
            }
        }
    }

    /// Installs the hook on every thread the script will run (its own and its coroutines).
    pub(super) fn install(
        self: &Arc<Self>,
        lua: &Lua,
        script: &Arc<ScriptProcess>,
    ) -> mlua::Result<()> {
        let this = self.clone();
        let script = script.clone();
        lua.set_global_hook(
            mlua::HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |lua, debug| this.look(lua, debug, &script),
        )
    }

    /// Records the script's own thread (made after the hook, so that it has it).
    pub(super) fn own(&self, thread: &mlua::Thread) {
        *lock(&self.own_thread) = Some(thread.clone());
        self.own
            .store(thread.to_pointer() as usize, Ordering::Relaxed);
    }

    /// Records the thread the script runs from now on (the sandbox's `coroutine.resume` calls
    /// this before and after it resumes one).
    pub(super) fn enter(&self, thread: mlua::Thread) {
        let state = thread.to_pointer() as *mut ffi::lua_State;
        // The one held before is let go only once the alarm no longer sees it.
        let _before = lock(&self.entered).replace(thread);
        self.running.store(state, Ordering::Relaxed);
    }

    /// The hook: every [`HOOK_EVERY`] instructions, on any thread of the script; and, while a
    /// slice is over but the script cannot yield, at every return, to yield at the first
    /// instruction where it can.
    fn look(
        &self,
        lua: &Lua,
        debug: &mlua::debug::Debug,
        script: &ScriptProcess,
    ) -> mlua::Result<VmState> {
        let state = lua.exec_raw_lua(|raw| raw.state());
        // SAFETY (all ffi calls here): the running thread's own state, inside its hook, which
        // may read and set the thread's hook; nothing is pushed or popped.
        let yieldable = unsafe { ffi::lua_isyieldable(state) != 0 };
        if matches!(debug.event(), mlua::debug::DebugEvent::Ret) {
            if yieldable {
                // Back where it can yield: count the next instruction.
                unsafe { hook_mode(state, ffi::LUA_MASKCOUNT, 1) };
            }
            return Ok(VmState::Continue);
        }
        let computing = cpu_time::now().saturating_sub(*lock(&self.polled));
        if computing < SLICE && !self.ended() {
            unsafe { hook_mode(state, ffi::LUA_MASKCOUNT, HOOK_EVERY as i32) };
            return Ok(VmState::Continue);
        }
        self.hear(script, None);
        let own = lua.current_thread().to_pointer() as usize == self.own.load(Ordering::Relaxed);
        if own && yieldable {
            unsafe { hook_mode(state, ffi::LUA_MASKCOUNT, HOOK_EVERY as i32) };
            // The task's poll ends a script that must end.
            return Ok(VmState::Yield);
        }
        // A coroutine the script resumed yields, however long its last instruction took: the
        // limit is for code that cannot.
        if yieldable && !self.ended() {
            unsafe { hook_mode(state, ffi::LUA_MASKCOUNT, HOOK_EVERY as i32) };
            self.preempted.store(true, Ordering::Relaxed);
            return Ok(VmState::Yield);
        }
        if computing >= UNPREEMPTIBLE {
            self.end(ExitError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "the script computed for {} ms where it cannot be preempted (Lua code \
                     called by a library function, such as a metamethod); the limit is {} ms",
                    computing.as_millis(),
                    UNPREEMPTIBLE.as_millis()
                ),
            ));
        }
        if self.ended() {
            return Err(mlua::Error::runtime(self.ending_message()));
        }
        // Inside a call from C: hear of each return, to yield as soon as it is back.
        unsafe {
            hook_mode(
                state,
                ffi::LUA_MASKCOUNT | ffi::LUA_MASKRET,
                HOOK_EVERY as i32,
            )
        };
        Ok(VmState::Continue)
    }

    /// Polls the script's chunk: hears its signals first, and ends it when it must.
    pub(super) fn poll<F, T>(
        &self,
        script: &ScriptProcess,
        chunk: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, ExitError>>
    where
        F: Future<Output = Result<T, ExitError>>,
    {
        {
            let mut yielding = lock(&self.yielding);
            if let Some(turn) = yielding.as_mut() {
                if turn.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *yielding = None;
            }
        }
        *lock(&self.polled) = cpu_time::now();
        self.hear(script, Some(cx));
        if let Some(ending) = lock(&self.ending).take() {
            return Poll::Ready(Err(ending));
        }
        {
            let mut task = lock(&self.requeue.task);
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let waker = std::task::Waker::from(self.requeue.clone());
        self.requeue.polling.store(true, Ordering::Relaxed);
        // A poll starts where the last one ended: in the script's own thread, which yielded.
        self.running.store(
            self.own.load(Ordering::Relaxed) as *mut ffi::lua_State,
            Ordering::Relaxed,
        );
        let alarm = alarm::arm(&self.running);
        let polled = chunk.poll(&mut Context::from_waker(&waker));
        drop(alarm);
        self.requeue.polling.store(false, Ordering::Relaxed);
        if let Some(ending) = lock(&self.ending).take() {
            return Poll::Ready(Err(ending));
        }
        if polled.is_pending() && self.requeue.woke.swap(false, Ordering::Relaxed) {
            let mut turn: Pin<Box<dyn Future<Output = ()> + Send>> =
                Box::pin(crate::preemption::next_turn());
            if turn.as_mut().poll(cx).is_pending() {
                *lock(&self.yielding) = Some(turn);
            } else {
                cx.waker().wake_by_ref();
            }
        }
        polled
    }
}

/// Sets what calls the running thread's hook (keeping the hook function mlua installed).
///
/// # Safety
/// `state` is the running thread, from inside its hook.
unsafe fn hook_mode(state: *mut ffi::lua_State, mask: i32, count: i32) {
    unsafe {
        if ffi::lua_gethookmask(state) != mask || ffi::lua_gethookcount(state) != count {
            ffi::lua_sethook(state, ffi::lua_gethook(state), mask, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the sandbox's checkpoints between long library calls ask: measured in this
    /// thread's CPU time, so a loaded machine never ends a slice early.
    #[test]
    fn a_slice_is_over_after_slice_of_cpu_time_since_the_last_poll_and_not_before() {
        let preemption = Preemption::new();
        assert!(!preemption.slice_over());
        let start = cpu_time::now();
        while cpu_time::now().saturating_sub(start) < SLICE {
            std::hint::black_box(start);
        }
        assert!(preemption.slice_over());
    }
}
