//! A scenario's directories are removed when it ends, however a guest filled them: a guest
//! nesting directories 10,000 deep made the cleanup (`std::fs::remove_dir_all`, recursive)
//! overflow a 1 MiB thread stack and abort the whole run.

use std::sync::Arc;

use wasmproc_harness::Scenario;

/// A preview 1 module whose `nest(depth)` makes `a` in its first preopen, opens it, makes `a`
/// in that, and so on `depth` times (each level opened relative to the last: no path is
/// long), and returns `depth` (or minus the level where a call failed).
const NESTER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "a")
  (func (export "nest") (param $depth i32) (result i32)
    (local $fd i32) (local $i i32)
    (local.set $fd (i32.const 3))
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (local.get $i) (local.get $depth)))
        (if (call $mkdir (local.get $fd) (i32.const 16) (i32.const 1))
          (then (return (i32.sub (i32.const 0) (local.get $i)))))
        ;; `a` as a directory (oflags 2), rights to read it, make and open in it; its fd at 64.
        (if (call $open (local.get $fd) (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 2)
              (i64.const 0x6200) (i64.const 0x6200) (i32.const 0) (i32.const 64))
          (then (return (i32.sub (i32.const 0) (local.get $i)))))
        (if (i32.ne (local.get $fd) (i32.const 3)) (then (drop (call $close (local.get $fd)))))
        (local.set $fd (i32.load (i32.const 64)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $more)))
    (local.get $i)))
"#;

#[test]
fn a_scenario_directory_nested_10000_deep_is_removed_on_a_small_stack() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(NESTER).unwrap();
    std::fs::write(dir.path().join("nester.wasm"), &wasm).unwrap();
    let hash = wasmproc_runtime::manifest::Digest::of(&wasm);
    std::fs::create_dir(dir.path().join("placeholder")).unwrap();
    std::fs::write(
        dir.path().join("manifest.yaml"),
        format!(
            "namespace: deep\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: scratch, kind: fs.directory, directory: placeholder }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: nester, kind: process.wasm, fs: bins, path: /nester.wasm, hash: \"{hash}\", method: nest, imports: [wasi:cli, wasi:filesystem], limits: {{ max_execution_ms: 60000 }}, wasi: {{ mounts: [{{ fs: scratch, guest: /s }}] }} }}\n"
        ),
    )
    .unwrap();
    let scenario = dir.path().join("deep.yaml");
    std::fs::write(
        &scenario,
        "scenario: a guest nests directories deeper than a recursive removal can go\nmanifest: manifest.yaml\ndirectories:\n  deep:scratch: {}\nsteps:\n  - spawn: { entry: deep:nester, args: [10000] }\n  - receive: { expect: { value: 10000 }, timeout: 60s }\n",
    )
    .unwrap();
    let loader = Arc::new(wasmproc_runtime::engine::loader().unwrap());
    let scenario = Scenario::load(&scenario).unwrap();
    // Scenarios run on test threads; a small one, so that a recursive removal cannot pass.
    let ran = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || scenario.run(&loader).map_err(|f| f.to_string()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(ran, Ok(()));
}
