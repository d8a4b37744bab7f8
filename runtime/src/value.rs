//! Dynamic values: spawn arguments (from YAML, the CLI or Lua) become component `Val`s of the
//! export's parameter types, and results come back as plain data.
//!
//! The dynamic side is `serde_json::Value`: every front end (YAML, JSON, Lua tables) maps onto
//! it without loss for the values the component model passes by value. The mapping:
//!
//! | WIT | value |
//! |---|---|
//! | `bool`, integers, floats | booleans and numbers (integers must fit the type exactly) |
//! | `char`, `string` | strings (a `string` also takes a number or boolean, as its text) |
//! | `list<T>`, `tuple<..>` | arrays |
//! | `record { .. }` | objects with every field (`option` fields may be left out) |
//! | `enum`, `variant` case without payload | the case name |
//! | `variant` case with payload | `{ case: payload }` |
//! | `option<T>` | `null` or the value |
//! | `result<T, E>` | `{ ok: value }` or `{ err: value }` |
//! | `flags` | an array of flag names |
//!
//! Conversions are bounded by `limits.max_value` ([`DEFAULT_MAX_VALUE`]): each value counts
//! [`NODE_BYTES`] and each string its bytes (names of fields, cases and flags too), which is
//! about what it takes of the host's memory; a conversion stops as soon as its count passes
//! the limit. A result is also bounded before wasmproc sees it: wasmtime lifts it into `Val`s
//! first, charging its "hostcall fuel", which [`lift_fuel`] sets from the same limit (a list of
//! a million 32-member flags, 4 MiB in the guest, was lifted into 1.8 GB of `Val`s, one
//! `String` per flag set, and cost the host 4.5 GB). Recursion follows the types, whose
//! nesting the component model's validator bounds (100 levels).

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};
use wasmtime::component::types::Type;
use wasmtime::component::Val;

/// A parameter list and result, as read from the export's type.
#[derive(Clone, Debug)]
pub struct Signature {
    /// Each parameter's name and type, in order.
    pub params: Vec<(String, Type)>,
    /// The result types (none, one, or several for a core function).
    pub results: Vec<Type>,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "func(")?;
        for (i, (name, ty)) in self.params.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{name}: {}", type_name(ty))?;
        }
        write!(f, ")")?;
        match self.results.as_slice() {
            [] => Ok(()),
            [one] => write!(f, " -> {}", type_name(one)),
            many => {
                let names: Vec<_> = many.iter().map(type_name).collect();
                write!(f, " -> ({})", names.join(", "))
            }
        }
    }
}

/// What one value is counted as, besides the bytes of its strings: about the size of a
/// `serde_json::Value` or a wasmtime `Val`.
pub const NODE_BYTES: usize = 32;

/// `limits.max_value` when an entry does not set it: the most a result, or a spawn's
/// arguments together, may count (64 MiB: e.g. a `list<u8>` of 1.6 million elements, which
/// wasmtime lifts into `Val`s of 40 bytes each).
pub const DEFAULT_MAX_VALUE: u64 = 64 << 20;

/// Counts what a conversion made against `limits.max_value`.
struct Budget {
    left: usize,
    /// Set when the count passed the limit: the conversion's error is that, not a mismatch.
    exceeded: bool,
}

impl Budget {
    fn new(max: u64) -> Budget {
        Budget {
            left: usize::try_from(max).unwrap_or(usize::MAX),
            exceeded: false,
        }
    }

    /// One value, with `bytes` of strings.
    fn charge(&mut self, bytes: usize) -> Result<(), String> {
        match self.left.checked_sub(NODE_BYTES.saturating_add(bytes)) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => {
                self.exceeded = true;
                Err("the value is larger than limits.max_value".into())
            }
        }
    }
}

/// Arguments that do not fit the export's parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// Too few or too many arguments.
    #[error("expected {expected} argument(s) for {signature}, got {got}")]
    Arity {
        /// The number of parameters.
        expected: usize,
        /// The number of arguments.
        got: usize,
        /// The export's signature, in WIT.
        signature: String,
    },
    /// An argument does not fit its parameter's type.
    #[error("argument {position} (`{name}: {expected}`): {reason}")]
    Param {
        /// The argument's position, 1-based.
        position: usize,
        /// The parameter's name.
        name: String,
        /// The parameter's type, in WIT.
        expected: String,
        /// Where and how the argument differs.
        reason: String,
    },
    /// The arguments together count more than `limits.max_value`.
    #[error("limits.max_value ({limit} bytes) exceeded: the arguments, converted, would take more (each value counts {NODE_BYTES} bytes, each string its bytes)")]
    TooLarge {
        /// The entry's `max_value`, in bytes.
        limit: u64,
    },
}

/// An export's arguments; up to four without an allocation (made on the spawning thread and
/// dropped on a worker, an allocation costs a spawn several times what it costs one thread).
pub type Params = smallvec::SmallVec<[Val; 4]>;

impl Signature {
    /// A component function's parameters (with their names) and results.
    pub fn of(func: &wasmtime::component::types::ComponentFunc) -> Signature {
        Signature {
            params: func.params().map(|(n, t)| (n.to_string(), t)).collect(),
            results: func.results().collect(),
        }
    }

    /// Converts spawn arguments into the values the export takes, within
    /// [`DEFAULT_MAX_VALUE`].
    pub fn args_to_vals(&self, args: &[Value]) -> Result<Params, ValueError> {
        self.args_to_vals_within(args, DEFAULT_MAX_VALUE)
    }

    /// Converts spawn arguments into the values the export takes; together they may count
    /// at most `max_value` bytes.
    pub fn args_to_vals_within(
        &self,
        args: &[Value],
        max_value: u64,
    ) -> Result<Params, ValueError> {
        if args.len() != self.params.len() {
            return Err(ValueError::Arity {
                expected: self.params.len(),
                got: args.len(),
                signature: self.to_string(),
            });
        }
        // A loop, not `collect`: collecting results into a small vector went through a
        // generic adapter that cost a spawn several hundred instructions (callgrind).
        let mut vals = Params::new();
        let mut budget = Budget::new(max_value);
        for (i, ((name, ty), arg)) in self.params.iter().zip(args).enumerate() {
            let val = convert(arg, ty, &mut budget).map_err(|reason| match budget.exceeded {
                true => ValueError::TooLarge { limit: max_value },
                false => ValueError::Param {
                    position: i + 1,
                    name: name.clone(),
                    expected: type_name(ty),
                    reason,
                },
            })?;
            vals.push(val);
        }
        Ok(vals)
    }

    /// The result as a dynamic value: `null` for no result, the value for one.
    pub fn result_value(results: &[Val]) -> Value {
        Self::result_value_within(results, u64::MAX).unwrap_or_default()
    }

    /// The result as a dynamic value, or `Err` when it would count more than `max_value`
    /// bytes (the conversion stops there).
    pub fn result_value_within(results: &[Val], max_value: u64) -> Result<Value, TooLarge> {
        let mut budget = Budget::new(max_value);
        let value = match results {
            [] => Value::Null,
            [one] => back(one, &mut budget),
            many => Value::Array(many.iter().map(|v| back(v, &mut budget)).collect()),
        };
        match budget.exceeded {
            true => Err(TooLarge { limit: max_value }),
            false => Ok(value),
        }
    }
}

/// A result that counts more than `limits.max_value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "limits.max_value ({} bytes) exceeded: the result, converted, would take more (each value counts {NODE_BYTES} bytes, each string its bytes)",
            self.limit
        )
    }
}

impl std::error::Error for TooLarge {}

/// The hostcall fuel to give a store whose export returns `results`, so that wasmtime's lift
/// of the result into `Val`s stays within what `max_value` allows. wasmtime charges each
/// `Val` its size (40 bytes, at least [`NODE_BYTES`]) and each string its bytes in the guest
/// (converted to UTF-8 it takes at most twice that: a type with strings halves the fuel),
/// but a flag set only its name's length, although it becomes a `String` of its own: a flags
/// type divides the fuel by up to 33. Computed at load (it walks the types). The fuel also
/// bounds what the guest passes to a host call in one go.
pub fn lift_fuel(results: &[Type], max_value: u64) -> usize {
    fn factor(ty: &Type, depth: usize) -> usize {
        // The validator bounds nesting at 100; the guard only keeps this walk finite.
        if depth > 200 {
            return 1;
        }
        let deeper = |t: Type| factor(&t, depth + 1);
        match ty {
            Type::Flags(flags) => {
                let shortest = flags.names().map(str::len).min().unwrap_or(1).max(1);
                (NODE_BYTES + shortest).div_ceil(shortest)
            }
            Type::List(l) => deeper(l.ty()),
            Type::FixedLengthList(l) => deeper(l.ty()),
            Type::Option(o) => deeper(o.ty()),
            Type::Map(m) => deeper(m.key()).max(deeper(m.value())),
            Type::Tuple(t) => t.types().map(deeper).max().unwrap_or(1),
            Type::Record(r) => r.fields().map(|f| deeper(f.ty)).max().unwrap_or(1),
            Type::Variant(v) => v
                .cases()
                .filter_map(|c| c.ty)
                .map(deeper)
                .max()
                .unwrap_or(1),
            Type::Result(r) => r
                .ok()
                .into_iter()
                .chain(r.err())
                .map(deeper)
                .max()
                .unwrap_or(1),
            Type::String => 2,
            _ => 1,
        }
    }
    let factor = results.iter().map(|t| factor(t, 0)).max().unwrap_or(1);
    usize::try_from(max_value).unwrap_or(usize::MAX) / factor
}

/// How many bytes `value` counts, as conversions count them: [`NODE_BYTES`] a value, and the
/// bytes of its strings and keys. Walks without recursion (a value made by a script may nest
/// deeper than any type).
pub fn value_bytes(value: &Value) -> usize {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        total = total.saturating_add(NODE_BYTES);
        match value {
            Value::String(s) => total = total.saturating_add(s.len()),
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (key, item) in map {
                    total = total.saturating_add(key.len());
                    stack.push(item);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    total
}

fn convert(value: &Value, ty: &Type, budget: &mut Budget) -> Result<Val, String> {
    budget.charge(match value {
        Value::String(s) => s.len(),
        _ => 0,
    })?;
    let mismatch = || format!("expected {}, got {}", type_name(ty), describe(value));
    macro_rules! int {
        ($variant:ident, $t:ty) => {{
            let n = value
                .as_i64()
                .map(i128::from)
                .or_else(|| value.as_u64().map(i128::from))
                .ok_or_else(mismatch)?;
            let n = <$t>::try_from(n)
                .map_err(|_| format!("{n} is out of range for {}", type_name(ty)))?;
            Ok(Val::$variant(n))
        }};
    }
    match ty {
        Type::Bool => value.as_bool().map(Val::Bool).ok_or_else(mismatch),
        Type::S8 => int!(S8, i8),
        Type::U8 => int!(U8, u8),
        Type::S16 => int!(S16, i16),
        Type::U16 => int!(U16, u16),
        Type::S32 => int!(S32, i32),
        Type::U32 => int!(U32, u32),
        Type::S64 => int!(S64, i64),
        Type::U64 => int!(U64, u64),
        Type::Float32 => value
            .as_f64()
            .map(|f| Val::Float32(f as f32))
            .ok_or_else(mismatch),
        Type::Float64 => value.as_f64().map(Val::Float64).ok_or_else(mismatch),
        Type::Char => {
            let s = value.as_str().ok_or_else(mismatch)?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(Val::Char(c)),
                _ => Err(format!("expected a single character, got {s:?}")),
            }
        }
        Type::String => match value {
            Value::String(s) => Ok(Val::String(s.clone())),
            Value::Number(n) => Ok(Val::String(n.to_string())),
            Value::Bool(b) => Ok(Val::String(b.to_string())),
            _ => Err(mismatch()),
        },
        Type::List(list) => {
            let items = value.as_array().ok_or_else(mismatch)?;
            Ok(Val::List(elements(items, &list.ty(), budget)?))
        }
        Type::FixedLengthList(list) => {
            let items = value.as_array().ok_or_else(mismatch)?;
            if items.len() != list.len() as usize {
                return Err(format!(
                    "expected {} elements, got {}",
                    list.len(),
                    items.len()
                ));
            }
            Ok(Val::FixedLengthList(elements(items, &list.ty(), budget)?))
        }
        Type::Tuple(tuple) => {
            let items = value.as_array().ok_or_else(mismatch)?;
            let types: Vec<Type> = tuple.types().collect();
            if items.len() != types.len() {
                return Err(format!(
                    "expected a tuple of {} values, got {}",
                    types.len(),
                    items.len()
                ));
            }
            items
                .iter()
                .zip(&types)
                .enumerate()
                .map(|(i, (item, ty))| convert(item, ty, budget).map_err(|e| format!("[{i}]: {e}")))
                .collect::<Result<_, _>>()
                .map(Val::Tuple)
        }
        Type::Record(record) => {
            let object = value.as_object().ok_or_else(mismatch)?;
            let mut fields = Vec::new();
            for field in record.fields() {
                let val = match (object.get(field.name), &field.ty) {
                    (Some(v), ty) => {
                        budget.charge(field.name.len())?;
                        convert(v, ty, budget).map_err(|e| format!(".{}: {e}", field.name))?
                    }
                    (None, Type::Option(_)) => Val::Option(None),
                    (None, _) => return Err(format!("missing field `{}`", field.name)),
                };
                fields.push((field.name.to_string(), val));
            }
            if let Some(unknown) = object
                .keys()
                .find(|k| !record.fields().any(|f| f.name == k.as_str()))
            {
                return Err(format!("unknown field `{unknown}`"));
            }
            Ok(Val::Record(fields))
        }
        Type::Enum(enum_) => {
            let name = value.as_str().ok_or_else(mismatch)?;
            if enum_.names().any(|n| n == name) {
                Ok(Val::Enum(name.to_string()))
            } else {
                Err(format!(
                    "unknown case `{name}` (cases: {})",
                    enum_.names().collect::<Vec<_>>().join(", ")
                ))
            }
        }
        Type::Variant(variant) => {
            let (case_name, payload) = single_case(value).ok_or_else(mismatch)?;
            let case = variant
                .cases()
                .find(|c| c.name == case_name)
                .ok_or_else(|| {
                    let names: Vec<_> = variant.cases().map(|c| c.name).collect();
                    format!("unknown case `{case_name}` (cases: {})", names.join(", "))
                })?;
            let payload = match (case.ty, payload) {
                (Some(ty), Some(p)) => Some(Box::new(
                    convert(p, &ty, budget).map_err(|e| format!("{case_name}: {e}"))?,
                )),
                (None, None | Some(Value::Null)) => None,
                (Some(ty), None) => {
                    return Err(format!(
                        "case `{case_name}` carries a {}: write {{ {case_name}: ... }}",
                        type_name(&ty)
                    ))
                }
                (None, Some(_)) => return Err(format!("case `{case_name}` has no payload")),
            };
            Ok(Val::Variant(case_name.to_string(), payload))
        }
        Type::Option(option) => match value {
            Value::Null => Ok(Val::Option(None)),
            v => Ok(Val::Option(Some(Box::new(convert(
                v,
                &option.ty(),
                budget,
            )?)))),
        },
        Type::Result(result) => {
            let (case, payload) = single_case(value)
                .filter(|(c, _)| *c == "ok" || *c == "err")
                .ok_or_else(|| {
                    format!(
                        "expected {{ ok: ... }} or {{ err: ... }}, got {}",
                        describe(value)
                    )
                })?;
            let ty = if case == "ok" {
                result.ok()
            } else {
                result.err()
            };
            let payload = match (ty, payload) {
                (Some(ty), Some(p)) => Some(Box::new(
                    convert(p, &ty, budget).map_err(|e| format!("{case}: {e}"))?,
                )),
                (Some(ty), None) => return Err(format!("{case} needs a {}", type_name(&ty))),
                (None, None | Some(Value::Null)) => None,
                (None, Some(_)) => return Err(format!("{case} has no payload")),
            };
            Ok(Val::Result(if case == "ok" {
                Ok(payload)
            } else {
                Err(payload)
            }))
        }
        Type::Flags(flags) => {
            let items = value.as_array().ok_or_else(mismatch)?;
            let mut set = Vec::new();
            for item in items {
                let name = item.as_str().ok_or_else(mismatch)?;
                budget.charge(name.len())?;
                if !flags.names().any(|n| n == name) {
                    return Err(format!("unknown flag `{name}`"));
                }
                set.push(name.to_string());
            }
            Ok(Val::Flags(set))
        }
        Type::Map(map) => {
            let object = value.as_object().ok_or_else(mismatch)?;
            let (key_ty, value_ty) = (map.key(), map.value());
            object
                .iter()
                .map(|(k, v)| {
                    Ok((
                        convert(&Value::String(k.clone()), &key_ty, budget)?,
                        convert(v, &value_ty, budget).map_err(|e| format!(".{k}: {e}"))?,
                    ))
                })
                .collect::<Result<_, String>>()
                .map(Val::Map)
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            Err(format!(
                "{} cannot be passed as a spawn argument",
                type_name(ty)
            ))
        }
    }
}

fn elements(items: &[Value], ty: &Type, budget: &mut Budget) -> Result<Vec<Val>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| convert(item, ty, budget).map_err(|e| format!("[{i}]: {e}")))
        .collect()
}

/// `"case"` or `{ case: payload }`.
fn single_case(value: &Value) -> Option<(&str, Option<&Value>)> {
    match value {
        Value::String(s) => Some((s, None)),
        Value::Object(o) if o.len() == 1 => o.iter().next().map(|(k, v)| (k.as_str(), Some(v))),
        _ => None,
    }
}

/// Converts a component value into plain data (see the module's table), however large.
pub fn from_val(val: &Val) -> Value {
    back(val, &mut Budget::new(u64::MAX))
}

/// [`from_val`], counting against `budget`: once it is spent, what is left comes back as
/// `null` without being looked at (the caller sees `budget.exceeded` and drops it all).
fn back(val: &Val, budget: &mut Budget) -> Value {
    if budget.exceeded {
        return Value::Null;
    }
    let strings = match val {
        Val::String(s) | Val::Enum(s) | Val::Variant(s, _) => s.len(),
        Val::Char(c) => c.len_utf8(),
        Val::Flags(names) => names.iter().map(|n| n.len() + NODE_BYTES).sum(),
        Val::Record(fields) => fields.iter().map(|(k, _)| k.len()).sum(),
        Val::Result(_) => 3,
        _ => 0,
    };
    if budget.charge(strings).is_err() {
        return Value::Null;
    }
    let mut from_val = |v: &Val| back(v, budget);
    let float =
        |f: f64| Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number);
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::from(*n),
        Val::U8(n) => Value::from(*n),
        Val::S16(n) => Value::from(*n),
        Val::U16(n) => Value::from(*n),
        Val::S32(n) => Value::from(*n),
        Val::U32(n) => Value::from(*n),
        Val::S64(n) => Value::from(*n),
        Val::U64(n) => Value::from(*n),
        Val::Float32(f) => float(f64::from(*f)),
        Val::Float64(f) => float(*f),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(from_val).collect())
        }
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), from_val(v)))
                .collect(),
        ),
        Val::Variant(case, None) | Val::Enum(case) => Value::String(case.clone()),
        Val::Variant(case, Some(payload)) => single(case, from_val(payload)),
        Val::Option(None) => Value::Null,
        Val::Option(Some(v)) => from_val(v),
        Val::Result(Ok(v)) => single("ok", v.as_deref().map_or(Value::Null, from_val)),
        Val::Result(Err(v)) => single("err", v.as_deref().map_or(Value::Null, from_val)),
        Val::Flags(names) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        Val::Map(pairs) => {
            if pairs.iter().all(|(k, _)| matches!(k, Val::String(_))) {
                Value::Object(
                    pairs
                        .iter()
                        .filter_map(|(k, v)| match k {
                            Val::String(k) => Some((k.clone(), from_val(v))),
                            _ => None,
                        })
                        .collect(),
                )
            } else {
                Value::Array(
                    pairs
                        .iter()
                        .map(|(k, v)| Value::Array(vec![from_val(k), from_val(v)]))
                        .collect(),
                )
            }
        }
        Val::Resource(_) => Value::String("<resource>".into()),
        Val::Future(_) => Value::String("<future>".into()),
        Val::Stream(_) => Value::String("<stream>".into()),
        Val::ErrorContext(_) => Value::String("<error-context>".into()),
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_string(), value);
    Value::Object(map)
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    };
    if text.len() > 40 {
        kind.to_string()
    } else {
        format!("{kind} ({text})")
    }
}

/// The WIT spelling of a type, for messages and `validate`.
pub fn type_name(ty: &Type) -> String {
    let mut out = String::new();
    write_type(&mut out, ty);
    out
}

fn write_type(out: &mut String, ty: &Type) {
    let simple = match ty {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::ErrorContext => "error-context",
        Type::Own(_) => "own<resource>",
        Type::Borrow(_) => "borrow<resource>",
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        _ => "",
    };
    if !simple.is_empty() {
        out.push_str(simple);
        return;
    }
    let list = |out: &mut String, types: &mut dyn Iterator<Item = Type>| {
        for (i, t) in types.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_type(out, &t);
        }
    };
    match ty {
        Type::List(l) => {
            out.push_str("list<");
            write_type(out, &l.ty());
            out.push('>');
        }
        Type::FixedLengthList(l) => {
            out.push_str("list<");
            write_type(out, &l.ty());
            let _ = write!(out, ", {}>", l.len());
        }
        Type::Map(m) => {
            out.push_str("map<");
            write_type(out, &m.key());
            out.push_str(", ");
            write_type(out, &m.value());
            out.push('>');
        }
        Type::Tuple(t) => {
            out.push_str("tuple<");
            list(out, &mut t.types());
            out.push('>');
        }
        Type::Option(o) => {
            out.push_str("option<");
            write_type(out, &o.ty());
            out.push('>');
        }
        Type::Result(r) => {
            out.push_str("result");
            match (r.ok(), r.err()) {
                (None, None) => {}
                (Some(ok), None) => {
                    out.push('<');
                    write_type(out, &ok);
                    out.push('>');
                }
                (ok, Some(err)) => {
                    out.push('<');
                    match ok {
                        Some(ok) => write_type(out, &ok),
                        None => out.push('_'),
                    }
                    out.push_str(", ");
                    write_type(out, &err);
                    out.push('>');
                }
            }
        }
        Type::Record(r) => {
            out.push_str("record { ");
            for (i, f) in r.fields().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: ", f.name);
                write_type(out, &f.ty);
            }
            out.push_str(" }");
        }
        Type::Variant(v) => {
            out.push_str("variant { ");
            for (i, c) in v.cases().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(c.name);
                if let Some(t) = c.ty {
                    out.push('(');
                    write_type(out, &t);
                    out.push(')');
                }
            }
            out.push_str(" }");
        }
        Type::Enum(e) => {
            let _ = write!(
                out,
                "enum {{ {} }}",
                e.names().collect::<Vec<_>>().join(", ")
            );
        }
        Type::Flags(f) => {
            let _ = write!(
                out,
                "flags {{ {} }}",
                f.names().collect::<Vec<_>>().join(", ")
            );
        }
        // Simple types returned above.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_stops_converting_once_it_counts_past_the_limit() {
        let list = Val::List((0..100).map(|_| Val::String("x".repeat(10))).collect());
        let one = std::slice::from_ref(&list);
        // The list and 100 strings of 10 bytes.
        let exact = (NODE_BYTES + 100 * (NODE_BYTES + 10)) as u64;
        assert_eq!(value_bytes(&from_val(&list)) as u64, exact);
        assert!(Signature::result_value_within(one, exact).is_ok());
        assert_eq!(
            Signature::result_value_within(one, exact - 1),
            Err(TooLarge { limit: exact - 1 })
        );
        let flags = Val::Flags(vec!["a".into(), "bc".into()]);
        assert_eq!(
            value_bytes(&from_val(&flags)),
            3 * NODE_BYTES + 3,
            "the array and its two names"
        );
    }
}
