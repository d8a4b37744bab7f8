//! PIDs and events as Lua sees them.

use mlua::serde::SerializeOptions;
use mlua::{FromLua, Lua, LuaSerdeExt, MetaMethod, UserData, UserDataMethods, Value as LuaValue};

use crate::event::{Event, Exit, Pid};

/// A PID in Lua: printable (`<3>`), comparable. Functions taking a PID also accept its printed
/// form.
#[derive(Clone, Copy)]
pub(crate) struct LuaPid(pub Pid);

impl UserData for LuaPid {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, pid, ()| Ok(pid.0.to_string()));
        methods.add_meta_method(MetaMethod::Eq, |_, pid, other: mlua::AnyUserData| {
            Ok(other.borrow::<LuaPid>().is_ok_and(|o| o.0 == pid.0))
        });
    }
}

impl FromLua for LuaPid {
    fn from_lua(value: LuaValue, _: &Lua) -> mlua::Result<Self> {
        let parsed = match &value {
            LuaValue::UserData(ud) => ud.borrow::<LuaPid>().ok().map(|p| *p),
            LuaValue::String(s) => s
                .to_str()
                .ok()
                .and_then(|s| s.strip_prefix('<')?.strip_suffix('>')?.parse().ok())
                .map(|n| LuaPid(Pid(n))),
            _ => None,
        };
        parsed.ok_or_else(|| {
            mlua::Error::runtime(format!(
                "expected a PID, got {}",
                value
                    .to_string()
                    .unwrap_or_else(|_| value.type_name().into())
            ))
        })
    }
}

/// An event in both shapes: the seed's (`type`, `value`, `error`) and Wippy's current one
/// (`kind`, `from`, `result = { value, error }`, `reason`).
pub(crate) fn event_table(lua: &Lua, event: &Event) -> mlua::Result<mlua::Table> {
    match event {
        Event::Exit(exit) => exit_table(lua, "EXIT", event.kind(), exit),
        Event::LinkDown(exit) => exit_table(lua, "LINK_DOWN", event.kind(), exit),
        Event::Cancel { from, reason } => {
            let table = lua.create_table()?;
            table.set("type", "CANCEL")?;
            table.set("kind", event.kind())?;
            table.set("from", from.map(LuaPid))?;
            table.set("reason", reason.as_str())?;
            Ok(table)
        }
    }
}

fn exit_table(lua: &Lua, type_: &str, kind: &str, exit: &Exit) -> mlua::Result<mlua::Table> {
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let table = lua.create_table()?;
    table.set("type", type_)?;
    table.set("kind", kind)?;
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
            e.set_metatable(Some(error_metatable(lua)?))?;
            result.set("error", e)?;
            table.set("error", error.to_string())?;
        }
    }
    table.set("result", result)?;
    Ok(table)
}

const ERROR_METATABLE: &str = "wasmproc.error_metatable";

/// `tostring(event.result.error)` gives `kind: message`. Made once per script, shared by its
/// events.
fn error_metatable(lua: &Lua) -> mlua::Result<mlua::Table> {
    if let Ok(meta) = lua.named_registry_value::<mlua::Table>(ERROR_METATABLE) {
        return Ok(meta);
    }
    let meta = lua.create_table()?;
    meta.set(
        "__tostring",
        lua.create_function(|_, e: mlua::Table| {
            Ok(format!(
                "{}: {}",
                e.get::<String>("kind")?,
                e.get::<String>("message")?
            ))
        })?,
    )?;
    lua.set_named_registry_value(ERROR_METATABLE, &meta)?;
    Ok(meta)
}
