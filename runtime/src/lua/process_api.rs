//! The `process` module. Calls that can be refused answer the Lua way: `value, nil` or
//! `nil, "kind: message"`; they never raise.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mlua::{Lua, LuaSerdeExt, Value as LuaValue, Variadic};

use super::channel::Channel;
use super::events::{event_table, LuaPid};
use super::time_api::LuaDuration;
use super::ScriptProcess;
use crate::error::Error;
use crate::runtime::SpawnOptions;

type Answer = (Option<bool>, Option<String>);

fn answer(result: Result<(), Error>) -> Answer {
    match result {
        Ok(()) => (Some(true), None),
        Err(e) => (None, Some(format!("{}: {e}", e.kind()))),
    }
}

pub(super) fn module(lua: &Lua, script: &Arc<ScriptProcess>) -> mlua::Result<mlua::Table> {
    let process = lua.create_table()?;
    let own = LuaPid(script.pid);
    process.set("pid", lua.create_function(move |_, ()| Ok(own))?)?;

    for (name, monitored, linked) in [
        ("spawn", false, false),
        ("spawn_monitored", true, false),
        ("spawn_linked", false, true),
        ("spawn_linked_monitored", true, true),
    ] {
        let script = script.clone();
        let spawn = move |lua: &Lua, (entry, host, args): (String, String, Variadic<LuaValue>)| {
            let mut values = Vec::with_capacity(args.len());
            for arg in args.iter() {
                match lua.from_value::<serde_json::Value>(arg.clone()) {
                    Ok(v) => values.push(v),
                    Err(e) => return Ok((LuaValue::Nil, Some(format!("bad_argument: {e}")))),
                }
            }
            let options = SpawnOptions {
                link: linked.then_some(script.pid),
                ..SpawnOptions::default()
            };
            let monitors = monitored
                .then(|| script.address.clone())
                .into_iter()
                .collect();
            match script
                .runtime()?
                .spawn_to(&entry, &host, &values, &options, monitors)
            {
                Ok(pid) => Ok((LuaValue::UserData(lua.create_userdata(LuaPid(pid))?), None)),
                Err(e) => Ok((LuaValue::Nil, Some(format!("{}: {e}", e.kind())))),
            }
        };
        process.set(name, lua.create_function(spawn)?)?;
    }

    let control = |f: fn(&ScriptProcess, LuaPid) -> mlua::Result<Result<(), Error>>| {
        let script = script.clone();
        lua.create_function(move |_, pid: LuaPid| Ok(answer(f(&script, pid)?)))
    };
    process.set(
        "monitor",
        control(|s, pid| Ok(s.runtime()?.registry().monitor(pid.0, s.address.clone())))?,
    )?;
    process.set(
        "unmonitor",
        control(|s, pid| Ok(s.runtime()?.registry().unmonitor(pid.0, &s.address)))?,
    )?;
    process.set(
        "link",
        control(|s, pid| Ok(s.runtime()?.link(s.pid, pid.0)))?,
    )?;
    process.set(
        "unlink",
        control(|s, pid| Ok(s.runtime()?.unlink(s.pid, pid.0)))?,
    )?;
    process.set(
        "terminate",
        control(|s, pid| Ok(s.runtime()?.terminate(pid.0)))?,
    )?;
    {
        let script = script.clone();
        process.set(
            "cancel",
            lua.create_function(move |_, (pid, reason): (LuaPid, Option<String>)| {
                let runtime = script.runtime()?;
                let reason = reason.unwrap_or_default();
                Ok(answer(runtime.cancel_from(pid.0, reason, Some(script.pid))))
            })?,
        )?;
    }
    {
        let script = script.clone();
        process.set(
            "receive",
            lua.create_async_function(move |lua, timeout: Option<LuaDuration>| {
                let script = script.clone();
                async move {
                    match script.next_event(timeout.map(|t| t.0)).await {
                        Some(event) => event_table(&lua, &event).map(LuaValue::Table),
                        None => Ok(LuaValue::Nil),
                    }
                }
            })?,
        )?;
    }
    {
        let script = script.clone();
        process.set(
            "events",
            lua.create_function(move |_, ()| Ok(Channel::Events(script.clone())))?,
        )?;
    }
    {
        let script = script.clone();
        process.set(
            "get_options",
            lua.create_function(move |lua, ()| {
                let options = lua.create_table()?;
                options.set("trap_links", script.trap_links.load(Ordering::Relaxed))?;
                Ok(options)
            })?,
        )?;
    }
    {
        let script = script.clone();
        process.set(
            "set_options",
            lua.create_function(move |_, options: mlua::Table| {
                if let Some(trap) = options.get::<Option<bool>>("trap_links")? {
                    script.trap_links.store(trap, Ordering::Relaxed);
                }
                Ok(true)
            })?,
        )?;
    }

    let event = lua.create_table()?;
    event.set("EXIT", "pid.exit")?;
    event.set("CANCEL", "pid.cancel")?;
    event.set("LINK_DOWN", "pid.link.down")?;
    process.set("event", event)?;
    Ok(process)
}
