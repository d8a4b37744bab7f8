//! The official WASI test suite (WebAssembly/wasi-testsuite, `prod/testsuite-base` layout) run
//! through the wasmproc runtime: every `NAME.wasm` below the given directories is one trial,
//! with the spec in `NAME.json` beside it (none: it must exit 0).
//!
//! Spec fields: `args` (list), `env` (map), `dirs` (directories beside the test, preopened under
//! their own name), `root` (a directory preopened as `/`), `exit_code` (default 0), `stdout`,
//! `stderr` (exact when given); or the operations form, so far a `run` (`args`, `env`, `root`)
//! then a `wait` (`exit_code`), with `proposals` (`http` grants `wasi:http`, `sockets` a
//! loopback network policy). A directory's `manifest.json` `name` prefixes its trials. Known
//! failures live in an expectations file: `{ "skip": [names], "fail": [names] }`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Failed, Trial};

use crate::endpoint_server::{EndpointServer, ServerSpec};
use crate::suite_report::{Outcome, SuiteReport};
use live::LiveOp;
use serde::Deserialize;
use service::HttpRequest;
mod live;
mod service;

use wasmproc_runtime::printable::printable_lines;
use wasmproc_runtime::{Event, Loader, Mailbox, Manifest, Runtime, SpawnOptions, Stdio, Value};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    dirs: Vec<String>,
    #[serde(default)]
    root: Option<String>,
    #[serde(default)]
    exit_code: i32,
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stderr: Option<String>,
    /// The operations form (the suite's `test_case.py`): a script of steps instead of the
    /// fields above, with the proposals and world the test needs.
    #[serde(default)]
    operations: Option<Vec<Operation>>,
    #[serde(default)]
    proposals: Vec<String>,
    #[serde(default)]
    world: Option<String>,
    /// HTTP servers for the guest's outgoing requests, started before the run.
    #[serde(default)]
    servers: Vec<ServerSpec>,
    /// A `wasi:http/service` test: its binary is served, and `requests` are sent to it.
    #[serde(skip)]
    service: bool,
    #[serde(skip)]
    requests: Vec<HttpRequest>,
    /// A command's steps while it runs (stdio, sockets); none: it just runs to its end.
    #[serde(skip)]
    live: Vec<LiveOp>,
}

/// One step of an operations-form spec. Supported: `run` then `wait` (a command), and for a
/// service `run`, `request`s, `kill` and `wait`; live stdio and sockets are not yet.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Operation {
    Request(HttpRequest),
    // Live steps: their fields are read as a `LiveOp`.
    Read {},
    Write {},
    Connect {},
    Send {},
    Recv {},
    Kill {
        #[serde(default = "sigterm")]
        signal: String,
    },
    Run {
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default)]
        root: Option<String>,
    },
    Wait {
        #[serde(default)]
        exit_code: i32,
    },
    #[serde(other)]
    Unsupported,
}

fn sigterm() -> String {
    "SIGTERM".into()
}

/// The world of commands, the default.
const COMMAND_WORLD: &str = "wasi:cli/command";

/// The world of HTTP handlers, which `wasmproc serve` serves.
const SERVICE_WORLD: &str = "wasi:http/service";

impl Spec {
    /// The spec in the fields form: an operations-form spec of `run` then `wait` becomes its
    /// fields; anything else the runner cannot do yet is said by name.
    fn normalized(mut self, raw: &serde_json::Value) -> Result<Spec, String> {
        match self.world.as_deref() {
            None | Some(COMMAND_WORLD) => {}
            Some(SERVICE_WORLD) => self.service = true,
            Some(world) => {
                return Err(format!(
                    "world `{world}` is not supported (only {COMMAND_WORLD} and {SERVICE_WORLD})"
                ))
            }
        }
        for server in &self.servers {
            server.check()?;
        }
        let Some(operations) = self.operations.take() else {
            if self.service {
                return Err(format!("a {SERVICE_WORLD} test needs `operations`"));
            }
            return Ok(self);
        };
        let legacy = [
            "args",
            "env",
            "dirs",
            "root",
            "exit_code",
            "stdout",
            "stderr",
        ];
        if let Some(field) = legacy.iter().find(|f| raw.get(**f).is_some()) {
            return Err(format!("`operations` and `{field}` cannot be mixed"));
        }
        let names = || {
            raw["operations"]
                .as_array()
                .map(|ops| {
                    ops.iter()
                        .map(|op| op["type"].as_str().unwrap_or("?").to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let unsupported = || {
            let supported = if self.service {
                "run, request..., kill (SIGINT or SIGTERM), wait"
            } else {
                "run, then read, write, connect, send or recv, then wait"
            };
            format!(
                "operations [{}] are not supported yet (only {supported})",
                names()
            )
        };
        let [Operation::Run { args, env, root }, middle @ .., Operation::Wait { exit_code }] =
            operations.as_slice()
        else {
            return Err(unsupported());
        };
        self.args = args.clone();
        self.env = env.clone();
        self.root = root.clone();
        self.exit_code = *exit_code;
        // A command runs to its end, its live steps (if any) on the way; a service answers
        // requests until it is stopped.
        if !self.service {
            // The steps between `run` and `wait`, as written.
            let raw_middle = raw["operations"]
                .as_array()
                .map_or(&[][..], |ops| &ops[1..ops.len() - 1]);
            for (op, raw) in middle.iter().zip(raw_middle) {
                match op {
                    Operation::Read {}
                    | Operation::Write {}
                    | Operation::Connect {}
                    | Operation::Send {}
                    | Operation::Recv {} => self
                        .live
                        .push(LiveOp::deserialize(raw).map_err(|e| format!("{}: {e}", raw))?),
                    _ => return Err(unsupported()),
                }
            }
            return Ok(self);
        }
        let requests = match middle {
            [requests @ .., Operation::Kill { signal }]
                if self.service && matches!(signal.as_str(), "SIGINT" | "SIGTERM") =>
            {
                requests
            }
            _ => return Err(unsupported()),
        };
        for request in requests {
            match request {
                Operation::Request(request) => self.requests.push(request.clone()),
                _ => return Err(unsupported()),
            }
        }
        Ok(self)
    }
}

/// Known gaps, by trial name: skipped, or expected to fail (a pass is then reported).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    #[serde(default)]
    pub skip: BTreeSet<String>,
    #[serde(default)]
    pub fail: BTreeSet<String>,
}

impl Expectations {
    /// Reads an expectations file: the suite's own TOML form (a `.toml` file, as its runner's
    /// `expectations/<runtime>/<os>.toml`), or wasmproc's JSON `{ "skip": [..], "fail": [..] }`.
    pub fn load(path: &Path) -> Result<Expectations, String> {
        let text = wasmproc_runtime::source_file::read_text(path, SPEC_MAX_BYTES)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let parsed = if path.extension().is_some_and(|e| e == "toml") {
            Expectations::from_toml(&text)
        } else {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The suite runner's form: `version = 1`, then `[[suite]]` tables with a `name` and
    /// `[[suite.test]]` tables of `name` with `expected = "fail"` (or `"pass"`) or
    /// `action = "skip"`.
    fn from_toml(text: &str) -> Result<Expectations, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            version: u32,
            #[serde(default)]
            suite: Vec<Suite>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Suite {
            name: String,
            #[serde(default)]
            test: Vec<Test>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Test {
            name: String,
            expected: Option<String>,
            action: Option<String>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.version != 1 {
            return Err(format!(
                "version {} is not supported (only 1)",
                file.version
            ));
        }
        let mut expectations = Expectations::default();
        for suite in file.suite {
            for test in suite.test {
                let name = format!("{}/{}", suite.name, test.name);
                match (test.action.as_deref(), test.expected.as_deref()) {
                    (Some("skip"), _) => expectations.skip.insert(name),
                    (None, Some("fail")) => expectations.fail.insert(name),
                    (None, Some("pass") | None) => false,
                    (Some(action), _) => {
                        return Err(format!("{name}: unknown action `{action}` (only skip)"))
                    }
                    (None, Some(expected)) => {
                        return Err(format!(
                            "{name}: unknown expectation `{expected}` (pass or fail)"
                        ))
                    }
                };
            }
        }
        Ok(expectations)
    }
}

/// The largest spec, expectations or suite manifest JSON file read.
const SPEC_MAX_BYTES: u64 = 1 << 20;

/// One trial per test found below `dirs`, keeping compiled code in the cache `cache` names.
pub fn trials(
    dirs: &[PathBuf],
    expectations: Expectations,
    cache: &wasmproc_runtime::code_cache::CacheConfig,
    report: &SuiteReport,
) -> Result<Vec<Trial>, String> {
    let loader = crate::shared_loader(cache)?;
    let mut trials = Vec::new();
    for dir in dirs {
        // Absolute: each test runs with a manifest written in a scratch directory, where a
        // relative path would mean something else.
        let dir = &std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Every `*.wasm` file; its `.json` spec beside it is optional (the suite's runner
        // defaults a missing one to "exits 0").
        let tests = wasmproc_runtime::file_tree::files_below(dir, &mut |path| {
            Ok(path.extension().is_some_and(|e| e == "wasm"))
        })
        .map_err(|e| format!("{}: {e}", dir.display()))?;
        for wasm in tests {
            let suite = suite_name(wasm.parent().unwrap_or(dir));
            let stem = wasm
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("test")
                .to_string();
            let name = format!("{suite}/{stem}");
            let ignored = expectations.skip.contains(&name);
            let must_fail = expectations.fail.contains(&name);
            let loader = loader.clone();
            let report = report.clone();
            if ignored {
                report.record(&suite, &stem, Outcome::Skipped, Duration::ZERO, None);
            }
            trials.push(
                Trial::test(name, move || {
                    let started = std::time::Instant::now();
                    let outcome = run(&wasm, &loader);
                    let (result, kind) = match (must_fail, outcome) {
                        (false, Ok(())) => (Ok(()), Outcome::Passed),
                        (false, Err(e)) => (Err(e), Outcome::Failed),
                        (true, Err(_)) => (Ok(()), Outcome::Xfailed),
                        (true, Ok(())) => (
                            Err("passed, but the expectations file lists it under `fail`".into()),
                            Outcome::Xpassed,
                        ),
                    };
                    let failure = result.as_ref().err().cloned();
                    report.record(&suite, &stem, kind, started.elapsed(), failure);
                    // Shown on a terminal: it may quote a guest's output.
                    result.map_err(|e| Failed::from(printable_lines(&e).to_string()))
                })
                .with_ignored_flag(ignored),
            );
        }
    }
    Ok(trials)
}

/// The `name` in the directory's manifest.json, else the directory's own name.
fn suite_name(dir: &Path) -> String {
    #[derive(Deserialize)]
    struct SuiteManifest {
        name: String,
    }
    wasmproc_runtime::source_file::read_text(&dir.join("manifest.json"), SPEC_MAX_BYTES)
        .ok()
        .and_then(|t| serde_json::from_str::<SuiteManifest>(&t).ok())
        .map(|m| m.name)
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

fn run(wasm: &Path, loader: &Arc<Loader>) -> Result<(), String> {
    let spec_path = wasm.with_extension("json");
    let mut spec: Spec = match wasmproc_runtime::source_file::read_text(&spec_path, SPEC_MAX_BYTES)
    {
        Ok(text) => {
            let bad = |e: String| format!("{}: {e}", spec_path.display());
            let raw: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            Spec::deserialize(&raw)
                .map_err(|e| bad(e.to_string()))?
                .normalized(&raw)
                .map_err(bad)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Spec::default(),
        Err(e) => return Err(format!("{}: {e}", spec_path.display())),
    };
    // Spec directories are names beside the test: they are copied, and mounted under their
    // own name, so a path out (`..`, `/etc`) would copy and expose a host directory.
    for dir in spec.dirs.iter().chain(&spec.root) {
        crate::confined::check_path(dir).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    }
    let bytes = wasmproc_runtime::source_file::read_bytes(wasm, wasmproc_runtime::MAX_BINARY_BYTES)
        .map_err(|e| format!("{}: {e}", wasm.display()))?;
    let test_dir = wasm.parent().unwrap_or(Path::new("."));
    // Tests may write into their directories: each run gets copies.
    let scratch = crate::scratch::ScratchDir::new().map_err(|e| e.to_string())?;
    let mut mounts = Vec::new();
    for dir in &spec.dirs {
        mounts.push((
            copy_spec_dir(&test_dir.join(dir), &scratch.path().join(dir))?,
            format!("/{dir}"),
        ));
    }
    if let Some(root) = &spec.root {
        mounts.push((
            copy_spec_dir(&test_dir.join(root), &scratch.path().join("root"))?,
            "/".into(),
        ));
    }
    // The spec's servers, their addresses in the guest's environment (as HTTP_SERVER_<NAME>);
    // they stop when the test ends.
    let mut servers = Vec::new();
    for server in &spec.servers {
        let started =
            EndpointServer::start(server).map_err(|e| format!("cannot start a server: {e}"))?;
        spec.env.insert(server.env_var(), started.address());
        servers.push(started);
    }
    let manifest = manifest(wasm, &bytes, &spec, &mounts);
    let manifest = Manifest::parse(&manifest, &scratch.path().join("wasi-testsuite.yaml"))
        .map_err(|e| e.to_string())?;
    let runtime = Runtime::new(manifest, loader.clone());
    if spec.service {
        return service::run(&runtime, &test_entry(wasm), &spec.requests, spec.exit_code);
    }
    if !spec.live.is_empty() {
        let (exit, mut problems) = live::run(&runtime, &test_entry(wasm), &spec.live)?;
        let code = exit_code(&exit).map_err(|e| {
            problems.push(e);
            problems.join("; ")
        })?;
        if code != spec.exit_code {
            problems.push(format!("exit code {code}, expected {}", spec.exit_code));
        }
        return if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        };
    }
    let mut mailbox = Mailbox::new();
    let options = SpawnOptions {
        stdio: Stdio::Capture,
        ..SpawnOptions::default()
    };
    runtime
        .spawn_with(&test_entry(wasm), "wts:host", &[], &options, Some(&mailbox))
        .map_err(|e| e.kinded().to_string())?;
    let Some(exit) = mailbox
        .receive_blocking(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?
        .and_then(Event::into_exit)
    else {
        return Err("no EXIT within 60 s".into());
    };
    let output = exit.output.clone().unwrap_or_default();
    let code = exit_code(&exit)?;
    let mut problems = Vec::new();
    if code != spec.exit_code {
        problems.push(format!("exit code {code}, expected {}", spec.exit_code));
    }
    for (stream, want, got) in [
        ("stdout", &spec.stdout, &output.stdout),
        ("stderr", &spec.stderr, &output.stderr),
    ] {
        if let Some(want) = want {
            if want != got {
                problems.push(format!("{stream} {got:?}, expected {want:?}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The exit status a command's EXIT stands for, or the error that ended it without one.
fn exit_code(exit: &wasmproc_runtime::Exit) -> Result<i32, String> {
    match &exit.outcome {
        // A command's `run` that returns `err` exits with 1, as under wasmtime's CLI.
        Ok(value) if *value == serde_json::json!({ "err": null }) => Ok(1),
        Ok(_) => Ok(0),
        Err(e) => match e.code {
            Some(code) => Ok(code),
            // What the guest said before it trapped (a Rust test's panic message) is the
            // reason a reader wants.
            None => {
                let stderr = exit.output.as_ref().map_or("", |o| o.stderr.as_str());
                Err(format!("{}{}", e.kinded(), stderr_tail(stderr)))
            }
        },
    }
}

/// The end of a test's stderr, to show beside its failure.
fn stderr_tail(stderr: &str) -> String {
    const SHOWN: usize = 2048;
    if stderr.is_empty() {
        return String::new();
    }
    let start = stderr.len().saturating_sub(SHOWN);
    let start = (start..stderr.len())
        .find(|&i| stderr.is_char_boundary(i))
        .unwrap_or(stderr.len());
    format!(
        "\nstderr (its last {SHOWN} bytes at most):\n{}",
        &stderr[start..]
    )
}

/// The test's entry, named after its binary's file: the name is the guest's `argv[0]`, which
/// the suite's tests expect to be the file's name (as under wasmtime's CLI).
fn test_entry(wasm: &Path) -> String {
    format!("wts:{}", file_name(wasm))
}

fn file_name(wasm: &Path) -> String {
    wasm.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A manifest with the test as [`test_entry`] (every WASI family granted), its env in a static
/// storage and its directories mounted.
fn manifest(wasm: &Path, bytes: &[u8], spec: &Spec, mounts: &[(PathBuf, String)]) -> String {
    let quote = |s: &str| Value::String(s.to_string()).to_string();
    let mut yaml = String::from("namespace: wts\nentries:\n");
    yaml += "  - { name: host, kind: process.host }\n";
    yaml += &format!(
        "  - {{ name: bins, kind: fs.directory, directory: {} }}\n",
        quote(
            &wasm
                .parent()
                .unwrap_or(Path::new("."))
                .display()
                .to_string()
        )
    );
    let values: Vec<String> = spec
        .env
        .iter()
        .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
        .collect();
    yaml += &format!(
        "  - {{ name: env, kind: env.storage.static, values: {{ {} }} }}\n",
        values.join(", ")
    );
    for (i, key) in spec.env.keys().enumerate() {
        yaml += &format!(
            "  - {{ name: var{i}, kind: env.variable, variable: {}, storage: env }}\n",
            quote(key)
        );
    }
    for (i, (host, _)) in mounts.iter().enumerate() {
        yaml += &format!(
            "  - {{ name: dir{i}, kind: fs.directory, directory: {} }}\n",
            quote(&host.display().to_string())
        );
    }
    let env: Vec<String> = spec
        .env
        .keys()
        .enumerate()
        .map(|(i, key)| format!("{{ id: var{i}, name: {} }}", quote(key)))
        .collect();
    let dirs: Vec<String> = mounts
        .iter()
        .enumerate()
        .map(|(i, (_, guest))| format!("{{ fs: dir{i}, guest: {} }}", quote(guest)))
        .collect();
    let args: Vec<String> = spec.args.iter().map(|a| quote(a)).collect();
    // The `http` proposal adds its interfaces.
    let http = if spec.proposals.iter().any(|p| p == "http") {
        ", wasi:http"
    } else {
        ""
    };
    // The `sockets` proposal: loopback and the unspecified addresses, on any port, to connect,
    // send, bind and listen; the `http` proposal: requests to loopback (the spec's servers).
    // wasmtime's adapter inherits the host's network; the suite's tests need no more.
    let local = ["127.0.0.0/8", "[::1]", "0.0.0.0", "[::]"];
    let rules = |schemes: &[&str]| -> Vec<String> {
        schemes
            .iter()
            .flat_map(|scheme| local.iter().map(move |ip| format!("\"{scheme}://{ip}:*\"")))
            .collect()
    };
    let has = |proposal: &str| spec.proposals.iter().any(|p| p == proposal);
    let mut allow = Vec::new();
    let mut listen = Vec::new();
    if has("sockets") {
        allow.extend(rules(&["tcp", "udp"]));
        listen.extend(rules(&["tcp", "udp"]));
    }
    if has("http") {
        allow.extend(rules(&["http"]));
    }
    let network = if allow.is_empty() {
        String::new()
    } else {
        format!(
            "\n    network: {{ allow: [{}], listen: [{}] }}",
            allow.join(", "),
            listen.join(", ")
        )
    };
    yaml += &format!(
        "  - name: {}\n    kind: process.wasm\n    fs: bins\n    path: {}\n    hash: {}\n    method: \"\"\n    imports: [wasi:cli, wasi:clocks, wasi:filesystem, wasi:random, wasi:sockets{http}]{network}\n    wasi: {{ args: [{}], env: [{}], mounts: [{}] }}\n",
        quote(&file_name(wasm)),
        quote(&file_name(wasm)),
        quote(&wasmproc_runtime::manifest::Digest::of(bytes).to_string()),
        args.join(", "),
        env.join(", "),
        dirs.join(", ")
    );
    yaml
}

/// Copies a spec's directory, with its symlinks as symlinks (the guest's sandbox keeps it from
/// following those out). The directory itself must not be a link: copying it would copy
/// wherever it points, e.g. a host directory, and show it to the test.
fn copy_spec_dir(from: &Path, to: &Path) -> Result<PathBuf, String> {
    let metadata =
        std::fs::symlink_metadata(from).map_err(|e| format!("{}: {e}", from.display()))?;
    if !metadata.is_dir() {
        return Err(format!(
            "{}: a spec directory must be a directory beside the test, not a link or a file",
            from.display()
        ));
    }
    copy_dir(from, to)
}

fn copy_dir(from: &Path, to: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(link, &target).map_err(|e| e.to_string())?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| format!("{}: {e}", target.display()))?;
        } else {
            // A FIFO would block the copy; a device would never end.
            return Err(format!("{}: not a regular file", entry.path().display()));
        }
    }
    Ok(to.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<Spec, String> {
        let raw: serde_json::Value = serde_json::from_str(json).unwrap();
        Spec::deserialize(&raw)
            .map_err(|e| e.to_string())?
            .normalized(&raw)
    }

    #[test]
    fn the_suite_runners_toml_expectations_are_read() {
        let text = r#"
version = 1

[[suite]]
name = "WASI Rust tests [wasm32-wasip3]"

# A comment, as in the suite's files.
[[suite.test]]
name = "http-service-uri"
expected = "fail"

[[suite.test]]
name = "cli-env"
action = "skip"

[[suite.test]]
name = "random"
expected = "pass"
"#;
        let expectations = Expectations::from_toml(text).unwrap();
        let suite = "WASI Rust tests [wasm32-wasip3]";
        assert_eq!(
            expectations.fail.into_iter().collect::<Vec<_>>(),
            [format!("{suite}/http-service-uri")]
        );
        assert_eq!(
            expectations.skip.into_iter().collect::<Vec<_>>(),
            [format!("{suite}/cli-env")]
        );
        for (bad, reason) in [
            ("version = 2", "version 2"),
            ("version = 1\n[[suite]]\nname = \"s\"\n[[suite.test]]\nname = \"t\"\naction = \"run\"", "unknown action `run`"),
            ("version = 1\n[[suite]]\nname = \"s\"\n[[suite.test]]\nname = \"t\"\nexpected = \"flaky\"", "unknown expectation `flaky`"),
            ("version = 1\nfilters = []", "filters"),
        ] {
            let err = Expectations::from_toml(bad).err().unwrap_or_default();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }

    /// A service test is `run`, requests, a stop by SIGINT or SIGTERM, and `wait`; other
    /// shapes are refused naming what is supported.
    #[test]
    fn service_operations_are_run_requests_kill_and_wait() {
        let service = |ops: &str| {
            spec(&format!(
                r#"{{"world": "wasi:http/service", "operations": [{ops}]}}"#
            ))
        };
        let parsed = service(
            r#"{"type": "run"}, {"type": "request", "method": "POST", "body": "b"}, {"type": "request", "path": "/x"}, {"type": "kill", "signal": "SIGINT"}, {"type": "wait"}"#,
        )
        .unwrap();
        assert!(parsed.service);
        let requests: Vec<_> = parsed
            .requests
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(requests, [("POST", "/"), ("GET", "/x")]);
        for bad in [
            r#"{"type": "run"}, {"type": "wait"}"#,
            r#"{"type": "run"}, {"type": "kill", "signal": "SIGKILL"}, {"type": "wait"}"#,
            r#"{"type": "run"}, {"type": "kill"}, {"type": "request"}, {"type": "wait"}"#,
        ] {
            let err = service(bad).err().unwrap_or_default();
            assert!(err.contains("only run, request..., kill"), "{bad}: {err}");
        }
        let err = spec(r#"{"world": "wasi:http/middleware"}"#)
            .err()
            .unwrap_or_default();
        assert!(err.contains("not supported"), "{err}");
        let err = spec(
            r#"{"servers": [{"name": "x y"}], "operations": [{"type": "run"}, {"type": "wait"}]}"#,
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("alphanumeric"), "{err}");
    }

    /// The manifest a test gets parses, with the proposals' grants and network rules valid
    /// (a bad rule would refuse every sockets test at load).
    #[test]
    fn proposals_become_grants_and_a_loopback_network_policy() {
        let spec = spec(
            r#"{"proposals": ["http", "sockets"], "operations": [{"type": "run", "args": ["x"]}, {"type": "wait", "exit_code": 2}]}"#,
        )
        .unwrap();
        assert_eq!(
            (spec.args.as_slice(), spec.exit_code),
            (&["x".to_string()][..], 2)
        );
        let yaml = manifest(Path::new("/suite/t.wasm"), b"\0asm", &spec, &[]);
        let parsed =
            Manifest::parse(&yaml, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(parsed.entries().count(), 4, "{yaml}");
        assert!(yaml.contains("wasi:sockets, wasi:http]"), "{yaml}");
        assert!(yaml.contains("listen: [\"tcp://127.0.0.0/8:*\""), "{yaml}");
        let plain = manifest(Path::new("/suite/t.wasm"), b"\0asm", &Spec::default(), &[]);
        assert!(
            !plain.contains("network:") && !plain.contains("wasi:http"),
            "{plain}"
        );
    }
}
