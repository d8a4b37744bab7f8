//! Which processes exist, who monitors them, who is linked to whom, and how each one ended.
//!
//! The EXIT of a process is delivered here, under one lock with monitor and link registration,
//! so a monitor added while the process ends gets the EXIT exactly once, and a monitor added
//! after it ended still gets it (from the record of ended processes). Links are Erlang's:
//! symmetric, and only an abnormal end (an error) is passed on, as a [`Signal::LinkDown`].

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::error::Error;
use crate::process::{Event, Exit, Pid};

mod ended;

use ended::Ended;
pub use ended::REMEMBERED_EXITS;

/// What a running process can be told. A WebAssembly process ends at the first signal; a Lua
/// process ends at `Terminate`, hears `Cancel` as an event, and hears `LinkDown` as an event
/// when it traps links (otherwise it ends).
#[derive(Clone, Debug)]
pub enum Signal {
    Cancel {
        reason: String,
        from: Option<Pid>,
    },
    Terminate,
    /// A linked process ended with an error; its EXIT.
    LinkDown(Box<Exit>),
}

/// Where a process's EXIT goes; one monitor (the usual case) without an allocation.
pub(crate) type Monitors = smallvec::SmallVec<[mpsc::UnboundedSender<Event>; 1]>;

/// Where a process that keeps running through signals hears them (a Lua script).
#[cfg(feature = "lua")]
pub(crate) type Signals = mpsc::UnboundedReceiver<Signal>;

/// How a running process is told.
enum Control {
    /// A WebAssembly process ends at its first signal: its task is aborted (dropped at its
    /// next suspension), and the signal says how it ended. Nothing per process is allocated
    /// or polled for this: most processes never hear a signal.
    Abort {
        /// `None` only for a task that could not start (its host is shutting down).
        task: Option<AbortHandle>,
        stopping: Option<Signal>,
    },
    #[cfg(feature = "lua")]
    Stream(mpsc::UnboundedSender<Signal>),
}

impl Control {
    /// A process that stopped listening is already ending: the signal is dropped.
    fn send(&mut self, signal: Signal) {
        match self {
            Control::Abort { task, stopping } => {
                if stopping.is_none() {
                    *stopping = Some(signal);
                    if let Some(task) = task {
                        task.abort();
                    }
                }
            }
            #[cfg(feature = "lua")]
            Control::Stream(sender) => {
                let _ = sender.send(signal);
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    running: PidMap<Running>,
    ended: Ended,
    /// Processes that ended before their spawn registered them (see [`Registry::register`]):
    /// usually none, and so cheaper to look in than the ended ones.
    unregistered: PidMap<Exit>,
    /// The tasks of processes that ended, oldest first, let go of by later spawns: the
    /// spawning thread allocated each task, and a task freed there, not on a worker, is not a
    /// cross-thread free (glibc's allocator takes a lock for one, which the spawning thread
    /// contends for; measured: 1-2% of a spawn). The last [`RECENT_TASKS`] are kept a little
    /// longer: their workers are still completing them, and whoever lets go last frees the
    /// task. At most [`ENDED_TASKS`], so that a runtime that stops spawning does not keep
    /// the tasks of every process that ended since.
    ended_tasks: VecDeque<AbortHandle>,
}

/// How many ended processes' tasks wait for a spawn to free them, at most.
const ENDED_TASKS: usize = 64;

/// How many of the most recently ended processes' tasks a spawn leaves for later.
const RECENT_TASKS: usize = 4;

type PidMap<V> = HashMap<Pid, V, BuildHasherDefault<PidHasher>>;

/// PIDs are sequential integers handed out by the runtime, so nobody can pick colliding keys:
/// a multiply spreads them well. The default SipHash (built against such attacks) was a
/// visible share of a spawn, with four map operations per process.
#[derive(Default)]
struct PidHasher(u64);

impl Hasher for PidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Running {
    monitors: Monitors,
    control: Control,
    links: Vec<Pid>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Every update leaves the slots consistent, so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new process that ends at the first signal sent to it (its task, given here,
    /// is aborted), linked to `link` when given (a process that already ended with an error
    /// signals the new one at once). Called once the task is spawned, in one lock with
    /// nothing before it: no other thread knows the PID until the spawn returns, but the
    /// process itself may have ended already, and then its monitors get the recorded EXIT here.
    pub(crate) fn register(
        &self,
        pid: Pid,
        monitors: Monitors,
        link: Option<Pid>,
        task: Option<AbortHandle>,
    ) {
        let mut slots = self.lock();
        let done = slots.ended_tasks.len().saturating_sub(RECENT_TASKS);
        slots.ended_tasks.drain(..done);
        let ended_first = if slots.unregistered.is_empty() {
            None
        } else {
            slots.unregistered.remove(&pid)
        };
        let Some(exit) = ended_first else {
            let control = Control::Abort {
                task,
                stopping: None,
            };
            slots.insert(pid, monitors, link, control);
            return;
        };
        if let Some(other) = link {
            slots.pass_failure(&exit, other);
        }
        drop(slots);
        deliver(&monitors, Event::Exit(exit));
    }

    /// [`Registry::register`] for a process that hears every signal.
    #[cfg(feature = "lua")]
    pub(crate) fn register_listening(
        &self,
        pid: Pid,
        monitors: Monitors,
        link: Option<Pid>,
    ) -> Signals {
        let (control, signals) = mpsc::unbounded_channel();
        self.lock()
            .insert(pid, monitors, link, Control::Stream(control));
        signals
    }

    /// Adds a monitor. A process that already ended sends its recorded EXIT at once.
    pub(crate) fn monitor(
        &self,
        pid: Pid,
        monitor: mpsc::UnboundedSender<Event>,
    ) -> Result<(), Error> {
        let mut slots = self.lock();
        if let Some(running) = slots.running.get_mut(&pid) {
            running.monitors.push(monitor);
            return Ok(());
        }
        match slots.ended.get(pid) {
            Some(exit) => {
                let _ = monitor.send(Event::Exit(exit));
                Ok(())
            }
            None => Err(Error::UnknownProcess { pid }),
        }
    }

    /// Removes every monitor of `pid` that delivers to `monitor`'s mailbox.
    pub(crate) fn unmonitor(
        &self,
        pid: Pid,
        monitor: &mpsc::UnboundedSender<Event>,
    ) -> Result<(), Error> {
        let mut slots = self.lock();
        if let Some(running) = slots.running.get_mut(&pid) {
            running.monitors.retain(|m| !m.same_channel(monitor));
            return Ok(());
        }
        slots.known(pid)
    }

    /// Links two processes. Linking to one that already ended with an error signals `pid`
    /// at once; to one that ended well, does nothing.
    pub(crate) fn link(&self, pid: Pid, other: Pid) -> Result<(), Error> {
        let mut slots = self.lock();
        slots.known(other)?;
        slots.link(pid, other);
        Ok(())
    }

    pub(crate) fn unlink(&self, pid: Pid, other: Pid) -> Result<(), Error> {
        let mut slots = self.lock();
        slots.known(other)?;
        for (a, b) in [(pid, other), (other, pid)] {
            if let Some(running) = slots.running.get_mut(&a) {
                running.links.retain(|l| *l != b);
            }
        }
        Ok(())
    }

    /// Sends a signal to a running process. Signalling one that already ended does nothing.
    pub(crate) fn signal(&self, pid: Pid, signal: Signal) -> Result<(), Error> {
        let mut slots = self.lock();
        if let Some(running) = slots.running.get_mut(&pid) {
            running.control.send(signal);
            return Ok(());
        }
        slots.known(pid)
    }

    /// Delivers the EXIT to every monitor, a link-down to every linked process when it is an
    /// error, and remembers it. A process that did not finish (`finished` false: its task was
    /// dropped) ended the way the signal that aborted it says, if one did.
    pub(crate) fn finish(&self, mut exit: Exit, finished: bool) {
        let mut slots = self.lock();
        let (monitors, links) = match slots.running.remove(&exit.from) {
            None => {
                // Its spawn registers it next, and sends this EXIT to its monitors then.
                slots.ended.insert(&exit);
                slots.unregistered.insert(exit.from, exit);
                return;
            }
            Some(running) => {
                match running.control {
                    Control::Abort { task, stopping } => {
                        if let (false, Some(signal)) = (finished, stopping) {
                            exit.outcome = Err(signal.ending());
                        }
                        slots.ended_tasks.extend(task);
                    }
                    #[cfg(feature = "lua")]
                    Control::Stream(_) => {}
                }
                (running.monitors, running.links)
            }
        };
        for linked in links {
            if let Some(running) = slots.running.get_mut(&linked) {
                running.links.retain(|l| *l != exit.from);
            }
            slots.pass_failure(&exit, linked);
        }
        slots.ended.insert(&exit);
        let unclaimed = (slots.ended_tasks.len() > ENDED_TASKS)
            .then(|| slots.ended_tasks.pop_front())
            .flatten();
        drop(slots);
        drop(unclaimed);
        // Sent after the lock is released (waking a receiver is a system call): the monitors
        // taken here get the EXIT from here, any monitor added from now on from the record.
        deliver(&monitors, Event::Exit(exit));
    }
}

/// Sends `event` to every monitor (cloned for all but the last).
fn deliver(monitors: &[mpsc::UnboundedSender<Event>], event: Event) {
    let Some((last, others)) = monitors.split_last() else {
        return;
    };
    for monitor in others {
        // A monitor that went away no longer wants the event.
        let _ = monitor.send(event.clone());
    }
    let _ = last.send(event);
}

impl Slots {
    fn insert(&mut self, pid: Pid, monitors: Monitors, link: Option<Pid>, control: Control) {
        self.running.insert(
            pid,
            Running {
                monitors,
                control,
                links: Vec::new(),
            },
        );
        if let Some(other) = link {
            self.link(pid, other);
        }
    }

    /// Ok when `pid` is running or remembered as ended.
    fn known(&self, pid: Pid) -> Result<(), Error> {
        if self.running.contains_key(&pid) || self.ended.contains(pid) {
            Ok(())
        } else {
            Err(Error::UnknownProcess { pid })
        }
    }

    fn link(&mut self, pid: Pid, other: Pid) {
        if pid == other || !self.running.contains_key(&pid) {
            return;
        }
        if self.running.contains_key(&other) {
            for (a, b) in [(pid, other), (other, pid)] {
                if let Some(running) = self.running.get_mut(&a) {
                    if !running.links.contains(&b) {
                        running.links.push(b);
                    }
                }
            }
            return;
        }
        // Cloned: the record is borrowed from `self`, and only failures are passed on.
        if let Some(exit) = self.ended.get(other).filter(|e| e.outcome.is_err()) {
            self.pass_failure(&exit, pid);
        }
    }

    /// A linked process ended: when it failed, `to` (if still running) hears a LINK_DOWN.
    fn pass_failure(&mut self, exit: &Exit, to: Pid) {
        if exit.outcome.is_ok() {
            return;
        }
        if let Some(running) = self.running.get_mut(&to) {
            running
                .control
                .send(Signal::LinkDown(Box::new(exit.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::process::Accounting;

    /// A successful EXIT of `pid`, ending now.
    pub(super) fn exit(pid: u64) -> Exit {
        let now = Instant::now();
        Exit {
            from: Pid(pid),
            outcome: Ok(serde_json::Value::Null),
            accounting: Accounting {
                wall_time: Duration::ZERO,
                started: now,
                ended: now,
                steps: 1,
                yields: 0,
                fuel_used: None,
                peak_memory: 0,
            },
            output: None,
        }
    }

    #[test]
    fn ended_tasks_are_let_go_of_by_later_spawns_and_never_pile_up() {
        let tasks = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let registry = Registry::default();
        let handle = || Some(tasks.spawn(async {}).abort_handle());
        // Spawned in turn with ending: each spawn keeps only the most recent.
        for pid in 1..=100 {
            registry.register(Pid(pid), Monitors::new(), None, handle());
            registry.finish(exit(pid), true);
            assert!(registry.lock().ended_tasks.len() <= RECENT_TASKS + 1);
        }
        // Many ending with no spawn between: never more than the bound.
        for pid in 101..=300 {
            registry.register(Pid(pid), Monitors::new(), None, handle());
        }
        for pid in 101..=300 {
            registry.finish(exit(pid), true);
            assert!(registry.lock().ended_tasks.len() <= ENDED_TASKS);
        }
        assert_eq!(registry.lock().ended_tasks.len(), ENDED_TASKS);
        registry.register(Pid(301), Monitors::new(), None, handle());
        assert_eq!(registry.lock().ended_tasks.len(), RECENT_TASKS);
    }

    #[test]
    fn a_process_that_ends_before_it_is_registered_still_reaches_its_monitor_and_link() {
        use crate::error::ErrorKind;
        use crate::process::{ExitError, Mailbox};
        let registry = Registry::default();
        let (mut parent_box, mut child_box) = (Mailbox::new(), Mailbox::new());
        let parent = Pid(1);
        registry.register(
            parent,
            smallvec::smallvec![parent_box.address()],
            None,
            None,
        );
        // The child's task failed before its spawn got to register it.
        let child = Pid(2);
        let mut failed = exit(2);
        failed.outcome = Err(ExitError::new(ErrorKind::Trap, "boom"));
        registry.finish(failed, true);
        registry.register(
            child,
            smallvec::smallvec![child_box.address()],
            Some(parent),
            None,
        );
        let event = child_box.try_receive().and_then(Event::into_exit).unwrap();
        assert_eq!(event.from, child);
        assert_eq!(event.outcome.unwrap_err().kind, ErrorKind::Trap);
        assert!(child_box.try_receive().is_none(), "exactly one EXIT");
        assert!(!registry.lock().running.contains_key(&child));
        // The link passed the failure on: the parent, stopped, ends with `link_down`.
        registry.finish(exit(1), false);
        let event = parent_box.try_receive().and_then(Event::into_exit).unwrap();
        assert_eq!(event.outcome.unwrap_err().kind, ErrorKind::LinkDown);
    }
}
