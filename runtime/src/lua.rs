//! The Lua host API, for scripts written against Wippy's: `process` (`spawn`,
//! `spawn_monitored`, `monitor`, `cancel`, `terminate`, `receive`, `event`) and `time`
//! (`seconds`, `milliseconds`), as globals and through `require`.
//!
//! This first version runs a script on the calling thread: `process.receive` blocks it (with
//! its timeout) instead of suspending it as a process on the scheduler.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, MetaMethod, UserData, UserDataMethods, Value as LuaValue};

use mlua::serde::SerializeOptions;

use crate::process::{Event, Exit, Mailbox, Pid};
use crate::runtime::Runtime;

/// A PID in Lua: printable, comparable.
#[derive(Clone, Copy)]
struct LuaPid(Pid);

impl UserData for LuaPid {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, pid, ()| Ok(pid.0.to_string()));
        methods.add_meta_method(MetaMethod::Eq, |_, pid, other: mlua::AnyUserData| {
            Ok(other.borrow::<LuaPid>().is_ok_and(|o| o.0 == pid.0))
        });
    }
}

/// A script failed: a Lua error (`error(...)`, a failed `assert`, a syntax error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScriptError(String);

/// Runs `source` (named `name` in error messages) against `runtime`.
pub fn run_script(runtime: Arc<Runtime>, source: &str, name: &str) -> Result<(), ScriptError> {
    let lua = Lua::new();
    install(&lua, runtime).map_err(|e| ScriptError(e.to_string()))?;
    lua.load(source)
        .set_name(format!("@{name}"))
        .exec()
        .map_err(|e| ScriptError(e.to_string()))
}

fn install(lua: &Lua, runtime: Arc<Runtime>) -> mlua::Result<()> {
    let mailbox = Rc::new(RefCell::new(Mailbox::new()));
    let clock = Rc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(mlua::Error::external)?,
    );
    let process = lua.create_table()?;

    let spawner = |monitored: bool| {
        let runtime = runtime.clone();
        let mailbox = mailbox.clone();
        lua.create_function(
            move |lua, (entry, host, args): (String, String, mlua::Variadic<LuaValue>)| {
                let mut values = Vec::with_capacity(args.len());
                for arg in args.iter() {
                    match lua.from_value::<serde_json::Value>(arg.clone()) {
                        Ok(v) => values.push(v),
                        Err(e) => return Ok((LuaValue::Nil, Some(format!("bad_argument: {e}")))),
                    }
                }
                let spawned = if monitored {
                    runtime.spawn_monitored(&entry, &host, &values, &mailbox.borrow())
                } else {
                    runtime.spawn(&entry, &host, &values)
                };
                match spawned {
                    Ok(pid) => Ok((LuaValue::UserData(lua.create_userdata(LuaPid(pid))?), None)),
                    Err(e) => Ok((LuaValue::Nil, Some(format!("{}: {e}", e.kind())))),
                }
            },
        )
    };
    process.set("spawn", spawner(false)?)?;
    process.set("spawn_monitored", spawner(true)?)?;

    {
        let (runtime, mailbox) = (runtime.clone(), mailbox.clone());
        process.set(
            "monitor",
            lua.create_function(move |_, pid: mlua::UserDataRef<LuaPid>| {
                Ok(runtime
                    .monitor(pid.0, &mailbox.borrow())
                    .err()
                    .map(|e| e.to_string()))
            })?,
        )?;
    }
    {
        let runtime = runtime.clone();
        process.set(
            "cancel",
            lua.create_function(
                move |_, (pid, reason): (mlua::UserDataRef<LuaPid>, Option<String>)| {
                    Ok(runtime
                        .cancel(pid.0, reason.unwrap_or_default())
                        .err()
                        .map(|e| e.to_string()))
                },
            )?,
        )?;
    }
    {
        let runtime = runtime.clone();
        process.set(
            "terminate",
            lua.create_function(move |_, pid: mlua::UserDataRef<LuaPid>| {
                Ok(runtime.terminate(pid.0).err().map(|e| e.to_string()))
            })?,
        )?;
    }
    {
        let (mailbox, clock) = (mailbox.clone(), clock.clone());
        process.set(
            "receive",
            lua.create_function(move |lua, timeout: Option<f64>| {
                // No timeout: wait as long as it takes (a day stands for that).
                let timeout = Duration::from_secs_f64(timeout.unwrap_or(86_400.0).max(0.0));
                let event = clock.block_on(mailbox.borrow_mut().receive(timeout));
                match event {
                    None => Ok(LuaValue::Nil),
                    Some(Event::Exit(exit)) => exit_table(lua, &exit).map(LuaValue::Table),
                }
            })?,
        )?;
    }
    let event = lua.create_table()?;
    event.set("EXIT", "pid.exit")?;
    process.set("event", event)?;
    let inbox = Inbox {
        mailbox: mailbox.clone(),
        clock: clock.clone(),
    };
    {
        let inbox = inbox.clone();
        process.set(
            "events",
            lua.create_function(move |_, ()| Ok(Channel::Events(inbox.clone())))?,
        )?;
    }
    let channel = lua.create_table()?;
    {
        let inbox = inbox.clone();
        channel.set(
            "select",
            lua.create_function(move |lua, cases: mlua::Table| select(lua, &inbox, cases))?,
        )?;
    }

    let time = lua.create_table()?;
    time.set("seconds", lua.create_function(|_, n: f64| Ok(n))?)?;
    time.set(
        "milliseconds",
        lua.create_function(|_, n: f64| Ok(n / 1000.0))?,
    )?;
    time.set(
        "after",
        lua.create_function(|_, seconds: f64| {
            Ok(Channel::Timer(
                std::time::Instant::now() + Duration::from_secs_f64(seconds.max(0.0)),
            ))
        })?,
    )?;
    time.set(
        "sleep",
        lua.create_function(|_, seconds: f64| {
            std::thread::sleep(Duration::from_secs_f64(seconds.max(0.0)));
            Ok(())
        })?,
    )?;

    let globals = lua.globals();
    let loaded: mlua::Table = globals.get::<mlua::Table>("package")?.get("loaded")?;
    loaded.set("process", process.clone())?;
    loaded.set("time", time.clone())?;
    loaded.set("channel", channel.clone())?;
    globals.set("process", process)?;
    globals.set("time", time)?;
    globals.set("channel", channel)?;
    Ok(())
}

/// The script's mailbox and the clock its waits run on.
#[derive(Clone)]
struct Inbox {
    mailbox: Rc<RefCell<Mailbox>>,
    clock: Rc<tokio::runtime::Runtime>,
}

impl Inbox {
    /// The next event before `deadline` (none: wait as long as it takes).
    fn next(&self, deadline: Option<std::time::Instant>) -> Option<Event> {
        let timeout = deadline
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(Duration::from_secs(86_400));
        self.clock
            .block_on(self.mailbox.borrow_mut().receive(timeout))
    }
}

/// `process.events()` (this script's events) or `time.after(d)` (fires once, at a deadline).
#[derive(Clone)]
enum Channel {
    Events(Inbox),
    Timer(std::time::Instant),
}

impl UserData for Channel {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("receive", |lua, channel, ()| match channel {
            Channel::Events(inbox) => match inbox.next(None) {
                Some(Event::Exit(exit)) => exit_table(lua, &exit).map(LuaValue::Table),
                None => Ok(LuaValue::Nil),
            },
            Channel::Timer(deadline) => {
                std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now()));
                Ok(LuaValue::Boolean(true))
            }
        });
        methods.add_function("case_receive", |lua, this: mlua::AnyUserData| {
            let case = lua.create_table()?;
            case.set("channel", this)?;
            Ok(case)
        });
    }
}

/// `channel.select({ a:case_receive(), b:case_receive() })`: waits for the first case that
/// fires and returns `{ channel = ..., value = ..., ok = true }`.
fn select(lua: &Lua, inbox: &Inbox, cases: mlua::Table) -> mlua::Result<mlua::Table> {
    let mut events = None;
    let mut earliest: Option<(std::time::Instant, mlua::AnyUserData)> = None;
    for case in cases.sequence_values::<mlua::Table>() {
        let channel: mlua::AnyUserData = case?.get("channel")?;
        let deadline = match &*channel.borrow::<Channel>()? {
            Channel::Events(_) => None,
            Channel::Timer(deadline) => Some(*deadline),
        };
        match deadline {
            None => events = Some(channel),
            Some(deadline) => {
                if earliest.as_ref().is_none_or(|(d, _)| deadline < *d) {
                    earliest = Some((deadline, channel));
                }
            }
        }
    }
    let fired = lua.create_table()?;
    fired.set("ok", true)?;
    if let Some(events_channel) = events {
        if let Some(Event::Exit(exit)) = inbox.next(earliest.as_ref().map(|(d, _)| *d)) {
            fired.set("channel", events_channel)?;
            fired.set("value", exit_table(lua, &exit)?)?;
            return Ok(fired);
        }
    }
    match earliest {
        Some((deadline, timer)) => {
            std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now()));
            fired.set("channel", timer)?;
            fired.set("value", true)?;
            Ok(fired)
        }
        None => Err(mlua::Error::runtime(
            "channel.select: no case can fire (no events channel and no timer)",
        )),
    }
}

/// Both shapes of the EXIT event: the seed's (`type`, `value`) and Wippy's current one
/// (`kind`, `from`, `result = { value, error }`).
fn exit_table(lua: &Lua, exit: &Exit) -> mlua::Result<mlua::Table> {
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let table = lua.create_table()?;
    table.set("type", "EXIT")?;
    table.set("kind", "pid.exit")?;
    table.set("from", LuaPid(exit.from))?;
    let result = lua.create_table()?;
    match &exit.outcome {
        Ok(value) => {
            let value = lua.to_value_with(value, options)?;
            table.set("value", value.clone())?;
            result.set("value", value)?;
        }
        Err(error) => {
            let e = lua.create_table()?;
            e.set("kind", error.kind.as_str())?;
            e.set("message", error.message.as_str())?;
            result.set("error", e)?;
            table.set("error", format!("{}: {}", error.kind, error.message))?;
        }
    }
    table.set("result", result)?;
    Ok(table)
}
