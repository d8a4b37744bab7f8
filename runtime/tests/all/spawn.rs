//! The runtime end to end on components written in WAT: traps, refused imports, many spawns,
//! and a binary that changes after it was verified.

use std::path::Path;
use std::time::Duration;

use crate::common::{receive, write_wat};
use serde_json::json;
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{ErrorKind, Exit, Mailbox, Runtime};

/// `add(a, b) = a + b`, `boom()` traps with `unreachable`, `deep()` recurses forever.
const ARITHMETIC: &str = r#"
(component
  (core module $m
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "boom") (result i32) unreachable)
    (func $deep (export "deep") (result i32) call $deep))
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32) (canon lift (core func $i "add")))
  (func (export "boom") (result s32) (canon lift (core func $i "boom")))
  (func (export "deep") (result s32) (canon lift (core func $i "deep")))
)
"#;

/// Imports a host function no entry can grant.
const IMPORTER: &str = r#"
(component
  (import "acme:telemetry/log" (func $log (param "x" s32)))
  (core func $log' (canon lower (func $log)))
  (core module $m
    (import "host" "log" (func (param i32)))
    (func (export "run") (result i32) i32.const 1))
  (core instance $i (instantiate $m (with "host" (instance (export "log" (func $log'))))))
  (func (export "run") (result s32) (canon lift (core func $i "run")))
)
"#;

/// `main()` returns 7; the interface `acme:math/ops` exports `double(x)`.
const METHODS: &str = r#"
(component
  (core module $m
    (func (export "double") (param i32) (result i32) local.get 0 local.get 0 i32.add)
    (func (export "main") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func $double (param "x" s32) (result s32) (canon lift (core func $i "double")))
  (instance $ops (export "double" (func $double)))
  (export "acme:math/ops" (instance $ops))
  (func (export "main") (result s32) (canon lift (core func $i "main")))
)
"#;

/// `leave(ok)` calls `wasi:cli/exit.exit` with `ok` or `err`, then would return 5.
const EXITER: &str = r#"
(component
  (import "wasi:cli/exit@0.2.0" (instance $exit (export "exit" (func (param "status" (result))))))
  (core func $exit (canon lower (func $exit "exit")))
  (core module $m
    (import "wasi" "exit" (func $exit (param i32)))
    (func (export "leave") (param i32) (result i32)
      ;; result<_, _> lowers to its discriminant: 0 = ok, 1 = err
      local.get 0 i32.eqz call $exit
      i32.const 5))
  (core instance $i (instantiate $m (with "wasi" (instance (export "exit" (func $exit))))))
  (func (export "leave") (param "ok" bool) (result s32) (canon lift (core func $i "leave")))
)
"#;

/// A manifest with one `process.wasm` entry per (name, file, digest, method), and a host.
fn runtime(dir: &Path, entries: &[(&str, &str, Digest, &str)]) -> Runtime {
    let mut yaml = String::from(
        "namespace: t\nentries:\n  - { name: bins, kind: fs.directory, directory: . }\n  - { name: host, kind: process.host, host: { workers: 2, queue_size: 20000 } }\n",
    );
    for (name, file, digest, method) in entries {
        yaml.push_str(&format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: {file}, hash: \"{digest}\", method: {method} }}\n"
        ));
    }
    let manifest = dir.join("manifest.yaml");
    std::fs::write(&manifest, yaml).unwrap();
    Runtime::load(&manifest).expect("the manifest loads")
}

#[test]
fn a_trap_ends_the_process_with_a_trap_error_and_the_host_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "arith.wasm", ARITHMETIC);
    let rt = runtime(
        dir.path(),
        &[
            ("boom", "arith.wasm", digest, "boom"),
            ("add", "arith.wasm", digest, "add"),
            ("deep", "arith.wasm", digest, "deep"),
        ],
    );
    let mut mailbox = Mailbox::new();
    let pid = rt
        .spawn_monitored("t:boom", "t:host", &[], &mailbox)
        .unwrap();
    let exit = receive(&mut mailbox).expect("an EXIT");
    assert_eq!(exit.from, pid);
    let error = exit.outcome.expect_err("a trap is an error");
    assert_eq!(error.kind, ErrorKind::Trap);
    assert!(error.message.contains("unreachable"), "{}", error.message);

    // Unbounded recursion exhausts wasmtime's own stack limit.
    rt.spawn_monitored("t:deep", "t:host", &[], &mailbox)
        .unwrap();
    assert_stack_exhausted(receive(&mut mailbox).unwrap());

    let pid = rt
        .spawn_monitored("t:add", "t:host", &[json!(2), json!(40)], &mailbox)
        .unwrap();
    let exit = receive(&mut mailbox).expect("an EXIT");
    assert_eq!((exit.from, exit.outcome), (pid, Ok(json!(42))));
}

/// The EXIT of a process that recursed without bound: a trap at wasmtime's stack limit.
/// Attack (2026-12-07): a trap's message quotes up to 20 backtrace frames by the module's and
/// the function's names from the name section, each up to 100,000 bytes: this 180 KB module,
/// recursing without end, ended with a 3.6 MB message, held by every monitor until read,
/// outside `max_value`. The message is now cut at `MAX_ERROR_TEXT` as it is written.
#[test]
fn a_trap_quoting_huge_names_ends_with_a_bounded_message() {
    use wasmproc_runtime::bounded_text::MAX_ERROR_TEXT;
    let name = "n".repeat(90_000);
    let error = trap_of(&format!(
        r#"(module (@name "{name}") (func $f (@name "{name}") (export "run") (result i32) call $f))"#
    ));
    assert!(
        error.message.starts_with("wasm trap: call stack exhausted"),
        "{}",
        &error.message[..100]
    );
    assert!(
        error.message.len() <= MAX_ERROR_TEXT + 64 && error.message.ends_with(" bytes)"),
        "{} bytes, ending {:?}",
        error.message.len(),
        &error.message[error.message.len().saturating_sub(60)..]
    );
}

/// The trap `wat`'s `run` export ends with, spawned alone.
fn trap_of(wat: &str) -> wasmproc_runtime::ExitError {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "trap.wasm", wat);
    let rt = runtime(dir.path(), &[("trap", "trap.wasm", digest, "run")]);
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:trap", "t:host", &[], &mailbox)
        .unwrap();
    let error = receive(&mut mailbox)
        .expect("an EXIT")
        .outcome
        .expect_err("a trap");
    assert_eq!(error.kind, ErrorKind::Trap, "{error}");
    error
}

fn assert_stack_exhausted(exit: Exit) {
    let error = exit.outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Trap, "{}", error.message);
    assert!(
        error.message.contains("call stack exhausted"),
        "{}",
        error.message
    );
}

#[test]
fn an_import_the_entry_does_not_grant_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "importer.wasm", IMPORTER);
    let rt = runtime(dir.path(), &[("importer", "importer.wasm", digest, "run")]);
    let err = rt.spawn("t:importer", "t:host", &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UngrantedImport);
    assert!(err.to_string().contains("acme:telemetry/log"), "{err}");
}

#[test]
fn an_ungranted_wasi_import_is_refused_naming_the_grant_to_add() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(
        dir.path(),
        "clock.wasm",
        r#"(component
          (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
            (export "now" (func (result u64)))))
          (core func $now (canon lower (func $clock "now")))
          (core module $m
            (import "host" "now" (func $now (result i64)))
            (func (export "run") (result i64) (call $now)))
          (core instance $i (instantiate $m
            (with "host" (instance (export "now" (func $now))))))
          (func (export "run") (result u64) (canon lift (core func $i "run"))))"#,
    );
    // The entry grants nothing.
    let rt = runtime(dir.path(), &[("clock", "clock.wasm", digest, "run")]);
    let err = rt.spawn("t:clock", "t:host", &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UngrantedImport, "{err}");
    let message = err.to_string();
    for part in [
        "t:clock",
        "wasi:clocks/monotonic-clock@0.2.0",
        "add wasi:clocks",
    ] {
        assert!(message.contains(part), "{message} names {part}");
    }
}

#[test]
fn ten_thousand_spawns_with_failures_give_exactly_ten_thousand_exits() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "arith.wasm", ARITHMETIC);
    let rt = runtime(
        dir.path(),
        &[
            ("add", "arith.wasm", digest, "add"),
            ("boom", "arith.wasm", digest, "boom"),
        ],
    );
    let mut mailbox = Mailbox::new();
    let mut expected = std::collections::HashMap::new();
    for i in 0..10_000 {
        let (entry, args, outcome) = if i % 3 == 0 {
            ("t:boom", vec![], Err(ErrorKind::Trap))
        } else {
            ("t:add", vec![json!(i), json!(1)], Ok(json!(i + 1)))
        };
        let pid = rt
            .spawn_monitored(entry, "t:host", &args, &mailbox)
            .unwrap();
        expected.insert(pid, outcome);
    }
    for _ in 0..10_000 {
        let exit = receive(&mut mailbox).expect("an EXIT for every spawn");
        let want = expected
            .remove(&exit.from)
            .unwrap_or_else(|| panic!("a second EXIT, or one from an unknown PID: {exit:?}"));
        assert_eq!(exit.outcome.map_err(|e| e.kind), want);
    }
    assert!(expected.is_empty());
    assert_eq!(mailbox.try_receive(), None, "no EXIT beyond one per spawn");
}

#[test]
fn a_monitor_added_while_processes_end_gets_exactly_one_exit_from_each() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "arith.wasm", ARITHMETIC);
    let rt = std::sync::Arc::new(runtime(dir.path(), &[("add", "arith.wasm", digest, "add")]));
    // Spawned unmonitored, and monitored from another thread as soon as each PID is known:
    // some are still running then, some have ended (their EXIT comes from the record).
    let (pids, spawned) = std::sync::mpsc::channel();
    let watcher = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            let mut mailbox = Mailbox::new();
            let mut count = 0;
            for pid in spawned {
                rt.monitor(pid, &mailbox).expect("running or remembered");
                count += 1;
            }
            let mut seen = std::collections::HashSet::new();
            for _ in 0..count {
                let exit = receive(&mut mailbox).expect("an EXIT for every monitor");
                assert!(seen.insert(exit.from), "a second EXIT from {}", exit.from);
            }
            assert_eq!(
                mailbox.try_receive(),
                None,
                "no EXIT beyond one per monitor"
            );
            count
        })
    };
    for i in 0..2_000 {
        let pid = rt.spawn("t:add", "t:host", &[json!(i), json!(1)]).unwrap();
        pids.send(pid).unwrap();
    }
    drop(pids);
    assert_eq!(watcher.join().unwrap(), 2_000);
}

#[test]
fn method_forms_plain_interface_and_empty_for_main() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "methods.wasm", METHODS);
    let rt = runtime(
        dir.path(),
        &[
            (
                "in_interface",
                "methods.wasm",
                digest,
                "\"acme:math/ops#double\"",
            ),
            ("empty", "methods.wasm", digest, "\"\""),
            ("plain", "methods.wasm", digest, "main"),
            (
                "no_such_func",
                "methods.wasm",
                digest,
                "\"acme:math/ops#triple\"",
            ),
            (
                "no_such_interface",
                "methods.wasm",
                digest,
                "\"acme:math/other#double\"",
            ),
        ],
    );
    let mut mailbox = Mailbox::new();
    for (entry, args, want) in [
        ("t:in_interface", vec![json!(21)], json!(42)),
        ("t:empty", vec![], json!(7)),
        ("t:plain", vec![], json!(7)),
    ] {
        rt.spawn_monitored(entry, "t:host", &args, &mailbox)
            .unwrap();
        let exit = receive(&mut mailbox).expect("an EXIT");
        assert_eq!(exit.outcome, Ok(want), "{entry}");
    }
    for entry in ["t:no_such_func", "t:no_such_interface"] {
        let err = rt.spawn(entry, "t:host", &[json!(1)]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingExport, "{err}");
        assert!(
            err.to_string().contains("acme:math/ops#double, main"),
            "{err}"
        );
    }
}

#[test]
fn env_variables_read_the_host_environment_through_an_os_storage() {
    // A variable every test environment has: setting one would race with the other tests'
    // threads reading the environment (glibc's setenv is not thread-safe).
    let path = std::env::var("PATH").expect("PATH is set");
    let dist = crate::common::dist();
    let bytes = std::fs::read(dist.join("probe.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.wasm"), &bytes).unwrap();
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"namespace: t
entries:
  - {{ name: bins, kind: fs.directory, directory: . }}
  - {{ name: host, kind: process.host }}
  - {{ name: os, kind: env.storage.os }}
  - {{ name: from_os, kind: env.variable, variable: PATH, storage: os }}
  - {{ name: implicit_os, kind: env.variable, variable: PATH }}
  - name: probe
    kind: process.wasm
    fs: bins
    path: probe.wasm
    hash: "{}"
    method: environment
    imports: [wasi:cli, wasi:filesystem]
    wasi:
      env:
        - {{ id: from_os, name: A }}
        - {{ id: implicit_os, name: B }}
"#,
            Digest::of(&bytes)
        ),
    )
    .unwrap();
    let rt = Runtime::load(&manifest).unwrap();
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:probe", "t:host", &[], &mailbox)
        .unwrap();
    let exit = receive(&mut mailbox).expect("an EXIT");
    let value = exit.outcome.unwrap();
    assert_eq!(
        value["env"],
        json!([["A", path], ["B", path]]),
        "only the declared variables, read from the host: {value}"
    );
}

#[test]
fn exit_ok_is_success_and_exit_err_is_an_exit_code_error() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "exiter.wasm", EXITER);
    std::fs::write(
        dir.path().join("manifest.yaml"),
        format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: leave, kind: process.wasm, fs: bins, path: exiter.wasm, hash: \"{digest}\", method: leave, imports: [wasi:cli] }}\n"
        ),
    )
    .unwrap();
    let rt = Runtime::load(&dir.path().join("manifest.yaml")).unwrap();
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:leave", "t:host", &[json!(true)], &mailbox)
        .unwrap();
    assert_eq!(
        receive(&mut mailbox).unwrap().outcome,
        Ok(serde_json::Value::Null)
    );
    rt.spawn_monitored("t:leave", "t:host", &[json!(false)], &mailbox)
        .unwrap();
    let error = receive(&mut mailbox).unwrap().outcome.unwrap_err();
    assert_eq!(
        (error.kind, error.code),
        (ErrorKind::ExitCode, Some(1)),
        "{error}"
    );
}

/// A pool of `processes` slots of 16 MiB.
fn small_pool(processes: u32) -> wasmproc_runtime::engine::Pool {
    wasmproc_runtime::engine::Pool {
        processes,
        memory: 16 << 20,
        ..Default::default()
    }
}

/// The hostile guest's `sleep(ms)` on a host with 4 workers, over a loader with `pool`.
fn sleepers(pool: wasmproc_runtime::engine::Pool, max_memory: &str, queue_size: u32) -> Runtime {
    let (text, _) = sleeper_manifest("", max_memory, queue_size);
    pooled(&text, pool)
}

/// A manifest of the hostile guest's `sleep(ms)` (`t:sleep`) on a host (`t:host`) with 4
/// workers and `host_fields` besides, in a folder of its own (returned).
fn sleeper_manifest(
    host_fields: &str,
    max_memory: &str,
    queue_size: u32,
) -> (String, std::path::PathBuf) {
    let dist = crate::common::dist();
    let bytes = std::fs::read(dist.join("hostile.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::write(dir.join("hostile.wasm"), &bytes).unwrap();
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 4, queue_size: {queue_size}{host_fields} }} }}\n  - {{ name: sleep, kind: process.wasm, fs: bins, path: hostile.wasm, hash: \"{}\", method: sleep, imports: [wasi:clocks, wasi:cli], limits: {{ max_memory: {max_memory} }} }}\n",
        dir.display(),
        Digest::of(&bytes)
    );
    (text, dir)
}

/// Five 100 ms sleeps through a pool of two slots take at least three rounds.
fn assert_two_at_a_time(rt: &Runtime) {
    let mut mailbox = Mailbox::new();
    for _ in 0..5 {
        rt.spawn_monitored("t:sleep", "t:host", &[json!(100)], &mailbox)
            .unwrap();
    }
    let exits: Vec<Exit> = (0..5)
        .map(|_| receive(&mut mailbox).expect("an EXIT"))
        .collect();
    assert!(
        exits.iter().all(|e| e.outcome == Ok(json!(100))),
        "{exits:?}"
    );
    let first = exits.iter().map(|e| e.accounting.started).min().unwrap();
    let last = exits.iter().map(|e| e.accounting.ended).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(300),
        "{:?}",
        last - first
    );
}

/// The manifest `text` over a loader with `pool`.
fn pooled(text: &str, pool: wasmproc_runtime::engine::Pool) -> Runtime {
    let manifest = wasmproc_runtime::Manifest::parse(text, Path::new("inline.yaml")).unwrap();
    let loader = wasmproc_runtime::engine::loader_with(pool).unwrap();
    Runtime::new(manifest, std::sync::Arc::new(loader))
}

#[test]
fn a_full_pool_queues_processes_instead_of_failing_them() {
    assert_two_at_a_time(&sleepers(small_pool(2), "4MiB", 100));
}

#[test]
fn the_pool_is_sized_by_the_process_host_entry() {
    let (text, dir) = sleeper_manifest(", pool: { processes: 2, memory: 16MiB }", "4MiB", 100);
    let file = dir.join("wasmproc.yaml");
    std::fs::write(&file, &text).unwrap();
    assert_two_at_a_time(&Runtime::load(&file).unwrap());
    // A limit past the host's slots is refused, naming the setting to raise.
    let (text, dir) = sleeper_manifest(", pool: { memory: 16MiB }", "32MiB", 100);
    let file = dir.join("wasmproc.yaml");
    std::fs::write(&file, &text).unwrap();
    let rt = Runtime::load(&file).unwrap();
    let err = rt.spawn("t:sleep", "t:host", &[json!(1)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEntry, "{err}");
    assert!(err.to_string().contains("pool.memory"), "{err}");
}

#[test]
fn a_memory_limit_larger_than_a_pool_slot_is_refused() {
    let pool = small_pool(4);
    let rt = sleepers(pool, "32MiB", 100);
    let err = rt.spawn("t:sleep", "t:host", &[json!(1)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEntry, "{err}");
    assert!(err.to_string().contains("WASMPROC_POOL_MEMORY"), "{err}");
}

/// A manifest of the hostile guest's `sleep` and `spin` (`t:sleep`, `t:spin`, each with
/// `fields` besides) on a host `t:host` with `host` fields, the binary in a folder of its own
/// (returned: it must outlive the runtime's loads).
fn hostile_manifest(host: &str, fields: &str) -> (String, tempfile::TempDir) {
    let bytes = std::fs::read(crate::common::dist().join("hostile.wasm")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hostile.wasm"), &bytes).unwrap();
    let guest = |method: &str| {
        format!(
            "  - {{ name: {method}, kind: process.wasm, fs: bins, path: hostile.wasm, hash: \"{}\", method: {method}, imports: [wasi:clocks, wasi:cli]{fields} }}\n",
            Digest::of(&bytes)
        )
    };
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ {host} }} }}\n{}{}",
        dir.path().display(),
        guest("sleep"),
        guest("spin"),
    );
    (text, dir)
}

/// Spawns a sleeper of `ms` and returns once it has reached Init, and so holds a pool slot
/// before anything spawned next asks for one.
fn take_the_only_slot(rt: &Runtime, ms: u64, mailbox: &Mailbox) -> wasmproc_runtime::Pid {
    let (trace, mut traced) = tokio::sync::mpsc::unbounded_channel();
    let options = wasmproc_runtime::SpawnOptions {
        trace: Some(trace),
        ..Default::default()
    };
    let pid = rt
        .spawn_with("t:sleep", "t:host", &[json!(ms)], &options, Some(mailbox))
        .unwrap();
    let init = traced.blocking_recv().expect("a lifecycle event");
    assert_eq!(init.phase, wasmproc_runtime::Phase::Init);
    pid
}

#[test]
fn a_slot_an_exit_freed_goes_to_the_next_process_while_a_spinner_keeps_the_worker_busy() {
    // A finished process's store (and pool slot) is dropped when its worker has a moment: here
    // the only worker never runs out of tasks (a spinner), so it must be at a yield.
    let (text, _dir) = hostile_manifest(
        "workers: 1, queue_size: 10",
        ", limits: { max_memory: 4MiB }",
    );
    let rt = pooled(&text, small_pool(2));
    let mut mailbox = Mailbox::new();
    let (trace, mut traced) = tokio::sync::mpsc::unbounded_channel();
    let options = wasmproc_runtime::SpawnOptions {
        trace: Some(trace),
        ..Default::default()
    };
    let spinner = rt
        .spawn_with("t:spin", "t:host", &[], &options, Some(&mailbox))
        .unwrap();
    while traced.blocking_recv().expect("the spinner's trace").phase
        != wasmproc_runtime::Phase::Yield
    {}
    // The other slot: a sleeper takes it, and the next one waits for it.
    let first = take_the_only_slot(&rt, 100, &mailbox);
    let next = rt
        .spawn_monitored("t:sleep", "t:host", &[json!(10)], &mailbox)
        .unwrap();
    for pid in [first, next] {
        let exit = receive(&mut mailbox).expect("each sleeper's EXIT, the spinner still running");
        assert_eq!(
            (exit.from, exit.outcome),
            (pid, Ok(json!(if pid == first { 100 } else { 10 })))
        );
    }
    rt.cancel(spinner, "the test is over").unwrap();
    let exit = receive(&mut mailbox).expect("the spinner's EXIT");
    assert_eq!(exit.outcome.unwrap_err().kind, ErrorKind::Cancelled);
}

#[test]
fn a_full_queue_refuses_the_spawn_with_queue_full() {
    // One pool slot: the first sleeper runs, the next three wait; a fifth finds the queue full.
    let pool = small_pool(1);
    let rt = sleepers(pool, "4MiB", 3);
    let mut mailbox = Mailbox::new();
    // It holds the only slot, then sleeps 300 ms.
    take_the_only_slot(&rt, 300, &mailbox);
    for _ in 0..3 {
        rt.spawn_monitored("t:sleep", "t:host", &[json!(300)], &mailbox)
            .unwrap();
    }
    let err = rt.spawn("t:sleep", "t:host", &[json!(1)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QueueFull, "{err}");
    assert!(
        err.to_string().contains("t:host") && err.to_string().contains("3 processes"),
        "{err}"
    );
    for _ in 0..4 {
        assert_eq!(
            receive(&mut mailbox).expect("an EXIT").outcome,
            Ok(json!(300))
        );
    }
    // Once the queue drained, spawns are accepted again.
    rt.spawn_monitored("t:sleep", "t:host", &[json!(1)], &mailbox)
        .unwrap();
    assert_eq!(
        receive(&mut mailbox).expect("an EXIT").outcome,
        Ok(json!(1))
    );
}

/// A wasip1 core module: `_start` writes "hello from p1\n" to stdout and exits with 3; `add`
/// is a plain function.
const P1_COMMAND: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from p1\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 14))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 3)))
  (func (export "add") (param i64 i64) (result i64) local.get 0 local.get 1 i64.add)
)
"#;

#[test]
fn core_modules_run_with_preview1_wasi() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "p1.wasm", P1_COMMAND);
    let rt = runtime(dir.path(), &[("command", "p1.wasm", digest, "\"\"")]);
    // Without a grant, its preview 1 imports are refused by name.
    let err = rt.spawn("t:command", "t:host", &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UngrantedImport, "{err}");
    assert!(
        err.to_string().contains("wasi_snapshot_preview1::fd_write"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "p1.wasm", P1_COMMAND);
    std::fs::write(
        dir.path().join("manifest.yaml"),
        format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: command, kind: process.wasm, fs: bins, path: p1.wasm, hash: \"{digest}\", method: \"\", imports: [wasi:cli] }}\n  - {{ name: add, kind: process.wasm, fs: bins, path: p1.wasm, hash: \"{digest}\", method: add, imports: [wasi:cli] }}\n"
        ),
    )
    .unwrap();
    let rt = Runtime::load(&dir.path().join("manifest.yaml")).unwrap();
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:add", "t:host", &[json!(40), json!(2)], &mailbox)
        .unwrap();
    assert_eq!(receive(&mut mailbox).unwrap().outcome, Ok(json!(42)));
    rt.spawn_monitored("t:command", "t:host", &[], &mailbox)
        .unwrap();
    let exit = receive(&mut mailbox).unwrap();
    let error = exit.outcome.unwrap_err();
    assert_eq!(
        (error.kind, error.code),
        (ErrorKind::ExitCode, Some(3)),
        "{error}"
    );
    assert_eq!(exit.output.unwrap().stdout, "hello from p1\n");
}

#[test]
fn a_binary_changed_on_disk_is_checked_again_and_refused_until_it_matches() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "ops.wasm", METHODS);
    let rt = runtime(dir.path(), &[("main", "ops.wasm", digest, "main")]);
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:main", "t:host", &[], &mailbox)
        .unwrap();
    assert_eq!(receive(&mut mailbox).unwrap().outcome, Ok(7.into()));
    // Same size, different bytes: only the hash tells.
    let original = std::fs::read(dir.path().join("ops.wasm")).unwrap();
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(dir.path().join("ops.wasm"), &tampered).unwrap();
    std::thread::sleep(wasmproc_runtime::RECHECK + Duration::from_millis(100));
    for _ in 0..2 {
        let refused = rt
            .spawn_monitored("t:main", "t:host", &[], &mailbox)
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::HashMismatch, "{refused}");
        assert!(
            refused.to_string().contains(&format!("expected {digest}")),
            "{refused}"
        );
    }
    std::fs::write(dir.path().join("ops.wasm"), &original).unwrap();
    rt.spawn_monitored("t:main", "t:host", &[], &mailbox)
        .unwrap();
    assert_eq!(receive(&mut mailbox).unwrap().outcome, Ok(7.into()));
}

#[test]
fn a_host_shutting_down_sends_the_exit_of_every_process_it_drops() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/apps/host.yaml");
    let rt = Runtime::load(&manifest).unwrap();
    let mut mailbox = Mailbox::new();
    let pids: Vec<_> = (0..4)
        .map(|_| {
            rt.spawn_monitored(
                "host:sleeper",
                "host:one_worker",
                &[json!(60_000)],
                &mailbox,
            )
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    drop(rt);
    let mut ended: Vec<_> = (0..4)
        .map(|_| receive(&mut mailbox).expect("an EXIT for every process"))
        .collect();
    ended.sort_by_key(|e| e.from);
    assert_eq!(ended.iter().map(|e| e.from).collect::<Vec<_>>(), pids);
    for exit in ended {
        let error = exit.outcome.unwrap_err();
        assert_eq!(error.kind, ErrorKind::HostFailure);
        assert!(error.message.contains("host shut down"), "{error}");
    }
    assert_eq!(mailbox.try_receive(), None, "exactly one EXIT each");
}

#[test]
fn a_core_module_whose_memory_limit_exceeds_a_pool_slot_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let bytes =
        wat::parse_str(r#"(module (func (export "main") (result i32) i32.const 1))"#).unwrap();
    std::fs::write(dir.path().join("one.wasm"), &bytes).unwrap();
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: one, kind: process.wasm, fs: bins, path: one.wasm, hash: \"{}\", method: main, limits: {{ max_memory: 32MiB }} }}\n",
        dir.path().display(),
        Digest::of(&bytes)
    );
    let rt = pooled(&text, small_pool(2));
    let err = rt.spawn("t:one", "t:host", &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEntry, "{err}");
    assert!(err.to_string().contains("WASMPROC_POOL_MEMORY"), "{err}");
}

#[test]
fn a_cancel_reaches_a_process_still_waiting_for_a_pool_slot_and_one_just_spawned() {
    let pool = small_pool(1);
    let rt = sleepers(pool, "4MiB", 100);
    let mut mailbox = Mailbox::new();
    let holder = take_the_only_slot(&rt, 2000, &mailbox);
    let waiting = rt
        .spawn_monitored("t:sleep", "t:host", &[json!(10)], &mailbox)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    rt.cancel(waiting, "not needed").unwrap();
    // The waiting one ends long before the one holding the only slot wakes up.
    let exit = receive(&mut mailbox).expect("an EXIT");
    assert_eq!(exit.from, waiting);
    let error = exit.outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Cancelled);
    assert!(error.message.contains("not needed"), "{error}");
    assert_eq!(exit.accounting.steps, 0, "it never started");
    // Cancelled the moment it is spawned: the signal may come before its task exists.
    let fresh = rt
        .spawn_monitored("t:sleep", "t:host", &[json!(10)], &mailbox)
        .unwrap();
    rt.terminate(fresh).unwrap();
    let exit = receive(&mut mailbox).expect("an EXIT");
    assert_eq!(exit.from, fresh);
    assert_eq!(exit.outcome.unwrap_err().kind, ErrorKind::Terminated);
    rt.terminate(holder).unwrap();
    let exit = receive(&mut mailbox).expect("an EXIT");
    assert_eq!(exit.from, holder);
    assert_eq!(exit.outcome.unwrap_err().kind, ErrorKind::Terminated);
    assert!(mailbox.try_receive().is_none(), "exactly one EXIT each");
}

/// A runtime over `pool` with one entry `t:one` running `main` of the binary `wat`, with
/// `limits` (YAML flow mapping fields).
fn one_binary(wat: &str, limits: &str, pool: wasmproc_runtime::engine::Pool) -> Runtime {
    let dir = tempfile::tempdir().unwrap().keep();
    let digest = write_wat(&dir, "one.wasm", wat);
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: one, kind: process.wasm, fs: bins, path: one.wasm, hash: \"{digest}\", method: main, limits: {{ {limits} }} }}\n",
        dir.display(),
    );
    pooled(&text, pool)
}

/// `main` of `wat` run to its EXIT.
fn run_main(rt: &Runtime) -> Exit {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:one", "t:host", &[], &mailbox)
        .unwrap();
    receive(&mut mailbox).expect("an EXIT")
}

fn on_demand() -> wasmproc_runtime::engine::Pool {
    wasmproc_runtime::engine::Pool {
        processes: 0,
        ..Default::default()
    }
}

#[test]
fn a_memory_the_binary_declares_past_max_memory_is_the_limit_not_a_host_failure() {
    let core = r#"(module (memory 100) (func (export "main") (result i32) i32.const 1))"#;
    let component = r#"
(component
  (core module $m (memory 100) (func (export "main") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "main") (result s32) (canon lift (core func $i "main"))))"#;
    for wat in [core, component] {
        for pool in [small_pool(2), on_demand()] {
            let exit = run_main(&one_binary(wat, "max_memory: 1MiB", pool));
            let error = exit.outcome.unwrap_err();
            assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error}");
            assert!(
                error.message.contains("max_memory (1048576 bytes)"),
                "{error}"
            );
        }
    }
    // A table of a million elements (8 MB as max_memory counts it).
    let table =
        r#"(module (table 1000000 funcref) (func (export "main") (result i32) i32.const 1))"#;
    let exit = run_main(&one_binary(table, "max_memory: 1MiB", on_demand()));
    let error = exit.outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error}");
    assert!(error.message.contains("exceeds table limits"), "{error}");
}

#[test]
fn a_trap_under_max_memory_with_no_growth_denied_stays_a_trap() {
    // Only a trap after a denied growth is the limit's doing (killed a mutant that took
    // "nothing denied" for a denial of 0 bytes and blamed every trap on max_memory).
    let wat = r#"(module (memory 1) (func (export "main") (result i32) unreachable))"#;
    for pool in [small_pool(2), on_demand()] {
        let exit = run_main(&one_binary(wat, "max_memory: 1MiB", pool));
        let error = exit.outcome.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Trap, "{error}");
        assert!(!error.message.contains("max_memory"), "{error}");
    }
}

#[test]
fn tables_count_toward_max_memory() {
    // Grows its table by the argument baked in and returns table.grow's answer.
    let grower = |elements: u32| {
        format!(
            r#"(module (table 0 funcref)
                 (func (export "main") (result i32) ref.null func i32.const {elements} table.grow 0))"#
        )
    };
    // 1,000,000 elements are 8 MB of the host's memory, past 1 MiB: refused, -1.
    let exit = run_main(&one_binary(
        &grower(1_000_000),
        "max_memory: 1MiB",
        on_demand(),
    ));
    assert_eq!(exit.outcome, Ok(json!(-1)), "{exit:?}");
    // 1,000 elements fit, and show in the peak.
    let exit = run_main(&one_binary(&grower(1_000), "max_memory: 1MiB", on_demand()));
    assert_eq!(exit.outcome, Ok(json!(0)), "{exit:?}");
    assert_eq!(exit.accounting.peak_memory, 8_000);
}

#[test]
fn a_valid_binary_past_the_pools_limits_is_refused_naming_the_pool_setting() {
    // 300 pages (19.7 MB) of memory in slots of 16 MiB.
    let core = r#"(module (memory 300) (func (export "main") (result i32) i32.const 1))"#;
    let component = r#"
(component
  (core module $m (memory 300) (func (export "main") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "main") (result s32) (canon lift (core func $i "main"))))"#;
    // A pool past the kernel's map limit takes memories from the arena: it holds them to the
    // same slot size (its spawns failed with `host_failure` instead).
    let arena = wasmproc_runtime::engine::Pool {
        processes: 20_000,
        ..small_pool(2)
    };
    for ((wat, what), pool) in [(core, "module"), (component, "component")]
        .into_iter()
        .flat_map(|binary| [(binary, small_pool(2)), (binary, arena)])
    {
        let rt = one_binary(wat, "fuel: 1000000", pool);
        let err = rt.spawn("t:one", "t:host", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("is a valid WebAssembly {what}")),
            "{text}"
        );
        assert!(text.contains("pool.memory"), "{text}");
        assert!(text.contains("WASMPROC_POOL=0"), "{text}");
        // Without the pool it runs.
        let exit = run_main(&one_binary(wat, "fuel: 1000000", on_demand()));
        assert_eq!(exit.outcome, Ok(json!(1)));
    }
}

/// Returns lists built in its memory: `flags(n)` a list of `n` 32-member flags with every
/// flag set (4 bytes each in the guest), `bytes(n)` a `list<u8>` of `n`; `count(xs)` is the
/// length of a list it is passed.
const LISTS: &str = r#"
(component
  (type $bits' (flags "f00" "f01" "f02" "f03" "f04" "f05" "f06" "f07" "f08" "f09" "f10" "f11" "f12" "f13" "f14" "f15" "f16" "f17" "f18" "f19" "f20" "f21" "f22" "f23" "f24" "f25" "f26" "f27" "f28" "f29" "f30" "f31"))
  (export $bits "bits" (type $bits'))
  (core module $m
    (memory (export "memory") 80)
    (func $fill (param $n i32) (param $size i32) (result i32)
      (memory.fill (i32.const 65536) (i32.const 0xff) (i32.mul (local.get $n) (local.get $size)))
      (i32.store (i32.const 0) (i32.const 65536))
      (i32.store (i32.const 4) (local.get $n))
      i32.const 0)
    (func (export "flags") (param i32) (result i32) (call $fill (local.get 0) (i32.const 4)))
    (func (export "bytes") (param i32) (result i32) (call $fill (local.get 0) (i32.const 1)))
    (func (export "count") (param i32 i32) (result i32) local.get 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 65536))
  (core instance $i (instantiate $m))
  (func (export "flags") (param "n" u32) (result (list $bits))
    (canon lift (core func $i "flags") (memory (core memory $i "memory"))))
  (func (export "bytes") (param "n" u32) (result (list u8))
    (canon lift (core func $i "bytes") (memory (core memory $i "memory"))))
  (func (export "count") (param "xs" (list u8)) (result u32)
    (canon lift (core func $i "count") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
)
"#;

/// The `LISTS` component's exports as `t:flags`, `t:bytes` and `t:count`, with `limits`.
fn lists(limits: &str) -> Runtime {
    let dir = tempfile::tempdir().unwrap().keep();
    let digest = write_wat(&dir, "lists.wasm", LISTS);
    let mut text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n",
        dir.display()
    );
    for method in ["flags", "bytes", "count"] {
        text.push_str(&format!(
            "  - {{ name: {method}, kind: process.wasm, fs: bins, path: lists.wasm, hash: \"{digest}\", method: {method}, limits: {{ {limits} }} }}\n"
        ));
    }
    pooled(&text, small_pool(4))
}

fn run_with(rt: &Runtime, entry: &str, args: &[serde_json::Value]) -> Exit {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, "t:host", args, &mailbox).unwrap();
    receive(&mut mailbox).expect("an EXIT")
}

#[test]
fn a_result_larger_than_max_value_is_refused_before_it_is_converted() {
    let rt = lists("max_memory: 8MiB");
    // The issue's case: a million 32-member flags, 4 MiB in the guest, cost the host 4.5 GB
    // and 22 s of CPU. Now wasmtime's lift stops at the limit.
    let started = std::time::Instant::now();
    let exit = run_with(&rt, "t:flags", &[json!(1_048_576)]);
    let error = exit.outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error}");
    assert!(
        error.message.contains("limits.max_value (67108864 bytes)"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A few are fine.
    let exit = run_with(&rt, "t:flags", &[json!(2)]);
    let all: Vec<String> = (0..32).map(|i| format!("f{i:02}")).collect();
    assert_eq!(exit.outcome, Ok(json!([all, all])));
    let exit = run_with(&rt, "t:bytes", &[json!(3)]);
    assert_eq!(exit.outcome, Ok(json!([255, 255, 255])));
}

#[test]
fn max_value_bounds_results_and_arguments() {
    let rt = lists("max_value: 64KiB");
    // 4 KiB of bytes in the guest are 4 Ki values on the host: past 64 KiB.
    let error = run_with(&rt, "t:bytes", &[json!(4096)])
        .outcome
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error}");
    assert!(
        error.message.contains("limits.max_value (65536 bytes)"),
        "{error}"
    );
    assert_eq!(
        run_with(&rt, "t:bytes", &[json!(100)])
            .outcome
            .map(|v| v.as_array().map(Vec::len)),
        Ok(Some(100))
    );
    // 60 flags of 32 names: each name is a string of its own.
    let error = run_with(&rt, "t:flags", &[json!(60)]).outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error}");
    // Arguments: refused at spawn, naming the limit.
    let err = rt
        .spawn("t:count", "t:host", &[json!(vec![1; 4096])])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    assert!(
        err.to_string().contains("limits.max_value (65536 bytes)"),
        "{err}"
    );
    assert_eq!(
        run_with(&rt, "t:count", &[json!(vec![1; 100])]).outcome,
        Ok(json!(100))
    );
}

/// `main(n)` writes `n` bytes of its memory to stdout in one preview 1 `fd_write` and returns
/// its errno.
const P1_WRITER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "main") (param $n i32) (result i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (local.get $n))
    (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
"#;

#[test]
fn max_value_bounds_what_a_core_module_passes_to_one_host_call() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "writer.wasm", P1_WRITER);
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: one, kind: process.wasm, fs: bins, path: writer.wasm, hash: \"{digest}\", method: main, imports: [wasi:cli], limits: {{ max_value: 1KiB }} }}\n",
        dir.path().display(),
    );
    let rt = pooled(&text, small_pool(2));
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:one", "t:host", &[json!(512)], &mailbox)
        .unwrap();
    let exit = receive(&mut mailbox).unwrap();
    assert_eq!(exit.outcome, Ok(json!(0)));
    assert_eq!(exit.output.unwrap().stdout.len(), 512);
    // 4 KiB in one call: refused to the guest as ENOMEM (48), nothing copied.
    rt.spawn_monitored("t:one", "t:host", &[json!(4096)], &mailbox)
        .unwrap();
    let exit = receive(&mut mailbox).unwrap();
    assert_eq!(exit.outcome, Ok(json!(48)));
    assert_eq!(exit.output.unwrap().stdout, "");
}

#[test]
fn a_fifo_where_the_binary_should_be_is_unreadable_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(dir.path().join("planted.wasm"))
        .status()
        .unwrap()
        .success());
    let digest = Digest::of(b"");
    let path = dir.path().to_path_buf();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = runtime(&path, &[("planted", "planted.wasm", digest, "main")]);
        let mailbox = Mailbox::new();
        let outcome = rt
            .spawn_monitored("t:planted", "t:host", &[], &mailbox)
            .map(|_| ())
            .map_err(|e| (e.kind(), e.to_string()));
        let _ = done.send(outcome);
    });
    let (kind, message) = result
        .recv_timeout(Duration::from_secs(10))
        .expect("the spawn returns")
        .expect_err("the spawn is refused");
    assert_eq!(kind, ErrorKind::BinaryUnreadable, "{message}");
    assert!(message.contains("not a regular file"), "{message}");
}

/// A binary over `MAX_BINARY_BYTES` (256 MiB) is refused by its size, before a byte of it is
/// read or hashed (the file here is sparse: it takes no disk).
#[test]
fn a_binary_over_256_mib_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("huge.wasm")).unwrap();
    file.set_len(wasmproc_runtime::MAX_BINARY_BYTES + 1)
        .unwrap();
    let rt = runtime(
        dir.path(),
        &[("huge", "huge.wasm", Digest::of(b""), "main")],
    );
    let mailbox = Mailbox::new();
    let error = rt
        .spawn_monitored("t:huge", "t:host", &[], &mailbox)
        .map(|_| ())
        .expect_err("the spawn is refused");
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::BinaryUnreadable, "{message}");
    assert!(
        message.contains("larger than the 268435456 bytes") && message.contains("huge.wasm"),
        "{message}"
    );
}

/// 1,000 sleepers spawned at once beside a guest spinning on every worker (SPEC 5: a busy guest
/// starves no one): every EXIT arrives, and the last one within a second. The bound is
/// generous, for a loaded machine: the last EXIT comes 80-130 ms after the spawns here (debug
/// build, loaded 2-core VM), and the figures are `just bench wake_latency_under_spin`'s.
/// (Sleepers used to advance about one poll per slice: 2.4 s here, 3.5-4 s in the bench.)
#[test]
fn a_thousand_sleepers_beside_a_spinner_on_every_worker_all_wake_within_seconds() {
    let (text, _dir) = hostile_manifest("workers: 2, queue_size: 2000", "");
    let rt = pooled(&text, small_pool(1_010));
    let mut mailbox = Mailbox::new();
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            rt.spawn_monitored("t:spin", "t:host", &[], &mailbox)
                .unwrap()
        })
        .collect();
    // Both workers spinning (not a bound: the spinners only need to have started).
    std::thread::sleep(Duration::from_millis(50));
    let spawned = std::time::Instant::now();
    let sleepers: std::collections::HashSet<_> = (0..1_000)
        .map(|_| {
            rt.spawn_monitored("t:sleep", "t:host", &[json!(10)], &mailbox)
                .unwrap()
        })
        .collect();
    let mut ended = std::collections::HashSet::new();
    while ended.len() < sleepers.len() {
        let exit = receive(&mut mailbox).expect("every sleeper's EXIT");
        assert!(sleepers.contains(&exit.from), "a spinner ended: {exit:?}");
        assert_eq!(exit.outcome, Ok(json!(10)), "{exit:?}");
        assert!(ended.insert(exit.from), "two EXITs from {}", exit.from);
    }
    let last = spawned.elapsed();
    assert!(
        last < Duration::from_secs(1),
        "the last of 1,000 sleepers beside spinners ended {last:?} after the spawns"
    );
    for pid in spinners {
        rt.cancel(pid, "the test is over").unwrap();
        let exit = receive(&mut mailbox).expect("the spinner's EXIT");
        assert_eq!(exit.from, pid);
        assert!(exit.accounting.yields > 1, "a spinner preempted: {exit:?}");
        assert_eq!(exit.outcome.unwrap_err().kind, ErrorKind::Cancelled);
    }
}

#[test]
fn in_the_arena_stacks_have_no_guard_page_yet_unbounded_recursion_is_a_trap_in_every_process() {
    // A pool past the kernel's map limit takes its fiber stacks from the arena, where no guard
    // page sits between two processes' stacks: wasmtime's stack limit must stop each one.
    let pool = wasmproc_runtime::engine::Pool {
        processes: 20_000,
        memory: 16 << 20,
        ..Default::default()
    };
    let max_map_count = wasmproc_runtime::capacity::max_map_count();
    let placement = wasmproc_runtime::capacity::Capacity::within(pool.processes, max_map_count);
    if placement.allocation != wasmproc_runtime::capacity::Allocation::Arena {
        eprintln!("vm.max_map_count {max_map_count} holds this pool pooled; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "arith.wasm", ARITHMETIC);
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n  - {{ name: deep, kind: process.wasm, fs: bins, path: arith.wasm, hash: \"{digest}\", method: deep }}\n  - {{ name: add, kind: process.wasm, fs: bins, path: arith.wasm, hash: \"{digest}\", method: add }}\n",
        dir.path().display()
    );
    let rt = pooled(&text, pool);
    let mut mailbox = Mailbox::new();
    const DEEP: usize = 64;
    for _ in 0..DEEP {
        rt.spawn_monitored("t:deep", "t:host", &[], &mailbox)
            .unwrap();
    }
    for _ in 0..DEEP {
        assert_stack_exhausted(receive(&mut mailbox).unwrap());
    }
    let pid = rt
        .spawn_monitored("t:add", "t:host", &[json!(2), json!(40)], &mailbox)
        .unwrap();
    let exit = receive(&mut mailbox).expect("an EXIT");
    assert_eq!((exit.from, exit.outcome), (pid, Ok(json!(42))));
}

/// A component-model-async export (a WASI 0.3 guest's kind): it returns with `task.return`
/// and tells its callback loop it is done.
const ASYNC_DOUBLER: &str = r#"
(component
  (core module $m
    (import "" "task.return" (func $task.return (param i32)))
    (func (export "callback") (param i32 i32 i32) (result i32)
      unreachable)
    (func (export "double") (param i32) (result i32)
      (call $task.return (i32.mul (local.get 0) (i32.const 2)))
      i32.const 0 ;; EXIT
    )
  )
  (core func $task.return (canon task.return (result u32)))
  (core instance $i (instantiate $m
    (with "" (instance (export "task.return" (func $task.return))))
  ))
  (func (export "double") async (param "n" u32) (result u32)
    (canon lift (core func $i "double") async (callback (core func $i "callback")))
  )
)
"#;

/// Async and ordinary exports run side by side on one host (they run on different engines:
/// only the async ones need wasmtime's concurrency support), each EXIT with its own value.
#[test]
fn an_async_export_runs_as_a_process_and_exits_with_its_task_return_value() {
    let dir = tempfile::tempdir().unwrap();
    let doubler = write_wat(dir.path(), "async.wasm", ASYNC_DOUBLER);
    let arithmetic = write_wat(dir.path(), "arith.wasm", ARITHMETIC);
    let rt = runtime(
        dir.path(),
        &[
            ("double", "async.wasm", doubler, "double"),
            ("add", "arith.wasm", arithmetic, "add"),
        ],
    );
    let mut mailbox = Mailbox::new();
    let mut expected = std::collections::HashMap::new();
    for n in 0..20 {
        let pid = rt
            .spawn_monitored("t:double", "t:host", &[json!(n)], &mailbox)
            .unwrap();
        expected.insert(pid, json!(2 * n));
        let pid = rt
            .spawn_monitored("t:add", "t:host", &[json!(n), json!(1000)], &mailbox)
            .unwrap();
        expected.insert(pid, json!(n + 1000));
    }
    for _ in 0..40 {
        let exit = receive(&mut mailbox).expect("an EXIT");
        let value = expected.remove(&exit.from).expect("one EXIT per process");
        assert_eq!(exit.outcome, Ok(value), "{:?}", exit.from);
    }
    assert!(expected.is_empty());
}

/// Async exports that misbehave: one ends without `task.return`, one asks to be called back
/// forever. Each ends with its own error, never a hang or a host failure.
const ASYNC_HOSTILE: &str = r#"
(component
  (core module $m
    (func (export "callback") (param i32 i32 i32) (result i32)
      i32.const 1 ;; YIELD, again and again
    )
    (func (export "silent") (param i32) (result i32)
      i32.const 0 ;; EXIT, but no task.return
    )
    (func (export "forever") (param i32) (result i32)
      i32.const 1 ;; YIELD
    )
    (func (export "spin") (param i32) (result i32)
      (loop br 0)
      i32.const 0
    )
  )
  (core instance $i (instantiate $m))
  (func (export "silent") async (param "n" u32) (result u32)
    (canon lift (core func $i "silent") async (callback (core func $i "callback")))
  )
  (func (export "forever") async (param "n" u32) (result u32)
    (canon lift (core func $i "forever") async (callback (core func $i "callback")))
  )
  (func (export "spin") async (param "n" u32) (result u32)
    (canon lift (core func $i "spin") async (callback (core func $i "callback")))
  )
)
"#;

#[test]
fn async_exports_that_never_return_end_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write_wat(dir.path(), "hostile.wasm", ASYNC_HOSTILE);
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(
        &manifest,
        format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: host, kind: process.host, host: {{ workers: 1 }} }}\n  - {{ name: silent, kind: process.wasm, fs: bins, path: hostile.wasm, hash: \"{digest}\", method: silent }}\n  - {{ name: forever, kind: process.wasm, fs: bins, path: hostile.wasm, hash: \"{digest}\", method: forever, limits: {{ max_execution_ms: 300 }} }}\n"
        ),
    )
    .unwrap();
    let rt = Runtime::load(&manifest).unwrap();
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:silent", "t:host", &[json!(1)], &mailbox)
        .unwrap();
    let silent = receive(&mut mailbox).expect("an EXIT");
    let error = silent.outcome.expect_err("no value was returned");
    assert_eq!(error.kind, ErrorKind::Trap, "{error:?}");
    rt.spawn_monitored("t:forever", "t:host", &[json!(1)], &mailbox)
        .unwrap();
    let forever = receive(&mut mailbox).expect("an EXIT");
    let error = forever.outcome.expect_err("it never returns");
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error:?}");
}

/// An async export that spins is preempted like any other (its engine has its own epoch
/// ticker): an ordinary process on the same one-worker host ends while it spins, and the
/// spinner ends at its time limit.
#[test]
fn a_spinning_async_export_does_not_starve_an_ordinary_process() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = write_wat(dir.path(), "hostile.wasm", ASYNC_HOSTILE);
    let arithmetic = write_wat(dir.path(), "arith.wasm", ARITHMETIC);
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(
        &manifest,
        format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: host, kind: process.host, host: {{ workers: 1 }} }}\n  - {{ name: spin, kind: process.wasm, fs: bins, path: hostile.wasm, hash: \"{hostile}\", method: spin, limits: {{ max_execution_ms: 2000 }} }}\n  - {{ name: add, kind: process.wasm, fs: bins, path: arith.wasm, hash: \"{arithmetic}\", method: add }}\n"
        ),
    )
    .unwrap();
    let rt = Runtime::load(&manifest).unwrap();
    let mut mailbox = Mailbox::new();
    let spinner = rt
        .spawn_monitored("t:spin", "t:host", &[json!(1)], &mailbox)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let adder = rt
        .spawn_monitored("t:add", "t:host", &[json!(2), json!(3)], &mailbox)
        .unwrap();
    let first = receive(&mut mailbox).expect("an EXIT");
    assert_eq!((first.from, first.outcome), (adder, Ok(json!(5))));
    let second = receive(&mut mailbox).expect("an EXIT");
    assert_eq!(second.from, spinner);
    let error = second.outcome.expect_err("it never returns");
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error:?}");
}

/// Bytes that are not WebAssembly at all, under a hash they do not have: the refusal is the
/// hash's, so the hash was checked before anything tried to compile them; under their own hash
/// they reach the compiler, which refuses them.
#[test]
fn a_binary_is_checked_against_its_hash_before_it_is_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let junk = b"not a WebAssembly binary".to_vec();
    std::fs::write(dir.path().join("junk.wasm"), &junk).unwrap();
    let (actual, expected) = (Digest::of(&junk), Digest::of(b"other bytes"));
    let entry = |name: &str, hash: &Digest| {
        format!("  - {{ name: {name}, kind: process.wasm, fs: bins, path: /junk.wasm, hash: \"{hash}\", method: run }}\n")
    };
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 1 }} }}\n{}{}",
        dir.path().display(),
        entry("tampered", &expected),
        entry("junk", &actual),
    );
    let rt = crate::common::load_written(dir.path(), &text);
    let mailbox = Mailbox::new();
    let err = rt
        .spawn_monitored("t:tampered", "t:host", &[], &mailbox)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HashMismatch, "{err}");
    let message = err.to_string();
    for part in ["t:tampered", &expected.to_string(), &actual.to_string()] {
        assert!(message.contains(part), "{message} names {part}");
    }
    let err = rt
        .spawn_monitored("t:junk", "t:host", &[], &mailbox)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidBinary, "{err}");
}

/// A component of `memories` core instances of a module with a memory, whose `run` spins.
fn memory_hog(memories: usize) -> String {
    let instances: String = (0..memories)
        .map(|i| format!("(core instance $m{i} (instantiate $memory)) "))
        .collect();
    format!(
        r#"(component
             (core module $memory (memory (export "m") 1))
             (core module $spin (func (export "run") (result i32) (loop $l br $l) i32.const 0))
             {instances}
             (core instance $s (instantiate $spin))
             (func (export "run") (result u32) (canon lift (core func $s "run"))))"#
    )
}

/// Attack (2026-12-07): a process could take more than its share of the instance pool. A
/// component instantiating a module with a memory 7 times, spinning, held 7 of a 4-process
/// pool's 8 memories: of two spawns of a one-memory guest beside it, one ended in
/// `host_failure` ("maximum concurrent limit of 8 for memory stripe 0 reached"). Each process
/// now holds at most its share (`MEMORIES_PER_PROCESS`...): such a binary is refused at load
/// (`limit_exceeded`) whatever the allocation, and the others run. (The store limiter still
/// holds every instantiation to the share, for what a load cannot count.)
#[test]
fn a_process_holds_at_most_its_share_of_the_instance_pool() {
    use wasmproc_runtime::MEMORIES_PER_PROCESS;
    let dir = tempfile::tempdir().unwrap();
    let hog = write_wat(dir.path(), "hog.wasm", &memory_hog(7));
    let compute = std::fs::read(crate::common::dist().join("compute.wasm")).unwrap();
    std::fs::write(dir.path().join("compute.wasm"), &compute).unwrap();
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n  - {{ name: hog, kind: process.wasm, fs: bins, path: hog.wasm, hash: \"{hog}\", method: run, limits: {{ max_execution_ms: 2000 }} }}\n  - {{ name: c, kind: process.wasm, fs: bins, path: compute.wasm, hash: \"{}\", method: compute }}\n",
        dir.path().display(),
        Digest::of(&compute)
    );
    let share = format!("a process holds at most {MEMORIES_PER_PROCESS} linear memories");

    // Pooled: refused at load, naming the share; the others run.
    let rt = pooled(&text, small_pool(4));
    let mut mailbox = Mailbox::new();
    let refused = rt
        .spawn_monitored("t:hog", "t:host", &[], &mailbox)
        .expect_err("more memories than a process's share");
    assert_eq!(refused.kind(), ErrorKind::LimitExceeded, "{refused}");
    assert!(refused.to_string().contains(&share), "{refused}");
    for _ in 0..2 {
        rt.spawn_monitored("t:c", "t:host", &[json!(6), json!(7)], &mailbox)
            .unwrap();
    }
    for _ in 0..2 {
        assert_eq!(receive(&mut mailbox).unwrap().outcome, Ok(json!(42)));
    }

    // Without a pool (and in the arena) too: refused at load, not at each instantiation.
    let rt = pooled(&text, small_pool(0));
    let refused = rt
        .spawn_monitored("t:hog", "t:host", &[], &mailbox)
        .expect_err("more memories than a process's share");
    assert_eq!(refused.kind(), ErrorKind::LimitExceeded, "{refused}");
    assert!(
        refused.to_string().contains(&share)
            && refused.to_string().contains("it needs 7 linear memories"),
        "{refused}"
    );

    // Core instances cost no memory a load can count: past the share, the process ends as it
    // is instantiated (on a pooled engine, wasmtime refuses the binary at load).
    let instances: String = (0..33)
        .map(|i| format!("(core instance $e{i} (instantiate $empty)) "))
        .collect();
    let many = write_wat(
        dir.path(),
        "many.wasm",
        &format!(
            r#"(component (core module $empty) {instances}
                 (core module $m (func (export "run") (result i32) i32.const 1))
                 (core instance $i (instantiate $m))
                 (func (export "run") (result u32) (canon lift (core func $i "run"))))"#
        ),
    );
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: many, kind: process.wasm, fs: bins, path: many.wasm, hash: \"{many}\", method: run }}\n",
        dir.path().display()
    );
    let rt = pooled(&text, small_pool(0));
    rt.spawn_monitored("t:many", "t:host", &[], &mailbox)
        .unwrap();
    let error = receive(&mut mailbox).unwrap().outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error}");
    assert!(
        error.message.contains("32 core instances") && error.message.contains("instance count"),
        "{error}"
    );
}

/// Attack (2026-12-07): a trap's backtrace quoted the name section as it is, so a function
/// named with a newline put a line of the binary's choosing into the EXIT's message (and into
/// every report that shows it). The names are now written escaped, each frame on its line.
#[test]
fn a_trap_backtrace_keeps_each_frame_on_its_line_whatever_the_names() {
    let error = trap_of(
        r#"(module (@name "m\0a")
             (func $inner (@name "f\0avalid: yes\1b[2J") (result i32) unreachable)
             (func (export "run") (result i32) call $inner))"#,
    );
    let lines: Vec<&str> = error.message.lines().collect();
    assert_eq!(lines.len(), 4, "{}", error.message);
    assert!(lines[0].contains("unreachable"), "{}", error.message);
    assert_eq!(lines[1], "error while executing at wasm backtrace:");
    assert!(
        lines[2].ends_with(r" - m\u{a}!f\u{a}valid: yes\u{1b}[2J"),
        "{}",
        error.message
    );
    assert!(
        lines[3].ends_with(r" - m\u{a}!<wasm function 1>"),
        "{}",
        error.message
    );
}
