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
//! being disabled; the rest by the script's memory limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use mlua::{Lua, VmState};

use super::ScriptProcess;
use crate::error::ErrorKind;
use crate::lock::lock;
use crate::process::{Event, ExitError};
use crate::registry::{Signal, Signals};

/// How long a script may compute before it yields its worker (as a WebAssembly process does
/// after its epoch slice).
pub(super) const SLICE: Duration = Duration::from_millis(10);
/// How long a script may compute where it cannot yield before it is ended.
pub const UNPREEMPTIBLE: Duration = Duration::from_millis(50);
/// Instructions between two looks at the clock.
const HOOK_EVERY: u32 = 10_000;

/// What the hook, the sandbox's Lua half and the task's poll share.
pub(super) struct Preemption {
    /// The script's own thread (its pointer): a yield there reaches the scheduler directly.
    own: AtomicUsize,
    /// When the task was last polled, i.e. when the script last had its worker back.
    polled: Mutex<Instant>,
    /// The script's signals, once it is filed in the registry ([`Preemption::listen`]).
    signals: Mutex<SignalStream>,
    /// How the script ends, once it must (taken by the task's poll).
    ending: Mutex<Option<ExitError>>,
    /// `ending` was set (stays set once taken).
    ended: AtomicBool,
    /// The hook yielded a coroutine (not the script's thread): its resumer passes it on.
    preempted: AtomicBool,
}

struct SignalStream {
    signals: Option<Signals>,
    open: bool,
}

impl Preemption {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Preemption {
            own: AtomicUsize::new(0),
            polled: Mutex::new(Instant::now()),
            signals: Mutex::new(SignalStream {
                signals: None,
                open: true,
            }),
            ending: Mutex::new(None),
            ended: AtomicBool::new(false),
            preempted: AtomicBool::new(false),
        })
    }

    pub(super) fn listen(&self, signals: Signals) {
        lock(&self.signals).signals = Some(signals);
    }

    pub(super) fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Whether the coroutine that just yielded was preempted (and forgets it).
    pub(super) fn take_preempted(&self) -> bool {
        self.preempted.swap(false, Ordering::Relaxed)
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
    /// events; any other ends the script. With `cx`, the task is woken by the next one.
    fn hear(&self, script: &ScriptProcess, mut cx: Option<&mut Context<'_>>) {
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
            match signal {
                None => *open = false,
                Some(Signal::Cancel { reason, from }) => {
                    let _ = script.address.send(Event::Cancel { from, reason });
                }
                Some(Signal::LinkDown(exit)) if script.trap_links.load(Ordering::Relaxed) => {
                    let _ = script.address.send(Event::LinkDown(*exit));
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
            move |lua, _| this.look(lua, &script),
        )
    }

    /// Records the script's own thread (made after the hook, so that it has it).
    pub(super) fn own(&self, thread: &mlua::Thread) {
        self.own
            .store(thread.to_pointer() as usize, Ordering::Relaxed);
    }

    /// The hook: every [`HOOK_EVERY`] instructions, on any thread of the script.
    fn look(&self, lua: &Lua, script: &ScriptProcess) -> mlua::Result<VmState> {
        let computing = lock(&self.polled).elapsed();
        if computing < SLICE && !self.ended() {
            return Ok(VmState::Continue);
        }
        self.hear(script, None);
        let own = lua.current_thread().to_pointer() as usize == self.own.load(Ordering::Relaxed);
        // SAFETY: reads the running thread's state; nothing is pushed or popped.
        let yieldable =
            lua.exec_raw_lua(|raw| unsafe { mlua::ffi::lua_isyieldable(raw.state()) != 0 });
        if own && yieldable {
            // The task's poll ends a script that must end.
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
        if yieldable {
            self.preempted.store(true, Ordering::Relaxed);
            return Ok(VmState::Yield);
        }
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
        *lock(&self.polled) = Instant::now();
        self.hear(script, Some(cx));
        if let Some(ending) = lock(&self.ending).take() {
            return Poll::Ready(Err(ending));
        }
        let polled = chunk.poll(cx);
        if let Some(ending) = lock(&self.ending).take() {
            return Poll::Ready(Err(ending));
        }
        polled
    }
}
