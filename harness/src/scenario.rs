//! The scenario format. A scenario that loads can run: serde checks its shape, and
//! `Scenario::check` what serde cannot see (aliases used before they are given, contradictory
//! fields, paths out of a bound directory), so no step meets those mistakes at run time.
//! Documented for users in `conformance/README.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use wasmproc_runtime::ErrorKind;

/// One scenario file: a manifest to load and steps to run against it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, in a sentence.
    pub scenario: String,
    /// The manifest file or directory, relative to the scenario file.
    pub manifest: PathBuf,
    /// Set when loading the manifest must fail, and how.
    #[serde(default)]
    pub manifest_error: Option<ErrorExpectation>,
    /// `fs.directory` entries to bind to fresh temporary directories, by entry ID, each
    /// seeded with files and symlinks.
    #[serde(default)]
    pub directories: BTreeMap<String, DirectorySetup>,
    /// A loopback HTTP server to start before the steps.
    #[serde(default)]
    pub http_server: Option<HttpServerSetup>,
    /// The requirements (`conformance/REQUIREMENTS.md` IDs) this scenario proves.
    #[serde(default)]
    pub covers: Vec<String>,
    /// The scenario is known to fail, for this reason: its failure passes (reported as an
    /// expected failure), and a pass fails (an unexpected pass).
    #[serde(default)]
    pub expect_failure: Option<String>,
    /// Steps are written `- spawn: {...}` (a one-key map), not YAML tags.
    #[serde(default, with = "serde_norway::with::singleton_map_recursive")]
    pub steps: Vec<Step>,
    /// The scenario file itself; set by [`Scenario::load`].
    #[serde(skip)]
    pub path: PathBuf,
}

/// Every request gets `status` and `body`; the server's URL (plus `path`) is stored in the
/// `env.variable` `env` (one kept in an `env.storage.memory`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerSetup {
    pub env: String,
    #[serde(default = "root")]
    pub path: String,
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
}

/// The content of a fresh directory: `path: text` files and `path: target` symlinks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySetup {
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub symlinks: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    Spawn(SpawnStep),
    Receive(ReceiveStep),
    Files(FilesStep),
    SetEnv(SetEnvStep),
    HttpRequests(HttpRequestsStep),
    /// Add this scenario as a monitor of a process (running or ended): `monitor: w`.
    Monitor(String),
    /// `cancel: { pid: w, reason: "..." }`
    Cancel(CancelStep),
    /// `terminate: w`
    Terminate(String),
    /// Let time pass: `sleep: 50ms`.
    #[serde(deserialize_with = "duration")]
    Sleep(Duration),
    /// The processes (by alias, all received) were all alive at one moment.
    Overlap(Vec<String>),
    /// The processes (by alias, all received) ended in this order.
    Order(Vec<String>),
    /// The lifecycle of a traced process (`trace: true` on its spawn).
    Lifecycle(LifecycleStep),
    /// A Lua script, run as a process on the manifest's host: `lua: file.lua` (relative to the
    /// scenario) or `lua: { code: "..." }` (or `{ file: ... }`). The step waits for its end, and
    /// an `error(...)` or a failed `assert` fails it; with `as: name`, the script runs in the
    /// background and its EXIT arrives like a spawned process's.
    Lua(LuaStep),
    /// Serves an `http.endpoint` or a `process.wasm` handler on 127.0.0.1 for the rest of the
    /// scenario (one per scenario): `serve: ns:name`.
    Serve(String),
    /// Sends a request to what `serve` serves and checks its response.
    Request(RequestStep),
}

/// `request: { method, path, headers, body, expect: { status, headers, body } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestStep {
    #[serde(default = "get")]
    pub method: String,
    #[serde(default = "root")]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub expect: ResponseExpectation,
}

/// What a response must be: its status (default 200), the headers given, and its body when given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseExpectation {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
}

impl Default for ResponseExpectation {
    fn default() -> Self {
        ResponseExpectation {
            status: ok(),
            headers: BTreeMap::new(),
            body: None,
        }
    }
}

/// HTTP defaults of the serde forms here and in wasi-testsuite's service specs.
pub(crate) fn get() -> String {
    "GET".into()
}

pub(crate) fn root() -> String {
    "/".into()
}

pub(crate) fn ok() -> u16 {
    200
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LuaStep {
    File(PathBuf),
    Script(LuaScript),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuaScript {
    /// Exactly one of `file` (relative to the scenario) and `code`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub code: Option<String>,
    /// The script's `...`.
    #[serde(default)]
    pub args: Vec<Value>,
    /// The `process.host`; default: the manifest's only one.
    #[serde(default)]
    pub host: Option<String>,
    /// Run in the background under this name (for `receive`, `cancel`, `terminate`, ...).
    #[serde(default, rename = "as")]
    pub alias: Option<String>,
    /// The script must end with this error (not with `as:`).
    #[serde(default)]
    pub expect_error: Option<ErrorExpectation>,
    /// How long the step waits for the script to end before it terminates it and fails
    /// (default 60s; not with `as:`).
    #[serde(default, deserialize_with = "some_duration")]
    pub timeout: Option<Duration>,
}

fn some_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// How long a `lua:` step waits for its script by default.
pub const LUA_TIMEOUT: Duration = Duration::from_secs(60);

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Spawn(_) => "spawn",
            Step::Receive(_) => "receive",
            Step::Files(_) => "files",
            Step::SetEnv(_) => "set_env",
            Step::HttpRequests(_) => "http_requests",
            Step::Monitor(_) => "monitor",
            Step::Cancel(_) => "cancel",
            Step::Terminate(_) => "terminate",
            Step::Sleep(_) => "sleep",
            Step::Overlap(_) => "overlap",
            Step::Order(_) => "order",
            Step::Lifecycle(_) => "lifecycle",
            Step::Lua(_) => "lua",
            Step::Serve(_) => "serve",
            Step::Request(_) => "request",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelStep {
    pub pid: String,
    #[serde(default)]
    pub reason: String,
}

/// Checks the order Init → Step (Yield Step)* → Close, and optionally how many Steps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleStep {
    pub of: String,
    #[serde(default)]
    pub steps: Option<u32>,
    #[serde(default)]
    pub min_steps: Option<u32>,
}

/// The request lines (`GET /path`) the scenario's HTTP server has received, in order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestsStep {
    pub expect: Vec<String>,
}

/// Changes an `env.variable` (one kept in an `env.storage.memory`) for later spawns.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetEnvStep {
    pub id: String,
    pub value: String,
    #[serde(default)]
    pub expect_error: Option<ErrorExpectation>,
}

/// Checks files in a directory the scenario bound (see `directories`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesStep {
    /// The `fs.directory` entry, as named under `directories`.
    pub dir: String,
    /// `path: content` that must match exactly.
    #[serde(default)]
    pub expect: BTreeMap<String, String>,
    /// Paths that must not exist.
    #[serde(default)]
    pub absent: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnStep {
    /// The `process.wasm` entry, `namespace:name`.
    pub entry: String,
    /// The `process.host`; default: the manifest's only one.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub args: Vec<Value>,
    /// Whether this scenario receives the process's EXIT (default: yes).
    #[serde(default = "yes")]
    pub monitor: bool,
    /// A name for the PID, used by later steps (`from: w`).
    #[serde(default, rename = "as")]
    pub alias: Option<String>,
    /// Set when the spawn must be refused, and how.
    #[serde(default)]
    pub expect_error: Option<ErrorExpectation>,
    /// Record the process's lifecycle (Init, Step, Yield, Close) for `lifecycle` steps.
    #[serde(default)]
    pub trace: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveStep {
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    pub expect: ReceiveExpectation,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `expect: nothing` (the timeout passes with no event), or the event that must arrive.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ReceiveExpectation {
    Nothing(Nothing),
    Event(EventExpectation),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nothing {
    Nothing,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventExpectation {
    /// Only `EXIT` exists so far.
    #[serde(rename = "type", default = "exit")]
    pub event_type: EventType,
    /// The alias given by `as:` in the spawn step.
    #[serde(default)]
    pub from: Option<String>,
    /// The exact return value.
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub error: Option<ErrorExpectation>,
    /// Exactly what the process wrote to its stdout.
    #[serde(default)]
    pub stdout: Option<String>,
    /// Exactly what the process wrote to its stderr.
    #[serde(default)]
    pub stderr: Option<String>,
    /// Exactly this many Steps (runs between suspensions): 1 for a synchronous guest.
    #[serde(default)]
    pub steps: Option<u32>,
    /// At least this many Steps.
    #[serde(default)]
    pub min_steps: Option<u32>,
}

fn exit() -> EventType {
    EventType::Exit
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
pub enum EventType {
    #[serde(rename = "EXIT")]
    Exit,
}

/// An expected error: its kind, and text its message must contain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorExpectation {
    pub kind: ErrorKind,
    #[serde(default)]
    pub contains: Contains,
}

/// One string or a list of strings, each of which must appear in the message.
#[derive(Debug, Default, Deserialize)]
#[serde(from = "OneOrMany")]
pub struct Contains(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Contains {
    fn from(value: OneOrMany) -> Self {
        match value {
            OneOrMany::One(s) => Contains(vec![s]),
            OneOrMany::Many(v) => Contains(v),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration `{text}`: {e}")))
}

/// A scenario file that cannot be read or parsed, located by file, line and column.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ScenarioError {
    pub file: PathBuf,
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = wasmproc_runtime::source_file::read_text(
            path,
            wasmproc_runtime::yaml_bounds::MAX_BYTES,
        )
        .map_err(|e| ScenarioError {
            file: path.to_path_buf(),
            location: None,
            message: format!("cannot read: {e}"),
        })?;
        Scenario::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        wasmproc_runtime::yaml_bounds::check(text).map_err(|e| ScenarioError {
            file: path.to_path_buf(),
            location: Some((e.line, e.column)),
            message: e.message,
        })?;
        let mut scenario: Scenario = serde_norway::from_str(text).map_err(|e| ScenarioError {
            file: path.to_path_buf(),
            location: e.location().map(|l| (l.line(), l.column())),
            message: wasmproc_runtime::manifest::strip_location(&e.to_string()),
        })?;
        scenario.path = path.to_path_buf();
        scenario.check()?;
        Ok(scenario)
    }

    /// Mistakes serde cannot see: aliases used before they are given, contradictory fields,
    /// paths out of a bound directory. A scenario that passes runs without indexing a missing
    /// alias or directory.
    fn check(&self) -> Result<(), ScenarioError> {
        let fail = |message: String| ScenarioError {
            file: self.path.clone(),
            location: None,
            message,
        };
        if self.manifest_error.is_some() && !self.steps.is_empty() {
            return Err(fail(
                "a scenario with `manifest_error` has no steps (the manifest never loads)".into(),
            ));
        }
        for (id, setup) in &self.directories {
            for path in setup.files.keys().chain(setup.symlinks.keys()) {
                crate::confined::check_path(path)
                    .map_err(|m| fail(format!("directories.{id}: {m}")))?;
            }
        }
        let mut aliases = BTreeSet::new();
        let mut served = false;
        for (i, step) in self.steps.iter().enumerate() {
            let at = |m: String| fail(format!("steps[{i}]: {m}"));
            match step {
                Step::Serve(_) if served => return Err(at("one `serve` per scenario".into())),
                Step::Serve(_) => served = true,
                Step::Request(_) if !served => {
                    return Err(at("`request` needs an earlier `serve`".into()))
                }
                _ => {}
            }
            step.check(self, &mut aliases).map_err(at)?;
        }
        Ok(())
    }

    /// The manifest path, resolved against the scenario's folder.
    pub fn manifest_path(&self) -> PathBuf {
        self.path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.manifest)
    }
}

impl Step {
    /// Checks this step of `scenario` against the `aliases` given before it, and adds its own.
    fn check(&self, scenario: &Scenario, aliases: &mut BTreeSet<String>) -> Result<(), String> {
        let named = |alias: &String| {
            if aliases.contains(alias) {
                Ok(())
            } else {
                Err(format!("`{alias}` names no earlier `as:`"))
            }
        };
        match self {
            Step::Spawn(spawn) => {
                if let Some(alias) = &spawn.alias {
                    if spawn.expect_error.is_some() {
                        return Err(format!(
                            "`as: {alias}` names no PID: this spawn is expected to fail"
                        ));
                    }
                    give(aliases, alias)?;
                }
            }
            Step::Lua(LuaStep::Script(script)) => {
                if script.file.is_some() == script.code.is_some() {
                    return Err("a lua step has exactly one of `file` and `code`".into());
                }
                if let Some(alias) = &script.alias {
                    if script.expect_error.is_some() || script.timeout.is_some() {
                        return Err(format!("`as: {alias}` runs in the background: receive its EXIT to check an error or bound its time"));
                    }
                    give(aliases, alias)?;
                }
            }
            Step::SetEnv(_)
            | Step::Sleep(_)
            | Step::Lua(LuaStep::File(_))
            | Step::Serve(_)
            | Step::Request(_) => {}
            Step::Monitor(alias)
            | Step::Terminate(alias)
            | Step::Cancel(CancelStep { pid: alias, .. })
            | Step::Lifecycle(LifecycleStep { of: alias, .. }) => named(alias)?,
            Step::Overlap(list) | Step::Order(list) => list.iter().try_for_each(named)?,
            Step::HttpRequests(_) => {
                if scenario.http_server.is_none() {
                    return Err("`http_requests` needs an `http_server`".into());
                }
            }
            Step::Files(files) => {
                for path in files.expect.keys().chain(&files.absent) {
                    crate::confined::check_path(path)?;
                }
                if !scenario.directories.contains_key(&files.dir) {
                    return Err(format!(
                        "`dir: {}` is not listed under `directories`",
                        files.dir
                    ));
                }
            }
            Step::Receive(receive) => {
                if let ReceiveExpectation::Event(event) = &receive.expect {
                    if event.value.is_some() && event.error.is_some() {
                        return Err("expect has both `value` and `error`".into());
                    }
                    if let Some(from) = &event.from {
                        if !aliases.contains(from) {
                            return Err(format!("`from: {from}` names no earlier `as:`"));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// An alias names one PID: given twice, a later step could mean either.
fn give(aliases: &mut BTreeSet<String>, alias: &str) -> Result<(), String> {
    if aliases.insert(alias.to_string()) {
        Ok(())
    } else {
        Err(format!("alias `{alias}` is given twice"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let text = r#"
scenario: compute returns the product of its arguments
manifest: ../apps/fixtures.yaml
steps:
  - spawn: { entry: fixtures:compute_worker, host: fixtures:processes, args: [6, 7], as: w }
  - receive: { timeout: 2s, expect: { type: EXIT, from: w, value: 42 } }
  - receive: { timeout: 50ms, expect: nothing }
"#;
        let s = Scenario::parse(text, Path::new("conformance/compute/product.yaml")).unwrap();
        assert_eq!(s.steps.len(), 3);
        assert_eq!(
            s.manifest_path(),
            Path::new("conformance/compute/../apps/fixtures.yaml")
        );
        let Step::Receive(r) = &s.steps[1] else {
            panic!("step 1 is a receive")
        };
        assert_eq!(r.timeout, Duration::from_secs(2));
        assert!(matches!(
            &s.steps[2],
            Step::Receive(ReceiveStep {
                expect: ReceiveExpectation::Nothing(_),
                ..
            })
        ));
    }

    #[test]
    fn malformed_yaml_names_file_line_and_column() {
        let text = "scenario: x\nmanifest: m.yaml\nsteps:\n  - spawn: { entry: [unclosed\n";
        let err = Scenario::parse(text, Path::new("broken.yaml")).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with("broken.yaml:"), "{shown}");
        let (line, _) = err.location.expect("a location");
        assert!((4..=5).contains(&line), "{shown}");
    }

    #[test]
    fn wrong_shape_names_the_field_and_its_line() {
        let text =
            "scenario: x\nmanifest: m.yaml\nsteps:\n  - spawn: { entry: a:b, colour: red }\n";
        let err = Scenario::parse(text, Path::new("s.yaml")).unwrap_err();
        assert_eq!(err.location.map(|l| l.0), Some(4), "{err}");
        assert!(err.message.contains("colour"), "{err}");
    }

    #[test]
    fn unknown_error_kind_lists_the_known_ones() {
        let text = "scenario: x\nmanifest: m.yaml\nmanifest_error: { kind: bad_hash }\n";
        let err = Scenario::parse(text, Path::new("s.yaml")).unwrap_err();
        assert!(err.message.contains("hash_mismatch"), "{err}");
    }

    #[test]
    fn aliases_must_be_given_before_use() {
        let text = "scenario: x\nmanifest: m.yaml\nsteps:\n  - receive: { expect: { from: w, value: 1 } }\n";
        let err = Scenario::parse(text, Path::new("s.yaml")).unwrap_err();
        assert!(
            err.message.contains("`from: w` names no earlier `as:`"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_scenario_text_never_panics(text in "\\PC{0,200}") {
            if let Err(e) = Scenario::parse(&text, Path::new("fuzz.yaml")) {
                prop_assert!(e.to_string().starts_with("fuzz.yaml"), "{}", e);
            }
        }

        #[test]
        fn scenario_shaped_text_never_panics(
            steps in proptest::collection::vec(prop_oneof![
                Just("  - spawn: { entry: a:b, as: w }\n"),
                Just("  - receive: { expect: { from: w, value: 1 } }\n"),
                Just("  - receive: { timeout: 1x, expect: nothing }\n"),
                Just("  - cancel: { pid: q }\n"),
                Just("  - overlap: [w, z]\n"),
                Just("  - files: { dir: d }\n"),
                Just("  - sleep: soon\n"),
                Just("  - lifecycle: { of: w, steps: -1 }\n"),
            ], 0..8)
        ) {
            let text = format!("scenario: s\nmanifest: m.yaml\nsteps:\n{}", steps.concat());
            let _ = Scenario::parse(&text, Path::new("fuzz.yaml"));
        }
    }
}
