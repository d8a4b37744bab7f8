//! Fuel is counted only where a manifest asks for it: counting costs every guest's code, so a
//! runtime loaded from a manifest that sets no `limits.fuel` starts its engines without it
//! (EXITs then carry no `fuel_used`), and an engine that does not count refuses an entry that
//! sets the limit instead of running it unlimited.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use wasmproc_runtime::engine::{self, Fuel, Pool};
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{ErrorKind, Exit, Mailbox, Manifest, Runtime};

/// A manifest in `dir` with `compute` (`compute.wasm`) and `sleep` (the WASI 0.3 probe's, on
/// the concurrent engine), neither limited, and `limited` (`compute.wasm` with `fuel`) when
/// `with_limited`. Its path.
fn manifest(dir: &Path, with_limited: bool) -> PathBuf {
    let dist = crate::common::dist();
    let hash = |file: &str| Digest::of(&std::fs::read(dist.join(file)).unwrap());
    let (compute, probe) = (hash("compute.wasm"), hash("p3_probe.wasm"));
    let mut yaml = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ pool: {{ processes: 8 }} }} }}\n  - {{ name: compute, kind: process.wasm, fs: bins, path: compute.wasm, hash: \"{compute}\", method: compute }}\n  - {{ name: sleep, kind: process.wasm, fs: bins, path: p3_probe.wasm, hash: \"{probe}\", method: sleep, imports: [wasi:clocks, wasi:cli, wasi:http, wasi:sockets] }}\n",
        dist.display()
    );
    if with_limited {
        yaml.push_str(&format!(
            "  - {{ name: limited, kind: process.wasm, fs: bins, path: compute.wasm, hash: \"{compute}\", method: compute, limits: {{ fuel: 1000000 }} }}\n"
        ));
    }
    let path = dir.join(format!("fuel_{with_limited}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

fn exit_of(rt: &Runtime, entry: &str, args: &[serde_json::Value]) -> Exit {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, "t:host", args, &mailbox).unwrap();
    crate::common::receive(&mut mailbox).expect("an EXIT")
}

#[test]
fn a_runtime_counts_fuel_only_when_an_entry_of_its_manifest_limits_it() {
    let dir = tempfile::tempdir().unwrap();
    for with_limited in [false, true] {
        let rt = Runtime::load(&manifest(dir.path(), with_limited)).unwrap();
        let compute = exit_of(&rt, "t:compute", &[json!(6), json!(7)]);
        let sleep = exit_of(&rt, "t:sleep", &[json!(1)]);
        assert_eq!(compute.outcome, Ok(json!(42)));
        assert!(sleep.outcome.is_ok(), "{sleep:?}");
        for (what, exit) in [("main engine", &compute), ("concurrent engine", &sleep)] {
            let used = exit.accounting.fuel_used;
            if with_limited {
                // Counted for every entry, limited or not.
                assert!(used.is_some_and(|used| used > 0), "{what}: {used:?}");
            } else {
                assert_eq!(used, None, "{what}: not counted, so not known");
            }
        }
        if with_limited {
            // The same call burns the same fuel, whatever the store started with (u64::MAX
            // unlimited, 1,000,000 here): what it used, not a ratio of what it had.
            let limited = exit_of(&rt, "t:limited", &[json!(6), json!(7)]);
            assert_eq!(limited.outcome, Ok(json!(42)));
            let used = limited.accounting.fuel_used;
            assert!(used.is_some_and(|used| used > 1), "{used:?}");
            assert_eq!(used, compute.accounting.fuel_used);
        }
    }
}

#[test]
fn an_engine_that_does_not_count_fuel_refuses_an_entry_that_limits_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::load(&manifest(dir.path(), true)).unwrap();
    let pool = Pool {
        processes: 8,
        ..Pool::default()
    };
    let loader = engine::loader_counting(pool, Fuel::NotCounted).unwrap();
    let rt = Runtime::new(manifest, Arc::new(loader));
    let err = rt
        .spawn("t:limited", "t:host", &[json!(6), json!(7)])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEntry, "{err}");
    let text = err.to_string();
    assert!(text.contains("t:limited"), "{text}");
    assert!(text.contains("limits.fuel"), "{text}");
    // The entries without the limit run.
    assert_eq!(
        exit_of(&rt, "t:compute", &[json!(6), json!(7)]).outcome,
        Ok(json!(42))
    );
}

#[test]
fn fuel_is_counted_when_some_process_wasm_entry_sets_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let counted = |with_limited| {
        Fuel::for_manifest(&Manifest::load(&manifest(dir.path(), with_limited)).unwrap())
    };
    assert_eq!(counted(false), Fuel::NotCounted);
    assert_eq!(counted(true), Fuel::Counted);
}

/// A guest that computes for ever (a loop that calls nothing), as a component's `main`.
const SPIN: &str = r#"(component
  (core module $m (func (export "main") (result i32) (loop $l (br $l)) (i32.const 0)))
  (core instance $i (instantiate $m))
  (func (export "main") (result s32) (canon lift (core func $i "main"))))"#;

/// Code compiled without fuel checks is never what an engine that counts fuel runs: with one
/// cache for both, a fuel-limited spinner still ends on its fuel (without its own files per
/// engine configuration, it would spin until its time ran out).
#[test]
fn code_compiled_without_fuel_is_not_run_where_fuel_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let digest = crate::common::write_wat(dir.path(), "spin.wasm", SPIN);
    let manifest = |limits: &str| {
        Manifest::parse(
            &format!(
                "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ pool: {{ processes: 8 }} }} }}\n  - {{ name: spin, kind: process.wasm, fs: bins, path: spin.wasm, hash: \"{digest}\", method: main, limits: {{ {limits} }} }}\n",
                dir.path().display()
            ),
            Path::new("inline.yaml"),
        )
        .unwrap()
    };
    let cache = wasmproc_runtime::code_cache::CacheConfig::in_dir(dir.path().join("cache"));
    let pool = Pool {
        processes: 8,
        ..Pool::default()
    };
    let run = |limits: &str, fuel: Fuel| {
        let loader = engine::loader_caching(pool, fuel, &cache).unwrap();
        let rt = Runtime::new(manifest(limits), Arc::new(loader));
        exit_of(&rt, "t:spin", &[])
    };
    // Compiled (and written to the cache) without fuel: only its time ends it.
    let timed = run("max_execution_ms: 100", Fuel::NotCounted);
    let error = timed.outcome.unwrap_err();
    assert!(error.message.contains("max_execution_ms"), "{error:?}");
    // The same binary, limited by fuel, on an engine that counts it.
    let fueled = run("fuel: 1000000, max_execution_ms: 20000", Fuel::Counted);
    let error = fueled.outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::LimitExceeded);
    assert!(
        error.message.contains("fuel (1000000) exhausted"),
        "{error:?}"
    );
    assert_eq!(fueled.accounting.fuel_used, Some(1_000_000));
}

/// Without fuel, nothing but epochs stops a guest that computes: on a one-worker host whose
/// manifest limits no fuel, a spinner with no limits still lets a sleeper beside it wake, and
/// `terminate` still ends it.
#[test]
fn a_spinner_that_no_fuel_limits_is_still_preempted_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let dist = crate::common::dist();
    let hostile = Digest::of(&std::fs::read(dist.join("hostile.wasm")).unwrap());
    let guest = |method: &str| {
        format!("  - {{ name: {method}, kind: process.wasm, fs: bins, path: hostile.wasm, hash: \"{hostile}\", method: {method}, imports: [wasi:clocks, wasi:cli] }}\n")
    };
    let yaml = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 1, pool: {{ processes: 8 }} }} }}\n{}{}",
        dist.display(),
        guest("spin"),
        guest("sleep"),
    );
    let path = dir.path().join("spin.yaml");
    std::fs::write(&path, yaml).unwrap();
    let rt = Runtime::load(&path).unwrap();
    let mut spins = Mailbox::new();
    let spinner = rt.spawn_monitored("t:spin", "t:host", &[], &spins).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let sleep = exit_of(&rt, "t:sleep", &[json!(10)]);
    assert!(sleep.outcome.is_ok(), "{sleep:?}");
    assert_eq!(sleep.accounting.fuel_used, None, "fuel is not counted here");
    rt.terminate(spinner).unwrap();
    let spun = crate::common::receive(&mut spins).expect("the spinner's EXIT");
    assert_eq!(
        spun.outcome.unwrap_err().kind,
        ErrorKind::Terminated,
        "stopped by the signal"
    );
}
