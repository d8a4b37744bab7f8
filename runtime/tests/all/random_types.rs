//! Random WIT types, random values of them: converting a value to a component value and back
//! gives it again. Each case builds a component whose export takes a parameter of the random
//! type (anonymous types: scalars, string, list, tuple, option, result), so the conversion is
//! driven by a real type from wasmtime.

use proptest::prelude::*;
use serde_json::{json, Value};
use wasmproc_runtime::{from_val, Signature};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;
use wasmtime::Engine;

#[derive(Clone, Debug)]
enum Ty {
    Bool,
    S8,
    U16,
    S32,
    U64,
    S64,
    F32,
    F64,
    Char,
    Str,
    List(Box<Ty>),
    Tuple(Vec<Ty>),
    Option(Box<Ty>),
    Result(Option<Box<Ty>>, Option<Box<Ty>>),
}

impl Ty {
    fn wat(&self) -> String {
        match self {
            Ty::Bool => "bool".into(),
            Ty::S8 => "s8".into(),
            Ty::U16 => "u16".into(),
            Ty::S32 => "s32".into(),
            Ty::U64 => "u64".into(),
            Ty::S64 => "s64".into(),
            Ty::F32 => "f32".into(),
            Ty::F64 => "f64".into(),
            Ty::Char => "char".into(),
            Ty::Str => "string".into(),
            Ty::List(t) => format!("(list {})", t.wat()),
            Ty::Tuple(ts) => format!(
                "(tuple {})",
                ts.iter().map(Ty::wat).collect::<Vec<_>>().join(" ")
            ),
            Ty::Option(t) => format!("(option {})", t.wat()),
            Ty::Result(ok, err) => {
                let mut s = "(result".to_string();
                if let Some(ok) = ok {
                    s += &format!(" {}", ok.wat());
                }
                if let Some(err) = err {
                    s += &format!(" (error {})", err.wat());
                }
                s + ")"
            }
        }
    }

    /// Random values of this type, in the dynamic form `value.rs` documents.
    fn values(&self) -> BoxedStrategy<Value> {
        match self {
            Ty::Bool => any::<bool>().prop_map(Value::from).boxed(),
            Ty::S8 => any::<i8>().prop_map(Value::from).boxed(),
            Ty::U16 => any::<u16>().prop_map(Value::from).boxed(),
            Ty::S32 => any::<i32>().prop_map(Value::from).boxed(),
            Ty::U64 => any::<u64>().prop_map(Value::from).boxed(),
            Ty::S64 => any::<i64>().prop_map(Value::from).boxed(),
            // Values an f32 holds exactly, so the f64 on the JSON side survives the trip.
            Ty::F32 => (-1.0e6f32..1.0e6f32)
                .prop_map(|f| json!(f64::from(f)))
                .boxed(),
            Ty::F64 => (-1.0e12f64..1.0e12f64).prop_map(|f| json!(f)).boxed(),
            Ty::Char => any::<char>().prop_map(|c| json!(c.to_string())).boxed(),
            Ty::Str => "\\PC{0,8}".prop_map(Value::from).boxed(),
            Ty::List(t) => proptest::collection::vec(t.values(), 0..4)
                .prop_map(Value::from)
                .boxed(),
            Ty::Tuple(ts) => ts
                .iter()
                .map(Ty::values)
                .collect::<Vec<_>>()
                .prop_map(Value::from)
                .boxed(),
            Ty::Option(t) => proptest::option::of(t.values())
                .prop_map(|v| v.unwrap_or(Value::Null))
                .boxed(),
            Ty::Result(ok, err) => {
                let side = |key: &'static str, t: &Option<Box<Ty>>| match t {
                    Some(t) => t.values().prop_map(move |v| json!({ key: v })).boxed(),
                    None => Just(json!({ key: null })).boxed(),
                };
                prop_oneof![side("ok", ok), side("err", err)].boxed()
            }
        }
    }
}

fn types() -> impl Strategy<Value = Ty> {
    let leaf = prop_oneof![
        Just(Ty::Bool),
        Just(Ty::S8),
        Just(Ty::U16),
        Just(Ty::S32),
        Just(Ty::U64),
        Just(Ty::S64),
        Just(Ty::F32),
        Just(Ty::F64),
        Just(Ty::Char),
        Just(Ty::Str),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| Ty::List(Box::new(t))),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Ty::Tuple),
            // `null` would be ambiguous for an option inside an option.
            inner
                .clone()
                .prop_filter("no option<option<_>>", |t| !matches!(t, Ty::Option(_)))
                .prop_map(|t| Ty::Option(Box::new(t))),
            (
                proptest::option::of(inner.clone()),
                proptest::option::of(inner)
            )
                .prop_map(|(ok, err)| Ty::Result(ok.map(Box::new), err.map(Box::new))),
        ]
    })
}

/// A component exporting `f(pad: tuple<u8 x 17>, x: T)`: 17 flat values force the canonical
/// ABI to pass parameters through memory, so the core function is `(param i32)` whatever T is.
fn signature(ty: &Ty) -> Signature {
    let pad = format!("(tuple{})", " u8".repeat(17));
    let wat = format!(
        r#"(component
  (core module $m
    (memory (export "mem") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 8)
    (func (export "f") (param i32)))
  (core instance $i (instantiate $m))
  (func (export "f") (param "pad" {pad}) (param "x" {})
    (canon lift (core func $i "f") (memory (core memory $i "mem")) (realloc (core func $i "realloc")))))"#,
        ty.wat()
    );
    let bytes = wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"));
    let component =
        Component::new(&Engine::default(), bytes).unwrap_or_else(|e| panic!("{e:?}\n{wat}"));
    let Some((ComponentItem::ComponentFunc(func), _)) = component.get_export(None, "f") else {
        panic!("no export f");
    };
    Signature::of(&func)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn values_of_random_types_round_trip((ty, value) in types().prop_flat_map(|ty| {
        let values = ty.values();
        (Just(ty), values)
    })) {
        let signature = signature(&ty);
        let pad = Value::from(vec![0u8; 17]);
        let vals = signature
            .args_to_vals(&[pad, value.clone()])
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", ty.wat())))?;
        prop_assert_eq!(from_val(&vals[1]), value, "{}", ty.wat());
    }
}
