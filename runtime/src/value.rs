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

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};
use wasmtime::component::types::Type;
use wasmtime::component::Val;

/// A parameter list and result, as read from the export's type.
#[derive(Clone, Debug)]
pub struct Signature {
    pub params: Vec<(String, Type)>,
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

/// Arguments that do not fit the export's parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("expected {expected} argument(s) for {signature}, got {got}")]
    Arity {
        expected: usize,
        got: usize,
        signature: String,
    },
    #[error("argument {position} (`{name}: {expected}`): {reason}")]
    Param {
        position: usize,
        name: String,
        expected: String,
        reason: String,
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

    /// Converts spawn arguments into the values the export takes.
    pub fn args_to_vals(&self, args: &[Value]) -> Result<Params, ValueError> {
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
        for (i, ((name, ty), arg)) in self.params.iter().zip(args).enumerate() {
            let val = to_val(arg, ty).map_err(|reason| ValueError::Param {
                position: i + 1,
                name: name.clone(),
                expected: type_name(ty),
                reason,
            })?;
            vals.push(val);
        }
        Ok(vals)
    }

    /// The result as a dynamic value: `null` for no result, the value for one.
    pub fn result_value(results: &[Val]) -> Value {
        match results {
            [] => Value::Null,
            [one] => from_val(one),
            many => Value::Array(many.iter().map(from_val).collect()),
        }
    }
}

/// Converts one dynamic value to a `Val` of type `ty`; the error says what did not fit (and
/// where, for nested values).
pub fn to_val(value: &Value, ty: &Type) -> Result<Val, String> {
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
            Ok(Val::List(elements(items, &list.ty())?))
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
            Ok(Val::FixedLengthList(elements(items, &list.ty())?))
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
                .map(|(i, (item, ty))| to_val(item, ty).map_err(|e| format!("[{i}]: {e}")))
                .collect::<Result<_, _>>()
                .map(Val::Tuple)
        }
        Type::Record(record) => {
            let object = value.as_object().ok_or_else(mismatch)?;
            let mut fields = Vec::new();
            for field in record.fields() {
                let val = match (object.get(field.name), &field.ty) {
                    (Some(v), ty) => to_val(v, ty).map_err(|e| format!(".{}: {e}", field.name))?,
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
                    to_val(p, &ty).map_err(|e| format!("{case_name}: {e}"))?,
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
            v => Ok(Val::Option(Some(Box::new(to_val(v, &option.ty())?)))),
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
                    to_val(p, &ty).map_err(|e| format!("{case}: {e}"))?,
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
                        to_val(&Value::String(k.clone()), &key_ty)?,
                        to_val(v, &value_ty).map_err(|e| format!(".{k}: {e}"))?,
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

fn elements(items: &[Value], ty: &Type) -> Result<Vec<Val>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| to_val(item, ty).map_err(|e| format!("[{i}]: {e}")))
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

/// Converts a component value into plain data (see the module's table).
pub fn from_val(val: &Val) -> Value {
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
