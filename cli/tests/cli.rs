//! The `wasmproc` binary as a user runs it: the README's command, refusals, help.

use std::path::Path;
use std::process::{Command, Output};

/// Where the tests' `wasmproc` keeps compiled code: the build's scratch directory, never the
/// user's cache. Shared by the tests, as by the runs of a user (concurrent runs are safe).
const TEST_CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/wasmproc-cli-cache");

fn wasmproc(args: &[&str]) -> Output {
    wasmproc_command(args).output().expect("wasmproc runs")
}

/// `wasmproc args...` from the workspace root, with the tests' cache and no inherited settings.
fn wasmproc_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmproc"));
    command
        .env("WASMPROC_CACHE_DIR", TEST_CACHE)
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env_remove("WASMPROC_LOG")
        .env_remove("WASMPROC_MANIFEST");
    command
}

/// `wasmproc serve args...` started, and the first line it printed on stderr.
fn serve_started(args: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut server = wasmproc_command(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(server.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    (server, first)
}

/// The address in `serve`'s first line (`Serving HTTP on http://ADDR/`).
fn served_address(first: &str) -> String {
    first
        .trim()
        .strip_prefix("Serving HTTP on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("the URL on the first line: {first:?}"))
        .to_string()
}

/// `wasmproc lua <script> --manifest conformance/apps/seed.yaml <rest>...`
fn lua_on_seed(script: &str, rest: &[&str]) -> Output {
    let mut args = vec!["lua", script, "--manifest", "conformance/apps/seed.yaml"];
    args.extend_from_slice(rest);
    wasmproc(&args)
}

/// Writes `source` to a scratch file named `name` and runs it as [`lua_on_seed`] does.
fn lua_source_on_seed(name: &str, source: &str, rest: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join(name);
    std::fs::write(&script, source).unwrap();
    lua_on_seed(script.to_str().unwrap(), rest)
}

/// `dir/app.yaml`: namespace `t`, a `bins` directory over the committed guests, then
/// `entries` (YAML list items), where `HASH` stands for `guest`'s sha256.
fn app_manifest(dir: &Path, guest: &str, entries: &str) -> std::path::PathBuf {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/dist")
        .canonicalize()
        .unwrap();
    let hash = wasmproc_runtime::manifest::Digest::of(&std::fs::read(dist.join(guest)).unwrap());
    let file = dir.join("app.yaml");
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n{}",
        dist.display(),
        entries.replace("HASH", &hash.to_string())
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_readme_command_prints_the_exit_with_value_42() {
    let out = wasmproc(&["spawn", "wasmproc.yaml", "myns:compute_worker", "6", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exit: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(exit["type"], "EXIT");
    assert_eq!(exit["value"], 42);
    assert!(exit["from"].is_string(), "{exit}");
}

#[test]
fn a_refused_spawn_exits_2_with_the_kind_on_stderr() {
    let out = wasmproc(&[
        "spawn",
        "conformance/apps/fixtures.yaml",
        "fixtures:tampered_worker",
        "6",
        "7",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("error[hash_mismatch]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn arguments_are_read_as_yaml_and_checked_against_the_signature() {
    let out = wasmproc(&["spawn", "wasmproc.yaml", "myns:compute_worker", "-3", "[1]"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("error[bad_argument]") && err.contains("argument 2 (`b: s32`)"),
        "{err}"
    );
}

#[test]
fn a_broken_manifest_is_refused_with_its_location() {
    let out = wasmproc(&[
        "spawn",
        "conformance/manifests/invalid/missing_fs.yaml",
        "bad:worker",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("missing_fs.yaml:7: entry `bad:worker`: fs is required"),
        "{err}"
    );
}

#[test]
fn help_explains_the_commands() {
    let out = wasmproc(&["--help"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("spawn"), "{}", stdout(&out));
    // The capacity this kernel gives a pool, read when asked (words as clap wraps them).
    let words = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        words.contains("vm.max_map_count")
            && words.contains("queue_full")
            && words.contains("async ABI"),
        "{}",
        stdout(&out)
    );
    let out = wasmproc(&["spawn", "--help"]);
    let help = stdout(&out);
    assert!(
        help.contains("--host") && help.contains("--timeout") && help.contains("Exit status"),
        "{help}"
    );
    // Every command's help says what its exit status means.
    for command in [
        "run",
        "lua",
        "test",
        "wasi-testsuite",
        "validate",
        "serve",
        "spawn",
        "cache",
    ] {
        let out = wasmproc(&[command, "--help"]);
        assert!(out.status.success(), "{command}: {}", stderr(&out));
        let help = stdout(&out).to_lowercase();
        assert!(
            help.contains("usage: wasmproc") && help.contains("exit status"),
            "{command} --help:\n{help}"
        );
    }
}

#[test]
fn run_greet_world_prints_the_greeting_through_the_terminal() {
    // The README's command, from the repository root where wasmproc.yaml is.
    let out = wasmproc(&["run", "greet", "World"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Hello, World!\n");
}

#[test]
fn run_list_shows_commands_with_their_short_descriptions() {
    let out = wasmproc(&["run", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(
        listing
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["greet", "Greet", "someone", "via", "WASM"]),
        "{listing}"
    );
}

/// A manifest may come from someone else: `run list` printed its command descriptions raw, so
/// one could write to the terminal of whoever listed them (found attacking, 2026-12-07).
#[test]
fn run_list_shows_a_manifests_words_with_their_control_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("wasmproc.yaml");
    std::fs::write(
        &manifest,
        "namespace: t\nentries:\n  - { name: bins, kind: fs.directory, directory: . }\n  - { name: term, kind: terminal.host }\n  - { name: host, kind: process.host }\n  - name: c\n    kind: process.wasm\n    meta: { command: { name: \"go\\e[2J\", short: \"ti\\e]0;pwned\\atle\\r\" } }\n    fs: bins\n    path: c.wasm\n    hash: sha256:0000000000000000000000000000000000000000000000000000000000000000\n    method: run\n",
    )
    .unwrap();
    let out = wasmproc(&["run", "--manifest", manifest.to_str().unwrap(), "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(!acts_on_a_terminal(&listing), "{listing:?}");
    assert!(
        listing.contains(r"go\u{1b}[2J  ti\u{1b}]0;pwned\u{7}tle\u{d}"),
        "{listing}"
    );
}

#[test]
fn run_exec_runs_an_entry_without_a_command_and_can_print_its_value() {
    let out = wasmproc(&[
        "run",
        "--print-value",
        "--exec",
        "myns:compute_worker",
        "6",
        "7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "42\n");
}

#[test]
fn run_passes_the_words_after_the_command_to_the_guest_as_its_arguments() {
    // The probe's `environment` takes no parameters and returns its WASI argv.
    let dir = tempfile::tempdir().unwrap();
    let file = app_manifest(
        dir.path(),
        "probe.wasm",
        "  - { name: term, kind: terminal.host }\n  - { name: host, kind: process.host }\n  - { name: env, kind: process.wasm, fs: bins, path: probe.wasm, hash: \"HASH\", method: environment, imports: [wasi:cli, wasi:clocks, wasi:filesystem], meta: { command: { name: show-args } } }\n",
    );
    let out = wasmproc(&[
        "run",
        "--print-value",
        "--manifest",
        file.to_str().unwrap(),
        "show-args",
        "42",
        "two words",
        "[not, a, list]",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let value: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    // argv[0] is the entry's name; the rest are the words as typed, never parsed.
    assert_eq!(
        value["args"],
        serde_json::json!(["env", "42", "two words", "[not, a, list]"]),
        "{value}"
    );
}

#[test]
fn run_refuses_unknown_commands_and_manifests_without_a_terminal_host() {
    let out = wasmproc(&["run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("error[unknown_command]"),
        "{}",
        stderr(&out)
    );
    // fixtures.yaml registers greet but declares no terminal.host.
    let out = wasmproc(&[
        "run",
        "--manifest",
        "conformance/apps/fixtures.yaml",
        "greet",
        "World",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("error[missing_host]") && err.contains("terminal.host"),
        "{err}"
    );
}

#[test]
fn test_runs_scenarios_from_paths_with_libtest_flags() {
    let out = wasmproc(&["test", "conformance/compute", "--format", "terse"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("3 passed; 0 failed"),
        "{}",
        stdout(&out)
    );
    let out = wasmproc(&[
        "test",
        "conformance/compute",
        "conformance/seed/compute.yaml",
        "--list",
    ]);
    let listing = stdout(&out);
    assert!(
        listing.contains("conformance/compute/product: test"),
        "{listing}"
    );
    assert!(
        listing.contains("conformance/seed/compute: test"),
        "{listing}"
    );
}

#[test]
fn test_fails_with_the_scenarios_message_when_a_guest_misbehaves() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance/apps/fixtures.yaml")
        .canonicalize()
        .unwrap();
    std::fs::write(
        dir.path().join("wrong.yaml"),
        format!(
            "scenario: expects the wrong product\nmanifest: {}\nsteps:\n  - spawn: {{ entry: fixtures:compute_worker, args: [6, 7] }}\n  - receive: {{ expect: {{ value: 43 }} }}\n",
            fixtures.display()
        ),
    )
    .unwrap();
    let out = wasmproc(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(101), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("expected value 43, got 42"),
        "{}",
        stdout(&out)
    );
    let out = wasmproc(&["test", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn validate_describes_a_component_and_the_grants_it_needs() {
    let out = wasmproc(&["validate", "guests/dist/greet.wasm", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["kind"], "component");
    assert_eq!(report["exports"]["greet"], "func(name: string) -> string");
    assert_eq!(report["grants"], serde_json::json!(["wasi:cli"]));
    assert_eq!(
        report["imports"]["wasi:cli"],
        serde_json::json!(["wasi:cli/stdout@0.2.12"])
    );
    assert_eq!(report["wasi_versions"], serde_json::json!(["0.2"]));
    assert_eq!(report["async_abi"], false);
    assert_eq!(report["hash"], committed_hash("greet.wasm"));
    assert_eq!(report["valid"], true);
}

#[test]
fn validate_against_an_entry_shows_where_a_networked_entry_may_connect() {
    let validate = |entry: &str| {
        let out = wasmproc(&[
            "validate",
            "guests/dist/http_worker.wasm",
            "--entry",
            entry,
            "--manifest",
            "conformance/apps/seed.yaml",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let text = validate("myns:http_worker");
    assert!(
        text.contains("network: default (no network.allow): public destinations only"),
        "{text}"
    );
    let text = validate("myns:http_worker_local");
    assert!(
        text.contains("network: allow [http://127.0.0.1:*]"),
        "{text}"
    );
}

#[test]
fn validate_against_an_entry_lists_each_problem_and_exits_1() {
    let out = wasmproc(&[
        "validate",
        "guests/dist/compute.wasm",
        "--entry",
        "myns:greet",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("error[hash_mismatch]")
            && problems.contains("error[missing_export]")
            && problems.contains("method `greet` is not an exported function"),
        "{problems}"
    );
    let out = wasmproc(&["validate", "conformance/apps/bins/truncated.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("invalid component"),
        "{}",
        stdout(&out)
    );
}

/// A preview 1 command: prints `hello\n`, exits with `code`.
fn p1_command(code: i32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const {code}))))"#
    ))
    .unwrap()
}

#[test]
fn wasi_testsuite_runs_specs_and_honours_expectations() {
    let root = tempfile::tempdir().unwrap();
    let suite = root.path().join("tests/own/testsuite/wasm32-wasip1");
    std::fs::create_dir_all(suite.join("data.dir")).unwrap();
    std::fs::write(suite.join("manifest.json"), r#"{"name": "own"}"#).unwrap();
    std::fs::write(suite.join("hello.wasm"), p1_command(0)).unwrap();
    std::fs::write(
        suite.join("hello.json"),
        r#"{"stdout": "hello\n", "dirs": ["data.dir"], "args": ["a"], "env": {"K": "V"}}"#,
    )
    .unwrap();
    std::fs::write(suite.join("exit3.wasm"), p1_command(3)).unwrap();
    std::fs::write(suite.join("exit3.json"), r#"{"exit_code": 3}"#).unwrap();
    std::fs::write(suite.join("wrong.wasm"), p1_command(3)).unwrap();
    std::fs::write(suite.join("wrong.json"), r#"{"exit_code": 0}"#).unwrap();
    // No spec: it must exit 0.
    std::fs::write(suite.join("nospec.wasm"), p1_command(0)).unwrap();
    let dir = suite.to_str().unwrap();

    let out = wasmproc(&["wasi-testsuite", dir]);
    assert_eq!(out.status.code(), Some(101), "{}", stdout(&out));
    let report = stdout(&out);
    let passed = |name: &str| {
        report
            .lines()
            .any(|l| l.starts_with(&format!("test {name} ")) && l.ends_with("... ok"))
    };
    assert!(passed("own/hello") && passed("own/exit3"), "{report}");
    assert!(report.contains("exit code 3, expected 0"), "{report}");
    assert!(passed("own/nospec"), "{report}");

    let expectations = root.path().join("expectations.json");
    std::fs::write(
        &expectations,
        r#"{"fail": ["own/wrong"], "skip": ["own/exit3"]}"#,
    )
    .unwrap();
    let report = root.path().join("report.json");
    let out = wasmproc(&[
        "wasi-testsuite",
        "--expectations",
        expectations.to_str().unwrap(),
        "--report",
        &format!("json={}", report.display()),
        dir,
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("test own/exit3 ") && l.ends_with("... ignored")),
        "{}",
        stdout(&out)
    );
    // The suite runner's JSON report: counts per outcome, and each test's.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let suite = &report["results"][0];
    assert_eq!(suite["name"], "own", "{report}");
    for (outcome, count) in [("passed", 2), ("failed", 0), ("skipped", 1), ("xfailed", 1)] {
        assert_eq!(suite[outcome], count, "{outcome}: {report}");
    }
    let wrong = suite["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "wrong")
        .unwrap();
    assert_eq!(wrong["outcome"], "xfailed", "{report}");
    assert!(wrong["duration_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["execution"]["finish_timestamp"].as_f64().unwrap() > 0.0);
}

/// The suite's operations form: `run` then `wait` (live steps and services have their own
/// tests); anything else is a failure that names what is supported. A command sees its file's name as `argv[0]`, and a
/// component command whose `run` returns `err` exits with 1.
#[test]
fn wasi_testsuite_runs_the_operations_form_of_run_and_wait() {
    let root = tempfile::tempdir().unwrap();
    let suite = root.path().join("tests/own/testsuite/wasm32-wasip3");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(suite.join("manifest.json"), r#"{"name": "ops"}"#).unwrap();
    // Exits with the length of its argv[0] (it is given no arguments).
    let argv0 = wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (call $proc_exit (i32.sub (i32.load (i32.const 4)) (i32.const 1)))))"#,
    )
    .unwrap();
    std::fs::write(suite.join("named.wasm"), &argv0).unwrap();
    std::fs::write(
        suite.join("named.json"),
        r#"{"operations": [{"type": "run", "env": {"K": "V"}}, {"type": "wait", "exit_code": 10}]}"#,
    )
    .unwrap();
    let failing = wat::parse_str(
        r#"(component
  (core module $m (func (export "run") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $r)))"#,
    )
    .unwrap();
    std::fs::write(suite.join("fails.wasm"), &failing).unwrap();
    std::fs::write(
        suite.join("fails.json"),
        r#"{"operations": [{"type": "run"}, {"type": "wait", "exit_code": 1}]}"#,
    )
    .unwrap();
    for (name, spec) in [
        (
            "live",
            r#"{"operations": [{"type": "run"}, {"type": "kill"}, {"type": "wait"}]}"#,
        ),
        (
            "served",
            r#"{"world": "wasi:http/service", "operations": [{"type": "run"}, {"type": "wait"}]}"#,
        ),
        (
            "mixed",
            r#"{"args": ["a"], "operations": [{"type": "run"}, {"type": "wait"}]}"#,
        ),
        // A `run`'s root is held to the same rule as the fields form's: no way out.
        (
            "escape",
            r#"{"operations": [{"type": "run", "root": "../.."}, {"type": "wait"}]}"#,
        ),
    ] {
        std::fs::write(suite.join(format!("{name}.wasm")), p1_command(0)).unwrap();
        std::fs::write(suite.join(format!("{name}.json")), spec).unwrap();
    }
    // Says why on stderr, then traps: the failure shows what it said.
    let panics = wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "assertion failed: boom\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 23))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    unreachable))"#,
    )
    .unwrap();
    std::fs::write(suite.join("panics.wasm"), &panics).unwrap();
    let out = wasmproc(&["wasi-testsuite", suite.to_str().unwrap()]);
    let report = stdout(&out);
    let passed = |name: &str| {
        report
            .lines()
            .any(|l| l.starts_with(&format!("test ops/{name} ")) && l.ends_with("... ok"))
    };
    assert!(passed("named") && passed("fails"), "{report}");
    assert!(
        report.contains("error[trap]") && report.contains("assertion failed: boom"),
        "{report}"
    );
    for expected in [
        "operations [run, kill, wait] are not supported yet",
        "operations [run, wait] are not supported yet (only run, request..., kill",
        "`operations` and `args` cannot be mixed",
        "`../..` must be a relative path inside the directory",
    ] {
        assert!(report.contains(expected), "{expected}: {report}");
    }
    assert!(report.contains("5 failed"), "{report}");
}

/// A `wasi:http/service` test: the committed WASI 0.3 handler is served, the spec's requests
/// are compared as the suite's runner compares them, and a spec's server reaches the guest as
/// `HTTP_SERVER_MAIN` (its `/fetch` asks it, through the loopback policy the `http` proposal
/// grants). A wrong expectation fails, saying what came instead.
#[test]
fn wasi_testsuite_serves_a_service_world_test_and_its_servers() {
    let root = tempfile::tempdir().unwrap();
    let suite = root.path().join("tests/own/testsuite/wasm32-wasip3");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(suite.join("manifest.json"), r#"{"name": "web"}"#).unwrap();
    let service = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/dist/http_service.wasm");
    let requests = r#"
      { "type": "request", "path": "/", "response": { "status": 200, "headers": { "content-type": "text/plain" }, "body": "hello from wasi 0.3\n" } },
      { "type": "request", "method": "POST", "path": "/echo", "body": "ping", "response": { "body": "ping" } },
      { "type": "request", "path": "/headers", "headers": { "x-echo": "hi" }, "response": { "headers": { "x-echoed": "hi" } } },
      { "type": "request", "path": "/fetch", "response": { "body": "upstream 201" } },
      { "type": "request", "path": "/missing", "response": { "status": 404 } }"#;
    let servers = r#""servers": [{ "name": "main", "endpoints": [{ "path": "/", "response": { "status": 201 } }] }]"#;
    for (name, requests) in [
        ("serves", requests.to_string()),
        (
            "wrong",
            r#"{ "type": "request", "path": "/", "response": { "body": "bye" } }"#.to_string(),
        ),
    ] {
        std::fs::copy(&service, suite.join(format!("{name}.wasm"))).unwrap();
        std::fs::write(
            suite.join(format!("{name}.json")),
            format!(
                r#"{{ "proposals": ["http"], "world": "wasi:http/service", {servers},
                   "operations": [{{ "type": "run" }}, {requests},
                     {{ "type": "kill", "signal": "SIGINT" }}, {{ "type": "wait" }}] }}"#
            ),
        )
        .unwrap();
    }
    let out = wasmproc(&["wasi-testsuite", suite.to_str().unwrap()]);
    let report = stdout(&out);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("test web/serves ") && l.ends_with("... ok")),
        "{report}"
    );
    assert!(
        report.contains(r#"GET /: body "hello from wasi 0.3\n", expected "bye""#),
        "{report}"
    );
    assert!(report.contains("1 passed; 1 failed"), "{report}");
}

/// The live operations: the test reads what the process wrote while it still runs, then
/// writes what it waits for (the suite's `cli-stdout-flush`), and a read of the wrong bytes
/// fails saying what came.
#[test]
fn wasi_testsuite_reads_and_writes_a_running_processs_stdio() {
    let root = tempfile::tempdir().unwrap();
    let suite = root.path().join("tests/own/testsuite/wasm32-wasip1");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(suite.join("manifest.json"), r#"{"name": "live"}"#).unwrap();
    // Writes READY, then reads one byte from stdin and exits with it minus 'a'.
    let ready = wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "READY")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 32))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.sub (i32.load8_u (i32.const 32)) (i32.const 97)))))"#,
    )
    .unwrap();
    for (name, read) in [("flush", "READY"), ("wrong", "STEADY")] {
        std::fs::write(suite.join(format!("{name}.wasm")), &ready).unwrap();
        std::fs::write(
            suite.join(format!("{name}.json")),
            format!(
                r#"{{"operations": [{{"type": "run"}}, {{"type": "read", "id": "stdout", "payload": "{read}"}},
                   {{"type": "write", "id": "stdin", "payload": "c"}}, {{"type": "wait", "exit_code": 2}}]}}"#
            ),
        )
        .unwrap();
    }
    let out = wasmproc(&["wasi-testsuite", suite.to_str().unwrap()]);
    let report = stdout(&out);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("test live/flush ") && l.ends_with("... ok")),
        "{report}"
    );
    // Six bytes are asked for and five come before the process waits on its stdin: the read
    // times out (nothing more comes), and the process, its stdin closed, reads nothing.
    assert!(report.contains("live/wrong"), "{report}");
    assert!(report.contains("1 passed; 1 failed"), "{report}");
}

#[test]
fn validate_checks_arguments_against_the_entrys_method() {
    let ok = wasmproc(&[
        "validate",
        "guests/dist/compute.wasm",
        "--entry",
        "myns:compute_worker",
        "--arg",
        "6",
        "--arg",
        "7",
    ]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    let bad = wasmproc(&[
        "validate",
        "guests/dist/compute.wasm",
        "--entry",
        "myns:compute_worker",
        "--arg",
        "6",
        "--arg",
        "seven",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stdout(&bad).contains("arguments do not fit: argument 2 (`b: s32`)"),
        "{}",
        stdout(&bad)
    );
}

#[test]
fn lua_runs_the_seeds_snippet_unchanged() {
    let out = lua_on_seed("examples/seed.lua", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "EXIT from <2>: 42\n");
}

#[test]
fn lua_spawn_errors_timeouts_and_a_thousand_exits() {
    for (script, printed) in [
        ("examples/errors.lua", "ok\n"),
        ("examples/current_api.lua", "ok\n"),
        ("examples/thousand.lua", "1000 EXITs\n"),
    ] {
        let out = lua_on_seed(script, &[]);
        assert!(out.status.success(), "{script}: {}", stderr(&out));
        assert_eq!(stdout(&out), printed, "{script}");
    }
}

#[test]
fn a_failing_lua_script_exits_1_naming_its_line() {
    let out = lua_source_on_seed(
        "fails.lua",
        "local x = 1\nassert(x == 2, \"x is not 2\")\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("fails.lua:2") && err.contains("x is not 2"),
        "{err}"
    );
}

#[test]
fn a_lua_script_gets_its_arguments_and_prints_what_it_returns() {
    let out = lua_on_seed("examples/product.lua", &["6", "7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        printed,
        serde_json::json!({ "product": 42, "args": [6, 7] })
    );
    let refused = lua_on_seed("examples/product.lua", &["6"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("bad_argument"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn a_lua_syntax_error_refuses_the_script_with_exit_2() {
    let out = lua_source_on_seed("broken.lua", "local x = = 1\n", &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("error[script_error]") && err.contains("broken.lua:1"),
        "{err}"
    );
}

/// `wasmproc` with `args(fifo)`, where `fifo` is a FIFO nobody writes: it must end by itself.
fn wasmproc_on_a_fifo(name: &str, args: impl FnOnce(&str) -> Vec<String>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join(name);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmproc"))
        .env("WASMPROC_CACHE_DIR", TEST_CACHE)
        .args(args(fifo.to_str().unwrap()))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let began = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if began.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("wasmproc waited on the FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_fifo_named_as_the_script_is_refused_not_waited_on() {
    let out = wasmproc_on_a_fifo("script.lua", |fifo| {
        let manifest = "conformance/apps/seed.yaml";
        vec![
            "lua".into(),
            fifo.into(),
            "--manifest".into(),
            manifest.into(),
        ]
    });
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_fifo_given_to_validate_is_refused_not_waited_on() {
    let out = wasmproc_on_a_fifo("guest.wasm", |fifo| vec!["validate".into(), fifo.into()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("error[binary_unreadable]") && err.contains("not a regular file"),
        "{err}"
    );
}

#[test]
fn a_lua_script_past_its_timeout_is_terminated() {
    let out = lua_source_on_seed("forever.lua", "time.sleep('1h')\n", &["--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("limit_exceeded") && err.contains("did not end within 300ms"),
        "{err}"
    );
}

#[test]
fn validate_checks_a_core_module_against_its_entry_as_the_loader_does() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = p1_command(0);
    std::fs::write(dir.path().join("hello.wasm"), &bytes).unwrap();
    let hash = wasmproc_runtime::manifest::Digest::of(&bytes);
    let manifest = dir.path().join("wasmproc.yaml");
    let entries = |imports: &str| {
        format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: hello, kind: process.wasm, fs: bins, path: /hello.wasm, hash: \"{hash}\", method: \"\", imports: [{imports}] }}\n"
        )
    };
    let validate = || {
        wasmproc(&[
            "validate",
            dir.path().join("hello.wasm").to_str().unwrap(),
            "--entry",
            "t:hello",
            "--manifest",
            manifest.to_str().unwrap(),
        ])
    };
    // The method is empty (`main`): the module's `_start` runs, and its preview 1 imports
    // are stdio and exit, so wasi:cli.
    std::fs::write(&manifest, entries("wasi:cli")).unwrap();
    let ok = validate();
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    std::fs::write(&manifest, entries("")).unwrap();
    let refused = validate();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains("wasi_snapshot_preview1::fd_write"),
        "{}",
        stdout(&refused)
    );
    // The loader's checks, not a look at the export names: `memory` is exported, but it is
    // not a function a spawn can call.
    let with_method = |method: &str| {
        format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: hello, kind: process.wasm, fs: bins, path: /hello.wasm, hash: \"{hash}\", method: {method}, imports: [wasi:cli] }}\n"
        )
    };
    std::fs::write(&manifest, with_method("memory")).unwrap();
    let refused = validate();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains("error[missing_export]"),
        "{}",
        stdout(&refused)
    );
}

/// `wasmproc args...` run in `dir`.
fn wasmproc_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmproc"))
        .env("WASMPROC_CACHE_DIR", TEST_CACHE)
        .args(args)
        .current_dir(dir)
        .env_remove("WASMPROC_LOG")
        .env_remove("WASMPROC_MANIFEST")
        .output()
        .expect("wasmproc runs")
}

#[test]
fn wasi_testsuite_takes_a_relative_directory_and_walks_links_once() {
    let root = tempfile::tempdir().unwrap();
    let suite = root.path().join("tests/own/testsuite/wasm32-wasip1");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(suite.join("manifest.json"), r#"{"name": "own"}"#).unwrap();
    std::fs::write(suite.join("hello.wasm"), p1_command(0)).unwrap();
    std::fs::write(suite.join("hello.json"), r#"{"stdout": "hello\n"}"#).unwrap();
    // Two links to the suite itself: found once, no endless walk.
    std::os::unix::fs::symlink(".", suite.join("again")).unwrap();
    std::os::unix::fs::symlink(".", suite.join("and-again")).unwrap();
    // A spec may not copy (and mount) a directory from outside the suite.
    std::fs::write(suite.join("escape.wasm"), p1_command(0)).unwrap();
    std::fs::write(
        suite.join("escape.json"),
        r#"{"dirs": ["../../../../../etc"]}"#,
    )
    .unwrap();
    // Nor through a link beside the test.
    std::fs::create_dir(root.path().join("private")).unwrap();
    std::os::unix::fs::symlink(root.path().join("private"), suite.join("linked.dir")).unwrap();
    std::fs::write(suite.join("linked.wasm"), p1_command(0)).unwrap();
    std::fs::write(suite.join("linked.json"), r#"{"dirs": ["linked.dir"]}"#).unwrap();
    let out = wasmproc_in(
        root.path(),
        &["wasi-testsuite", "tests/own/testsuite/wasm32-wasip1"],
    );
    let report = stdout(&out);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("test own/hello ") && l.ends_with("... ok")),
        "{report}{}",
        stderr(&out)
    );
    assert!(report.contains("running 3 tests"), "{report}");
    assert!(report.contains("must be a relative path"), "{report}");
    assert!(
        report.contains("a spec directory must be a directory beside the test, not a link"),
        "{report}"
    );
}

#[test]
fn validate_shows_a_core_modules_exports_as_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.wasm");
    std::fs::write(&file, p1_command(0)).unwrap();
    let out = wasmproc(&["validate", file.to_str().unwrap()]);
    let report = stdout(&out);
    assert!(report.contains("  _start: func\n"), "{report}");
    assert!(report.contains("  memory: memory 1\n"), "{report}");
    assert!(!report.contains("FuncType"), "{report}");
}

#[test]
fn deeply_nested_spawn_arguments_are_not_parsed_for_long() {
    let started = std::time::Instant::now();
    // Inside a mapping, as in a manifest: libyaml's scanner then works quadratically in the
    // depth (a bare `[[[...` is linear there), 45 s for 100,000.
    let deep = format!("{{a: {}", "[".repeat(100_000));
    let out = wasmproc(&["spawn", "wasmproc.yaml", "myns:compute_worker", &deep, "7"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // Not YAML within bounds, so text, which the number parameter refuses.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad_argument"), "{}", stderr(&out));
}

#[test]
fn test_walks_a_scenario_directory_with_links_to_itself_once() {
    let dir = tempfile::tempdir().unwrap();
    let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance/apps/seed.yaml")
        .canonicalize()
        .unwrap();
    std::fs::write(
        dir.path().join("product.yaml"),
        format!(
            "scenario: product\nmanifest: {}\nsteps:\n  - spawn: {{ entry: myns:compute_worker, args: [6, 7], as: w }}\n  - receive: {{ expect: {{ from: w, value: 42 }} }}\n",
            seed.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("a")).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("b")).unwrap();
    let out = wasmproc(&["test", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("running 1 test"), "{}", stdout(&out));
}

/// `wasmproc args...` from the repository root, its cache in `cache`, with `env` set.
fn wasmproc_cached(cache: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmproc"));
    command
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env_remove("WASMPROC_LOG")
        .env_remove("WASMPROC_MANIFEST")
        .env_remove("WASMPROC_CACHE")
        .env("WASMPROC_CACHE_DIR", cache);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("wasmproc runs")
}

const SPAWN_COMPUTE: &[&str] = &["spawn", "wasmproc.yaml", "myns:compute_worker", "6", "7"];

/// The files of the cache's engine directories (its compiled code).
fn cached_files(cache: &Path) -> Vec<std::path::PathBuf> {
    let Ok(dirs) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    dirs.flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
        .map(|e| e.path())
        .collect()
}

#[test]
fn the_second_spawn_loads_compiled_code_from_the_cache_and_clear_empties_it() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("compiled");
    let debug = [("WASMPROC_LOG", "wasmproc_runtime::code_cache=debug")];
    let first = wasmproc_cached(&cache, &debug, SPAWN_COMPUTE);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("\"value\":42"),
        "{}",
        stdout(&first)
    );
    assert!(
        stderr(&first).contains("compiled code kept"),
        "{}",
        stderr(&first)
    );
    let second = wasmproc_cached(&cache, &debug, SPAWN_COMPUTE);
    assert!(
        stdout(&second).contains("\"value\":42"),
        "{}",
        stdout(&second)
    );
    assert!(
        stderr(&second).contains("compiled code from the cache"),
        "{}",
        stderr(&second)
    );
    let info = wasmproc_cached(&cache, &[], &["cache", "info"]);
    assert!(stdout(&info).contains("entries: 1\n"), "{}", stdout(&info));
    assert!(stdout(&info).contains(&cache.display().to_string()));

    // Tampered with: refused with a warning, compiled again, and the guest still runs.
    let [artifact] = cached_files(&cache).try_into().unwrap();
    let mut bytes = std::fs::read(&artifact).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&artifact, bytes).unwrap();
    let tampered = wasmproc_cached(&cache, &[], SPAWN_COMPUTE);
    assert!(tampered.status.success(), "{}", stderr(&tampered));
    assert!(stdout(&tampered).contains("\"value\":42"));
    assert!(
        stderr(&tampered).contains("refused") && stderr(&tampered).contains("MAC"),
        "{}",
        stderr(&tampered)
    );
    // ...and replaced: the next run uses it, silently.
    let after = wasmproc_cached(&cache, &debug, SPAWN_COMPUTE);
    assert!(stderr(&after).contains("compiled code from the cache"));
    assert!(!stderr(&after).contains("WARN"), "{}", stderr(&after));

    let clear = wasmproc_cached(&cache, &[], &["cache", "clear"]);
    assert!(clear.status.success(), "{}", stderr(&clear));
    assert!(
        stdout(&clear).contains("removed 1 compiled binaries"),
        "{}",
        stdout(&clear)
    );
    assert!(cached_files(&cache).is_empty());
    let info = wasmproc_cached(&cache, &[], &["cache", "info"]);
    assert!(stdout(&info).contains("entries: 0\n"), "{}", stdout(&info));
}

#[test]
fn no_cache_and_wasmproc_cache_off_keep_nothing() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("compiled");
    let mut args = vec!["--no-cache"];
    args.extend_from_slice(SPAWN_COMPUTE);
    let flag = wasmproc_cached(&cache, &[], &args);
    assert!(stdout(&flag).contains("\"value\":42"), "{}", stderr(&flag));
    let off = wasmproc_cached(&cache, &[("WASMPROC_CACHE", "off")], SPAWN_COMPUTE);
    assert!(stdout(&off).contains("\"value\":42"), "{}", stderr(&off));
    assert!(!cache.exists(), "nothing written");
    let bad = wasmproc_cached(&cache, &[("WASMPROC_CACHE", "maybe")], SPAWN_COMPUTE);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("WASMPROC_CACHE"), "{}", stderr(&bad));
}

#[test]
fn an_unusable_cache_directory_warns_once_and_the_command_still_runs() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    // `wasmproc test` on scenarios that load several binaries, one with its own engine.
    let output = wasmproc_cached(
        &file.join("compiled"),
        &[],
        &[
            "test",
            "conformance/compute",
            "conformance/host/pool_one_slot.yaml",
            "--format",
            "terse",
        ],
    );
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let warnings = stderr(&output).matches("compiling without it").count();
    assert_eq!(warnings, 1, "{}", stderr(&output));
}

/// A component-model-async component, the kind WASI 0.3 toolchains emit, is described, not
/// called invalid.
#[test]
fn validate_describes_a_component_model_async_export() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("async.wasm");
    let bytes = wat::parse_str(
        r#"(component
  (core module $m
    (import "" "task.return" (func $task.return (param i32)))
    (func (export "callback") (param i32 i32 i32) (result i32) unreachable)
    (func (export "double") (param i32) (result i32)
      (call $task.return (i32.mul (local.get 0) (i32.const 2)))
      i32.const 0))
  (core func $task.return (canon task.return (result u32)))
  (core instance $i (instantiate $m
    (with "" (instance (export "task.return" (func $task.return))))))
  (func (export "double") async (param "n" u32) (result u32)
    (canon lift (core func $i "double") async (callback (core func $i "callback")))))"#,
    )
    .unwrap();
    std::fs::write(&file, bytes).unwrap();
    let out = wasmproc(&["validate", file.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["kind"], "component", "{report}");
    assert_eq!(
        report["exports"]["double"], "async func(n: u32) -> u32",
        "{report}"
    );
    assert_eq!(report["async_abi"], true, "{report}");
    let human = wasmproc(&["validate", file.to_str().unwrap()]);
    assert!(
        stdout(&human).contains("async:   uses the component model's async ABI"),
        "{}",
        stdout(&human)
    );
}

/// `wasmproc serve` as a user runs it on the demo manifest: the URL on the first line of
/// stderr, requests answered by the WASI 0.3 handler, SIGINT stops it with status 0; an entry
/// without a handler is refused with status 2, by kind.
#[test]
fn serve_answers_on_the_printed_url_and_stops_on_sigint() {
    use std::io::{Read, Write};
    let (mut server, first) =
        serve_started(&["serve", "myns:http_service", "--addr", "127.0.0.1:0"]);
    let address = served_address(&first);
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("\r\n\r\nhello"),
        "{response}"
    );
    let interrupted = Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a graceful stop");

    // Without an entry, the manifest's only http.endpoint (its addr overridden): it answers.
    let (mut declared, first) = serve_started(&["serve", "--addr", "127.0.0.1:0"]);
    assert!(
        first.starts_with("Serving HTTP on http://127.0.0.1:"),
        "{first}"
    );
    declared.kill().unwrap();
    declared.wait().unwrap();

    let refused = wasmproc(&["serve", "myns:greet", "--addr", "127.0.0.1:0"]);
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("error[missing_export]") && said.contains("exports no wasi:http handler"),
        "{said}"
    );
}

/// Reports CI systems read: JUnit XML and JSON, per scenario its outcome and time; a failure
/// names the scenario's file and step; a scenario marked `expect_failure` that fails is an
/// expected failure (skipped in JUnit, the run passes for it) and one that passes is a failure.
#[test]
fn test_writes_junit_and_json_reports_with_expected_failures() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/apps/fixtures.yaml");
    let scenario = |name: &str, extra: &str, value: u32| {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            format!(
                "scenario: {name}\nmanifest: {}\n{extra}steps:\n  - spawn: {{ entry: fixtures:compute_worker, args: [6, 7] }}\n  - receive: {{ expect: {{ value: {value} }} }}\n",
                manifest.display()
            ),
        )
        .unwrap();
    };
    scenario("passes", "", 42);
    scenario("fails", "", 41);
    scenario("known", "expect_failure: the worker multiplies\n", 41);
    scenario("fixed", "expect_failure: it used to fail\n", 42);
    let junit = dir.path().join("report.xml");
    let json = dir.path().join("report.json");
    let out = wasmproc(&[
        "test",
        dir.path().to_str().unwrap(),
        "--report",
        &format!("junit={}", junit.display()),
        "--report",
        &format!("json={}", json.display()),
    ]);
    assert_eq!(out.status.code(), Some(101), "{}", stdout(&out));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"tests="4" failures="2" skipped="1""#),
        "{xml}"
    );
    let failing = xml
        .split("<testcase")
        .find(|case| case.contains("/fails\""))
        .unwrap_or_else(|| panic!("{xml}"));
    assert!(
        failing.contains("<failure message=")
            && failing.contains("fails.yaml")
            && failing.contains("steps[1] (receive)"),
        "the failure names the file and the step: {failing}"
    );
    let known = xml
        .split("<testcase")
        .find(|c| c.contains("/known\""))
        .unwrap();
    assert!(
        known.contains(r#"<skipped message="expected failure: the worker multiplies"#),
        "{known}"
    );
    let fixed = xml
        .split("<testcase")
        .find(|c| c.contains("/fixed\""))
        .unwrap();
    assert!(
        fixed.contains("<failure") && fixed.contains("marked `expect_failure: it used to fail`"),
        "{fixed}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let suite = &report["results"][0];
    assert_eq!(
        (
            &suite["passed"],
            &suite["failed"],
            &suite["xfailed"],
            &suite["xpassed"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1)
        ),
        "{report}"
    );
    let bad = wasmproc(&[
        "test",
        dir.path().to_str().unwrap(),
        "--report",
        "xml=r.xml",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("expected junit=PATH or json=PATH"),
        "{}",
        stderr(&bad)
    );
}

/// `--partition K/N` splits the scenarios over N machines: each runs once, in exactly one
/// shard, and the shards are even; a malformed one is refused.
#[test]
fn test_partitions_scenarios_into_disjoint_even_shards() {
    let listed = |args: &[&str]| -> Vec<String> {
        let out = wasmproc(args);
        stdout(&out)
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_string)
            .collect()
    };
    let all = listed(&["test", "conformance", "--list"]);
    assert!(all.len() > 30, "{all:?}");
    let mut shards: Vec<Vec<String>> = (1..=3)
        .map(|k| {
            listed(&[
                "test",
                "conformance",
                "--partition",
                &format!("{k}/3"),
                "--list",
            ])
        })
        .collect();
    for shard in &shards {
        assert!(shard.len().abs_diff(all.len() / 3) <= 1, "{}", shard.len());
    }
    let mut union: Vec<String> = shards.concat();
    union.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(union, expected, "every scenario in exactly one shard");
    shards.dedup();
    assert_eq!(shards.len(), 3);
    let refused = wasmproc(&["test", "conformance", "--partition=4/3"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("expected K/N"),
        "{}",
        stderr(&refused)
    );
}

/// `--coverage` prints each requirement with what proves it; a requirement without a proof or
/// a scenario covering an unlisted ID is a problem (exit status 1).
#[test]
fn test_coverage_lists_proofs_and_gaps() {
    let ok = wasmproc(&["test", "conformance", "--coverage"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(
        stdout(&ok).contains("proved by: conformance/errors/hash_mismatch.yaml"),
        "{}",
        stdout(&ok)
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("REQUIREMENTS.md"),
        "| ID | Requirement | Rust tests |\n|---|---|---|\n| A-1 | proven | |\n| A-2 | not proven | |\n",
    )
    .unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/apps/fixtures.yaml");
    std::fs::write(
        dir.path().join("s.yaml"),
        format!(
            "scenario: s\ncovers: [A-1, B-7]\nmanifest: {}\nsteps: []\n",
            manifest.display()
        ),
    )
    .unwrap();
    let gaps = wasmproc(&["test", dir.path().to_str().unwrap(), "--coverage"]);
    assert_eq!(gaps.status.code(), Some(1));
    let said = stdout(&gaps);
    assert!(said.contains("problem: A-2 has no proof"), "{said}");
    assert!(
        said.contains("covers B-7, which REQUIREMENTS.md does not list"),
        "{said}"
    );
}

/// `wasmproc run`'s exit status mirrors the process: 0 when it returned, the guest's code when
/// it called `exit(n)`, 1 for another failure (its kind on stderr).
#[test]
fn run_exits_with_the_guests_code_and_1_for_another_failure() {
    let dir = tempfile::tempdir().unwrap();
    let trap = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
    )
    .unwrap();
    let mut manifest = String::from(
        "namespace: t\nentries:\n  - { name: bins, kind: fs.directory, directory: . }\n  - { name: host, kind: process.host, host: { workers: 1 } }\n  - { name: term, kind: terminal.host }\n",
    );
    for (name, bytes) in [
        ("ok", p1_command(0)),
        ("exit3", p1_command(3)),
        ("crash", trap),
    ] {
        std::fs::write(dir.path().join(format!("{name}.wasm")), &bytes).unwrap();
        manifest += &format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: {name}.wasm, hash: \"{}\", method: \"\", imports: [wasi:cli], meta: {{ command: {{ name: {name} }} }} }}\n",
            wasmproc_runtime::manifest::Digest::of(&bytes)
        );
    }
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, manifest).unwrap();
    let run = |name: &str| wasmproc(&["run", "--manifest", file.to_str().unwrap(), name]);

    let ok = run("ok");
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(stdout(&ok), "hello\n");
    let exit3 = run("exit3");
    assert_eq!(exit3.status.code(), Some(3), "{}", stderr(&exit3));
    assert_eq!(stdout(&exit3), "hello\n");
    assert!(
        stderr(&exit3).contains("error[exit_code]"),
        "{}",
        stderr(&exit3)
    );
    let crash = run("crash");
    assert_eq!(crash.status.code(), Some(1), "{}", stderr(&crash));
    assert!(stderr(&crash).contains("error[trap]"), "{}", stderr(&crash));
}

/// `wasmproc spawn` exits 1 for an EXIT carrying an error (printed as JSON, with its kind), and
/// when no EXIT comes within `--timeout`.
#[test]
fn spawn_exits_1_for_an_exit_with_an_error_and_when_no_exit_comes_in_time() {
    let out = wasmproc(&["spawn", "conformance/apps/host.yaml", "host:crash"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let exit: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(exit["type"], "EXIT", "{exit}");
    assert_eq!(exit["error"]["kind"], "trap", "{exit}");
    let out = wasmproc(&[
        "spawn",
        "--timeout",
        "300ms",
        "conformance/apps/host.yaml",
        "host:sleeper",
        "60000",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no EXIT from") && stderr(&out).contains("within 300ms"),
        "{}",
        stderr(&out)
    );
}

/// The EXIT `spawn` prints carries the process's accounting (`wall_time_ms`, `steps`, `yields`,
/// `peak_memory`, and `fuel_used` where fuel is counted: its manifest limits fuel somewhere)
/// and its captured stdout.
#[test]
fn the_printed_exit_carries_accounting_and_captured_output() {
    let out = wasmproc(&["spawn", "wasmproc.yaml", "myns:greet", "World"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exit: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(exit["stdout"], "Hello, World!\n", "{exit}");
    assert!(exit["wall_time_ms"].as_f64().unwrap() > 0.0, "{exit}");
    assert!(exit["steps"].as_u64().unwrap() >= 1, "{exit}");
    assert!(exit["yields"].is_u64(), "{exit}");
    assert!(exit["peak_memory"].as_u64().unwrap() > 0, "{exit}");
    // wasmproc.yaml limits no entry's fuel: not counted, not reported.
    assert!(exit.get("fuel_used").is_none(), "{exit}");

    let out = wasmproc(&["spawn", "conformance/apps/host.yaml", "host:spin_on_fuel"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let exit: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(exit["error"]["kind"], "limit_exceeded", "{exit}");
    assert!(exit["fuel_used"].as_u64().unwrap() > 0, "{exit}");
}

/// Without `--manifest`, `$WASMPROC_MANIFEST` names the manifest, wherever wasmproc runs.
#[test]
fn run_finds_the_manifest_through_wasmproc_manifest() {
    let elsewhere = tempfile::tempdir().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wasmproc.yaml")
        .canonicalize()
        .unwrap();
    let out = wasmproc_command(&["run", "greet", "World"])
        .current_dir(elsewhere.path())
        .env("WASMPROC_MANIFEST", &manifest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Hello, World!\n");
    let out = wasmproc_command(&["run", "greet", "World"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no wasmproc.yaml"),
        "{}",
        stderr(&out)
    );
}

/// A command needs a `process.host` as well as a `terminal.host`: without one, `run` exits 2
/// with `missing_host`, naming what is missing.
#[test]
fn run_refuses_a_manifest_without_a_process_host() {
    let dir = tempfile::tempdir().unwrap();
    let file = app_manifest(
        dir.path(),
        "greet.wasm",
        "  - { name: term, kind: terminal.host }\n  - { name: greet, kind: process.wasm, fs: bins, path: greet.wasm, hash: \"HASH\", method: greet, imports: [wasi:cli], meta: { command: { name: greet } } }\n",
    );
    let out = wasmproc(&[
        "run",
        "--manifest",
        file.to_str().unwrap(),
        "greet",
        "World",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("error[missing_host]") && err.contains("process.host"),
        "{err}"
    );
}

/// `serve --max-connections N` holds at most N connections open: a client past it is accepted,
/// and answered, only once an earlier connection closes.
#[test]
fn serve_accepts_past_max_connections_only_when_a_connection_closes() {
    use std::io::{Read, Write};
    use std::time::Duration;
    let (server, first) = serve_started(&[
        "serve",
        "myns:http_service",
        "--addr",
        "127.0.0.1:0",
        "--max-connections",
        "1",
        "--header-timeout",
        "60s",
    ]);
    // Stopped however the test ends, so that a failure does not leave it serving.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Stop(server);
    let address = served_address(&first);
    let idle = std::net::TcpStream::connect(&address).unwrap();
    // Let the server accept the idle connection first.
    std::thread::sleep(Duration::from_millis(300));
    let mut waiting = std::net::TcpStream::connect(&address).unwrap();
    waiting
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "answered while the only connection place was taken: {early:?}"
    );
    drop(idle);
    waiting
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut response = String::new();
    waiting.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// The sha256 `guests/build.sh` recorded for a committed guest, as a manifest's `hash`.
fn committed_hash(file: &str) -> String {
    let sums = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/dist/SHA256SUMS");
    let sums = std::fs::read_to_string(sums).unwrap();
    let line = sums
        .lines()
        .find(|line| line.ends_with(&format!("  {file}")))
        .unwrap_or_else(|| panic!("{file} in SHA256SUMS"));
    format!("sha256:{}", &line[..64])
}

#[test]
fn a_refused_connection_is_logged_at_warn_naming_the_entry_and_the_destination() {
    // Loopback, refused by the default policy: the listener must see nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/dist");
    let manifest = dir.path().join("net.yaml");
    std::fs::write(
        &manifest,
        format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: probe, kind: process.wasm, fs: bins, path: /net_probe.wasm, hash: \"{}\", method: tcp-exchange, imports: [wasi:sockets] }}\n",
            dist.display(),
            committed_hash("net_probe.wasm")
        ),
    )
    .unwrap();
    let out = wasmproc(&[
        "spawn",
        manifest.to_str().unwrap(),
        "t:probe",
        &address,
        "ping",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exit: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(exit["value"], serde_json::json!({ "err": "access-denied" }));
    let log = stderr(&out);
    let line = log
        .lines()
        .find(|line| line.contains("network policy refuses"))
        .unwrap_or_else(|| panic!("a log line for the refusal: {log}"));
    assert!(
        line.contains("WARN") && line.contains("entry `t:probe`") && line.contains(&address),
        "{line}"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the refused connection reached the listener"
    );
}

/// HTTP clients decide how many requests fail: the server's log says at most 20 failures a
/// second per service, then that the rest are counted (one line per failure let a client write
/// the log as fast as it could send).
#[test]
fn serve_logs_a_flood_of_failed_requests_within_its_budget() {
    use std::io::{BufRead, BufReader, Read, Write};
    /// Killed however the test ends: a server left running would hold the test's output open.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Server(
        wasmproc_command(&["serve", "myns:http_service", "--addr", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(server.0.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let address = served_address(&first);
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (threads, each) = (8, 25);
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..threads)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || {
                for _ in 0..each {
                    // Past max_memory (16 MiB): a 500 each.
                    let mut stream = std::net::TcpStream::connect(&address).unwrap();
                    stream
                        .write_all(b"GET /alloc HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                        .unwrap();
                    let mut response = String::new();
                    stream.read_to_string(&mut response).unwrap();
                    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let took = started.elapsed();
    drop(server);
    let log = log.join().unwrap();
    let lines = log.matches("request failed").count();
    let windows = took.as_secs() as usize + 2;
    assert!(
        (1..=20 * windows).contains(&lines) && lines < threads * each,
        "{lines} lines for {} failures in {took:?}",
        threads * each
    );
    if took < std::time::Duration::from_secs(5) {
        assert!(log.contains("the rest are counted, not logged"), "{log}");
    }
}

/// Started with a low soft open-files limit, the CLI raises it to the hard one (guests get 3/4
/// of it), and says so at `-v`.
#[test]
fn the_cli_raises_the_soft_open_files_limit_to_the_hard_one() {
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -Sn 256 && exec "$0" -v cache info"#)
        .arg(env!("CARGO_BIN_EXE_wasmproc"))
        .env("WASMPROC_CACHE_DIR", TEST_CACHE)
        .env_remove("WASMPROC_LOG")
        .output()
        .expect("sh runs");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hard = String::from_utf8(
        Command::new("sh")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let hard = hard.trim();
    if hard == "256" {
        eprintln!("the hard limit is 256: nothing to raise");
        return;
    }
    assert!(
        stderr.contains(&format!("raised from 256 to {hard}")),
        "{stderr}"
    );
}

/// A valid core module built to make Cranelift slow and hungry: its SSA construction costs
/// about (locals read) × (blocks they are read through). `locals` locals and `loops` loops,
/// each reading one local and writing another.
fn compile_bomb(locals: usize, loops: usize) -> Vec<u8> {
    let mut text = String::from("(module (func (export \"run\") (local");
    text.push_str(&" i32".repeat(locals));
    text.push(')');
    for i in 0..loops {
        let (read, write) = (i % locals, (i * 7919) % locals);
        text.push_str(&format!(" (loop (local.set {write} (local.get {read})))"));
    }
    text.push_str("))");
    wat::parse_str(&text).unwrap()
}

/// A hard limit on data the CLI inherited (`ulimit -d`), lower than `WASMPROC_COMPILE_MEMORY`,
/// is the one its compiler process gets (it cannot raise it): the refusal names that limit and
/// its figure. It named the variable and its 4 GiB before, which raising changed nothing.
#[test]
fn a_lower_inherited_data_limit_is_the_one_a_refused_compile_names() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bomb.wasm");
    std::fs::write(&file, compile_bomb(1000, 10_000)).unwrap();
    // 300 MiB in KiB: enough for the CLI itself, not for this compile (555 MB in a release
    // build).
    let out = Command::new("bash")
        .args(["-c", "ulimit -d 307200 && exec \"$0\" validate \"$1\""])
        .arg(env!("CARGO_BIN_EXE_wasmproc"))
        .arg(&file)
        .env("WASMPROC_CACHE_DIR", TEST_CACHE)
        .env("WASMPROC_COMPILE_MEMORY", "8GiB")
        .env_remove("WASMPROC_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("compiling needed more than 314572800 bytes of memory, the hard limit this process inherited (`ulimit -H -d`; WASMPROC_COMPILE_MEMORY is higher)"),
        "{report}"
    );
}

/// Attack: a 100 KB module (`compile_bomb(1000, 10_000)`) took 3.6 s and 555 MB to compile in
/// a release build, and a 5 MB one (50,000 locals, 500,000 loops) took `wasmproc validate` to
/// 24 GB, all of this machine's memory, until the kernel killed it after 221 s (2026-12-07).
/// Binaries are now compiled in a child process under the compile limits: past either, the
/// binary is refused, naming the limit and how to raise it. Each failed before (the module
/// was reported valid once compiled).
#[test]
fn a_binary_whose_compile_exceeds_the_compile_limits_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bomb.wasm");
    std::fs::write(&file, compile_bomb(1000, 10_000)).unwrap();
    let validate = |variable: &str, value: &str| {
        wasmproc_command(&["validate", file.to_str().unwrap()])
            .env(variable, value)
            .output()
            .unwrap()
    };
    let out = validate("WASMPROC_COMPILE_MEMORY", "64MiB");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(report.contains("valid:   no"), "{report}");
    assert!(
        report
            .contains("not compiled (module): compiling needed more than 67108864 bytes of memory")
            && report.contains("WASMPROC_COMPILE_MEMORY"),
        "{report}"
    );

    let out = validate("WASMPROC_COMPILE_CPU_SECONDS", "1");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("compiling took more than 1 s of CPU time")
            && report.contains("WASMPROC_COMPILE_CPU_SECONDS"),
        "{report}"
    );

    // A manifest's entry naming it is refused at its spawn, with the same reason.
    let bytes = std::fs::read(&file).unwrap();
    let manifest = dir.path().join("bomb.yaml");
    std::fs::write(
        &manifest,
        format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: bomb, kind: process.wasm, fs: bins, path: bomb.wasm, hash: \"{}\", method: run }}\n",
            dir.path().display(),
            wasmproc_runtime::manifest::Digest::of(&bytes)
        ),
    )
    .unwrap();
    let out = wasmproc_command(&["--no-cache", "spawn", manifest.to_str().unwrap(), "t:bomb"])
        .env("WASMPROC_COMPILE_MEMORY", "64MiB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error[invalid_binary]")
            && stderr(&out).contains("could not be compiled: compiling needed more than"),
        "{}",
        stderr(&out)
    );

    // A binary within the limits compiles as before, and a bad limit is a clear refusal.
    let small = dir.path().join("small.wasm");
    std::fs::write(&small, compile_bomb(10, 10)).unwrap();
    let out = wasmproc_command(&["validate", small.to_str().unwrap()])
        .env("WASMPROC_COMPILE_MEMORY", "64MiB")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = validate("WASMPROC_COMPILE_CPU_SECONDS", "soon");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("WASMPROC_COMPILE_CPU_SECONDS"),
        "{}",
        stderr(&out)
    );
}

/// A compile stopped by a limit ends its compiler process by a signal whose default action
/// dumps core: where core files are on (`ulimit -c unlimited`), each refusal wrote the
/// compiler's memory (tens of MiB here, gigabytes at the default limit) into the current
/// directory. The compiler process turns core files off.
#[test]
fn a_compile_stopped_by_a_limit_leaves_no_core_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bomb.wasm"), compile_bomb(1000, 10_000)).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        // Where the hard limit forbids core files, there are none to find anyway.
        .arg("ulimit -c unlimited 2>/dev/null; exec \"$0\" validate bomb.wasm")
        .arg(env!("CARGO_BIN_EXE_wasmproc"))
        .current_dir(dir.path())
        .env("WASMPROC_CACHE_DIR", TEST_CACHE)
        .env("WASMPROC_COMPILE_MEMORY", "64MiB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("compiling needed more than"),
        "{}",
        stdout(&out)
    );
    let cores: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("core"))
        .collect();
    assert!(cores.is_empty(), "core files: {cores:?}");
}

/// Names a third-party binary chooses, built to act on a terminal: retitle the window (OSC 0),
/// clear the screen, colour, a carriage return, a newline that forges the report's verdict,
/// the 8-bit escape sequence introducer (U+009B) and a right-to-left override.
const HOSTILE_NAME: &str =
    r"run\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31m\r\nvalid:   yes\u{9b}2J\u{202e}";

/// Whether `text` holds a character the hostile names above would act on a terminal with.
fn acts_on_a_terminal(text: &str) -> bool {
    text.contains(['\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}'])
}

/// Attack (2026-12-07): `wasmproc validate`, the command for third-party binaries, printed their
/// export and import names raw: a binary could clear the reader's screen, retitle the window,
/// and forge the report's lines (`valid:   yes` on a line of its own, for a binary that is not
/// valid). Each control character is now shown escaped, in the text and the JSON report.
#[test]
fn validate_shows_a_binarys_names_with_their_control_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("names.wasm");
    let text = format!(
        r#"(module (import "env{HOSTILE_NAME}" "x" (func)) (func (export "{HOSTILE_NAME}") (result i32) i32.const 1))"#
    );
    std::fs::write(&file, wat::parse_str(text).unwrap()).unwrap();
    let out = wasmproc(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(!acts_on_a_terminal(&report), "{report:?}");
    assert_eq!(
        report
            .lines()
            .filter(|l| l.starts_with("valid:"))
            .collect::<Vec<_>>(),
        ["valid:   no"],
        "{report}"
    );
    assert!(
        report.contains(r"run\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31m\u{d}\u{a}valid:   yes\u{9b}2J\u{202e}: func (result i32)"),
        "{report}"
    );

    let out = wasmproc(&["validate", "--json", file.to_str().unwrap()]);
    let json = stdout(&out);
    assert!(!acts_on_a_terminal(&json), "{json:?}");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let name = HOSTILE_NAME
        .replace(r"\u{1b}", "\u{1b}")
        .replace(r"\u{7}", "\u{7}")
        .replace(r"\r", "\r")
        .replace(r"\n", "\n")
        .replace(r"\u{9b}", "\u{9b}")
        .replace(r"\u{202e}", "\u{202e}");
    assert!(
        parsed["exports"].get(&name).is_some(),
        "the JSON report keeps the name itself: {json}"
    );
}

/// Attack (2026-12-07): a trap's message quotes the binary's name section (its backtrace), and
/// `wasmproc test` printed a failing scenario's message raw, `wasmproc spawn` its EXIT with the
/// 8-bit controls and overrides JSON leaves unescaped: a guest under test wrote to the
/// terminal of whoever ran the tests. Both now escape them.
#[test]
fn a_guests_trap_reaches_the_terminal_with_its_control_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let binary = wat::parse_str(format!(
        r#"(module (@name "m{HOSTILE_NAME}")
             (func $inner (@name "f{HOSTILE_NAME}") (result i32) unreachable)
             (func (export "run") (result i32) call $inner))"#
    ))
    .unwrap();
    std::fs::write(dir.path().join("trap.wasm"), &binary).unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: trap, kind: process.wasm, fs: bins, path: trap.wasm, hash: \"{}\", method: run }}\n",
            dir.path().display(),
            wasmproc_runtime::manifest::Digest::of(&binary)
        ),
    )
    .unwrap();
    let manifest = dir.path().join("m.yaml");
    let out = wasmproc(&["spawn", manifest.to_str().unwrap(), "t:trap"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let exit = stdout(&out);
    assert!(!acts_on_a_terminal(&exit), "{exit:?}");
    let parsed: serde_json::Value = serde_json::from_str(&exit).unwrap();
    // The backtrace's names are escaped in the message itself (`a_trap_backtrace_keeps_each_
    // frame_on_its_line_whatever_the_names`).
    assert!(
        parsed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(r"\u{1b}]0;pwned") && m.contains(r"\u{9b}")),
        "{exit}"
    );

    std::fs::write(
        dir.path().join("trap_test.yaml"),
        "scenario: a trap quoting hostile names\nmanifest: m.yaml\nsteps:\n  - spawn: { entry: t:trap, host: t:host, as: w }\n  - receive: { timeout: 10s, expect: { type: EXIT, from: w, value: 1 } }\n",
    )
    .unwrap();
    // As on a terminal: libtest's output keeps escape sequences only when it colours.
    let out = wasmproc_command(&["test", dir.path().join("trap_test.yaml").to_str().unwrap()])
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    let report = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(101), "{report}");
    assert!(report.contains("wasm trap"), "{report}");
    for planted in [
        "\u{1b}]0;",
        "\u{1b}[2J",
        "\u{7}",
        "\r",
        "\u{9b}",
        "\u{202e}",
    ] {
        assert!(!report.contains(planted), "{planted:?} in {report:?}");
    }
}

/// Attack (2026-12-07): `validate` spelled each export's type out whole, so a type used twice
/// by the next, and so on, doubled at each level: a 1.4 KB component (one export, 2^17 copies
/// of a record with a 1,000-byte field name) had a 134 MB report, and with longer names the
/// report took all the memory. A signature is now spelled to 16 KiB, marked where it was cut,
/// and a report spells 1 MiB of signatures in all (exports may share one type).
#[test]
fn validate_spells_a_type_that_doubles_at_each_level_within_a_bound() {
    let mut text = format!(
        r#"(component (type $r (record (field "{}" u8))) (export $t0 "r" (type $r))"#,
        "a".repeat(1_000)
    );
    // 2^12 copies a signature, 80 exports: wasmparser bounds a component's types to 1,000,000
    // nodes in all, but not the names they repeat.
    for k in 1..=12 {
        text.push_str(&format!(" (type $t{k} (tuple $t{} $t{}))", k - 1, k - 1));
    }
    text.push_str(
        r#"(core module $m (memory (export "mem") 1)
             (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 0)
             (func (export "f") (param i32)))
           (core instance $i (instantiate $m))
           (type $f (func (param "x" $t12)))"#,
    );
    // As many exports of that type as bring the report's signatures past their bound.
    for i in 0..80 {
        text.push_str(&format!(
            r#" (func (export "f{i:02}") (type $f)
                 (canon lift (core func $i "f") (memory (core memory $i "mem"))
                   (realloc (core func $i "realloc"))))"#
        ));
    }
    text.push(')');
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doubling.wasm");
    std::fs::write(&file, wat::parse_str(&text).unwrap()).unwrap();
    let out = wasmproc(&["validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("  f00: func(x: tuple<tuple<") && report.contains("… (cut at 16384 bytes)"),
        "{}",
        &report[..300]
    );
    assert!(
        report.contains("  f79: … (not shown: this report spelled 1048576 bytes of signatures)"),
        "{}",
        &report[report.len() - 300..]
    );
    assert!(report.len() < 1_100_000, "{} bytes", report.len());
}

/// `validate` says a binary needing more memories or tables than a process may hold cannot
/// run (it said `valid: yes` of one with 7 memories, which every spawn then refused).
#[test]
fn validate_refuses_a_binary_that_needs_more_than_a_process_may_hold() {
    let instances: String = (0..7)
        .map(|i| format!("(core instance $m{i} (instantiate $memory)) "))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("memories.wasm");
    std::fs::write(
        &file,
        wat::parse_str(format!(
            r#"(component (core module $memory (memory (export "m") 1)) {instances})"#
        ))
        .unwrap(),
    )
    .unwrap();
    let out = wasmproc(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("valid:   no")
            && report.contains("a process holds at most 2 linear memories")
            && report.contains("it needs 7 linear memories"),
        "{report}"
    );
}
