//! Lua scripts as processes, with the host API of Wippy's Lua: `process` (spawn and its
//! monitored / linked variants, monitor, link, cancel, terminate, receive, events, options),
//! `time` (durations, `sleep`, `after`) and `channel.select`, as globals and through
//! `require`.
//!
//! A script is a process like a WebAssembly one: it has a PID, runs as a task on a
//! `process.host`, can be monitored, linked, cancelled and terminated, and ends with exactly one
//! EXIT carrying what it returned. A wait (`receive`, `sleep`, a channel) suspends its task and
//! frees the worker; a script that computes without waiting is preempted every slice (a count
//! hook yields it), so it cannot starve the processes sharing its worker.
//!
//! A script is sandboxed (`sandbox`): pure standard libraries (no `io`, `os`, `debug`, file
//! loading, binary chunks) and at most [`MEMORY_LIMIT`] bytes; and it cannot hold a worker
//! (`preempt`): not by computing, and not inside a library call.
//!
//! Signals: `cancel` does not stop a script, it delivers a CANCEL event the script may act on
//! (Wippy's graceful cancellation); `terminate` stops it; a linked process failing stops it,
//! unless it set `trap_links`, in which case it receives a LINK_DOWN event.

mod alarm;
mod channel;
mod cpu_time;
mod events;
mod pattern;
mod pattern_api;
mod preempt;
mod process_api;
mod sandbox;
mod time_api;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, MultiValue, Value as LuaValue};
use serde_json::Value;

use crate::error::{Error, ErrorKind};
use crate::event::{Event, ExitError, Pid};
use crate::mailbox::Mailbox;
use crate::process;
use crate::runtime::{monitors_of, Runtime, SpawnOptions, Started};
pub(crate) use preempt::Preemption;

pub use preempt::UNPREEMPTIBLE;
pub use sandbox::MEMORY_LIMIT;

/// The most bytes a script's unreceived events may hold (as `Event::bytes` counts them: the
/// event and its value, message and output): as much again as its Lua state may allocate, so
/// ~1,000,000 EXITs without output. Past it the script ends with `limit_exceeded`; what waits
/// there is host memory, which its own calls could otherwise fill without end.
pub const MAILBOX_BYTES: usize = MEMORY_LIMIT;

/// The largest script file read (`wasmproc lua`, a scenario's `lua: file`): 16 MiB.
pub const SCRIPT_MAX_BYTES: u64 = 16 << 20;

/// What a running script's API functions share: the runtime, its own PID, and its mailbox.
pub(crate) struct ScriptProcess {
    /// Weak: a script must not keep its runtime (and the host it runs on) alive.
    runtime: Weak<Runtime>,
    pid: Pid,
    /// Locked only by waits, and a script waits for one thing at a time.
    mailbox: tokio::sync::Mutex<Mailbox>,
    /// Where monitors of the processes it watches send their EXITs.
    address: crate::mailbox::Address,
    trap_links: AtomicBool,
}

impl ScriptProcess {
    fn runtime(&self) -> mlua::Result<Arc<Runtime>> {
        self.runtime
            .upgrade()
            .ok_or_else(|| mlua::Error::runtime("the runtime has shut down"))
    }

    /// The next event, or `None` when `timeout` passes first (no timeout: wait for one).
    async fn next_event(&self, timeout: Option<Duration>) -> Option<Event> {
        let mut mailbox = self.mailbox.lock().await;
        match timeout {
            Some(timeout) => mailbox.receive(timeout).await,
            None => Some(mailbox.next().await),
        }
    }
}

/// Why [`run_script`] has no value.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The spawn was refused (a syntax error, an unknown host, ...).
    #[error("{}", .0.kinded())]
    Refused(Error),
    /// The script ran and failed, or was stopped.
    #[error("{0}")]
    Failed(ExitError),
}

impl Runtime {
    /// Spawns the Lua `source` (named `name` in error messages) as a process on `host`; `args`
    /// are the chunk's `...`. A syntax error refuses the spawn (its PID, taken first because
    /// the script's API knows it, is then never used). `options.stdio` and `extra_args` do not
    /// apply to scripts.
    pub fn spawn_lua(
        self: &Arc<Self>,
        source: &str,
        name: &str,
        host: &str,
        args: &[Value],
        options: &SpawnOptions,
        monitor: Option<&Mailbox>,
    ) -> Result<Pid, Error> {
        let host = self.host(self.entry(host)?)?;
        let place = host.enqueue()?;
        let refused = |e: mlua::Error| Error::Script {
            name: name.to_string(),
            message: e.to_string(),
        };
        let pid = self.next_pid();
        let mailbox = Mailbox::bounded(MAILBOX_BYTES);
        let script = Arc::new(ScriptProcess {
            runtime: Arc::downgrade(self),
            pid,
            address: mailbox.address(),
            mailbox: tokio::sync::Mutex::new(mailbox),
            trap_links: AtomicBool::new(false),
        });
        let preemption = Preemption::new();
        let lua = sandbox::new(&preemption).map_err(refused)?;
        install(&lua, &script).map_err(refused)?;
        let main = lua
            .load(source)
            .set_name(format!("@{name}"))
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()
            .map_err(refused)?;
        let args = args
            .iter()
            .map(|v| lua.to_value(v))
            .collect::<mlua::Result<MultiValue>>()
            .map_err(refused)?;
        preemption.install(&lua, &script).map_err(refused)?;
        let thread = lua.create_thread(main).map_err(refused)?;
        preemption.own(&thread);
        // What setting the sandbox up left behind, collected before the script first waits:
        // otherwise each waiting script keeps it until it allocates enough to start a cycle
        // (6.7 KiB resident a script; spawns no slower, measured).
        lua.gc_collect().map_err(refused)?;
        tracing::debug!(%pid, script = name, host = %host.id(), "spawn lua");
        let monitors = monitors_of(monitor);
        let started = Started::Lua(preemption.clone());
        self.start_process(pid, host, monitors, options, started, |guard| {
            process::supervise(guard, place, run(lua, thread, args, script, preemption))
        });
        Ok(pid)
    }
}

/// Runs `source` as a process on `host` (default: the manifest's only host) and waits for its
/// EXIT: the script's result, or why it failed. A script still running after `timeout` is
/// terminated and fails with `limit_exceeded`.
pub fn run_script(
    runtime: &Arc<Runtime>,
    source: &str,
    name: &str,
    host: Option<&str>,
    args: &[Value],
    timeout: Option<Duration>,
) -> Result<Value, ScriptError> {
    let host = runtime
        .host_or_default(host)
        .map_err(ScriptError::Refused)?;
    let mut mailbox = Mailbox::new();
    let pid = runtime
        .spawn_lua(
            source,
            name,
            &host,
            args,
            &SpawnOptions::default(),
            Some(&mailbox),
        )
        .map_err(ScriptError::Refused)?;
    let failed = |e: std::io::Error| {
        ScriptError::Failed(ExitError::new(
            ErrorKind::HostFailure,
            format!("cannot wait for the script: {e}"),
        ))
    };
    // Only the script's EXIT can reach this mailbox, and without a timeout it always comes.
    if let Some(Event::Exit(exit)) = mailbox.receive_blocking(timeout).map_err(failed)? {
        return exit.outcome.map_err(ScriptError::Failed);
    }
    let timeout = timeout.unwrap_or_default();
    let _ = runtime.terminate(pid);
    let then = match mailbox
        .receive_blocking(Some(TERMINATE_GRACE))
        .map_err(failed)?
    {
        Some(Event::Exit(exit)) => match exit.outcome {
            Ok(_) => "then it ended".to_string(),
            Err(e) => format!("then: {e}"),
        },
        _ => format!(
            "and it was still running {} after it was terminated",
            humantime::format_duration(TERMINATE_GRACE)
        ),
    };
    Err(ScriptError::Failed(ExitError::new(
        ErrorKind::LimitExceeded,
        format!(
            "the script did not end within {} ({then})",
            humantime::format_duration(timeout)
        ),
    )))
}

/// How long [`run_script`] waits for a timed-out script to end once it is terminated.
const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// The script's life: its chunk, and the signals sent to it meanwhile ([`Preemption::poll`]).
async fn run(
    lua: Lua,
    thread: mlua::Thread,
    args: MultiValue,
    script: Arc<ScriptProcess>,
    preemption: Arc<Preemption>,
) -> Result<Value, ExitError> {
    let chunk = thread
        .into_async::<MultiValue>(args)
        .map_err(|e| ExitError::new(ErrorKind::HostFailure, e.to_string()))?;
    let chunk = async { outcome(&lua, chunk.await) };
    tokio::pin!(chunk);
    std::future::poll_fn(|cx| preemption.poll(&script, chunk.as_mut(), cx)).await
}

/// A script's EXIT value is what it returns (its first value); `return nil, err` and errors
/// raised in it are failures.
fn outcome(lua: &Lua, returned: mlua::Result<MultiValue>) -> Result<Value, ExitError> {
    let failed = |message: String| ExitError::new(ErrorKind::ScriptError, message);
    let mut values = returned.map_err(|e| failed(e.to_string()))?.into_iter();
    let value = values.next().unwrap_or(LuaValue::Nil);
    let error = values.next().unwrap_or(LuaValue::Nil);
    if value.is_nil() && !error.is_nil() {
        return Err(failed(error.to_string().unwrap_or_else(|e| e.to_string())));
    }
    lua.from_value(value)
        .map_err(|e| failed(format!("the script's result has no JSON form: {e}")))
}

fn install(lua: &Lua, script: &Arc<ScriptProcess>) -> mlua::Result<()> {
    let process = process_api::module(lua, script)?;
    let time = time_api::module(lua)?;
    let channel = channel::module(lua)?;
    let globals = lua.globals();
    let loaded: mlua::Table = globals.get::<mlua::Table>("package")?.get("loaded")?;
    for (name, module) in [("process", process), ("time", time), ("channel", channel)] {
        loaded.set(name, module.clone())?;
        globals.set(name, module)?;
    }
    Ok(())
}
