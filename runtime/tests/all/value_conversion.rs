//! Spawn-argument conversion against real component types: a component written in WAT exports
//! one function per WIT shape, and its parameter types drive `Signature::args_to_vals`. The core
//! functions only need the flattened signatures: nothing is instantiated.

use serde_json::{json, Value};
use wasmproc_runtime::{from_val, type_name, Signature};
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
    // Compiled once: the property tests ask for signatures thousands of times.
    static SHAPES_COMPONENT: std::sync::OnceLock<Component> = std::sync::OnceLock::new();
    let component = SHAPES_COMPONENT.get_or_init(|| {
        let bytes = wat::parse_str(SHAPES).expect("the WAT parses");
        Component::new(&Engine::default(), bytes).expect("the component compiles")
    });
    let Some((ComponentItem::ComponentFunc(func), _)) = component.get_export(None, name) else {
        panic!("no function export `{name}`");
    };
    Signature::of(&func)
}

fn convert(name: &str, args: Value) -> Result<Vec<Val>, String> {
    let args = args.as_array().expect("args are a list").clone();
    signature(name)
        .args_to_vals(&args)
        .map(|params| params.into_vec())
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

mod random_values {
    //! Random values of every shape the WAT component exports convert to component values and
    //! back unchanged; values of the wrong shape are refused, never a panic.

    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "\\PC{0,12}"
    }

    fn point() -> impl Strategy<Value = Value> {
        (any::<i32>(), any::<i32>(), proptest::option::of(text()))
            .prop_map(|(x, y, label)| json!({"x": x, "y": y, "label": label}))
    }

    fn shape() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<u32>().prop_map(|r| json!({"circle": r})),
            Just(json!("empty")),
        ]
    }

    fn perms() -> impl Strategy<Value = Value> {
        (any::<bool>(), any::<bool>()).prop_map(|(r, w)| {
            let mut set = Vec::new();
            if r {
                set.push("read");
            }
            if w {
                set.push("write");
            }
            json!(set)
        })
    }

    fn mixed() -> impl Strategy<Value = Value> {
        (
            proptest::collection::vec(any::<i32>(), 0..6),
            (any::<u8>(), text()),
            proptest::option::of(any::<i64>()),
            prop_oneof![
                any::<u32>().prop_map(|v| json!({"ok": v})),
                text().prop_map(|e| json!({"err": e}))
            ],
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..4), 0..4),
        )
            .prop_map(|(xs, (n, s), o, r, more)| json!([xs, [n, s], o, r, more]))
    }

    /// Any JSON-like value, mostly of the wrong shape for a given parameter.
    fn anything() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(text(), inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn records_round_trip(p in point()) {
            round_trips("take-point", json!([p]));
        }

        #[test]
        fn variants_enums_and_flags_round_trip(s in shape(), f in perms(), green in any::<bool>()) {
            round_trips("take-shape", json!([s]));
            round_trips("take-perms", json!([f]));
            round_trips("take-color", json!([if green { "green" } else { "red" }]));
        }

        #[test]
        fn lists_tuples_options_and_results_round_trip(args in mixed()) {
            round_trips("mixed", args);
        }

        #[test]
        fn wrong_shapes_are_errors_not_panics(v in anything()) {
            for name in ["u8", "boolean", "character", "take-point", "take-shape", "take-perms", "take-color"] {
                let _ = convert(name, json!([v.clone()]));
            }
        }
    }
}
