//! One process: Init (instantiate, capture arguments) → Step (run the export) → Close (drop the
//! store), and the EXIT event that reports how it ended.
//!
//! A process always produces exactly one EXIT: its outcome is sent by [`ExitGuard`], which also
//! fires when the task panics or is dropped before it finished.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;
use tokio::sync::mpsc;
use wasmtime::component::Val;
use wasmtime::Store;

use crate::error::ErrorKind;
use crate::loader::Program;
use crate::value::Signature;

/// What a process's store carries. Host interfaces (WASI) and limits will live here.
#[derive(Default)]
pub struct ProcessState {}

/// A process identifier, unique within one [`crate::Runtime`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub(crate) u64);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

impl Serialize for Pid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a process ended without a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExitError {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// What a process cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Accounting {
    /// From Init to Close.
    pub wall_time: Duration,
}

/// The one event a monitor receives when a process ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Exit {
    pub from: Pid,
    pub outcome: Result<Value, ExitError>,
    pub accounting: Accounting,
}

/// Serialized as `{ type: EXIT, from, value | error: { kind, message }, wall_time_ms }`.
impl Serialize for Exit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", "EXIT")?;
        map.serialize_entry("from", &self.from)?;
        match &self.outcome {
            Ok(value) => map.serialize_entry("value", value)?,
            Err(error) => map.serialize_entry("error", error)?,
        }
        map.serialize_entry(
            "wall_time_ms",
            &(self.accounting.wall_time.as_micros() as f64 / 1000.0),
        )?;
        map.end()
    }
}

/// Everything a monitor can receive. Only EXIT exists so far.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Exit(Exit),
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Exit(exit) => exit.serialize(serializer),
        }
    }
}

/// Where a monitor's events arrive.
pub struct Mailbox {
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Mailbox {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Mailbox { tx, rx }
    }

    pub(crate) fn address(&self) -> mpsc::UnboundedSender<Event> {
        self.tx.clone()
    }

    /// The next event, or `None` when `timeout` passes first. Needs a tokio runtime with time.
    pub async fn receive(&mut self, timeout: Duration) -> Option<Event> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event if one is already there.
    pub fn try_receive(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// Sends the EXIT when dropped, so that no path out of a process (return, panic, the task being
/// dropped by a host shutting down) loses it.
pub(crate) struct ExitGuard {
    pid: Pid,
    started: Instant,
    monitors: Vec<mpsc::UnboundedSender<Event>>,
    outcome: Option<Result<Value, ExitError>>,
}

impl ExitGuard {
    pub(crate) fn new(pid: Pid, monitors: Vec<mpsc::UnboundedSender<Event>>) -> Self {
        ExitGuard {
            pid,
            started: Instant::now(),
            monitors,
            outcome: None,
        }
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or_else(|| {
            Err(ExitError {
                kind: ErrorKind::HostFailure,
                message: "the process was dropped before it finished (its host shut down)".into(),
            })
        });
        let exit = Exit {
            from: self.pid,
            outcome,
            accounting: Accounting {
                wall_time: self.started.elapsed(),
            },
        };
        tracing::debug!(pid = %self.pid, ok = exit.outcome.is_ok(), "exit");
        for monitor in &self.monitors {
            // A monitor that went away no longer wants the event.
            let _ = monitor.send(Event::Exit(exit.clone()));
        }
    }
}

/// Runs a process to its end; the guard delivers the EXIT.
pub(crate) async fn run(program: Arc<Program>, params: Vec<Val>, mut guard: ExitGuard) {
    let outcome = AssertUnwindSafe(init_step_close(&program, &params))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ExitError {
                kind: ErrorKind::HostFailure,
                message: format!("host code panicked while running the process: {message}"),
            })
        });
    guard.outcome = Some(outcome);
}

async fn init_step_close(program: &Program, params: &[Val]) -> Result<Value, ExitError> {
    // Init: a fresh store and instance; the arguments were captured by the caller.
    let mut store = Store::new(program.pre.engine(), ProcessState::default());
    let instance = program
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(guest_error)?;
    let func = instance
        .get_func(&mut store, program.export)
        .ok_or_else(|| ExitError {
            kind: ErrorKind::HostFailure,
            message: "the checked export vanished from the instance".into(),
        })?;
    // Step: a component function has at most one result.
    let mut results = vec![Val::Bool(false); program.signature.results.len()];
    func.call_async(&mut store, params, &mut results)
        .await
        .map_err(guest_error)?;
    // Close: the store (instance, memories, tables) is dropped on return.
    Ok(Signature::result_value(&results))
}

fn guest_error(error: wasmtime::Error) -> ExitError {
    let kind = if error.downcast_ref::<wasmtime::Trap>().is_some() {
        ErrorKind::Trap
    } else {
        ErrorKind::HostFailure
    };
    // Cause first ("wasm trap: wasm `unreachable` instruction executed"), then its context
    // (the wasm backtrace).
    let mut parts: Vec<String> = error.chain().map(|e| e.to_string()).collect();
    parts.reverse();
    ExitError {
        kind,
        message: parts.join("\n"),
    }
}
