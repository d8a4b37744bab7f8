//! A CPU-time alarm that makes the running script look at its hook at its next instruction.
//!
//! Invariant: no script holds a worker longer than [`SLICE`] plus one instruction. While a
//! script is polled, its worker thread has a CPU-time timer: after [`SLICE`] of computing, and
//! every [`TAP_EVERY`] from then on until the poll ends, its signal taps the Lua thread the
//! script is running (sets its count hook to 1), and the hook looks at the very next
//! instruction. A long instruction is bounded by the script's memory limit (it copies or
//! compares at most that much).
//!
//! Why a timer: the hook's instruction count cannot bound a script whose single instructions
//! are long (a loop of 32 MiB concatenations, or of comparisons of two 100 MiB strings, runs
//! 10,000 of them between two looks, and held its worker for minutes).
//!
//! This is how `lua.c` stops a script on Ctrl-C: Lua documents `lua_sethook` as callable from
//! a signal handler, and `luaV_execute` re-reads its trap after every jump and call for it.
//! The signal ([`signal`], a real-time one) is sent to one worker thread only, by its own
//! timer (`SIGEV_THREAD_ID`), and only while that thread polls a script.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use mlua::ffi;

use super::preempt::SLICE;

/// How often the alarm taps a script that is past its slice but has not yielded yet (it was
/// in a library call, or where it cannot yield).
const TAP_EVERY: Duration = Duration::from_millis(1);

/// The Lua thread a script is running, as the alarm sees it: set by the script's poll and by
/// the sandbox's `coroutine.resume`, each while that thread is alive.
pub(super) type Running = AtomicPtr<ffi::lua_State>;

thread_local! {
    /// What the worker thread is polling, for the signal handler: null outside a script's poll.
    static POLLING: Cell<*const Running> = const { Cell::new(ptr::null()) };
    /// This worker thread's timer, made at its first script poll.
    static TIMER: Option<Timer> = Timer::new();
}

/// The alarm's signal: the first real-time signal the C library leaves to applications, plus
/// an offset that keeps clear of the ones libraries commonly take first.
pub fn signal() -> libc::c_int {
    libc::SIGRTMIN() + 7
}

/// The alarm, set for one poll of a script: disarmed when dropped.
pub(super) struct Armed(());

/// Sets this thread's alarm for a poll of the script whose running thread is `running`.
/// Without an alarm (the system refused a timer, which is logged once) the script is still
/// preempted by its hook's count, only later where single instructions are long.
pub(super) fn arm(running: &Running) -> Armed {
    POLLING.with(|p| p.set(running));
    TIMER.with(|timer| {
        if let Some(timer) = timer {
            timer.set(SLICE, TAP_EVERY);
        }
    });
    Armed(())
}

impl Drop for Armed {
    fn drop(&mut self) {
        TIMER.with(|timer| {
            if let Some(timer) = timer {
                timer.set(Duration::ZERO, Duration::ZERO);
            }
        });
        POLLING.with(|p| p.set(ptr::null()));
    }
}

/// A POSIX timer on the calling thread's CPU-time clock that signals that thread alone.
struct Timer(libc::timer_t);

impl Timer {
    fn new() -> Option<Timer> {
        if let Err(e) = handler_installed() {
            warn_once(&format!("cannot install its signal handler: {e}"));
            return None;
        }
        // SAFETY: a zeroed sigevent is valid; the fields set are the ones SIGEV_THREAD_ID
        // reads, and `timer` is written by timer_create before it is used.
        unsafe {
            let mut event: libc::sigevent = std::mem::zeroed();
            event.sigev_notify = libc::SIGEV_THREAD_ID;
            event.sigev_signo = signal();
            event.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = ptr::null_mut();
            if libc::timer_create(libc::CLOCK_THREAD_CPUTIME_ID, &mut event, &mut timer) != 0 {
                warn_once(&format!(
                    "cannot create a CPU-time timer: {}",
                    std::io::Error::last_os_error()
                ));
                return None;
            }
            Some(Timer(timer))
        }
    }

    fn set(&self, first: Duration, then: Duration) {
        let spec = |d: Duration| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        };
        let value = libc::itimerspec {
            it_interval: spec(then),
            it_value: spec(first),
        };
        // SAFETY: the timer is this thread's and alive; setting it cannot fail with valid
        // arguments, and a failure would only leave the count hook to preempt.
        unsafe { libc::timer_settime(self.0, 0, &value, ptr::null_mut()) };
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by this value and is deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}

fn handler_installed() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            // SAFETY: installs a handler that only reads thread-locals and calls the two Lua
            // functions documented as callable from a signal handler.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = tap as *const () as libc::sighandler_t;
                // Interrupted system calls of the worker resume.
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal(), &action, ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error().to_string());
                }
            }
            Ok(())
        })
        .clone()
}

/// The signal handler: sets the count hook of the Lua thread the interrupted worker runs.
extern "C" fn tap(_signal: libc::c_int) {
    // `try_with`: a signal during the thread's exit finds no thread-locals, and is ignored.
    let Ok(running) = POLLING.try_with(Cell::get) else {
        return;
    };
    if running.is_null() {
        return;
    }
    // SAFETY: `running` points into the polled script's preemption state, alive for the
    // poll (the pointer is cleared before the poll returns). The state it holds is a Lua
    // thread kept alive while it is there (see `Running`); lua_sethook and its getters only
    // read and write the thread's hook fields, which Lua allows from a signal handler.
    unsafe {
        let state = (*running).load(Ordering::Relaxed);
        if state.is_null() {
            return;
        }
        let mask = ffi::lua_gethookmask(state);
        ffi::lua_sethook(state, ffi::lua_gethook(state), mask | ffi::LUA_MASKCOUNT, 1);
    }
}

fn warn_once(reason: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "Lua scripts lose their CPU-time alarm ({reason}): a script looping over very long \
             single operations may hold its worker until its hook's instruction count runs out"
        );
    });
}
