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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::value::tests::param_types as types;

    fn to(value: Value, ty: &Type) -> Result<Val, String> {
        convert(&value, ty, &mut Budget::new(u64::MAX))
    }

    #[test]
    fn each_shape_converts_and_each_mismatch_says_what_was_expected() {
        let [string, char_, fixed, tuple, enum_, rec, var, result, only_ok, flags, list] =
            <[Type; 11]>::try_from(types(&[
                "string",
                "char",
                "(list u8 2)",
                "(tuple u8 string)",
                "$enum",
                "$rec",
                "$var",
                "(result u8 (error string))",
                "(result u8)",
                "$flags",
                "(list u8)",
            ]))
            .unwrap();
        let s = |text: &str| Val::String(text.into());
        // Strings take strings, numbers and booleans as their text.
        assert_eq!(to(json!("x"), &string), Ok(s("x")));
        assert_eq!(to(json!(5), &string), Ok(s("5")));
        assert_eq!(to(json!(true), &string), Ok(s("true")));
        assert_eq!(
            to(json!(null), &string),
            Err("expected string, got null".into())
        );
        assert_eq!(to(json!("é"), &char_), Ok(Val::Char('é')));
        assert_eq!(
            to(json!("ab"), &char_),
            Err("expected a single character, got \"ab\"".into())
        );
        assert_eq!(
            to(json!([1, 2]), &fixed),
            Ok(Val::FixedLengthList(vec![Val::U8(1), Val::U8(2)]))
        );
        assert_eq!(
            to(json!([1]), &fixed),
            Err("expected 2 elements, got 1".into())
        );
        assert_eq!(
            to(json!([1, "a"]), &tuple),
            Ok(Val::Tuple(vec![Val::U8(1), s("a")]))
        );
        assert_eq!(
            to(json!([1]), &tuple),
            Err("expected a tuple of 2 values, got 1".into())
        );
        assert_eq!(to(json!("y"), &enum_), Ok(Val::Enum("y".into())));
        assert_eq!(
            to(json!("z"), &enum_),
            Err("unknown case `z` (cases: x, y)".into())
        );
        // Records: every field but an option's, and no other.
        assert_eq!(
            to(json!({"a": 1, "b": "s"}), &rec),
            Ok(Val::Record(vec![
                ("a".into(), Val::U32(1)),
                ("b".into(), s("s")),
                ("c".into(), Val::Option(None)),
            ]))
        );
        assert_eq!(to(json!({"a": 1}), &rec), Err("missing field `b`".into()));
        assert_eq!(
            to(json!({"a": 1, "b": "s", "d": 0}), &rec),
            Err("unknown field `d`".into())
        );
        // Variants: "case" or { case: payload }, with a payload exactly when it has one.
        assert_eq!(to(json!("a"), &var), Ok(Val::Variant("a".into(), None)));
        assert_eq!(
            to(json!({"b": "s"}), &var),
            Ok(Val::Variant("b".into(), Some(Box::new(s("s")))))
        );
        assert_eq!(
            to(json!({"a": null}), &var),
            Ok(Val::Variant("a".into(), None))
        );
        assert_eq!(
            to(json!("c"), &var),
            Err("unknown case `c` (cases: a, b)".into())
        );
        assert_eq!(
            to(json!("b"), &var),
            Err("case `b` carries a string: write { b: ... }".into())
        );
        assert_eq!(
            to(json!({"a": 1}), &var),
            Err("case `a` has no payload".into())
        );
        assert_eq!(
            to(json!({"a": 1, "b": "s"}), &var),
            Err("expected variant { a, b(string) }, got a mapping ({\"a\":1,\"b\":\"s\"})".into())
        );
        // Results: { ok: ... } or { err: ... }.
        assert_eq!(
            to(json!({"ok": 3}), &result),
            Ok(Val::Result(Ok(Some(Box::new(Val::U8(3))))))
        );
        assert_eq!(
            to(json!({"err": "e"}), &result),
            Ok(Val::Result(Err(Some(Box::new(s("e"))))))
        );
        assert_eq!(
            to(json!({"err": null}), &only_ok),
            Ok(Val::Result(Err(None)))
        );
        assert_eq!(
            to(json!({"err": 1}), &only_ok),
            Err("err has no payload".into())
        );
        assert_eq!(to(json!("ok"), &result), Err("ok needs a u8".into()));
        assert_eq!(
            to(json!({"fine": 3}), &result),
            Err("expected { ok: ... } or { err: ... }, got a mapping ({\"fine\":3})".into())
        );
        assert_eq!(
            to(json!({"ok": "x"}), &result),
            Err("ok: expected u8, got a string (\"x\")".into())
        );
        assert_eq!(
            to(json!(["w", "r"]), &flags),
            Ok(Val::Flags(vec!["w".into(), "r".into()]))
        );
        assert_eq!(to(json!(["x"]), &flags), Err("unknown flag `x`".into()));
        assert_eq!(
            to(json!([1, 2, 3]), &list),
            Ok(Val::List(vec![Val::U8(1), Val::U8(2), Val::U8(3)]))
        );
        assert_eq!(
            to(json!([1, 256]), &list),
            Err("[1]: 256 is out of range for u8".into())
        );
        // A value up to 40 characters long is quoted; a longer one is named by its kind alone.
        let forty = "x".repeat(38);
        assert_eq!(
            to(json!(forty), &fixed),
            Err(format!("expected list<u8, 2>, got a string (\"{forty}\")"))
        );
        let long = "x".repeat(41);
        assert_eq!(
            to(json!([long]), &char_),
            Err("expected char, got a list".into())
        );
    }

    #[test]
    fn strings_count_their_bytes_against_the_budget() {
        let [string] = <[Type; 1]>::try_from(types(&["string"])).unwrap();
        let cost = (crate::value::NODE_BYTES + 5) as u64;
        assert!(convert(&json!("hello"), &string, &mut Budget::new(cost)).is_ok());
        let mut short = Budget::new(cost - 1);
        assert!(convert(&json!("hello"), &string, &mut short).is_err());
        assert!(short.exceeded);
    }
}
