//! The Lua state a script runs in: the pure standard libraries only (no `io`, `os`, `debug`,
//! no file loading, no C modules), at most [`MEMORY_LIMIT`] bytes, and `sandbox.lua`'s
//! replacements for what could escape or hold a worker: text chunks only (a binary chunk is
//! unverified bytecode: a corrupted one crashed the host), `require` of built-in modules only,
//! no finalizers, no full collections, bounded pattern matching, a `table.sort` that can be
//! preempted, and a `pcall` that cannot catch the script's own ending.

use std::sync::{Arc, OnceLock};

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
    let (chunk, mode) = compiled();
    lua.load(chunk).set_name(NAME).set_mode(mode).call::<()>((
        Lua::poll_pending(),
        pattern_api::module(&lua)?,
        guard,
    ))?;
    Ok(lua)
}

const SOURCE: &str = include_str!("sandbox.lua");
const NAME: &str = "=wasmproc/sandbox";

/// `sandbox.lua`, compiled once per host process: parsing it on every spawn was most of a
/// script's spawn (perf, 10,000 scripts: Lua's lexer and parser on top). The bytecode is the
/// host's own, made here by the same Lua (a script's chunks stay text only). Should the dump
/// fail, the source is parsed each time instead.
fn compiled() -> (&'static [u8], mlua::chunk::ChunkMode) {
    static COMPILED: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    match COMPILED.get_or_init(compile) {
        Some(bytecode) => (bytecode, mlua::chunk::ChunkMode::Binary),
        None => (SOURCE.as_bytes(), mlua::chunk::ChunkMode::Text),
    }
}

fn compile() -> Option<Vec<u8>> {
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::default()).ok()?;
    let function = lua
        .load(SOURCE)
        .set_name(NAME)
        .set_mode(mlua::chunk::ChunkMode::Text)
        .into_function()
        .ok()?;
    // Stripped of debug information (line numbers, local names): every script's state holds
    // these functions, and that is 5 KiB less each (24.7 KiB unstripped); an error raised
    // inside the sandbox is reported where the script called it, as before.
    // `dump` panics where it cannot grow the stack; keep the host up and parse instead.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| function.dump(true))).ok()
}
