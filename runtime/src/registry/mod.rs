//! Which processes exist, who monitors them, who is linked to whom, and how each one ended.
//!
//! Exactly once: a monitor added while the process ends either joins its monitors before its
//! end takes them, or finds it ended, and then its record (written before the process's lock
//! is let go). A monitor added after the end gets the EXIT from the record of ended processes.
//! Links are Erlang's: symmetric, and only an abnormal end (an error) is passed on, as a
//! [`Signal::LinkDown`].
//!
//! Lock order: the index, then a process (two processes in PID order), then the ended ones.
//!
//! Each process has a [`Proc`]: its monitors, links and how it is stopped, under its own
//! lock. The spawning thread makes it before the process's task exists and files it in the
//! index; the task holds it too (in its EXIT guard) and ends it: takes its monitors, records
//! the EXIT among the ended, and delivers it. A worker ending a process touches nothing the
//! spawning thread writes on every spawn (one map of running processes under one lock,
//! written by both, cost up to 0.6 us of a spawn on a loaded machine).

use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(feature = "lua")]
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::error::Error;
use crate::event::{Event, Exit, Pid};
use crate::lock::lock;
use crate::mailbox::Address;

mod ended;
mod index;
mod signal;

use ended::Ended;
pub use ended::{REMEMBERED_EXITS, RETAINED_BYTES};
use index::{Index, PidSet};
use signal::Control;
pub use signal::Signal;
#[cfg(feature = "lua")]
pub(crate) use signal::Signals;

/// Where a process's EXIT goes; one monitor (the usual case) without an allocation.
pub(crate) type Monitors = smallvec::SmallVec<[Address; 1]>;

#[derive(Default)]
pub(crate) struct Registry {
    index: Mutex<Index>,
    /// Locked by the workers as processes end, by everyone else only for late monitors and
    /// links.
    ended: Mutex<Ended>,
}

/// One process, as the registry and its own task know it.
pub(crate) struct Proc {
    pid: Pid,
    state: Mutex<ProcRecord>,
}

/// A process's record in the registry, under its lock: running (with its monitors, links
/// and control) or ended.
struct ProcRecord {
    /// `None` once the process ended.
    running: Option<Running>,
    /// The task of a process that ended, dropped with the process on the spawning thread,
    /// never on a worker (a cross-thread free takes glibc's allocator lock: 1-2% of a spawn).
    task: Option<AbortHandle>,
    /// Filed in [`Index::overflow`], which its end must clear.
    overflowed: bool,
}

struct Running {
    monitors: Monitors,
    control: Control,
    links: PidSet,
}

impl Proc {
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    fn lock(&self) -> MutexGuard<'_, ProcRecord> {
        lock(&self.state)
    }
}

impl Registry {
    /// Files a new process that ends at the first signal sent to it, before its task exists
    /// (give the task to [`Registry::attach`]); linked to `link` when given (a process that
    /// already ended with an error signals the new one at once).
    pub(crate) fn start(&self, pid: Pid, monitors: Monitors, link: Option<Pid>) -> Arc<Proc> {
        let control = Control::Abort {
            task: None,
            stopping: None,
        };
        self.insert(pid, monitors, link, control)
    }

    /// [`Registry::start`] for a process that hears every signal.
    #[cfg(feature = "lua")]
    pub(crate) fn start_listening(
        &self,
        pid: Pid,
        monitors: Monitors,
        link: Option<Pid>,
    ) -> (Arc<Proc>, Signals) {
        let (control, signals) = mpsc::unbounded_channel();
        let proc = self.insert(pid, monitors, link, Control::Stream(control));
        (proc, signals)
    }

    fn insert(
        &self,
        pid: Pid,
        monitors: Monitors,
        link: Option<Pid>,
        control: Control,
    ) -> Arc<Proc> {
        let proc = Arc::new(Proc {
            pid,
            state: Mutex::new(ProcRecord {
                running: Some(Running {
                    monitors,
                    control,
                    links: PidSet::default(),
                }),
                task: None,
                overflowed: false,
            }),
        });
        let mut index = lock(&self.index);
        let taken = index.slots[Index::slot(pid)].replace(proc.clone());
        let ended = match taken {
            Some(previous) => {
                let mut state = previous.lock();
                if state.running.is_some() {
                    state.overflowed = true;
                    drop(state);
                    index.overflow.insert(previous.pid, previous);
                    None
                } else {
                    drop(state);
                    Some(previous)
                }
            }
            None => None,
        };
        drop(index);
        // Freed here, outside the lock: the ended process and its task.
        drop(ended);
        if let Some(other) = link {
            self.add_link(pid, other);
        }
        proc
    }

    /// Gives a started process its task, which a signal aborts (unless the process hears
    /// signals as a stream).
    pub(crate) fn attach(&self, proc: &Proc, task: Option<AbortHandle>) {
        let Some(task) = task else {
            return;
        };
        let mut state = proc.lock();
        match state.running.as_mut().map(|r| &mut r.control) {
            Some(Control::Abort {
                task: slot,
                stopping,
            }) => {
                // Signalled before its task was known.
                if stopping.is_some() {
                    task.abort();
                }
                *slot = Some(task);
            }
            // Ended already, or hears its signals as a stream (never aborted): the task goes
            // with the process.
            _ => state.task = Some(task),
        }
    }

    fn find(&self, pid: Pid) -> Option<Arc<Proc>> {
        lock(&self.index).get(pid).cloned()
    }

    /// Adds a monitor. A process that already ended sends its recorded EXIT at once.
    ///
    /// A mailbox monitors a process once: monitoring it again changes nothing (it still gets
    /// one EXIT, and `unmonitor` removes it), as a link is made once. Each call added an entry
    /// before, held outside the caller's memory limit until the process ended: a Lua script
    /// monitoring a sleeper 10,000,000 times took the host to 175 MB (found attacking,
    /// 2026-12-07), and its mailbox then got as many EXITs.
    pub(crate) fn monitor(&self, pid: Pid, monitor: Address) -> Result<(), Error> {
        if self
            .with_running(pid, |running| {
                if !running.monitors.iter().any(|m| m.same_mailbox(&monitor)) {
                    running.monitors.push(monitor.clone());
                }
            })
            .is_some()
        {
            return Ok(());
        }
        let exit = lock(&self.ended).get(pid);
        match exit {
            Some(exit) => {
                monitor.send(Event::Exit(exit));
                Ok(())
            }
            None => Err(Error::UnknownProcess { pid }),
        }
    }

    /// Removes every monitor of `pid` that delivers to `monitor`'s mailbox.
    pub(crate) fn unmonitor(&self, pid: Pid, monitor: &Address) -> Result<(), Error> {
        match self.with_running(pid, |running| {
            running.monitors.retain(|m| !m.same_mailbox(monitor))
        }) {
            Some(()) => Ok(()),
            None => self.ensure_known(pid),
        }
    }

    /// Links two processes. Linking to one that already ended with an error signals `pid`
    /// at once; to one that ended well, does nothing.
    pub(crate) fn link(&self, pid: Pid, other: Pid) -> Result<(), Error> {
        self.ensure_known(other)?;
        self.add_link(pid, other);
        Ok(())
    }

    pub(crate) fn unlink(&self, pid: Pid, other: Pid) -> Result<(), Error> {
        self.ensure_known(other)?;
        if let (Some(a), Some(b)) = (self.find(pid), self.find(other)) {
            if pid != other {
                let (mut a, mut b) = lock_two(&a, &b);
                for (state, gone) in [(&mut a, other), (&mut b, pid)] {
                    if let Some(running) = state.running.as_mut() {
                        running.links.remove(&gone);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends a signal to a running process. Signalling one that already ended does nothing.
    pub(crate) fn signal(&self, pid: Pid, signal: Signal) -> Result<(), Error> {
        match self.with_running(pid, |running| running.control.send(signal)) {
            Some(()) => Ok(()),
            None => self.ensure_known(pid),
        }
    }

    /// `act` on `pid` under its lock, if it is running.
    fn with_running<R>(&self, pid: Pid, act: impl FnOnce(&mut Running) -> R) -> Option<R> {
        let proc = self.find(pid)?;
        let mut state = proc.lock();
        state.running.as_mut().map(act)
    }

    /// Ends `proc`: delivers the EXIT to every monitor, a link-down to every linked process
    /// when it is an error, and remembers it. A process that did not finish (`finished`
    /// false: its task was dropped) ended the way the signal that aborted it says, if one did.
    pub(crate) fn finish(&self, proc: &Proc, mut exit: Exit, finished: bool) {
        let mut state = proc.lock();
        // Ended once only, by its own EXIT guard.
        let Some(Running {
            monitors,
            control,
            links,
        }) = state.running.take()
        else {
            return;
        };
        match control {
            Control::Abort { task, stopping } => {
                if let (false, Some(signal)) = (finished, stopping) {
                    exit.outcome = Err(signal.ending());
                }
                state.task = task;
            }
            #[cfg(feature = "lua")]
            Control::Stream(_) => {}
        }
        // Recorded before the process's lock is let go: whoever finds it ended from now on
        // finds the record.
        let forgotten = lock(&self.ended).insert(&exit);
        let overflowed = state.overflowed;
        drop(state);
        // Payloads the window let go of are freed here, outside every lock.
        drop(forgotten);
        if overflowed {
            let gone = lock(&self.index).overflow.remove(&proc.pid);
            drop(gone);
        }
        for linked in links {
            self.unlinked_by_end(linked, &exit);
        }
        // Sent after every lock is released (waking a receiver is a system call): the monitors
        // taken here get the EXIT from here, any monitor added from now on from the record.
        deliver(&monitors, Event::Exit(exit));
    }

    /// A process linked to `linked` ended: `linked` (if still running) forgets the link and,
    /// when the end was a failure, hears a LINK_DOWN.
    fn unlinked_by_end(&self, linked: Pid, exit: &Exit) {
        self.with_running(linked, |running| {
            running.links.remove(&exit.from);
            if exit.outcome.is_err() {
                running
                    .control
                    .send(Signal::LinkDown(Box::new(exit.clone())));
            }
        });
    }

    /// Ok when `pid` is running or remembered as ended.
    fn ensure_known(&self, pid: Pid) -> Result<(), Error> {
        if self.find(pid).is_some() || lock(&self.ended).contains(pid) {
            Ok(())
        } else {
            Err(Error::UnknownProcess { pid })
        }
    }

    /// Links running `pid` to `other`: both ways when `other` runs too; when it ended with an
    /// error, `pid` hears a LINK_DOWN at once.
    fn add_link(&self, pid: Pid, other: Pid) {
        if pid == other {
            return;
        }
        let Some(a) = self.find(pid) else {
            return;
        };
        match self.find(other) {
            Some(b) => {
                let (mut a, mut b) = lock_two(&a, &b);
                if let (Some(ra), Some(rb)) = (a.running.as_mut(), b.running.as_mut()) {
                    ra.links.insert(other);
                    rb.links.insert(pid);
                    return;
                }
                if b.running.is_some() {
                    return;
                }
                self.pass_ended_failure(&mut a, other);
            }
            None => self.pass_ended_failure(&mut a.lock(), other),
        }
    }

    /// `other` ended: when it failed, the running process `to` hears a LINK_DOWN.
    fn pass_ended_failure(&self, to: &mut ProcRecord, other: Pid) {
        let Some(running) = to.running.as_mut() else {
            return;
        };
        let failed = lock(&self.ended).get(other).filter(|e| e.outcome.is_err());
        if let Some(exit) = failed {
            running.control.send(Signal::LinkDown(Box::new(exit)));
        }
    }
}

/// Both processes' states, locked in PID order (the two are different processes).
fn lock_two<'a>(
    a: &'a Proc,
    b: &'a Proc,
) -> (MutexGuard<'a, ProcRecord>, MutexGuard<'a, ProcRecord>) {
    if a.pid < b.pid {
        let first = a.lock();
        (first, b.lock())
    } else {
        let first = b.lock();
        (a.lock(), first)
    }
}

/// Sends `event` to every monitor (cloned for all but the last).
fn deliver(monitors: &[Address], event: Event) {
    let Some((last, others)) = monitors.split_last() else {
        return;
    };
    for monitor in others {
        // A monitor that went away no longer wants the event.
        monitor.send(event.clone());
    }
    last.send(event);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::index::SLOTS;
    use super::*;
    use crate::error::ErrorKind;
    use crate::event::{Accounting, ExitError};
    use crate::mailbox::Mailbox;

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
            trimmed: false,
        }
    }

    fn tasks() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// Attack: each `monitor` call added an entry (a script monitoring a sleeper 10,000,000
    /// times took the host to 175 MB), and the mailbox got as many EXITs.
    #[test]
    fn a_mailbox_monitors_a_process_once_however_often_it_asks() {
        let registry = Registry::default();
        let mut watcher = Mailbox::new();
        let mut other = Mailbox::new();
        // Monitored at its spawn, then asked again and again.
        let proc = registry.start(Pid(1), smallvec::smallvec![watcher.address()], None);
        for _ in 0..1000 {
            registry.monitor(Pid(1), watcher.address()).unwrap();
        }
        registry.monitor(Pid(1), other.address()).unwrap();
        assert_eq!(proc.lock().running.as_ref().unwrap().monitors.len(), 2);
        registry.finish(&proc, exit(1), true);
        assert_eq!(
            watcher
                .try_receive()
                .and_then(Event::into_exit)
                .unwrap()
                .from,
            Pid(1)
        );
        assert_eq!(watcher.try_receive(), None, "one EXIT");
        assert_eq!(
            other.try_receive().and_then(Event::into_exit).unwrap().from,
            Pid(1)
        );
        assert_eq!(other.try_receive(), None, "one EXIT");
    }

    #[test]
    fn an_ended_process_and_its_task_go_when_a_later_spawn_takes_its_slot() {
        let tasks = tasks();
        let registry = Registry::default();
        let first = registry.start(Pid(1), Monitors::new(), None);
        registry.attach(&first, Some(tasks.spawn(async {}).abort_handle()));
        registry.finish(&first, exit(1), true);
        // Still filed (its task with it) until a later spawn takes the slot.
        assert_eq!(Arc::strong_count(&first), 2);
        assert!(first.lock().task.is_some());
        for pid in 2..=SLOTS as u64 + 1 {
            let proc = registry.start(Pid(pid), Monitors::new(), None);
            registry.finish(&proc, exit(pid), true);
        }
        assert_eq!(
            Arc::strong_count(&first),
            1,
            "let go of by the spawn that took its slot"
        );
        // Its EXIT is still on record.
        let mut late = Mailbox::new();
        registry.monitor(Pid(1), late.address()).unwrap();
        assert_eq!(
            late.try_receive().and_then(Event::into_exit).unwrap().from,
            Pid(1)
        );
    }

    #[test]
    fn a_running_process_whose_slot_is_taken_stays_findable_and_ends_once() {
        let registry = Registry::default();
        let mut mailbox = Mailbox::new();
        let long = registry.start(Pid(1), smallvec::smallvec![mailbox.address()], None);
        for pid in 2..=SLOTS as u64 + 1 {
            let proc = registry.start(Pid(pid), Monitors::new(), None);
            registry.finish(&proc, exit(pid), true);
        }
        assert!(lock(&registry.index).overflow.contains_key(&Pid(1)));
        let mut late = Mailbox::new();
        registry.monitor(Pid(1), late.address()).unwrap();
        registry.finish(&long, exit(1), true);
        assert!(lock(&registry.index).overflow.is_empty());
        for mailbox in [&mut mailbox, &mut late] {
            assert_eq!(
                mailbox
                    .try_receive()
                    .and_then(Event::into_exit)
                    .unwrap()
                    .from,
                Pid(1)
            );
            assert_eq!(mailbox.try_receive(), None, "exactly one EXIT");
        }
        assert!(matches!(
            registry.monitor(Pid(SLOTS as u64 + 2), late.address()),
            Err(Error::UnknownProcess { .. })
        ));
    }

    #[test]
    fn a_signal_before_the_task_is_known_aborts_it_when_it_is() {
        let tasks = tasks();
        let registry = Registry::default();
        let proc = registry.start(Pid(1), Monitors::new(), None);
        registry.signal(Pid(1), Signal::Terminate).unwrap();
        let task = tasks.spawn(std::future::pending::<()>());
        registry.attach(&proc, Some(task.abort_handle()));
        let outcome = tasks.block_on(task);
        assert!(outcome.unwrap_err().is_cancelled());
        // Ended by the signal: the EXIT says so.
        let mut mailbox = Mailbox::new();
        registry.monitor(Pid(1), mailbox.address()).unwrap();
        registry.finish(&proc, exit(1), false);
        let exit = mailbox.try_receive().and_then(Event::into_exit).unwrap();
        assert_eq!(exit.outcome.unwrap_err().kind, ErrorKind::Terminated);
    }

    #[test]
    fn unmonitor_stops_one_mailboxs_exit_and_unlink_undoes_a_link() {
        let registry = Registry::default();
        let (mut kept, mut dropped) = (Mailbox::new(), Mailbox::new());
        let proc = registry.start(Pid(1), smallvec::smallvec![dropped.address()], None);
        registry.monitor(Pid(1), kept.address()).unwrap();
        registry.unmonitor(Pid(1), &dropped.address()).unwrap();
        registry.finish(&proc, exit(1), true);
        assert_eq!(dropped.try_receive(), None, "unmonitored");
        assert_eq!(
            kept.try_receive().and_then(Event::into_exit).unwrap().from,
            Pid(1)
        );
        // Unmonitoring or unlinking a PID never seen is an error.
        assert!(matches!(
            registry.unmonitor(Pid(99), &kept.address()),
            Err(Error::UnknownProcess { .. })
        ));
        assert!(matches!(
            registry.unlink(Pid(1), Pid(99)),
            Err(Error::UnknownProcess { .. })
        ));
        // Unlinked, a failure is not passed on.
        let mut parent_box = Mailbox::new();
        let parent = registry.start(Pid(10), smallvec::smallvec![parent_box.address()], None);
        let child = registry.start(Pid(11), Monitors::new(), Some(Pid(10)));
        registry.unlink(Pid(10), Pid(11)).unwrap();
        registry.finish(&child, failure(11), true);
        registry.finish(&parent, exit(10), false);
        let event = parent_box.try_receive().and_then(Event::into_exit).unwrap();
        assert!(event.outcome.is_ok(), "{:?}", event.outcome);
    }

    fn failure(pid: u64) -> Exit {
        let mut failed = exit(pid);
        failed.outcome = Err(ExitError::new(ErrorKind::Trap, "boom"));
        failed
    }

    /// How `proc`, stopped, ends: `link_down` when a linked failure reached it.
    fn ends_told(registry: &Registry, proc: &Proc, mailbox: &mut Mailbox) -> bool {
        registry.finish(proc, exit(proc.pid().0), false);
        let exit = mailbox.try_receive().and_then(Event::into_exit).unwrap();
        matches!(exit.outcome, Err(e) if e.kind == ErrorKind::LinkDown)
    }

    #[test]
    fn a_link_passes_a_failure_both_ways_and_outlives_another_links_end() {
        let registry = Registry::default();
        let (mut a_box, mut c_box) = (Mailbox::new(), Mailbox::new());
        let a = registry.start(Pid(1), smallvec::smallvec![a_box.address()], None);
        let b = registry.start(Pid(2), Monitors::new(), None);
        let c = registry.start(Pid(3), smallvec::smallvec![c_box.address()], None);
        registry.link(Pid(1), Pid(2)).unwrap();
        registry.link(Pid(1), Pid(3)).unwrap();
        // b, linked by a, fails: a is told.
        registry.finish(&b, failure(2), true);
        assert!(ends_told(&registry, &a, &mut a_box));
        // a's end (after b's) still reaches c, the other process it linked.
        assert!(ends_told(&registry, &c, &mut c_box));

        // Ended well, b's end leaves a's other links in place: a's failure reaches c.
        let (mut c_box, mut b_box) = (Mailbox::new(), Mailbox::new());
        let a = registry.start(Pid(11), Monitors::new(), None);
        let b = registry.start(Pid(12), smallvec::smallvec![b_box.address()], None);
        let c = registry.start(Pid(13), smallvec::smallvec![c_box.address()], None);
        registry.link(Pid(11), Pid(12)).unwrap();
        registry.link(Pid(11), Pid(13)).unwrap();
        registry.finish(&b, exit(12), true);
        assert!(b_box.try_receive().is_some());
        registry.finish(&a, failure(11), true);
        assert!(ends_told(&registry, &c, &mut c_box));
    }

    #[test]
    fn an_ended_process_is_known_and_a_pid_never_seen_is_not() {
        let registry = Registry::default();
        let mailbox = Mailbox::new();
        let proc = registry.start(Pid(1), Monitors::new(), None);
        registry.finish(&proc, exit(1), true);
        drop(proc);
        registry.unmonitor(Pid(1), &mailbox.address()).unwrap();
        registry.signal(Pid(1), Signal::Terminate).unwrap();
        let running = registry.start(Pid(2), Monitors::new(), None);
        registry.link(Pid(2), Pid(1)).unwrap();
        registry.unlink(Pid(2), Pid(1)).unwrap();
        assert!(matches!(
            registry.link(Pid(2), Pid(99)),
            Err(Error::UnknownProcess { .. })
        ));
        registry.finish(&running, exit(2), true);
    }

    /// Two threads linking and unlinking the same two processes, each naming them in its own
    /// order, never deadlock: both lock them in PID order.
    #[test]
    fn linking_one_pair_from_both_sides_at_once_does_not_deadlock() {
        let registry = Arc::new(Registry::default());
        let _a = registry.start(Pid(1), Monitors::new(), None);
        let _b = registry.start(Pid(2), Monitors::new(), None);
        let (done, finished) = std::sync::mpsc::channel();
        for (pid, other) in [(1, 2), (2, 1)] {
            let (registry, done) = (registry.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    registry.link(Pid(pid), Pid(other)).unwrap();
                    registry.unlink(Pid(pid), Pid(other)).unwrap();
                }
                let _ = done.send(());
            });
        }
        for _ in 0..2 {
            finished
                .recv_timeout(Duration::from_secs(60))
                .expect("no deadlock");
        }
    }

    #[test]
    fn a_failure_is_passed_to_linked_processes_running_or_linking_later() {
        let registry = Registry::default();
        let (mut parent_box, mut late_box) = (Mailbox::new(), Mailbox::new());
        let parent = registry.start(Pid(1), smallvec::smallvec![parent_box.address()], None);
        let child = registry.start(Pid(2), Monitors::new(), Some(Pid(1)));
        let mut failed = exit(2);
        failed.outcome = Err(ExitError::new(ErrorKind::Trap, "boom"));
        registry.finish(&child, failed, true);
        // The parent was told (stopped): it ends with `link_down`.
        registry.finish(&parent, exit(1), false);
        let event = parent_box.try_receive().and_then(Event::into_exit).unwrap();
        assert_eq!(event.outcome.unwrap_err().kind, ErrorKind::LinkDown);
        // Linking to the failed process after its end: told at once.
        let late = registry.start(Pid(3), smallvec::smallvec![late_box.address()], None);
        registry.link(Pid(3), Pid(2)).unwrap();
        registry.finish(&late, exit(3), false);
        let event = late_box.try_receive().and_then(Event::into_exit).unwrap();
        assert_eq!(event.outcome.unwrap_err().kind, ErrorKind::LinkDown);
        // A successful end is not passed on.
        let (mut a_box, mut b_box) = (Mailbox::new(), Mailbox::new());
        let a = registry.start(Pid(4), smallvec::smallvec![a_box.address()], None);
        let b = registry.start(Pid(5), smallvec::smallvec![b_box.address()], Some(Pid(4)));
        registry.finish(&b, exit(5), true);
        registry.finish(&a, exit(4), false);
        assert!(a_box
            .try_receive()
            .and_then(Event::into_exit)
            .unwrap()
            .outcome
            .is_ok());
        assert!(b_box.try_receive().is_some());
    }
}
