//! JSON → `Val`: a spawn's arguments converted to the export's parameter types, counted
//! against a [`Budget`].

use serde_json::Value;
use wasmtime::component::types::{Flags, Map, Record, ResultType, Type, Variant};
use wasmtime::component::Val;

use super::{type_name, Budget};

/// `value` as a `Val` of type `ty` (see the module table), or where and how it differs.
pub(super) fn convert(value: &Value, ty: &Type, budget: &mut Budget) -> Result<Val, String> {
    budget.charge(match value {
        Value::String(s) => s.len(),
        _ => 0,
    })?;
    let mismatch = || expected_got(value, ty);
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
        Type::Record(record) => to_record(value, ty, record, budget),
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
        Type::Variant(variant) => to_variant(value, ty, variant, budget),
        Type::Option(option) => match value {
            Value::Null => Ok(Val::Option(None)),
            v => Ok(Val::Option(Some(Box::new(convert(
                v,
                &option.ty(),
                budget,
            )?)))),
        },
        Type::Result(result) => to_result(value, result, budget),
        Type::Flags(flags) => to_flags(value, ty, flags, budget),
        Type::Map(map) => to_map(value, ty, map, budget),
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            Err(format!(
                "{} cannot be passed as a spawn argument",
                type_name(ty)
            ))
        }
    }
}

/// `{ field: value, ... }` → a record: every field given, or an `option` left out; no others.
fn to_record(
    value: &Value,
    ty: &Type,
    record: &Record,
    budget: &mut Budget,
) -> Result<Val, String> {
    let mismatch = || expected_got(value, ty);
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

/// `"case"` or `{ case: payload }` → a variant case, with a payload exactly when it has one.
fn to_variant(
    value: &Value,
    ty: &Type,
    variant: &Variant,
    budget: &mut Budget,
) -> Result<Val, String> {
    let mismatch = || expected_got(value, ty);
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

/// `{ ok: value }` or `{ err: value }` → a result.
fn to_result(value: &Value, result: &ResultType, budget: &mut Budget) -> Result<Val, String> {
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

/// An array of flag names → a flag set.
fn to_flags(value: &Value, ty: &Type, flags: &Flags, budget: &mut Budget) -> Result<Val, String> {
    let mismatch = || expected_got(value, ty);
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

/// An object → a map, each key converted to the key type.
fn to_map(value: &Value, ty: &Type, map: &Map, budget: &mut Budget) -> Result<Val, String> {
    let mismatch = || expected_got(value, ty);
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

/// `expected <type>, got <value>`.
fn expected_got(value: &Value, ty: &Type) -> String {
    format!("expected {}, got {}", type_name(ty), describe(value))
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
