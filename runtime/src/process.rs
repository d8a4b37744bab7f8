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
use crate::state::ProcessState;
use crate::value::Signature;
use crate::wasi::Captured;

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
    /// The code the guest passed to `exit`, for `exit_code` errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

impl ExitError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ExitError {
            kind,
            message: message.into(),
            code: None,
        }
    }
}

/// What a process wrote to its captured stdout and stderr (lossy UTF-8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
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
    /// Present when the process's stdio was captured.
    pub output: Option<Output>,
}

/// Serialized as `{ type: EXIT, from, value | error: { kind, message }, wall_time_ms }`, plus
/// `stdout` / `stderr` when captured and not empty.
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
        if let Some(output) = &self.output {
            if !output.stdout.is_empty() {
                map.serialize_entry("stdout", &output.stdout)?;
            }
            if !output.stderr.is_empty() {
                map.serialize_entry("stderr", &output.stderr)?;
            }
        }
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
    captured: Option<Captured>,
}

impl ExitGuard {
    pub(crate) fn new(
        pid: Pid,
        monitors: Vec<mpsc::UnboundedSender<Event>>,
        captured: Option<Captured>,
    ) -> Self {
        ExitGuard {
            pid,
            started: Instant::now(),
            monitors,
            outcome: None,
            captured,
        }
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or_else(|| {
            Err(ExitError::new(
                ErrorKind::HostFailure,
                "the process was dropped before it finished (its host shut down)",
            ))
        });
        let exit = Exit {
            from: self.pid,
            outcome,
            accounting: Accounting {
                wall_time: self.started.elapsed(),
            },
            output: self.captured.as_ref().map(Captured::output),
        };
        tracing::debug!(pid = %self.pid, ok = exit.outcome.is_ok(), "exit");
        for monitor in &self.monitors {
            // A monitor that went away no longer wants the event.
            let _ = monitor.send(Event::Exit(exit.clone()));
        }
    }
}

/// Runs a process to its end; the guard delivers the EXIT.
pub(crate) async fn run(
    program: Arc<Program>,
    params: Vec<Val>,
    state: ProcessState,
    mut guard: ExitGuard,
) {
    let outcome = AssertUnwindSafe(init_step_close(&program, &params, state))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ExitError::new(
                ErrorKind::HostFailure,
                format!("host code panicked while running the process: {message}"),
            ))
        });
    guard.outcome = Some(outcome);
}

async fn init_step_close(
    program: &Program,
    params: &[Val],
    state: ProcessState,
) -> Result<Value, ExitError> {
    // Init: a fresh store and instance; the arguments and WASI context were captured by the
    // caller.
    let mut store = Store::new(program.pre.engine(), state);
    let instance = program
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(guest_error)?;
    let func = instance
        .get_func(&mut store, program.export)
        .ok_or_else(|| {
            ExitError::new(
                ErrorKind::HostFailure,
                "the checked export vanished from the instance",
            )
        })?;
    // Step: a component function has at most one result.
    let mut results = vec![Val::Bool(false); program.signature.results.len()];
    match func.call_async(&mut store, params, &mut results).await {
        Ok(()) => {}
        // `exit(0)` is a successful end without a value.
        Err(e)
            if e.downcast_ref::<wasmtime_wasi::I32Exit>()
                .is_some_and(|c| c.0 == 0) =>
        {
            return Ok(Value::Null)
        }
        Err(e) => return Err(guest_error(e)),
    }
    // Close: the store (instance, memories, tables) is dropped on return.
    Ok(Signature::result_value(&results))
}

fn guest_error(error: wasmtime::Error) -> ExitError {
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return ExitError {
            kind: ErrorKind::ExitCode,
            message: format!("the guest exited with code {}", exit.0),
            code: Some(exit.0),
        };
    }
    let kind = if error.downcast_ref::<wasmtime::Trap>().is_some() {
        ErrorKind::Trap
    } else {
        ErrorKind::HostFailure
    };
    // Cause first ("wasm trap: wasm `unreachable` instruction executed"), then its context
    // (the wasm backtrace).
    let mut parts: Vec<String> = error.chain().map(|e| e.to_string()).collect();
    parts.reverse();
    ExitError::new(kind, parts.join("\n"))
}
