//! Spawn-argument conversion against real component types: a component written in WAT exports
//! one function per WIT shape, and its parameter types drive `Signature::args_to_vals`. The core
//! functions only need the flattened signatures: nothing is instantiated.

use serde_json::{json, Value};
use wasmproc_runtime::value::{from_val, type_name, Signature};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Val};
use wasmtime::Engine;

const SHAPES: &str = r#"
(component
  (core module $m
    (memory (export "mem") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 8)
    (func (export "one") (param i32))
    (func (export "two") (param i32 i32))
    (func (export "five") (param i32 i32 i32 i32 i32))
    (func (export "mixed") (param i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32))
  )
  (core instance $i (instantiate $m))

  (type $point' (record (field "x" s32) (field "y" s32) (field "label" (option string))))
  (export $point "point" (type $point'))
  (type $color' (enum "red" "green"))
  (export $color "color" (type $color'))
  (type $shape' (variant (case "circle" u32) (case "empty")))
  (export $shape "shape" (type $shape'))
  (type $perms' (flags "read" "write"))
  (export $perms "perms" (type $perms'))

  (func (export "u8") (param "n" u8) (canon lift (core func $i "one")))
  (func (export "boolean") (param "b" bool) (canon lift (core func $i "one")))
  (func (export "character") (param "c" char) (canon lift (core func $i "one")))
  (func (export "take-color") (param "c" $color) (canon lift (core func $i "one")))
  (func (export "take-perms") (param "p" $perms) (canon lift (core func $i "one")))
  (func (export "take-point") (param "p" $point)
    (canon lift (core func $i "five") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  (func (export "take-shape") (param "s" $shape)
    (canon lift (core func $i "two") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  (func (export "mixed")
    (param "xs" (list s32)) (param "t" (tuple u8 string)) (param "o" (option s64))
    (param "r" (result u32 (error string))) (param "more" (list (list u8)))
    (canon lift (core func $i "mixed") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
)
"#;

fn signature(name: &str) -> Signature {
    let engine = Engine::default();
    let bytes = wat::parse_str(SHAPES).expect("the WAT parses");
    let component = Component::new(&engine, bytes).expect("the component compiles");
    let Some((ComponentItem::ComponentFunc(func), _)) = component.get_export(None, name) else {
        panic!("no function export `{name}`");
    };
    Signature {
        params: func.params().map(|(n, t)| (n.to_string(), t)).collect(),
        results: func.results().collect(),
    }
}

fn convert(name: &str, args: Value) -> Result<Vec<Val>, String> {
    let args = args.as_array().expect("args are a list").clone();
    signature(name)
        .args_to_vals(&args)
        .map_err(|e| e.to_string())
}

/// Converting and converting back gives the input again.
fn round_trips(name: &str, args: Value) {
    let vals = convert(name, args.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back: Vec<Value> = vals.iter().map(from_val).collect();
    assert_eq!(Value::Array(back), args, "{name}");
}

#[test]
fn integers_must_fit_exactly() {
    round_trips("u8", json!([255]));
    let err = convert("u8", json!([256])).unwrap_err();
    assert!(err.contains("256 is out of range for u8"), "{err}");
    let err = convert("u8", json!([-1])).unwrap_err();
    assert!(err.contains("out of range"), "{err}");
    let err = convert("u8", json!([1.5])).unwrap_err();
    assert!(err.contains("expected u8, got a number (1.5)"), "{err}");
}

#[test]
fn scalars() {
    round_trips("boolean", json!([true]));
    round_trips("character", json!(["λ"]));
    let err = convert("character", json!(["ab"])).unwrap_err();
    assert!(err.contains("single character"), "{err}");
    let err = convert("boolean", json!(["yes"])).unwrap_err();
    assert!(
        err.contains("argument 1 (`b: bool`): expected bool, got a string"),
        "{err}"
    );
}

#[test]
fn records_need_every_field_but_options() {
    round_trips("take-point", json!([{"x": 1, "y": -2, "label": "p"}]));
    let vals = convert("take-point", json!([{"x": 1, "y": 2}])).unwrap();
    assert_eq!(from_val(&vals[0]), json!({"x": 1, "y": 2, "label": null}));
    let err = convert("take-point", json!([{"x": 1}])).unwrap_err();
    assert!(err.contains("missing field `y`"), "{err}");
    let err = convert("take-point", json!([{"x": 1, "y": 2, "z": 3}])).unwrap_err();
    assert!(err.contains("unknown field `z`"), "{err}");
    let err = convert("take-point", json!([{"x": "one", "y": 2}])).unwrap_err();
    assert!(err.contains(".x: expected s32"), "{err}");
}

#[test]
fn enums_variants_and_flags_by_name() {
    round_trips("take-color", json!(["green"]));
    let err = convert("take-color", json!(["blue"])).unwrap_err();
    assert!(
        err.contains("unknown case `blue` (cases: red, green)"),
        "{err}"
    );
    round_trips("take-shape", json!([{"circle": 3}]));
    round_trips("take-shape", json!(["empty"]));
    let err = convert("take-shape", json!(["circle"])).unwrap_err();
    assert!(err.contains("carries a u32"), "{err}");
    round_trips("take-perms", json!([["read", "write"]]));
    let err = convert("take-perms", json!([["exec"]])).unwrap_err();
    assert!(err.contains("unknown flag `exec`"), "{err}");
}

#[test]
fn structural_types() {
    round_trips(
        "mixed",
        json!([[1, -2], [7, "seven"], 9, {"ok": 1}, [[1, 2], []]]),
    );
    round_trips("mixed", json!([[], [0, ""], null, {"err": "no"}, []]));
    let err = convert("mixed", json!([[1, "2"], [7, "x"], null, {"ok": 1}, []])).unwrap_err();
    assert!(
        err.contains("argument 1 (`xs: list<s32>`): [1]: expected s32"),
        "{err}"
    );
    let err = convert("mixed", json!([[], [7], null, {"ok": 1}, []])).unwrap_err();
    assert!(err.contains("expected a tuple of 2 values, got 1"), "{err}");
    let err = convert("mixed", json!([[], [7, "x"], null, {"maybe": 1}, []])).unwrap_err();
    assert!(
        err.contains("expected { ok: ... } or { err: ... }"),
        "{err}"
    );
}

#[test]
fn signatures_print_as_wit() {
    assert_eq!(
        signature("mixed").to_string(),
        "func(xs: list<s32>, t: tuple<u8, string>, o: option<s64>, r: result<u32, string>, more: list<list<u8>>)"
    );
    assert_eq!(
        type_name(&signature("take-point").params[0].1),
        "record { x: s32, y: s32, label: option<string> }"
    );
}

#[test]
fn arity_is_checked() {
    let err = convert("u8", json!([])).unwrap_err();
    assert_eq!(err, "expected 1 argument(s) for func(n: u8), got 0");
}
