//! Channels a script can wait on: its events (`process.events()`) and timers (`time.after`),
//! and `channel.select` over them.

use std::sync::Arc;
use std::time::Instant;

use mlua::{Lua, UserData, UserDataMethods, Value as LuaValue};

use super::events::event_table;
use super::ScriptProcess;

#[derive(Clone)]
pub(crate) enum Channel {
    /// The script's events: EXITs of what it monitors, CANCEL, LINK_DOWN.
    Events(Arc<ScriptProcess>),
    /// Fires once, at a deadline, with `true`.
    Timer(Instant),
}

impl UserData for Channel {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("receive", |lua, channel, ()| async move {
            match &*channel {
                Channel::Events(script) => match script.next_event(None).await {
                    Some(event) => event_table(&lua, &event).map(LuaValue::Table),
                    None => Ok(LuaValue::Nil),
                },
                Channel::Timer(deadline) => {
                    tokio::time::sleep_until((*deadline).into()).await;
                    Ok(LuaValue::Boolean(true))
                }
            }
        });
        methods.add_function("case_receive", |lua, this: mlua::AnyUserData| {
            let case = lua.create_table()?;
            case.set("channel", this)?;
            Ok(case)
        });
    }
}

pub(super) fn module(lua: &Lua) -> mlua::Result<mlua::Table> {
    let channel = lua.create_table()?;
    channel.set(
        "select",
        lua.create_async_function(
            |lua, cases: mlua::Table| async move { select(&lua, cases).await },
        )?,
    )?;
    Ok(channel)
}

/// `channel.select({ a:case_receive(), b:case_receive() })`: waits for the first case that
/// fires and returns `{ channel = ..., value = ..., ok = true }`.
async fn select(lua: &Lua, cases: mlua::Table) -> mlua::Result<mlua::Table> {
    let mut events: Option<(Arc<ScriptProcess>, mlua::AnyUserData)> = None;
    let mut earliest: Option<(Instant, mlua::AnyUserData)> = None;
    for case in cases.sequence_values::<mlua::Table>() {
        let handle: mlua::AnyUserData = case?.get("channel")?;
        let channel = handle.borrow::<Channel>()?.clone();
        match channel {
            Channel::Events(script) => events = Some((script, handle)),
            Channel::Timer(deadline) => {
                if earliest.as_ref().is_none_or(|(d, _)| deadline < *d) {
                    earliest = Some((deadline, handle));
                }
            }
        }
    }
    let fired = lua.create_table()?;
    fired.set("ok", true)?;
    let (handle, value) = match (events, earliest) {
        (Some((script, events)), timer) => {
            let timeout = timer
                .as_ref()
                .map(|(d, _)| d.saturating_duration_since(Instant::now()));
            match (script.next_event(timeout).await, timer) {
                (Some(event), _) => (events, LuaValue::Table(event_table(lua, &event)?)),
                (None, Some((_, timer))) => (timer, LuaValue::Boolean(true)),
                // Without a timer the wait has no timeout, so it ends with an event.
                (None, None) => (events, LuaValue::Nil),
            }
        }
        (None, Some((deadline, timer))) => {
            tokio::time::sleep_until(deadline.into()).await;
            (timer, LuaValue::Boolean(true))
        }
        (None, None) => {
            return Err(mlua::Error::runtime(
                "channel.select: no case can fire (no events channel and no timer)",
            ))
        }
    };
    fired.set("channel", handle)?;
    fired.set("value", value)?;
    Ok(fired)
}
