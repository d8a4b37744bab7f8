//! The Lua state a script runs in: the pure standard libraries only (no `io`, `os`, `debug`,
//! no file loading, no C modules), at most [`MEMORY_LIMIT`] bytes, and `sandbox.lua`'s
//! replacements for what could escape or hold a worker: text chunks only (a binary chunk is
//! unverified bytecode: a corrupted one crashed the host), `require` of built-in modules only,
//! no finalizers, no full collections, bounded pattern matching, a `table.sort` that can be
//! preempted, and a `pcall` that cannot catch the script's own ending.

use std::sync::Arc;

use mlua::{Lua, LuaOptions, StdLib};

use super::pattern_api;
use super::preempt::Preemption;

/// What one script may allocate; past it, an allocation fails with a Lua error ("not enough
/// memory") and the script ends with `script_error`, the host unharmed.
pub const MEMORY_LIMIT: usize = 256 << 20;

/// A fresh state for one script, its sandbox in place.
pub(super) fn new(preemption: &Arc<Preemption>) -> mlua::Result<Lua> {
    let libs = StdLib::COROUTINE | StdLib::TABLE | StdLib::STRING | StdLib::UTF8 | StdLib::MATH;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    lua.set_memory_limit(MEMORY_LIMIT)?;
    let globals = lua.globals();
    globals.set("dofile", mlua::Nil)?;
    globals.set("loadfile", mlua::Nil)?;
    let guard = lua.create_table()?;
    let p = preemption.clone();
    guard.set("ended", lua.create_function(move |_, ()| Ok(p.ended()))?)?;
    let p = preemption.clone();
    guard.set(
        "preempted",
        lua.create_function(move |_, ()| Ok(p.take_preempted()))?,
    )?;
    let p = preemption.clone();
    guard.set(
        "running",
        lua.create_function(move |_, thread: mlua::Thread| {
            p.enter(thread);
            Ok(())
        })?,
    )?;
    let p = preemption.clone();
    guard.set(
        "slice_over",
        lua.create_function(move |_, ()| Ok(p.slice_over()))?,
    )?;
    lua.load(include_str!("sandbox.lua"))
        .set_name("=wasmproc/sandbox")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .call::<()>((Lua::poll_pending(), pattern_api::module(&lua)?, guard))?;
    Ok(lua)
}
