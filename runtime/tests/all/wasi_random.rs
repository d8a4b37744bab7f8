//! `wasi:random` as guests see it: every draw fresh, in every process, from both the secure
//! and the insecure generator (the runtime replaces wasmtime-wasi's per-process generators
//! with its workers' own).

use std::collections::HashSet;

use crate::common::value_of;
use serde_json::json;
use wasmproc_runtime::Runtime;

/// `secure()` and `insecure()` each draw a u64 from their interface; `pair-differs()` is 1
/// when two secure draws in a row differ.
const DRAWS: &str = r#"
(component
  (import "wasi:random/random@0.2.0" (instance $random
    (export "get-random-u64" (func (result u64)))))
  (import "wasi:random/insecure@0.2.0" (instance $insecure
    (export "get-insecure-random-u64" (func (result u64)))))
  (core func $secure (canon lower (func $random "get-random-u64")))
  (core func $insecure (canon lower (func $insecure "get-insecure-random-u64")))
  (core module $m
    (import "host" "secure" (func $secure (result i64)))
    (import "host" "insecure" (func $insecure (result i64)))
    (func (export "secure") (result i64) (call $secure))
    (func (export "insecure") (result i64) (call $insecure))
    (func (export "pair-differs") (result i32) (i64.ne (call $secure) (call $secure))))
  (core instance $host (export "secure" (func $secure)) (export "insecure" (func $insecure)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "secure") (result u64) (canon lift (core func $i "secure")))
  (func (export "insecure") (result u64) (canon lift (core func $i "insecure")))
  (func (export "pair-differs") (result u32) (canon lift (core func $i "pair-differs"))))
"#;

fn runtime(dir: &std::path::Path) -> Runtime {
    let hash = crate::common::write_wat(dir, "draws.wasm", DRAWS);
    let entry = |method: &str| {
        format!(
            "  - {{ name: {method}, kind: process.wasm, fs: bins, path: /draws.wasm, hash: \"{hash}\", method: {method}, imports: [wasi:random] }}\n"
        )
    };
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n{}{}{}",
        dir.display(),
        entry("secure"),
        entry("insecure"),
        entry("pair-differs"),
    );
    crate::common::load_written(dir, &text)
}

#[test]
fn every_process_draws_its_own_random_numbers_from_both_generators() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    for entry in ["t:secure", "t:insecure"] {
        let draws: HashSet<String> = (0..16)
            .map(|_| value_of(&rt, entry, "t:host").to_string())
            .collect();
        assert_eq!(draws.len(), 16, "{entry}: 16 processes, 16 different draws");
    }
    assert_eq!(value_of(&rt, "t:pair-differs", "t:host"), json!(1));
}
