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

mod from_val;
mod to_val;
mod wit;

use serde_json::Value;

use crate::bounded_text::BoundedText;
use wasmtime::component::types::Type;
use wasmtime::component::Val;

pub use from_val::from_val;
pub use wit::type_name;

use from_val::back;
use to_val::convert;

/// A parameter list and result, as read from the export's type.
#[derive(Clone, Debug)]
pub struct Signature {
    /// Each parameter's name and type, in order.
    pub params: Vec<(String, Type)>,
    /// The result types (none, one, or several for a core function).
    pub results: Vec<Type>,
    /// A component-model-async export (`async func`, as WASI 0.3 guests export): it returns
    /// through `task.return`, and may keep running after.
    pub is_async: bool,
}

impl std::fmt::Display for Signature {
    /// At most `MAX_SIGNATURE_TEXT` (16 KiB): its types are spelled out whole (see `wit`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&BoundedText::of(MAX_SIGNATURE_TEXT, |out| self.write(out)))
    }
}

/// Bytes of a signature's spelling (its parameters' names and types, its result).
pub const MAX_SIGNATURE_TEXT: usize = 16 << 10;

impl Signature {
    fn write(&self, out: &mut dyn std::fmt::Write) -> std::fmt::Result {
        if self.is_async {
            out.write_str("async ")?;
        }
        out.write_str("func(")?;
        for (i, (name, ty)) in self.params.iter().enumerate() {
            if i > 0 {
                out.write_str(", ")?;
            }
            write!(out, "{name}: ")?;
            wit::write_type(out, ty)?;
        }
        out.write_str(")")?;
        match self.results.as_slice() {
            [] => Ok(()),
            [one] => {
                out.write_str(" -> ")?;
                wit::write_type(out, one)
            }
            many => {
                out.write_str(" -> (")?;
                for (i, ty) in many.iter().enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    wit::write_type(out, ty)?;
                }
                out.write_str(")")
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
pub(super) struct Budget {
    left: usize,
    /// Set when the count passed the limit: the conversion's error is that, not a mismatch.
    pub(super) exceeded: bool,
}

impl Budget {
    pub(super) fn new(max: u64) -> Budget {
        Budget {
            left: usize::try_from(max).unwrap_or(usize::MAX),
            exceeded: false,
        }
    }

    /// One value, with `bytes` of strings.
    pub(super) fn charge(&mut self, bytes: usize) -> Result<(), String> {
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
            is_async: func.async_(),
        }
    }

    /// Converts spawn arguments into the values the export takes, within
    /// `DEFAULT_MAX_VALUE`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::types::ComponentItem;
    use wasmtime::component::Component;

    /// A function of type `func` (WAT, `(param ...)` and `(result ...)`), as a component that
    /// imports one has it; `decls` declares the types it names (the component model wants
    /// records, variants, enums, flags and resources named before a function uses them).
    fn func_of(decls: &str, func: &str) -> wasmtime::component::types::ComponentFunc {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model_async(true)
            .wasm_component_model_error_context(true)
            .wasm_component_model_fixed_length_lists(true)
            .wasm_component_model_map(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let text = format!("(component {decls} (import \"f\" (func {func})))");
        let component = Component::new(&engine, wat::parse_str(&text).unwrap()).unwrap();
        let ty = component.component_type();
        let (_, item) = ty.imports(&engine).find(|(name, _)| *name == "f").unwrap();
        let ComponentItem::ComponentFunc(f) = item.ty else {
            panic!("not a function: {func}")
        };
        f
    }

    /// Types the tests name: `$rec` (record a: u32, b: string, c: option<u8>), `$var`
    /// (variant a, b(string)), `$enum` (x, y), `$flags` (r, w) and the resource `$res`.
    const NAMED: &str = r#"
        (type $rec' (record (field "a" u32) (field "b" string) (field "c" (option u8))))
        (import "rec" (type $rec (eq $rec')))
        (type $var' (variant (case "a") (case "b" string)))
        (import "var" (type $var (eq $var')))
        (type $enum' (enum "x" "y"))
        (import "enum" (type $enum (eq $enum')))
        (type $flags' (flags "r" "w"))
        (import "flags" (type $flags (eq $flags')))
        (import "res" (type $res (sub resource)))
    "#;

    /// The types `types` (WAT; `$rec`, `$var`, `$enum`, `$flags` and `$res` as in [`NAMED`]),
    /// as the parameters of a function have them.
    pub(super) fn param_types(types: &[&str]) -> Vec<Type> {
        let params: String = types
            .iter()
            .enumerate()
            .map(|(i, wat)| format!("(param \"p{i}\" {wat}) "))
            .collect();
        func_of(NAMED, &params).params().map(|(_, ty)| ty).collect()
    }

    /// The result types of a function returning `result`, `$t` being `named` when given.
    fn results_of(named: &str, result: &str) -> Vec<Type> {
        let decls = match named {
            "" => String::new(),
            ty => format!("(type $d {ty}) (import \"t\" (type $t (eq $d)))"),
        };
        func_of(&decls, result).results().collect()
    }

    /// Attack (2026-12-07): a type used twice by the next, and so on, is spelled out whole:
    /// 2^17 copies of one record with a 1,000-byte field name made a 1.4 KB component's
    /// `validate` report 134 MB (and with longer names, all the memory). The spellings stop at
    /// their bounds as they are written.
    #[test]
    fn a_type_that_doubles_at_each_level_is_spelled_within_its_bound() {
        let mut decls = format!(
            r#"(type $r' (record (field "{}" u8))) (import "r" (type $t0 (eq $r')))"#,
            "a".repeat(1_000)
        );
        for k in 1..=17 {
            decls.push_str(&format!(" (type $t{k} (tuple $t{} $t{}))", k - 1, k - 1));
        }
        let func = func_of(&decls, r#"(param "x" $t17) (result $t17)"#);
        let (_, ty) = func.params().next().unwrap();
        let name = type_name(&ty);
        assert!(name.starts_with("tuple<tuple<"), "{}", &name[..40]);
        assert!(name.ends_with(&format!("… (cut at {} bytes)", wit::MAX_TYPE_TEXT)));
        assert!(name.len() < wit::MAX_TYPE_TEXT + 64, "{}", name.len());
        let signature = Signature::of(&func).to_string();
        assert!(
            signature.starts_with("func(x: tuple<"),
            "{}",
            &signature[..40]
        );
        assert!(
            signature.len() < MAX_SIGNATURE_TEXT + 64,
            "{}",
            signature.len()
        );
    }

    #[test]
    fn arguments_convert_in_order_naming_the_one_that_does_not_fit() {
        let signature = Signature::of(&func_of("", r#"(param "a" u8) (param "b" string)"#));
        let big = "x".repeat(1 << 20);
        let vals = signature
            .args_to_vals(&[serde_json::json!(1), serde_json::json!(big)])
            .unwrap();
        assert_eq!(vals.as_slice(), [Val::U8(1), Val::String(big.clone())]);
        match signature.args_to_vals(&[serde_json::json!(1)]) {
            Err(ValueError::Arity {
                expected: 2,
                got: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match signature.args_to_vals(&[serde_json::json!(1), serde_json::json!([])]) {
            Err(ValueError::Param {
                position: 2, name, ..
            }) => assert_eq!(name, "b"),
            other => panic!("{other:?}"),
        }
        // Within a budget: the two arguments count NODE_BYTES each, and the string its bytes.
        let args = [serde_json::json!(1), serde_json::json!("hello")];
        let cost = (2 * NODE_BYTES + 5) as u64;
        assert!(signature.args_to_vals_within(&args, cost).is_ok());
        match signature.args_to_vals_within(&args, cost - 1) {
            Err(ValueError::TooLarge { limit }) => assert_eq!(limit, cost - 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(DEFAULT_MAX_VALUE, 64 << 20);
    }

    #[test]
    fn a_result_is_null_one_value_or_a_list_of_them() {
        assert_eq!(Signature::result_value(&[]), serde_json::Value::Null);
        assert_eq!(Signature::result_value(&[Val::U8(3)]), serde_json::json!(3));
        assert_eq!(
            Signature::result_value(&[Val::U8(3), Val::Bool(true)]),
            serde_json::json!([3, true])
        );
    }

    #[test]
    fn the_lift_fuel_divides_the_limit_by_what_a_type_can_cost_beyond_its_values() {
        let max = 33_000u64;
        let t = "(result $t)";
        for (named, result, divisor) in [
            ("", "", 1),
            ("", "(result u32)", 1),
            ("", "(result string)", 2),
            ("", "(result (list string))", 2),
            ("", "(result (list (list u8)))", 1),
            ("", "(result (list string 2))", 2),
            ("", "(result (map u8 string))", 2),
            ("", "(result (map string u8))", 2),
            ("", "(result (map u8 u8))", 1),
            ("", "(result (option string))", 2),
            ("", "(result (tuple u8 string))", 2),
            ("", "(result (result string (error u8)))", 2),
            ("", "(result (result u8 (error string)))", 2),
            ("(record (field \"a\" u32) (field \"b\" string))", t, 2),
            ("(variant (case \"a\") (case \"b\" string))", t, 2),
            // A flag costs wasmtime its name's length but becomes a String of NODE_BYTES more.
            ("(flags \"a\" \"bcd\")", t, 33),
            ("(flags \"abcd\")", t, 9),
            ("(flags \"ab\")", "(result (list $t))", 17),
        ] {
            assert_eq!(
                lift_fuel(&results_of(named, result), max),
                max as usize / divisor,
                "{named} {result}"
            );
        }
    }

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
