//! What a process's monitors and trace sinks hear: its [`Pid`], the one [`Exit`] that says
//! how it ended (an outcome, its [`Accounting`], captured [`Output`]), the other [`Event`]s a
//! monitor may get, and the [`Lifecycle`] phases a trace sink sees.
//!
//! These are the runtime's wire vocabulary: an EXIT serializes as
//! `{ type: EXIT, from, value | error: { kind, message }, wall_time_ms, ... }`, and its
//! error kinds are [`ErrorKind`]'s stable names.

use std::fmt;
use std::time::{Duration, Instant};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::ErrorKind;

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
    /// What went wrong, as a stable word.
    pub kind: ErrorKind,
    /// Context for a person; never matched on.
    pub message: String,
    /// The code the guest passed to `exit`, for `exit_code` errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

impl ExitError {
    /// An error without an exit code.
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
    /// The guest's stdout.
    pub stdout: String,
    /// The guest's stderr.
    pub stderr: String,
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message may quote a binary or a guest (a trap's backtrace names its functions).
        let message = crate::printable::printable_lines(&self.message);
        write!(f, "{}: {message}", self.kind)
    }
}

/// What a process cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Accounting {
    /// From Init to Close.
    pub wall_time: Duration,
    /// When Init began, for relations between processes (overlap, order).
    pub started: Instant,
    /// When Close ended.
    pub ended: Instant,
    /// Runs between two suspensions: a synchronous guest has one.
    pub steps: u32,
    /// Suspensions: waits for I/O or timers, and preemptions.
    pub yields: u32,
    /// Instructions metered, when the process finished with its store (not after a timeout).
    pub fuel_used: Option<u64>,
    /// The most linear memory and table it had at once, in bytes (as `max_memory` counts it).
    pub peak_memory: u64,
}

/// The one event a monitor receives when a process ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Exit {
    /// The process that ended.
    pub from: Pid,
    /// Its result as JSON, or why it has none.
    pub outcome: Result<Value, ExitError>,
    /// What it cost.
    pub accounting: Accounting,
    /// Present when the process's stdio was captured.
    pub output: Option<Output>,
    /// Read back from the window of ended processes after its output and value were dropped
    /// to keep the window within its byte budget (`registry::RETAINED_BYTES`): the output is
    /// empty, a value is `null`, an error keeps its kind, code and the start of its message.
    pub trimmed: bool,
}

/// Serialized as `{ type: EXIT, from, value | error: { kind, message }, wall_time_ms }`, plus
/// `stdout` / `stderr` when captured and not empty, and `trimmed: true` when a late monitor's
/// copy lost its output and value to the ended window's budget.
impl Serialize for Exit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", "EXIT")?;
        map.serialize_entry("from", &self.from)?;
        match &self.outcome {
            Ok(value) => map.serialize_entry("value", value)?,
            Err(error) => map.serialize_entry("error", error)?,
        }
        let a = &self.accounting;
        map.serialize_entry("wall_time_ms", &(a.wall_time.as_micros() as f64 / 1000.0))?;
        map.serialize_entry("steps", &a.steps)?;
        map.serialize_entry("yields", &a.yields)?;
        if let Some(fuel) = a.fuel_used {
            map.serialize_entry("fuel_used", &fuel)?;
        }
        map.serialize_entry("peak_memory", &a.peak_memory)?;
        if let Some(output) = &self.output {
            if !output.stdout.is_empty() {
                map.serialize_entry("stdout", &output.stdout)?;
            }
            if !output.stderr.is_empty() {
                map.serialize_entry("stderr", &output.stderr)?;
            }
        }
        if self.trimmed {
            map.serialize_entry("trimmed", &true)?;
        }
        map.end()
    }
}

/// Everything a mailbox can receive: EXITs of monitored processes, and, in a Lua script's own
/// mailbox, the CANCEL and LINK_DOWN sent to it.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A monitored process ended.
    Exit(Exit),
    /// Someone asked this (Lua) process to cancel; `from` is the asking process, if any.
    Cancel {
        /// The asking process, if any.
        from: Option<Pid>,
        /// The reason given to `cancel`.
        reason: String,
    },
    /// A process linked to this (Lua) process ended with an error, and this one traps links.
    LinkDown(Exit),
}

impl Exit {
    /// What its payload holds, in bytes: its captured output, its value (as
    /// [`crate::value::value_bytes`] counts it) and its error's message.
    pub(crate) fn payload_bytes(&self) -> usize {
        let output = self
            .output
            .as_ref()
            .map_or(0, |o| o.stdout.len() + o.stderr.len());
        let outcome = match &self.outcome {
            Ok(value) => crate::value::value_bytes(value),
            Err(error) => error.message.len(),
        };
        output + outcome
    }
}

impl Event {
    /// The EXIT, if this is one. A mailbox that only monitors receives nothing else: CANCEL
    /// and LINK_DOWN reach only a Lua script's own mailbox.
    pub fn into_exit(self) -> Option<Exit> {
        match self {
            Event::Exit(exit) => Some(exit),
            _ => None,
        }
    }

    /// What it holds while it waits in a mailbox, in bytes: itself, boxed, and its payload.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of::<Event>()
            + match self {
                Event::Exit(exit) | Event::LinkDown(exit) => exit.payload_bytes(),
                Event::Cancel { reason, .. } => reason.len(),
            }
    }

    /// `pid.exit`, `pid.cancel`, `pid.link.down`: the kinds Wippy's events carry.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Exit(_) => "pid.exit",
            Event::Cancel { .. } => "pid.cancel",
            Event::LinkDown(_) => "pid.link.down",
        }
    }
}

/// An EXIT as [`Exit`] serializes; `{ type: CANCEL, from, reason }`;
/// `{ type: LINK_DOWN, from, error }`.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Exit(exit) => exit.serialize(serializer),
            Event::Cancel { from, reason } => {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("type", "CANCEL")?;
                map.serialize_entry("from", from)?;
                map.serialize_entry("reason", reason)?;
                map.end()
            }
            Event::LinkDown(exit) => {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("type", "LINK_DOWN")?;
                map.serialize_entry("from", &exit.from)?;
                if let Err(error) = &exit.outcome {
                    map.serialize_entry("error", error)?;
                }
                map.end()
            }
        }
    }
}

/// A process's phases, as a trace sink sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// The process starts running (its wall time starts).
    Init,
    /// A run of the guest begins.
    Step,
    /// The guest suspended (waiting for I/O or a timer, or preempted).
    Yield,
    /// The process ended: its guest runs no more; its EXIT follows. Its store (memory, pool
    /// slot, open resources) is dropped soon after on the same worker: a few at each Init or
    /// yield there, all when the worker runs out of tasks.
    Close,
}

/// One lifecycle event, sent to the trace sink of a spawn that asked for one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// The process.
    pub pid: Pid,
    /// The phase it entered.
    pub phase: Phase,
    /// When.
    pub at: Instant,
}

/// Where a traced spawn sends its [`Lifecycle`] events.
pub type TraceSink = mpsc::UnboundedSender<Lifecycle>;

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(outcome: Result<Value, ExitError>, output: Option<Output>) -> Exit {
        let started = Instant::now();
        let wall_time = Duration::from_micros(1_500);
        Exit {
            from: Pid(7),
            outcome,
            accounting: Accounting {
                wall_time,
                started,
                ended: started + wall_time,
                steps: 3,
                yields: 2,
                fuel_used: Some(1_234),
                peak_memory: 65_536,
            },
            output,
            trimmed: false,
        }
    }

    #[test]
    fn an_exit_serializes_as_the_documented_object() {
        let json = |exit: &Exit| serde_json::to_value(exit).unwrap();
        let ok = exit(
            Ok(Value::from(42)),
            Some(Output {
                stdout: "out".into(),
                stderr: String::new(),
            }),
        );
        assert_eq!(
            json(&ok),
            serde_json::json!({
                "type": "EXIT", "from": "<7>", "value": 42, "wall_time_ms": 1.5,
                "steps": 3, "yields": 2, "fuel_used": 1234, "peak_memory": 65536, "stdout": "out",
            })
        );
        let mut failed = exit(
            Err(ExitError::new(ErrorKind::Trap, "unreachable")),
            Some(Output {
                stdout: String::new(),
                stderr: "err".into(),
            }),
        );
        failed.accounting.fuel_used = None;
        failed.trimmed = true;
        let failed = json(&failed);
        assert_eq!(failed["error"]["kind"], "trap");
        assert_eq!(failed["error"]["message"], "unreachable");
        assert_eq!(failed["stderr"], "err");
        assert_eq!(failed["trimmed"], true);
        for absent in ["value", "fuel_used", "stdout"] {
            assert!(failed.get(absent).is_none(), "{absent}: {failed}");
        }
    }
}
