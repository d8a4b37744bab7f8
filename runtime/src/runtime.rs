//! The runtime: a loaded manifest, the engine and compiled programs, the running hosts, the
//! environment storages, and the spawn entry points.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use crate::engine;
use crate::env::EnvStore;
use crate::error::Error;
use crate::event::{Pid, TraceSink};
use crate::host::ProcessHost;
use crate::id::EntryId;
use crate::loader::Target;
use crate::loader::{Loader, Program};
use crate::lock::lock;
use crate::mailbox::Mailbox;
use crate::manifest::{EntryKind, EntrySpec, Manifest, WasmSpec};
use crate::process::{self, ExitGuard, Launch};
use crate::registry::{Monitors, Registry, Signal};
use crate::store_data::SpawnContext;

use crate::wasi::{self, ResolvedMount, Stdio};

/// How to spawn, beyond entry, host and arguments.
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    /// Where the process's stdout and stderr go (default: captured, delivered with its EXIT).
    pub stdio: Stdio,
    /// Appended to the entry's `wasi.args` (the CLI's arguments after a command name).
    pub extra_args: Vec<String>,
    /// Receives the process's Init, Step, Yield and Close events.
    pub trace: Option<TraceSink>,
    /// Links the new process to this one from its start (see [`Runtime::link`]).
    pub link: Option<Pid>,
}

/// Every entry by its `namespace:name` text, hashed with foldhash (seeded per map), several
/// times cheaper than SipHash on these short strings.
type Lookup<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What a spawn starts, as the steps every spawn shares need to know it.
pub(crate) enum Started {
    /// A WebAssembly process: its task is aborted at the first signal; its output goes where
    /// `captured` says.
    Wasm { captured: Option<wasi::Captured> },
    /// A Lua script: it hears every signal, through its preemption state, and its task is
    /// never aborted.
    #[cfg(feature = "lua")]
    Lua(Arc<crate::lua::Preemption>),
}

/// The EXIT of a spawn goes to `monitor`, if any.
pub(crate) fn monitors_of(monitor: Option<&Mailbox>) -> Monitors {
    monitor.map(Mailbox::address).into_iter().collect()
}

/// An entry as spawns find it: one lookup of its text gives its ID and, for a `process.wasm`
/// entry, its spec and program, for a `process.host` its scheduler. One lookup per spawn, not
/// one per question (five lookups were a sixth of the spawning thread's instructions).
pub(crate) struct ResolvedEntry {
    id: EntryId,
    /// A `process.wasm` entry's spec, shared with the manifest.
    wasm: Option<Arc<WasmSpec>>,
    /// A `process.wasm` entry's program, once loaded (see [`Runtime::program`]).
    program: Mutex<Option<Arc<Program>>>,
    /// A `process.host` entry's scheduler, started on its first spawn (a manifest may declare
    /// hosts a run never uses). Once started, a spawn reads it without a lock.
    host: OnceLock<ProcessHost>,
}

/// A loaded manifest and everything needed to spawn its entries: the engine, compiled
/// programs, hosts started on first use, environment storages and the process registry.
pub struct Runtime {
    manifest: Manifest,
    loader: Arc<Loader>,
    env: EnvStore,
    entries: Lookup<String, ResolvedEntry>,
    starting_hosts: Mutex<()>,
    registry: Arc<Registry>,
    next_pid: AtomicU64,
}

impl Runtime {
    /// Loads a manifest file or directory with a fresh engine, its pool sized as the
    /// manifest's hosts ask ([`engine::Pool::for_manifest`]), counting fuel when an entry sets
    /// `limits.fuel` ([`engine::Fuel::for_manifest`]).
    pub fn load(path: &std::path::Path) -> Result<Self, Error> {
        let manifest = Manifest::load(path)?;
        let loader = engine::loader_counting(
            engine::Pool::for_manifest(&manifest)?,
            engine::Fuel::for_manifest(&manifest),
        )?;
        Ok(Runtime::new(manifest, Arc::new(loader)))
    }

    /// [`Runtime::load`], keeping compiled code in the cache `cache` names (see
    /// [`crate::code_cache`]): a later load of the same binaries deserializes instead of
    /// compiling.
    pub fn load_caching(
        path: &std::path::Path,
        cache: &crate::code_cache::CacheConfig,
    ) -> Result<Self, Error> {
        let manifest = Manifest::load(path)?;
        let loader = engine::loader_caching(
            engine::Pool::for_manifest(&manifest)?,
            engine::Fuel::for_manifest(&manifest),
            cache,
        )?;
        Ok(Runtime::new(manifest, Arc::new(loader)))
    }

    /// A runtime over `manifest` that shares `loader` (and its compiled code) with others.
    pub fn new(manifest: Manifest, loader: Arc<Loader>) -> Self {
        Runtime {
            env: EnvStore::new(&manifest),
            entries: manifest
                .entries()
                .map(|e| {
                    let resolved = ResolvedEntry {
                        id: e.id.clone(),
                        wasm: match &e.spec {
                            EntrySpec::Wasm(wasm) => Some(wasm.clone()),
                            _ => None,
                        },
                        program: Mutex::default(),
                        host: OnceLock::new(),
                    };
                    (e.id.to_string(), resolved)
                })
                .collect(),
            manifest,
            loader,
            starting_hosts: Mutex::default(),
            registry: Arc::default(),
            next_pid: AtomicU64::new(1),
        }
    }

    /// The manifest this runtime was loaded from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Spawns `entry` on `host` with `args`; its EXIT is sent to `monitor`.
    pub fn spawn_monitored(
        &self,
        entry: &str,
        host: &str,
        args: &[Value],
        monitor: &Mailbox,
    ) -> Result<Pid, Error> {
        self.spawn_with(entry, host, args, &SpawnOptions::default(), Some(monitor))
    }

    /// Spawns `entry` on `host` with `args`, unmonitored.
    pub fn spawn(&self, entry: &str, host: &str, args: &[Value]) -> Result<Pid, Error> {
        self.spawn_with(entry, host, args, &SpawnOptions::default(), None)
    }

    /// Spawns with every option; everything that can be refused is refused here, before the
    /// process exists.
    pub fn spawn_with(
        &self,
        entry: &str,
        host: &str,
        args: &[Value],
        options: &SpawnOptions,
        monitor: Option<&Mailbox>,
    ) -> Result<Pid, Error> {
        self.spawn_to(entry, host, args, options, monitors_of(monitor))
    }

    /// [`Runtime::spawn_with`], the EXIT going to `monitors`.
    pub(crate) fn spawn_to(
        &self,
        entry: &str,
        host: &str,
        args: &[Value],
        options: &SpawnOptions,
        monitors: Monitors,
    ) -> Result<Pid, Error> {
        let resolved = self.entry(entry)?;
        let entry = &resolved.id;
        let host = self.host(self.entry(host)?)?;
        let place = host.enqueue()?;
        let program = self.program_of(resolved)?;
        let params = program
            .signature
            .args_to_vals_within(args, program.max_value)
            .map_err(|source| Error::BadArgument {
                entry: entry.clone(),
                source: Box::new(source),
            })?;
        let wasm = self.wasm_of(resolved)?;
        // Resolved even when unused: a missing required variable refuses every spawn.
        let env = self.resolve_env(entry, wasm)?;
        let (state, captured) = match &program.target {
            Target::Component { .. } if program.imports_nothing => {
                let captured =
                    matches!(options.stdio, Stdio::Capture).then_some(wasi::Captured::Nothing);
                (SpawnContext::Component { wasi: None }, captured)
            }
            target => {
                let mounts = self.resolve_mounts(wasm);
                let (mut builder, captured) = wasi::context(
                    entry,
                    &wasm.wasi,
                    &options.extra_args,
                    &env,
                    &mounts,
                    &options.stdio,
                    wasm.imports
                        .contains(&crate::manifest::Family::Sockets)
                        .then_some(&wasm.network),
                )?;
                let state = match target {
                    Target::Component { .. } => SpawnContext::Component {
                        wasi: Some(Box::new(builder.build())),
                    },
                    Target::Module { .. } => SpawnContext::Module {
                        p1: Box::new(builder.build_p1()),
                    },
                };
                (state, captured)
            }
        };
        let pid = self.next_pid();
        tracing::debug!(%pid, %entry, host = %host.id(), "spawn");
        let launch = Launch {
            place,
            slot: program.admission.clone().try_acquire_owned().ok(),
            program,
            params,
            state,
            limits: wasm.limits.clone(),
        };
        let started = Started::Wasm { captured };
        self.start_process(pid, host, monitors, options, started, |guard| {
            process::run(launch, guard)
        });
        Ok(pid)
    }

    /// The steps every spawn ends with, once nothing can refuse it any more: file the process
    /// before its task exists, and make its EXIT guard before the task, so that even a task
    /// that never starts reports its EXIT; then start the task `task` makes of the guard.
    pub(crate) fn start_process<F>(
        &self,
        pid: Pid,
        host: &ProcessHost,
        monitors: Monitors,
        options: &SpawnOptions,
        started: Started,
        task: impl FnOnce(ExitGuard) -> F,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (proc, captured) = match started {
            Started::Wasm { captured } => {
                (self.registry.start(pid, monitors, options.link), captured)
            }
            #[cfg(feature = "lua")]
            Started::Lua(preemption) => {
                let (proc, signals) = self.registry.start_listening(pid, monitors, options.link);
                preemption.listen(signals);
                (proc, None)
            }
        };
        let guard = ExitGuard::new(
            proc.clone(),
            self.registry.clone(),
            captured,
            options.trace.clone(),
        );
        let handle = host.spawn_task(task(guard));
        self.registry.attach(&proc, handle);
    }

    /// Sends `pid`'s EXIT to `monitor` when it ends, or now if it already has.
    pub fn monitor(&self, pid: Pid, monitor: &Mailbox) -> Result<(), Error> {
        self.registry.monitor(pid, monitor.address())
    }

    /// Stops sending `pid`'s EXIT to `monitor`.
    pub fn unmonitor(&self, pid: Pid, monitor: &Mailbox) -> Result<(), Error> {
        self.registry.unmonitor(pid, &monitor.address())
    }

    /// Asks a running process to cancel: a WebAssembly process stops, its EXIT carries
    /// `cancelled` and the reason; a Lua process receives a CANCEL event and decides.
    pub fn cancel(&self, pid: Pid, reason: impl Into<String>) -> Result<(), Error> {
        self.cancel_from(pid, reason, None)
    }

    /// [`Runtime::cancel`], saying which process asks.
    pub fn cancel_from(
        &self,
        pid: Pid,
        reason: impl Into<String>,
        from: Option<Pid>,
    ) -> Result<(), Error> {
        let reason = reason.into();
        self.registry.signal(pid, Signal::Cancel { reason, from })
    }

    /// Stops a running process; its EXIT carries `terminated`.
    pub fn terminate(&self, pid: Pid) -> Result<(), Error> {
        self.registry.signal(pid, Signal::Terminate)
    }

    /// Links two processes, both ways: when either ends with an error, the other one ends
    /// with `link_down` (a Lua process that traps links receives a LINK_DOWN event instead).
    /// Linking to a process that already failed signals `pid` at once.
    pub fn link(&self, pid: Pid, other: Pid) -> Result<(), Error> {
        self.registry.link(pid, other)
    }

    /// Removes the link between `pid` and `other`, if any (`other` must be known).
    pub fn unlink(&self, pid: Pid, other: Pid) -> Result<(), Error> {
        self.registry.unlink(pid, other)
    }

    /// `host`, or the manifest's only `process.host` when it is left out.
    pub fn host_or_default(&self, host: Option<&str>) -> Result<String, Error> {
        match host {
            Some(host) => Ok(host.to_string()),
            None => self.default_host().map(|id| id.to_string()),
        }
    }

    /// The only `process.host`, for front ends that let the user leave it out.
    pub fn default_host(&self) -> Result<EntryId, Error> {
        let hosts: Vec<_> = self.manifest.hosts().map(|(id, _)| id.clone()).collect();
        match hosts.as_slice() {
            [] => Err(Error::NoHost),
            [one] => Ok(one.clone()),
            many => Err(Error::AmbiguousHost {
                hosts: many
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The `process.wasm` entry `entry` (or the handler an `http.endpoint` entry names) ready
    /// to answer HTTP requests ([`crate::serve`]): its binary must export a `wasi:http`
    /// handler. Its environment and mounts are resolved now, as a spawn's are. The handlers'
    /// stdout and stderr go where `stdio` says (captured output is dropped with each
    /// request's instance).
    pub fn http_service(
        &self,
        entry: &str,
        stdio: Stdio,
    ) -> Result<crate::serve::HttpService, Error> {
        let mut resolved = self.entry(entry)?;
        // An `http.endpoint` names its handler.
        if let Some(EntrySpec::HttpEndpoint(endpoint)) =
            self.manifest.get(&resolved.id).map(|e| &e.spec)
        {
            resolved = self.entry(&endpoint.handler.to_string())?;
        }
        let wasm = self.wasm_of(resolved)?;
        let id = &resolved.id;
        let program = self
            .loader
            .load_handler(id, wasm, self.directory(&wasm.fs)?)?;
        let env = self.resolve_env(id, wasm)?;
        let mounts = self.resolve_mounts(wasm);
        let spec = resolved
            .wasm
            .clone()
            .expect("a process.wasm entry has its spec");
        Ok(crate::serve::HttpService::new(
            id.clone(),
            program,
            spec,
            env,
            mounts,
            stdio,
        ))
    }

    /// Changes an `env.variable` kept in an `env.storage.memory`; later spawns see the value.
    pub fn set_env(&self, variable: &str, value: impl Into<String>) -> Result<(), Error> {
        let id = &self.entry(variable)?.id;
        self.env.set(&self.manifest, id, value.into())
    }

    pub(crate) fn next_pid(&self) -> Pid {
        Pid(self.next_pid.fetch_add(1, Ordering::Relaxed))
    }

    #[cfg(feature = "lua")]
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The entry `id` names, looked up as written first (no parsing, no allocation: this is
    /// on every spawn), then in its canonical form (`EntryId::parse` trims it).
    pub(crate) fn entry(&self, id: &str) -> Result<&ResolvedEntry, Error> {
        if let Some(resolved) = self.entries.get(id) {
            return Ok(resolved);
        }
        EntryId::parse(id)
            .ok()
            .and_then(|parsed| self.entries.get(parsed.to_string().as_str()))
            .ok_or_else(|| Error::UnknownEntry { id: id.to_string() })
    }

    /// The verified, compiled program of a `process.wasm` entry. Loaded on first use and kept;
    /// loaded again (hash checked again) when the binary's file changed since (noticed within
    /// [`crate::loader::RECHECK`]).
    pub fn program(&self, id: &EntryId) -> Result<Arc<Program>, Error> {
        self.program_of(self.entry(&id.to_string())?)
    }

    /// [`Runtime::program`]. Spawns of the entry wait while it loads, instead of each
    /// compiling it again.
    fn program_of(&self, resolved: &ResolvedEntry) -> Result<Arc<Program>, Error> {
        let mut slot = lock(&resolved.program);
        if let Some(program) = slot.as_ref() {
            if program.file.unchanged() {
                return Ok(program.clone());
            }
            // Forgotten, so that no spawn runs it again before its file passes the check.
            *slot = None;
        }
        let wasm = self.wasm_of(resolved)?;
        let directory = self.directory(&wasm.fs)?;
        let program =
            crate::host::off_the_worker(|| self.loader.load(&resolved.id, wasm, directory))?;
        *slot = Some(program.clone());
        Ok(program)
    }

    /// A `process.wasm` entry's spec; any other kind is refused, named.
    fn wasm_of<'a>(&'a self, resolved: &'a ResolvedEntry) -> Result<&'a WasmSpec, Error> {
        match &resolved.wasm {
            Some(wasm) => Ok(wasm),
            None => self.entry_of(&resolved.id, EntryKind::Wasm, |_| None),
        }
    }

    /// The entry `id`, which must be of the kind `pick` accepts (`expected` names it).
    fn entry_of<'a, T>(
        &'a self,
        id: &EntryId,
        expected: EntryKind,
        pick: impl FnOnce(&'a EntrySpec) -> Option<T>,
    ) -> Result<T, Error> {
        let entry = self
            .manifest
            .get(id)
            .ok_or_else(|| Error::UnknownEntry { id: id.to_string() })?;
        pick(&entry.spec).ok_or_else(|| Error::WrongEntryKind {
            id: id.clone(),
            expected,
            actual: entry.spec.kind(),
        })
    }

    /// The host path of an `fs.directory` entry (the manifest checked references at load).
    fn directory(&self, id: &EntryId) -> Result<&std::path::Path, Error> {
        match self.manifest.get(id).map(|e| &e.spec) {
            Some(EntrySpec::Directory(dir)) => Ok(dir.directory.as_path()),
            _ => Err(Error::UnknownEntry { id: id.to_string() }),
        }
    }

    /// `wasi.env` as the guest will see it. A required variable without a value refuses the
    /// spawn; an optional one is left out.
    fn resolve_env(
        &self,
        entry: &EntryId,
        wasm: &WasmSpec,
    ) -> Result<Vec<(String, String)>, Error> {
        let mut env = Vec::with_capacity(wasm.wasi.env.len());
        for binding in &wasm.wasi.env {
            let value = match self.manifest.get(&binding.id).map(|e| &e.spec) {
                Some(EntrySpec::EnvVariable(variable)) => self.env.value(&self.manifest, variable),
                _ => None,
            };
            match value {
                Some(value) => env.push((binding.name.clone(), value)),
                None if binding.required => {
                    return Err(Error::MissingEnv {
                        entry: entry.clone(),
                        variable: binding.id.to_string(),
                        name: binding.name.clone(),
                    })
                }
                None => {}
            }
        }
        Ok(env)
    }

    fn resolve_mounts(&self, wasm: &WasmSpec) -> Vec<ResolvedMount> {
        wasm.wasi
            .mounts
            .iter()
            .filter_map(|mount| {
                let host = self.directory(&mount.fs).ok()?.to_path_buf();
                Some(ResolvedMount {
                    host,
                    guest: mount.guest.clone(),
                    read_only: mount.read_only,
                })
            })
            .collect()
    }

    /// A `process.host` entry's scheduler, started on its first spawn.
    pub(crate) fn host<'a>(
        &'a self,
        resolved: &'a ResolvedEntry,
    ) -> Result<&'a ProcessHost, Error> {
        if let Some(host) = resolved.host.get() {
            return Ok(host);
        }
        // One start at a time, so that no host is started twice.
        let _starting = lock(&self.starting_hosts);
        if let Some(host) = resolved.host.get() {
            return Ok(host);
        }
        let spec = self.entry_of(&resolved.id, EntryKind::Host, |spec| match spec {
            EntrySpec::Host(host) => Some(host),
            _ => None,
        })?;
        let started = ProcessHost::start(resolved.id.clone(), spec.clone())?;
        Ok(resolved.host.get_or_init(|| started))
    }
}
