//! How a running process is told to stop, or told that a linked process failed.
//!
//! A WebAssembly process ends at its first signal (its task is aborted); a Lua process hears
//! them as a stream and decides (see [`Control`]).

#[cfg(feature = "lua")]
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::error::ErrorKind;
use crate::event::{Exit, ExitError, Pid};

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

/// Where a process that keeps running through signals hears them (a Lua script). Boxed, as a
/// mailbox's events are: the channel allocates 32 slots when made, 1.3 KiB of 40-byte signals
/// for every script, which most never hear.
#[cfg(feature = "lua")]
pub(crate) type Signals = mpsc::UnboundedReceiver<Box<Signal>>;

impl Signal {
    /// How a process that the signal stops ends.
    pub(crate) fn ending(&self) -> ExitError {
        match self {
            Signal::Cancel { reason, from } => ExitError::new(
                ErrorKind::Cancelled,
                match from {
                    Some(from) => format!("cancelled: {reason} (asked by {from})"),
                    None => format!("cancelled: {reason}"),
                },
            ),
            Signal::Terminate => ExitError::new(ErrorKind::Terminated, "terminated"),
            Signal::LinkDown(exit) => ExitError::new(
                ErrorKind::LinkDown,
                format!(
                    "linked process {} failed: {}",
                    exit.from,
                    exit.outcome
                        .as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ),
            ),
        }
    }
}

/// How a running process is told.
pub(super) enum Control {
    /// A WebAssembly process ends at its first signal: its task is aborted (dropped at its
    /// next suspension), and the signal says how it ended. Nothing per process is allocated
    /// or polled for this: most processes never hear a signal.
    Abort {
        /// Known once the task is spawned (see [`Registry::attach`](super::Registry::attach));
        /// never for a task that could not start (its host is shutting down).
        task: Option<AbortHandle>,
        stopping: Option<Signal>,
    },
    #[cfg(feature = "lua")]
    Stream(mpsc::UnboundedSender<Box<Signal>>),
}

impl Control {
    /// A process that stopped listening is already ending: the signal is dropped.
    pub(super) fn send(&mut self, signal: Signal) {
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
                let _ = sender.send(Box::new(signal));
            }
        }
    }
}
