//! The Rust half of the sandbox's `string.find`, `match`, `gmatch` and `gsub`: one bounded
//! search per call ([`pattern::search`]). A search that spends its slice returns [`more`] and
//! where to go on; the Lua half (`sandbox.lua`) calls again, so that the script's preemption can
//! come between two slices. `gsub`'s loop is in Lua for the same reason: a replacement function
//! it calls runs where the script can be preempted. An error (a malformed pattern, a bad
//! argument) is returned as [`fail`] and its message, which the Lua half raises as a string,
//! as Lua's own functions do.

use std::ffi::c_void;

use mlua::{LightUserData, Lua, LuaString, MultiValue, Value as LuaValue};

use super::pattern::{self, Budget, Capture, PatternError, Search};

/// The value a step returns first when it must be called again (followed by the position).
static MORE_TAG: u8 = 0;
/// The value a step returns first when it failed (followed by the message).
static FAIL_TAG: u8 = 0;

fn tag(tag: &'static u8) -> LuaValue {
    LuaValue::LightUserData(LightUserData(tag as *const u8 as *mut c_void))
}

pub(super) fn more() -> LuaValue {
    tag(&MORE_TAG)
}

fn fail() -> LuaValue {
    tag(&FAIL_TAG)
}

/// A step's errors meant for the script (`RuntimeError`s) as values: `fail(), message`.
fn returning_errors(lua: &Lua, result: mlua::Result<MultiValue>) -> mlua::Result<MultiValue> {
    match result {
        Err(mlua::Error::RuntimeError(message)) => {
            let mut out = MultiValue::new();
            out.push_back(fail());
            out.push_back(LuaValue::String(lua.create_string(message)?));
            Ok(out)
        }
        other => other,
    }
}

/// The functions the Lua half calls, in a table.
pub(super) fn module(lua: &Lua) -> mlua::Result<mlua::Table> {
    let steps = lua.create_table()?;
    steps.set(
        "find",
        lua.create_function(|lua, args: MultiValue| {
            returning_errors(lua, find_step(lua, args, true))
        })?,
    )?;
    steps.set(
        "match",
        lua.create_function(|lua, args: MultiValue| {
            returning_errors(lua, find_step(lua, args, false))
        })?,
    )?;
    steps.set(
        "gmatch",
        lua.create_function(|lua, args: MultiValue| match gmatch(lua, args) {
            Ok(step) => Ok(MultiValue::from_iter([LuaValue::Function(step)])),
            Err(e) => returning_errors(lua, Err(e)),
        })?,
    )?;
    steps.set(
        "gsub",
        lua.create_function(|lua, args: MultiValue| returning_errors(lua, gsub_step(lua, args)))?,
    )?;
    steps.set("MORE", more())?;
    steps.set("FAIL", fail())?;
    Ok(steps)
}

fn arg(args: &MultiValue, i: usize) -> LuaValue {
    args.get(i).cloned().unwrap_or(LuaValue::Nil)
}

fn bad_argument(n: usize, function: &str, expected: &str, got: &LuaValue) -> mlua::Error {
    mlua::Error::runtime(format!(
        "bad argument #{n} to '{function}' ({expected} expected, got {})",
        if got.is_nil() {
            "no value"
        } else {
            got.type_name()
        }
    ))
}

fn string_arg(lua: &Lua, args: &MultiValue, n: usize, function: &str) -> mlua::Result<LuaString> {
    let value = arg(args, n - 1);
    match &value {
        LuaValue::String(s) => Ok(s.clone()),
        LuaValue::Integer(_) | LuaValue::Number(_) => lua
            .coerce_string(value.clone())?
            .ok_or_else(|| bad_argument(n, function, "string", &value)),
        _ => Err(bad_argument(n, function, "string", &value)),
    }
}

fn integer_arg(
    lua: &Lua,
    args: &MultiValue,
    n: usize,
    function: &str,
    default: i64,
) -> mlua::Result<i64> {
    let value = arg(args, n - 1);
    if value.is_nil() {
        return Ok(default);
    }
    match lua.coerce_integer(value.clone()) {
        Ok(Some(i)) => Ok(i),
        _ => Err(bad_argument(n, function, "number", &value)),
    }
}

/// Lua's `posrelatI`: a 1-based start position from a possibly negative one.
fn start_position(pos: i64, len: usize) -> usize {
    let len = len as i64;
    if pos > 0 {
        pos as usize
    } else if pos == 0 || pos < -len {
        1
    } else {
        (len + pos + 1) as usize
    }
}

fn pattern_error(e: PatternError) -> mlua::Error {
    mlua::Error::runtime(e.to_string())
}

fn capture_value(lua: &Lua, src: &[u8], capture: &Capture) -> mlua::Result<LuaValue> {
    Ok(match capture {
        Capture::Text(range) => LuaValue::String(lua.create_string(&src[range.clone()])?),
        Capture::Position(at) => LuaValue::Integer(*at as i64 + 1),
    })
}

/// The captures as values; the whole match when the pattern has none (`push_captures`).
fn capture_values(
    lua: &Lua,
    src: &[u8],
    range: std::ops::Range<usize>,
    captures: &[Capture],
    out: &mut MultiValue,
) -> mlua::Result<()> {
    if captures.is_empty() {
        out.push_back(LuaValue::String(lua.create_string(&src[range])?));
    }
    for capture in captures {
        out.push_back(capture_value(lua, src, capture)?);
    }
    Ok(())
}

/// `find_step(s, pattern, init, plain, resume)`: `string.find` (`find`) or `string.match`;
/// `resume` is the 0-based position a previous step returned with [`more`].
fn find_step(lua: &Lua, args: MultiValue, find: bool) -> mlua::Result<MultiValue> {
    let name = if find { "find" } else { "match" };
    let s = string_arg(lua, &args, 1, name)?;
    let p = string_arg(lua, &args, 2, name)?;
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let resume = arg(&args, 4);
    let (from, first) = match resume {
        LuaValue::Integer(at) => (at as usize, false),
        _ => {
            let init = start_position(integer_arg(lua, &args, 3, name, 1)?, src.len()) - 1;
            (init, true)
        }
    };
    let mut out = MultiValue::new();
    if from > src.len() {
        out.push_back(LuaValue::Nil);
        return Ok(out);
    }
    if find && first {
        let plain = arg(&args, 3).as_boolean().unwrap_or(false);
        if plain || pattern::is_plain(&pat) {
            return Ok(plain_find(&src[from..], &pat, from, out));
        }
    }
    let (anchor, body) = match pat.first() {
        Some(b'^') => (true, &pat[1..]),
        _ => (false, &pat[..]),
    };
    match pattern::search(&src, body, from, anchor, None, Budget::SCRIPT).map_err(pattern_error)? {
        Search::Found { range, captures } => {
            if find {
                out.push_back(LuaValue::Integer(range.start as i64 + 1));
                out.push_back(LuaValue::Integer(range.end as i64));
                for capture in &captures {
                    out.push_back(capture_value(lua, &src, capture)?);
                }
            } else {
                capture_values(lua, &src, range, &captures, &mut out)?;
            }
        }
        Search::NotFound => out.push_back(LuaValue::Nil),
        Search::Continue(at) => {
            out.push_back(more());
            out.push_back(LuaValue::Integer(at as i64));
        }
    }
    Ok(out)
}

/// A plain search, as `lmemfind` (but linear in the worst case: `memmem`).
fn plain_find(hay: &[u8], needle: &[u8], offset: usize, mut out: MultiValue) -> MultiValue {
    let at = memchr::memmem::find(hay, needle);
    match at {
        Some(at) => {
            out.push_back(LuaValue::Integer((offset + at) as i64 + 1));
            out.push_back(LuaValue::Integer((offset + at + needle.len()) as i64));
        }
        None => out.push_back(LuaValue::Nil),
    }
    out
}

/// `gmatch(s, pattern, init)`: a step function; each call returns the next match's captures,
/// nothing at the end, or [`more`] (call again).
fn gmatch(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::Function> {
    let s = string_arg(lua, &args, 1, "gmatch")?;
    let p = string_arg(lua, &args, 2, "gmatch")?;
    let len = s.as_bytes().len();
    let init = start_position(integer_arg(lua, &args, 3, "gmatch", 1)?, len) - 1;
    // (next position, end of the last match)
    let state = std::sync::Mutex::new((init.min(len + 1), None::<usize>));
    lua.create_function(move |lua, ()| {
        let mut state = crate::lock::lock(&state);
        returning_errors(
            lua,
            gmatch_next(lua, &s.as_bytes(), &p.as_bytes(), &mut state),
        )
    })
}

/// One call of a `gmatch` step: the next match from `state` (next position, end of the last
/// match), which it moves on.
fn gmatch_next(
    lua: &Lua,
    src: &[u8],
    pat: &[u8],
    state: &mut (usize, Option<usize>),
) -> mlua::Result<MultiValue> {
    let (from, lastmatch) = *state;
    let mut out = MultiValue::new();
    if from > src.len() {
        return Ok(out);
    }
    match pattern::search(src, pat, from, false, lastmatch, Budget::SCRIPT)
        .map_err(pattern_error)?
    {
        Search::Found { range, captures } => {
            *state = (range.end, Some(range.end));
            capture_values(lua, src, range, &captures, &mut out)?;
        }
        Search::NotFound => *state = (src.len() + 1, lastmatch),
        Search::Continue(at) => {
            state.0 = at;
            out.push_back(more());
        }
    }
    Ok(out)
}

/// `gsub_step(s, pattern, anchor, from, last, repl)`: the next match at or after the 1-based
/// `from` whose end is not `last` (the previous match's end), as `start, end` and then the
/// expansion of `repl` when it is a string, else the captures (the whole match when none).
fn gsub_step(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
    let s = string_arg(lua, &args, 1, "gsub")?;
    let p = string_arg(lua, &args, 2, "gsub")?;
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let anchor = arg(&args, 2).as_boolean().unwrap_or(false);
    let from = integer_arg(lua, &args, 4, "gsub", 1)?.max(1) as usize - 1;
    let last = match arg(&args, 4) {
        LuaValue::Integer(at) => Some(at as usize),
        _ => None,
    };
    let mut out = MultiValue::new();
    match pattern::search(&src, &pat, from, anchor, last, Budget::SCRIPT).map_err(pattern_error)? {
        Search::Found { range, captures } => {
            out.push_back(LuaValue::Integer(range.start as i64 + 1));
            out.push_back(LuaValue::Integer(range.end as i64));
            match arg(&args, 5) {
                LuaValue::String(repl) => {
                    let text = expand(&repl.as_bytes(), &src, range, &captures)?;
                    out.push_back(LuaValue::String(lua.create_string(text)?));
                }
                _ => capture_values(lua, &src, range, &captures, &mut out)?,
            }
        }
        Search::NotFound => out.push_back(LuaValue::Nil),
        Search::Continue(at) => {
            out.push_back(more());
            out.push_back(LuaValue::Integer(at as i64 + 1));
        }
    }
    Ok(out)
}

/// A replacement string with its `%0`-`%9` and `%%` expanded (`add_s`).
fn expand(
    repl: &[u8],
    src: &[u8],
    range: std::ops::Range<usize>,
    captures: &[Capture],
) -> mlua::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(repl.len());
    let mut i = 0;
    while i < repl.len() {
        let c = repl[i];
        i += 1;
        if c != b'%' {
            out.push(c);
            continue;
        }
        let d = repl.get(i).copied().unwrap_or(0);
        i += 1;
        match d {
            b'%' => out.push(b'%'),
            b'0' => out.extend_from_slice(&src[range.clone()]),
            b'1'..=b'9' => {
                let index = (d - b'1') as usize;
                match captures.get(index) {
                    Some(Capture::Text(r)) => out.extend_from_slice(&src[r.clone()]),
                    Some(Capture::Position(at)) => {
                        out.extend_from_slice((at + 1).to_string().as_bytes())
                    }
                    None if index == 0 && captures.is_empty() => {
                        out.extend_from_slice(&src[range.clone()])
                    }
                    None => {
                        return Err(mlua::Error::runtime(format!(
                            "invalid capture index %{} in replacement string",
                            index + 1
                        )))
                    }
                }
            }
            _ => {
                return Err(mlua::Error::runtime(
                    "invalid use of '%' in replacement string",
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_position_counts_from_the_end_when_negative_as_luas_posrelat_does() {
        // string.find("abc", "c", init) starts at these 1-based positions.
        for (init, start) in [(1, 1), (2, 2), (5, 5), (0, 1), (-1, 3), (-3, 1), (-4, 1)] {
            assert_eq!(start_position(init, 3), start, "init {init}");
        }
    }
}
