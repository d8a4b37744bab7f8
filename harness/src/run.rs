//! Running a scenario against the real runtime: its setup (manifest, directories, engine, HTTP
//! server, clock) is made once, then the steps run in order against that one [`ScenarioRun`],
//! and the first step that fails ends the scenario.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use wasmproc_runtime::lua::ScriptError;
use wasmproc_runtime::{Event, Exit, Loader, Mailbox, Manifest, Pid, Runtime, SpawnOptions};

use crate::confined;
use crate::expect::{check_error, check_event, show};
use crate::failure::{Failure, StepError};
use crate::http_server::HttpServer;
use crate::scenario::{
    CancelStep, DirectorySetup, FilesStep, HttpRequestsStep, LifecycleStep, LuaScript, LuaStep,
    ReceiveExpectation, ReceiveStep, RequestStep, Scenario, SetEnvStep, SpawnStep, Step,
    LUA_TIMEOUT,
};
use crate::scratch::ScratchDir;

impl Scenario {
    /// Runs the scenario with `loader` (shared between scenarios, so each binary compiles once).
    pub fn run(&self, loader: &Arc<Loader>) -> Result<(), Failure> {
        let Some(manifest) = self.manifest()? else {
            // Failed to load as expected; such a scenario has no steps (checked when it loaded).
            return Ok(());
        };
        let mut run = ScenarioRun::prepare(self, manifest, loader)?;
        for (index, step) in self.steps.iter().enumerate() {
            run.step(step).map_err(|error| Failure::Step {
                file: self.path.clone(),
                index,
                name: step.name(),
                error,
            })?;
        }
        Ok(())
    }

    /// The manifest the steps run against, or None when it fails to load the way
    /// `manifest_error` expects.
    fn manifest(&self) -> Result<Option<Manifest>, Failure> {
        let fail = |message: String| Failure::Setup {
            file: self.path.clone(),
            message,
        };
        match (&self.manifest_error, Manifest::load(&self.manifest_path())) {
            (None, Ok(manifest)) => Ok(Some(manifest)),
            (None, Err(e)) => Err(fail(format!("manifest did not load: {e}"))),
            (Some(expected), Err(e)) => check_error(expected, e.kind, &e.to_string())
                .map(|()| None)
                .map_err(|e| fail(format!("manifest error: {e}"))),
            (Some(expected), Ok(_)) => {
                let loaded = StepError::NotRefused {
                    done: "manifest loaded".into(),
                    expected: expected.kind,
                };
                Err(fail(loaded.to_string()))
            }
        }
    }
}

/// One scenario being run: what its setup made, and what its steps have seen so far.
///
/// Field order is drop order: the runtime goes before the directories its processes may still
/// be using.
struct ScenarioRun<'a> {
    scenario: &'a Scenario,
    mailbox: Mailbox,
    pids: HashMap<String, Pid>,
    /// Every EXIT received so far: `overlap` and `order` compare their times.
    received: Vec<Exit>,
    /// Lifecycle events of the processes spawned with `trace: true`.
    trace: tokio::sync::mpsc::UnboundedSender<wasmproc_runtime::Lifecycle>,
    traced: tokio::sync::mpsc::UnboundedReceiver<wasmproc_runtime::Lifecycle>,
    /// Every lifecycle event read so far, for all traced processes.
    lifecycles: Vec<wasmproc_runtime::Lifecycle>,
    /// Receives wait on its timers; spawned processes run on the manifest's hosts, not on it.
    clock: tokio::runtime::Runtime,
    server: Option<HttpServer>,
    runtime: Arc<Runtime>,
    directories: HashMap<String, ScratchDir>,
    /// What `serve` serves, until the scenario ends.
    served: Option<Served>,
}

/// A handler served for a scenario: its address, and its threads (dropping them stops it).
struct Served {
    address: std::net::SocketAddr,
    _threads: tokio::runtime::Runtime,
}

impl<'a> ScenarioRun<'a> {
    /// Binds the scenario's directories into `manifest`, starts a runtime for it (on `loader`'s
    /// engine unless the manifest sizes its own), its HTTP server and a clock.
    fn prepare(
        scenario: &'a Scenario,
        mut manifest: Manifest,
        loader: &Arc<Loader>,
    ) -> Result<ScenarioRun<'a>, Failure> {
        let fail = |message: String| Failure::Setup {
            file: scenario.path.clone(),
            message,
        };
        let directories = bind_directories(&scenario.directories, &mut manifest)
            .map_err(|m| fail(format!("directories: {m}")))?;
        let loader = loader_for(&manifest, loader).map_err(|e| fail(format!("engine: {e}")))?;
        let runtime = Arc::new(Runtime::new(manifest, loader));
        let server = match &scenario.http_server {
            None => None,
            Some(setup) => {
                let server = HttpServer::start(setup.status, setup.body.clone())
                    .map_err(|e| fail(format!("http_server: cannot listen: {e}")))?;
                runtime
                    .set_env(&setup.env, format!("{}{}", server.url(), setup.path))
                    .map_err(|e| fail(format!("http_server: env `{}`: {e}", setup.env)))?;
                Some(server)
            }
        };
        let clock = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| fail(format!("cannot start a timer: {e}")))?;
        let (trace, traced) = tokio::sync::mpsc::unbounded_channel();
        Ok(ScenarioRun {
            scenario,
            mailbox: Mailbox::new(),
            pids: HashMap::new(),
            received: Vec::new(),
            trace,
            traced,
            lifecycles: Vec::new(),
            clock,
            server,
            runtime,
            directories,
            served: None,
        })
    }

    fn step(&mut self, step: &Step) -> Result<(), StepError> {
        match step {
            Step::Spawn(spawn) => self.spawn(spawn),
            Step::Receive(receive) => self.receive(receive),
            Step::Files(files) => self.files(files),
            Step::SetEnv(set) => self.set_env(set),
            Step::HttpRequests(step) => self.http_requests(step),
            Step::Monitor(alias) => self.monitor(alias),
            Step::Cancel(cancel) => self.cancel(cancel),
            Step::Terminate(alias) => self.terminate(alias),
            Step::Sleep(duration) => {
                std::thread::sleep(*duration);
                Ok(())
            }
            Step::Overlap(aliases) => self.overlap(aliases),
            Step::Order(aliases) => self.order(aliases),
            Step::Lifecycle(step) => self.lifecycle(step),
            Step::Lua(step) => self.lua(step),
            Step::Serve(entry) => self.serve(entry),
            Step::Request(step) => self.request(step),
        }
    }
}

/// Scenarios share one engine, unless their hosts size the pool themselves.
fn loader_for(
    manifest: &Manifest,
    shared: &Arc<Loader>,
) -> Result<Arc<Loader>, wasmproc_runtime::Error> {
    let sized = manifest
        .hosts()
        .any(|(_, host)| host.pool != wasmproc_runtime::manifest::HostPool::default());
    if !sized {
        return Ok(shared.clone());
    }
    // The same cache as the shared engine's (its files are per configuration).
    let cache = shared
        .code_cache()
        .map_or_else(wasmproc_runtime::code_cache::CacheConfig::off, |c| {
            c.config()
        });
    // Counting fuel, as the shared engine does.
    let fuel = wasmproc_runtime::engine::Fuel::Counted;
    let own = wasmproc_runtime::engine::Pool::for_manifest(manifest)
        .and_then(|pool| wasmproc_runtime::engine::loader_caching(pool, fuel, &cache))?;
    Ok(Arc::new(own))
}

/// Creates a fresh directory for each entry under `directories`, seeds it, and points the
/// entry at it. The directories live as long as the returned map.
fn bind_directories(
    directories: &BTreeMap<String, DirectorySetup>,
    manifest: &mut Manifest,
) -> Result<HashMap<String, ScratchDir>, String> {
    let mut bound = HashMap::new();
    for (id, setup) in directories {
        let entry = wasmproc_runtime::EntryId::parse(id)?;
        let dir = ScratchDir::new().map_err(|e| format!("cannot create a directory: {e}"))?;
        // Paths were checked to be plain and relative when the scenario loaded; writing
        // inside the directory also keeps a symlink made here from leading a later path
        // out of it.
        for (path, content) in &setup.files {
            confined::write(dir.path(), path, content.as_bytes())
                .map_err(|e| format!("{path}: {e}"))?;
        }
        for (path, target) in &setup.symlinks {
            confined::symlink(dir.path(), path, target)
                .map_err(|e| format!("{path} -> {target}: {e}"))?;
        }
        manifest.set_directory(&entry, dir.path().to_path_buf())?;
        bound.insert(id.clone(), dir);
    }
    Ok(bound)
}

impl ScenarioRun<'_> {
    fn monitor(&self, alias: &str) -> Result<(), StepError> {
        self.runtime
            .monitor(self.pids[alias], &self.mailbox)
            .map_err(StepError::refused)
    }

    fn cancel(&self, step: &CancelStep) -> Result<(), StepError> {
        self.runtime
            .cancel(self.pids[&step.pid], step.reason.clone())
            .map_err(StepError::refused)
    }

    fn terminate(&self, alias: &str) -> Result<(), StepError> {
        self.runtime
            .terminate(self.pids[alias])
            .map_err(StepError::refused)
    }

    fn lua(&mut self, step: &LuaStep) -> Result<(), StepError> {
        let scenario = self.scenario;
        let read = |file: &Path| {
            let path = scenario.path.parent().unwrap_or(Path::new(".")).join(file);
            wasmproc_runtime::source_file::read_text(&path, wasmproc_runtime::lua::SCRIPT_MAX_BYTES)
                .map(|source| (source, path.display().to_string()))
                .map_err(|error| StepError::Io {
                    path: path.display().to_string(),
                    doing: None,
                    error,
                })
        };
        let plain = LuaScript::default();
        let (script, (source, name)) = match step {
            LuaStep::File(file) => (&plain, read(file)?),
            LuaStep::Script(script) => match (&script.file, &script.code) {
                (Some(file), _) => (script, read(file)?),
                (None, code) => (
                    script,
                    (
                        code.clone().unwrap_or_default(),
                        format!("{}:lua", scenario.path.display()),
                    ),
                ),
            },
        };
        let host = self
            .runtime
            .host_or_default(script.host.as_deref())
            .map_err(StepError::host)?;
        if let Some(alias) = &script.alias {
            let pid = self
                .runtime
                .spawn_lua(
                    &source,
                    &name,
                    &host,
                    &script.args,
                    &SpawnOptions::default(),
                    Some(&self.mailbox),
                )
                .map_err(|error| StepError::refused_call("the script".into(), error))?;
            self.pids.insert(alias.clone(), pid);
            return Ok(());
        }
        let ran = wasmproc_runtime::lua::run_script(
            &self.runtime,
            &source,
            &name,
            Some(&host),
            &script.args,
            Some(script.timeout.unwrap_or(LUA_TIMEOUT)),
        );
        match (ran, &script.expect_error) {
            (Ok(_), None) => Ok(()),
            (Err(e), None) => Err(StepError::ScriptFailed(Box::new(e))),
            (Err(ScriptError::Failed(e)), Some(expected)) => {
                check_error(expected, e.kind, &e.message)
            }
            (Err(ScriptError::Refused(e)), Some(expected)) => {
                check_error(expected, e.kind(), &e.to_string())
            }
            (Ok(value), Some(expected)) => Err(StepError::NotRefused {
                done: format!("the script returned {value}"),
                expected: expected.kind,
            }),
        }
    }

    fn spawn(&mut self, step: &SpawnStep) -> Result<(), StepError> {
        let host = self
            .runtime
            .host_or_default(step.host.as_deref())
            .map_err(StepError::host)?;
        let options = SpawnOptions {
            trace: step.trace.then(|| self.trace.clone()),
            ..SpawnOptions::default()
        };
        let monitor = step.monitor.then_some(&self.mailbox);
        let spawned = self
            .runtime
            .spawn_with(&step.entry, &host, &step.args, &options, monitor);
        match (spawned, &step.expect_error) {
            (Ok(pid), None) => {
                if let Some(alias) = &step.alias {
                    self.pids.insert(alias.clone(), pid);
                }
                Ok(())
            }
            (Err(error), None) => Err(StepError::refused_call(
                format!("spawn of `{}`", step.entry),
                error,
            )),
            (Err(e), Some(expected)) => check_error(expected, e.kind(), &e.to_string()),
            (Ok(pid), Some(expected)) => Err(StepError::NotRefused {
                done: format!("spawn of `{}` succeeded ({pid})", step.entry),
                expected: expected.kind,
            }),
        }
    }

    /// The received EXIT of each alias.
    fn exits(&self, aliases: &[String]) -> Result<Vec<&Exit>, StepError> {
        aliases
            .iter()
            .map(|alias| {
                let pid = self.pids[alias];
                self.received
                    .iter()
                    .find(|e| e.from == pid)
                    .ok_or_else(|| StepError::NotReceived {
                        alias: alias.clone(),
                    })
            })
            .collect()
    }

    fn overlap(&self, aliases: &[String]) -> Result<(), StepError> {
        let exits = self.exits(aliases)?;
        let last_start = exits.iter().map(|e| e.accounting.started).max();
        let first_end = exits.iter().map(|e| e.accounting.ended).min();
        match (last_start, first_end) {
            (Some(start), Some(end)) if start < end => Ok(()),
            _ => Err(StepError::Unmet(format!(
                "expected {aliases:?} to be alive at one moment, but one ended before another started (wall times: {:?})",
                exits.iter().map(|e| e.accounting.wall_time).collect::<Vec<_>>()
            ))),
        }
    }

    fn order(&self, aliases: &[String]) -> Result<(), StepError> {
        let exits = self.exits(aliases)?;
        if exits
            .windows(2)
            .all(|w| w[0].accounting.ended <= w[1].accounting.ended)
        {
            return Ok(());
        }
        let mut actual: Vec<_> = aliases.iter().zip(&exits).collect();
        actual.sort_by_key(|(_, e)| e.accounting.ended);
        Err(StepError::mismatch(
            format!("them to end in the order {aliases:?}"),
            format!("{:?}", actual.iter().map(|(a, _)| a).collect::<Vec<_>>()),
        ))
    }

    fn lifecycle(&mut self, step: &LifecycleStep) -> Result<(), StepError> {
        let pid = self.pids[&step.of];
        // The Close event is sent before the EXIT, so after a received EXIT it is all here.
        while let Ok(event) = self.traced.try_recv() {
            self.lifecycles.push(event);
        }
        let phases: Vec<_> = self
            .lifecycles
            .iter()
            .filter(|e| e.pid == pid)
            .map(|e| e.phase)
            .collect();
        use wasmproc_runtime::Phase::*;
        let well_formed = phases.first() == Some(&Init)
            && phases.last() == Some(&Close)
            && phases.len() >= 3
            && phases[1..phases.len() - 1]
                .iter()
                .enumerate()
                .all(|(i, p)| *p == if i % 2 == 0 { Step } else { Yield });
        let steps = phases.iter().filter(|p| **p == Step).count() as u32;
        if !well_formed
            || step.steps.is_some_and(|n| n != steps)
            || step.min_steps.is_some_and(|n| steps < n)
        {
            let count = match (step.steps, step.min_steps) {
                (Some(n), _) => format!(" with {n} steps"),
                (None, Some(n)) => format!(" with at least {n} steps"),
                _ => String::new(),
            };
            return Err(StepError::mismatch(
                format!("Init, Step (Yield Step)*, Close{count}"),
                format!("{phases:?}"),
            ));
        }
        Ok(())
    }

    fn http_requests(&self, step: &HttpRequestsStep) -> Result<(), StepError> {
        // Checked to have a server when the scenario loaded.
        let got = self
            .server
            .as_ref()
            .map(HttpServer::requests)
            .unwrap_or_default();
        if got != step.expect {
            return Err(StepError::mismatch(
                format!("requests {:?}", step.expect),
                format!("{got:?}"),
            ));
        }
        Ok(())
    }

    fn serve(&mut self, entry: &str) -> Result<(), StepError> {
        let service = self
            .runtime
            .http_service(entry, wasmproc_runtime::Stdio::Capture)
            .map_err(StepError::refused)?;
        let host_failure = |message: String| StepError::Host {
            kind: wasmproc_runtime::ErrorKind::HostFailure,
            message,
        };
        let threads = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| host_failure(format!("cannot start the server's threads: {e}")))?;
        let listener = threads
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| host_failure(format!("cannot listen on 127.0.0.1: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| host_failure(e.to_string()))?;
        threads.spawn(wasmproc_runtime::serve::serve(
            service,
            listener,
            wasmproc_runtime::serve::ServeOptions::default(),
            std::future::pending(),
        ));
        self.served = Some(Served {
            address,
            _threads: threads,
        });
        Ok(())
    }

    fn request(&self, step: &RequestStep) -> Result<(), StepError> {
        // Checked to follow a `serve` when the scenario loaded.
        let Some(served) = &self.served else {
            return Err(StepError::Unmet(
                "`request` needs an earlier `serve`".into(),
            ));
        };
        let headers: Vec<(&str, &str)> = step
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let response = crate::http_client::request(
            served.address,
            &step.method,
            &step.path,
            &headers,
            step.body.as_bytes(),
            std::time::Duration::from_secs(30),
        )
        .map_err(StepError::Unmet)?;
        let shown = || {
            format!(
                "{} with body {:?}",
                response.status,
                shortened(&response.text())
            )
        };
        if response.status != step.expect.status {
            return Err(StepError::mismatch(
                format!("status {}", step.expect.status),
                shown(),
            ));
        }
        for (name, want) in &step.expect.headers {
            let got = response.header(name);
            if got.as_deref() != Some(want.as_str()) {
                return Err(StepError::mismatch(
                    format!("header {name}: {want:?}"),
                    format!("{got:?}"),
                ));
            }
        }
        if let Some(want) = &step.expect.body {
            if response.text() != *want {
                return Err(StepError::mismatch(format!("body {want:?}"), shown()));
            }
        }
        Ok(())
    }

    fn set_env(&self, step: &SetEnvStep) -> Result<(), StepError> {
        match (
            self.runtime.set_env(&step.id, &step.value),
            &step.expect_error,
        ) {
            (Ok(()), None) => Ok(()),
            (Err(error), None) => Err(StepError::refused(error)),
            (Err(e), Some(expected)) => check_error(expected, e.kind(), &e.to_string()),
            (Ok(()), Some(expected)) => Err(StepError::NotRefused {
                done: format!("`{}` changed", step.id),
                expected: expected.kind,
            }),
        }
    }

    fn files(&self, step: &FilesStep) -> Result<(), StepError> {
        // Checked to be listed under `directories` when the scenario loaded.
        let dir = self.directories[&step.dir].path();
        let place = |path: &str| format!("{}/{path}", step.dir);
        for (path, want) in &step.expect {
            // Resolved as the guest sees the directory: a symlink it planted does not lead the
            // check (and its failure message) to a host file; no more than the expected
            // length is read.
            let got =
                confined::read(dir, path, want.len() as u64).map_err(|error| StepError::Io {
                    path: place(path),
                    doing: Some("expected a file, got"),
                    error,
                })?;
            let got = match got {
                None => format!("more than its {} bytes", want.len()),
                Some(got) if got != want.as_bytes() => {
                    format!("{:?}", String::from_utf8_lossy(&got))
                }
                Some(_) => continue,
            };
            return Err(StepError::mismatch(format!("{want:?}"), got).at(place(path)));
        }
        for path in &step.absent {
            let exists = confined::exists(dir, path).map_err(|error| StepError::Io {
                path: place(path),
                doing: Some("cannot check"),
                error,
            })?;
            if exists {
                return Err(
                    StepError::Unmet("expected no such file, but it exists".into()).at(place(path)),
                );
            }
        }
        Ok(())
    }

    fn receive(&mut self, step: &ReceiveStep) -> Result<(), StepError> {
        let event = self.clock.block_on(self.mailbox.receive(step.timeout));
        let result = match (&step.expect, event) {
            (ReceiveExpectation::Nothing(_), None) => return Ok(()),
            (ReceiveExpectation::Nothing(_), Some(Event::Exit(exit))) => {
                let shown = show(&exit);
                self.received.push(exit);
                Err(StepError::mismatch("nothing", shown))
            }
            (ReceiveExpectation::Event(_), None) => Err(StepError::mismatch(
                "an event",
                format!(
                    "nothing within {}",
                    humantime::format_duration(step.timeout)
                ),
            )),
            (ReceiveExpectation::Event(expected), Some(Event::Exit(exit))) => {
                let result = check_event(expected, &exit, &self.pids);
                self.received.push(exit);
                result
            }
            (_, Some(other)) => Err(StepError::mismatch(
                match step.expect {
                    ReceiveExpectation::Nothing(_) => "nothing",
                    ReceiveExpectation::Event(_) => "an EXIT",
                },
                format!(
                    "a {} event (only a Lua script's own mailbox gets those)",
                    other.kind()
                ),
            )),
        };
        result.map_err(|error| {
            if self.pids.is_empty() {
                return error;
            }
            let mut names: Vec<_> = self.pids.iter().collect();
            names.sort();
            let mut aliases = String::new();
            for (alias, pid) in names {
                let _ = write!(aliases, "{alias}={pid} ");
            }
            error.seen("aliases", aliases)
        })
    }
}

/// At most the first 200 characters of `text`, for a failure message.
fn shortened(text: &str) -> String {
    const SHOWN: usize = 200;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}
