//! The `time` module: durations, `sleep`, `after`.
//!
//! A duration argument is a `time.seconds(n)` / `time.milliseconds(n)` / `time.parse_duration`
//! value, a string (`"5ms"`, `"1h 30m"`), or a number of nanoseconds (Wippy's unit, so
//! `5 * time.SECOND` works).

use std::time::{Duration, Instant};

use mlua::{FromLua, Lua, MetaMethod, UserData, UserDataMethods, Value as LuaValue};

use super::channel::Channel;

#[derive(Clone, Copy, Debug)]
pub(crate) struct LuaDuration(pub Duration);

impl UserData for LuaDuration {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("seconds", |_, d, ()| Ok(d.0.as_secs_f64()));
        methods.add_method("milliseconds", |_, d, ()| Ok(d.0.as_secs_f64() * 1e3));
        methods.add_method("nanoseconds", |_, d, ()| Ok(d.0.as_nanos() as f64));
        methods.add_meta_method(MetaMethod::ToString, |_, d, ()| {
            Ok(humantime::format_duration(d.0).to_string())
        });
        methods.add_meta_method(MetaMethod::Eq, |_, d, other: mlua::AnyUserData| {
            Ok(other.borrow::<LuaDuration>().is_ok_and(|o| o.0 == d.0))
        });
    }
}

impl FromLua for LuaDuration {
    fn from_lua(value: LuaValue, _: &Lua) -> mlua::Result<Self> {
        parse(&value).map_err(mlua::Error::runtime)
    }
}

fn parse(value: &LuaValue) -> Result<LuaDuration, String> {
    let nanos = |n: f64| {
        if n.is_finite() && n >= 0.0 {
            Ok(LuaDuration(Duration::from_nanos(n as u64)))
        } else {
            Err(format!(
                "invalid duration {n}: expected a non-negative number of nanoseconds"
            ))
        }
    };
    match value {
        LuaValue::UserData(ud) => ud
            .borrow::<LuaDuration>()
            .map(|d| *d)
            .map_err(|_| "invalid duration: expected a duration, a string or a number".into()),
        LuaValue::String(s) => {
            let text = s.to_string_lossy();
            humantime::parse_duration(text.trim())
                .map(LuaDuration)
                .map_err(|e| format!("invalid duration `{text}`: {e}"))
        }
        LuaValue::Integer(n) => nanos(*n as f64),
        LuaValue::Number(n) => nanos(*n),
        other => Err(format!(
            "invalid duration: expected a duration, a string or a number, got {}",
            other.type_name()
        )),
    }
}

fn seconds(n: f64) -> mlua::Result<LuaDuration> {
    Duration::try_from_secs_f64(n)
        .map(LuaDuration)
        .map_err(|e| mlua::Error::runtime(format!("invalid duration {n} s: {e}")))
}

pub(super) fn module(lua: &Lua) -> mlua::Result<mlua::Table> {
    let time = lua.create_table()?;
    time.set("seconds", lua.create_function(|_, n: f64| seconds(n))?)?;
    time.set(
        "milliseconds",
        lua.create_function(|_, n: f64| seconds(n / 1e3))?,
    )?;
    time.set(
        "parse_duration",
        lua.create_function(|_, value: LuaValue| {
            Ok(match parse(&value) {
                Ok(d) => (Some(d), None),
                Err(e) => (None, Some(e)),
            })
        })?,
    )?;
    for (name, nanos) in [
        ("NANOSECOND", 1i64),
        ("MICROSECOND", 1_000),
        ("MILLISECOND", 1_000_000),
        ("SECOND", 1_000_000_000),
        ("MINUTE", 60_000_000_000),
        ("HOUR", 3_600_000_000_000),
    ] {
        time.set(name, nanos)?;
    }
    time.set(
        "sleep",
        lua.create_async_function(|_, d: LuaDuration| async move {
            tokio::time::sleep(d.0).await;
            Ok(())
        })?,
    )?;
    time.set(
        "after",
        lua.create_function(|_, d: LuaDuration| {
            Instant::now()
                .checked_add(d.0)
                .map(Channel::Timer)
                .ok_or_else(|| {
                    mlua::Error::runtime(format!(
                        "time.after: {} is too far in the future",
                        humantime::format_duration(d.0)
                    ))
                })
        })?,
    )?;
    Ok(time)
}
