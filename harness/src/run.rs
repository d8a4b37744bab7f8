//! Running a scenario against the real runtime, step by step.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use wasmproc_runtime::{Event, Exit, Loader, Mailbox, Manifest, Pid, Runtime, SpawnOptions};

use crate::confined;
use crate::expect::{check_error, check_event};
use crate::http_server::HttpServer;
use crate::kinded::Kinded;
use crate::scenario::{
    FilesStep, HttpRequestsStep, LifecycleStep, LuaScript, LuaStep, ReceiveExpectation,
    ReceiveStep, Scenario, SetEnvStep, SpawnStep, Step, LUA_TIMEOUT,
};
use wasmproc_runtime::lua::ScriptError;

/// Why a scenario failed: which step, what was expected, what came.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Scenario {
    /// Runs the scenario with `loader` (shared between scenarios, so each binary compiles once).
    pub fn run(&self, loader: &Arc<Loader>) -> Result<(), Failure> {
        let file = self.path.display().to_string();
        let fail = |message: String| Failure {
            message: format!("{file}: {message}"),
        };
        let manifest = Manifest::load(&self.manifest_path());
        let manifest = match (&self.manifest_error, manifest) {
            (None, Ok(manifest)) => manifest,
            (None, Err(e)) => return Err(fail(format!("manifest did not load: {e}"))),
            (Some(expected), Err(e)) => {
                return check_error(expected, e.kind, &e.to_string())
                    .map_err(|m| fail(format!("manifest error: {m}")))
            }
            (Some(expected), Ok(_)) => {
                return Err(fail(format!(
                    "manifest loaded, but an error of kind `{}` was expected",
                    expected.kind
                )))
            }
        };
        let mut manifest = manifest;
        let directories = self
            .bind_directories(&mut manifest)
            .map_err(|m| fail(format!("directories: {m}")))?;
        // Scenarios share one engine, unless their hosts size the pool themselves.
        let sized = manifest
            .hosts()
            .any(|(_, host)| host.pool != wasmproc_runtime::manifest::HostPool::default());
        let loader = if sized {
            // The same cache as the shared engine's (its files are per configuration).
            let cache = loader
                .code_cache()
                .map_or_else(wasmproc_runtime::code_cache::CacheConfig::off, |c| {
                    c.config()
                });
            let own = wasmproc_runtime::engine::Pool::for_manifest(&manifest)
                .and_then(|pool| wasmproc_runtime::engine::loader_caching(pool, &cache))
                .map_err(|e| fail(format!("engine: {e}")))?;
            Arc::new(own)
        } else {
            loader.clone()
        };
        let runtime = Arc::new(Runtime::new(manifest, loader));
        let server = match &self.http_server {
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
        // Receives wait on timers; spawns run on the manifest's hosts, not on this thread.
        let clock = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| fail(format!("cannot start a timer: {e}")))?;
        let (trace, traced) = tokio::sync::mpsc::unbounded_channel();
        let mut state = RunState {
            trace,
            traced,
            lifecycles: Vec::new(),
            runtime: &runtime,
            directories: &directories,
            server: server.as_ref(),
            mailbox: Mailbox::new(),
            pids: HashMap::new(),
            received: Vec::new(),
        };
        for (i, step) in self.steps.iter().enumerate() {
            let result = match step {
                Step::Spawn(spawn) => state.spawn(spawn),
                Step::Receive(receive) => clock.block_on(state.receive(receive)),
                Step::Files(files) => state.files(files),
                Step::SetEnv(set) => state.set_env(set),
                Step::HttpRequests(step) => state.http_requests(step),
                Step::Monitor(alias) => state
                    .runtime
                    .monitor(state.pids[alias], &state.mailbox)
                    .map_err(|e| Kinded::from(&e).to_string()),
                Step::Cancel(cancel) => state
                    .runtime
                    .cancel(state.pids[&cancel.pid], cancel.reason.clone())
                    .map_err(|e| Kinded::from(&e).to_string()),
                Step::Terminate(alias) => state
                    .runtime
                    .terminate(state.pids[alias])
                    .map_err(|e| Kinded::from(&e).to_string()),
                Step::Sleep(duration) => {
                    std::thread::sleep(*duration);
                    Ok(())
                }
                Step::Overlap(aliases) => state.overlap(aliases),
                Step::Order(aliases) => state.order(aliases),
                Step::Lifecycle(step) => state.lifecycle(step),
                Step::Lua(step) => self.lua(&runtime, step, &mut state),
            };
            result.map_err(|m| fail(format!("steps[{i}] ({}): {m}", step.name())))?;
        }
        Ok(())
    }
}

impl Scenario {
    /// Creates a fresh directory for each entry under `directories`, seeds it, and points the
    /// entry at it. The directories live as long as the returned map.
    fn bind_directories(
        &self,
        manifest: &mut Manifest,
    ) -> Result<HashMap<String, tempfile::TempDir>, String> {
        let mut bound = HashMap::new();
        for (id, setup) in &self.directories {
            let entry = wasmproc_runtime::EntryId::parse(id)?;
            let dir = tempfile::tempdir().map_err(|e| format!("cannot create a directory: {e}"))?;
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
}

impl Scenario {
    fn lua(
        &self,
        runtime: &Arc<Runtime>,
        step: &LuaStep,
        state: &mut RunState<'_>,
    ) -> Result<(), String> {
        let read = |file: &Path| {
            let path = self.path.parent().unwrap_or(Path::new(".")).join(file);
            wasmproc_runtime::source_file::read_text(&path, wasmproc_runtime::lua::SCRIPT_MAX_BYTES)
                .map(|source| (source, path.display().to_string()))
                .map_err(|e| format!("{}: {e}", path.display()))
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
                        format!("{}:lua", self.path.display()),
                    ),
                ),
            },
        };
        let host = runtime
            .host_or_default(script.host.as_deref())
            .map_err(|e| e.to_string())?;
        if let Some(alias) = &script.alias {
            let pid = runtime
                .spawn_lua(
                    &source,
                    &name,
                    &host,
                    &script.args,
                    &SpawnOptions::default(),
                    Some(&state.mailbox),
                )
                .map_err(|e| format!("the script was refused: {}", Kinded::from(&e)))?;
            state.pids.insert(alias.clone(), pid);
            return Ok(());
        }
        let ran = wasmproc_runtime::lua::run_script(
            runtime,
            &source,
            &name,
            Some(&host),
            &script.args,
            Some(script.timeout.unwrap_or(LUA_TIMEOUT)),
        );
        match (ran, &script.expect_error) {
            (Ok(_), None) => Ok(()),
            (Err(e), None) => Err(format!("the script failed: {e}")),
            (Err(ScriptError::Failed(e)), Some(expected)) => {
                check_error(expected, e.kind, &e.message)
            }
            (Err(ScriptError::Refused(e)), Some(expected)) => {
                check_error(expected, e.kind(), &e.to_string())
            }
            (Ok(value), Some(expected)) => Err(format!(
                "the script returned {value}, but an error of kind `{}` was expected",
                expected.kind
            )),
        }
    }
}

struct RunState<'a> {
    /// Lifecycle events of the processes spawned with `trace: true`.
    trace: tokio::sync::mpsc::UnboundedSender<wasmproc_runtime::Lifecycle>,
    traced: tokio::sync::mpsc::UnboundedReceiver<wasmproc_runtime::Lifecycle>,
    /// Every lifecycle event read so far, for all traced processes.
    lifecycles: Vec<wasmproc_runtime::Lifecycle>,
    runtime: &'a Runtime,
    directories: &'a HashMap<String, tempfile::TempDir>,
    server: Option<&'a HttpServer>,
    mailbox: Mailbox,
    pids: HashMap<String, Pid>,
    /// Every event so far, shown when an expectation fails.
    received: Vec<Exit>,
}

impl RunState<'_> {
    fn spawn(&mut self, step: &SpawnStep) -> Result<(), String> {
        let host = self
            .runtime
            .host_or_default(step.host.as_deref())
            .map_err(|e| e.to_string())?;
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
            (Err(e), None) => Err(format!(
                "spawn of `{}` was refused: {}",
                step.entry,
                Kinded::from(&e)
            )),
            (Err(e), Some(expected)) => check_error(expected, e.kind(), &e.to_string()),
            (Ok(pid), Some(expected)) => Err(format!(
                "spawn of `{}` succeeded ({pid}), but an error of kind `{}` was expected",
                step.entry, expected.kind
            )),
        }
    }

    /// The received EXIT of each alias.
    fn exits(&self, aliases: &[String]) -> Result<Vec<&Exit>, String> {
        aliases
            .iter()
            .map(|alias| {
                let pid = self.pids[alias];
                self.received
                    .iter()
                    .find(|e| e.from == pid)
                    .ok_or_else(|| format!("no EXIT from `{alias}` has been received yet"))
            })
            .collect()
    }

    fn overlap(&self, aliases: &[String]) -> Result<(), String> {
        let exits = self.exits(aliases)?;
        let last_start = exits.iter().map(|e| e.accounting.started).max();
        let first_end = exits.iter().map(|e| e.accounting.ended).min();
        match (last_start, first_end) {
            (Some(start), Some(end)) if start < end => Ok(()),
            _ => Err(format!(
                "expected {aliases:?} to be alive at one moment, but one ended before another started (wall times: {:?})",
                exits.iter().map(|e| e.accounting.wall_time).collect::<Vec<_>>()
            )),
        }
    }

    fn order(&self, aliases: &[String]) -> Result<(), String> {
        let exits = self.exits(aliases)?;
        if exits
            .windows(2)
            .all(|w| w[0].accounting.ended <= w[1].accounting.ended)
        {
            return Ok(());
        }
        let mut actual: Vec<_> = aliases.iter().zip(&exits).collect();
        actual.sort_by_key(|(_, e)| e.accounting.ended);
        Err(format!(
            "expected them to end in the order {aliases:?}, got {:?}",
            actual.iter().map(|(a, _)| a).collect::<Vec<_>>()
        ))
    }

    fn lifecycle(&mut self, step: &LifecycleStep) -> Result<(), String> {
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
            return Err(format!(
                "expected Init, Step (Yield Step)*, Close{}, got {phases:?}",
                match (step.steps, step.min_steps) {
                    (Some(n), _) => format!(" with {n} steps"),
                    (None, Some(n)) => format!(" with at least {n} steps"),
                    _ => String::new(),
                }
            ));
        }
        Ok(())
    }

    fn http_requests(&self, step: &HttpRequestsStep) -> Result<(), String> {
        // Checked to have a server when the scenario loaded.
        let got = self.server.map(HttpServer::requests).unwrap_or_default();
        if got != step.expect {
            return Err(format!("expected requests {:?}, got {got:?}", step.expect));
        }
        Ok(())
    }

    fn set_env(&self, step: &SetEnvStep) -> Result<(), String> {
        match (
            self.runtime.set_env(&step.id, &step.value),
            &step.expect_error,
        ) {
            (Ok(()), None) => Ok(()),
            (Err(e), None) => Err(Kinded::from(&e).to_string()),
            (Err(e), Some(expected)) => check_error(expected, e.kind(), &e.to_string()),
            (Ok(()), Some(expected)) => Err(format!(
                "`{}` changed, but an error of kind `{}` was expected",
                step.id, expected.kind
            )),
        }
    }

    fn files(&self, step: &FilesStep) -> Result<(), String> {
        // Checked to be listed under `directories` when the scenario loaded.
        let dir = self.directories[&step.dir].path();
        for (path, want) in &step.expect {
            // Resolved as the guest sees the directory: a symlink it planted does not lead the
            // check (and its failure message) to a host file; no more than the expected
            // length is read.
            let got = confined::read(dir, path, want.len() as u64)
                .map_err(|e| format!("{}/{path}: expected a file, got: {e}", step.dir))?;
            match got {
                None => {
                    return Err(format!(
                        "{}/{path}: expected {want:?}, got more than its {} bytes",
                        step.dir,
                        want.len()
                    ))
                }
                Some(got) if got != want.as_bytes() => {
                    return Err(format!(
                        "{}/{path}: expected {want:?}, got {:?}",
                        step.dir,
                        String::from_utf8_lossy(&got)
                    ))
                }
                Some(_) => {}
            }
        }
        for path in &step.absent {
            let exists = confined::exists(dir, path)
                .map_err(|e| format!("{}/{path}: cannot check: {e}", step.dir))?;
            if exists {
                return Err(format!(
                    "{}/{path}: expected no such file, but it exists",
                    step.dir
                ));
            }
        }
        Ok(())
    }

    async fn receive(&mut self, step: &ReceiveStep) -> Result<(), String> {
        let event = self.mailbox.receive(step.timeout).await;
        let result = match (&step.expect, event) {
            (ReceiveExpectation::Nothing(_), None) => return Ok(()),
            (ReceiveExpectation::Nothing(_), Some(Event::Exit(exit))) => {
                let shown = show(&exit);
                self.received.push(exit);
                Err(format!("expected nothing, got {shown}"))
            }
            (ReceiveExpectation::Event(_), None) => Err(format!(
                "expected an event, got nothing within {}",
                humantime::format_duration(step.timeout)
            )),
            (ReceiveExpectation::Event(expected), Some(Event::Exit(exit))) => {
                let result = check_event(expected, &exit, &self.pids);
                self.received.push(exit);
                result
            }
            (_, Some(other)) => Err(format!(
                "expected {}, got a {} event (only a Lua script's own mailbox gets those)",
                match step.expect {
                    ReceiveExpectation::Nothing(_) => "nothing",
                    ReceiveExpectation::Event(_) => "an EXIT",
                },
                other.kind()
            )),
        };
        result.map_err(|m| {
            let mut m = m;
            if !self.pids.is_empty() {
                let mut names: Vec<_> = self.pids.iter().collect();
                names.sort();
                let _ = write!(m, "\n  aliases: ");
                for (alias, pid) in names {
                    let _ = write!(m, "{alias}={pid} ");
                }
            }
            m
        })
    }
}

pub(crate) fn show(exit: &Exit) -> String {
    serde_json::to_string(exit).unwrap_or_else(|e| format!("<unprintable EXIT: {e}>"))
}
