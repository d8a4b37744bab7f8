//! Which processes exist, who monitors them, and how each one ended.
//!
//! The EXIT of a process is delivered here, under one lock with monitor registration, so a
//! monitor added while the process ends gets the EXIT exactly once, and a monitor added after
//! it ended still gets it (from the record of ended processes).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::process::{Event, Exit, Pid};

/// How many ended processes are remembered for late monitors (oldest forgotten first).
pub const REMEMBERED_EXITS: usize = 10_000;

/// A request to stop a running process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    Cancel(String),
    Terminate,
}

#[derive(Default)]
pub(crate) struct Registry {
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    running: HashMap<Pid, Running>,
    ended: HashMap<Pid, Exit>,
    ended_order: VecDeque<Pid>,
}

struct Running {
    monitors: Vec<mpsc::UnboundedSender<Event>>,
    /// Taken by the first stop request.
    control: Option<oneshot::Sender<Stop>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Every update leaves the slots consistent, so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new process; the receiver hears a stop request.
    pub(crate) fn register(
        &self,
        pid: Pid,
        monitors: Vec<mpsc::UnboundedSender<Event>>,
    ) -> oneshot::Receiver<Stop> {
        let (control, stop) = oneshot::channel();
        self.lock().running.insert(
            pid,
            Running {
                monitors,
                control: Some(control),
            },
        );
        stop
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
        match slots.ended.get(&pid) {
            Some(exit) => {
                let _ = monitor.send(Event::Exit(exit.clone()));
                Ok(())
            }
            None => Err(Error::UnknownProcess { pid }),
        }
    }

    /// Asks a running process to stop. Stopping one that already ended does nothing.
    pub(crate) fn stop(&self, pid: Pid, stop: Stop) -> Result<(), Error> {
        let mut slots = self.lock();
        if let Some(running) = slots.running.get_mut(&pid) {
            if let Some(control) = running.control.take() {
                let _ = control.send(stop);
            }
            return Ok(());
        }
        if slots.ended.contains_key(&pid) {
            return Ok(());
        }
        Err(Error::UnknownProcess { pid })
    }

    /// Delivers the EXIT to every monitor and remembers it.
    pub(crate) fn finish(&self, exit: Exit) {
        let mut slots = self.lock();
        let monitors = slots
            .running
            .remove(&exit.from)
            .map(|r| r.monitors)
            .unwrap_or_default();
        for monitor in &monitors {
            // A monitor that went away no longer wants the event.
            let _ = monitor.send(Event::Exit(exit.clone()));
        }
        if slots.ended_order.len() >= REMEMBERED_EXITS {
            if let Some(oldest) = slots.ended_order.pop_front() {
                slots.ended.remove(&oldest);
            }
        }
        slots.ended_order.push_back(exit.from);
        slots.ended.insert(exit.from, exit);
    }
}
