//! `Val` → JSON: a result as plain data (the module table), counted against a [`Budget`].

use serde_json::{Map, Number, Value};
use wasmtime::component::Val;

use super::{Budget, NODE_BYTES};

/// Converts a component value into plain data (see the module's table), however large.
pub fn from_val(val: &Val) -> Value {
    back(val, &mut Budget::new(u64::MAX))
}

/// [`from_val`], counting against `budget`: once it is spent, what is left comes back as
/// `null` without being looked at (the caller sees `budget.exceeded` and drops it all).
pub(super) fn back(val: &Val, budget: &mut Budget) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `val` converts to `expected` within a budget of exactly `cost` bytes, and not within
    /// one byte less.
    fn costs_exactly(val: Val, cost: usize, expected: Value) {
        let mut fits = Budget::new(cost as u64);
        assert_eq!(back(&val, &mut fits), expected, "{val:?}");
        assert!(!fits.exceeded, "{val:?} within {cost} bytes");
        let mut short = Budget::new(cost as u64 - 1);
        back(&val, &mut short);
        assert!(short.exceeded, "{val:?} costs more than {} bytes", cost - 1);
    }

    #[test]
    fn strings_in_a_value_count_their_bytes_against_the_budget() {
        // Each value costs NODE_BYTES, and each string in it its UTF-8 bytes: a char ('λ' is
        // 2 bytes), each flag set (a name of its own), a record's field names, a result's
        // case name ("ok" and "err" count 3).
        costs_exactly(Val::Char('λ'), NODE_BYTES + 2, json!("λ"));
        costs_exactly(
            Val::Flags(vec!["a".into(), "bc".into()]),
            NODE_BYTES + (NODE_BYTES + 1) + (NODE_BYTES + 2),
            json!(["a", "bc"]),
        );
        costs_exactly(
            Val::Record(vec![("ab".into(), Val::Bool(true))]),
            NODE_BYTES + 2 + NODE_BYTES,
            json!({"ab": true}),
        );
        costs_exactly(Val::Result(Ok(None)), NODE_BYTES + 3, json!({"ok": null}));
        costs_exactly(Val::String("héllo".into()), NODE_BYTES + 6, json!("héllo"));
    }

    #[test]
    fn a_map_with_string_keys_is_an_object_and_any_other_a_list_of_pairs() {
        let key = |k: &str| Val::String(k.into());
        let by_name = Val::Map(vec![(key("k"), Val::U8(1)), (key("j"), Val::U8(2))]);
        assert_eq!(from_val(&by_name), json!({"k": 1, "j": 2}));
        let by_number = Val::Map(vec![(Val::U8(3), Val::Bool(true))]);
        assert_eq!(from_val(&by_number), json!([[3, true]]));
    }
}
