//! The runtime: a loaded manifest, the engine and compiled programs, the running hosts, and the
//! spawn entry points.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::engine;
use crate::error::Error;
use crate::host::ProcessHost;
use crate::id::EntryId;
use crate::loader::{FileStamp, Loader, Program};
use crate::manifest::{EntrySpec, Manifest, WasmSpec};
use crate::process::{Mailbox, Pid};

pub struct Runtime {
    manifest: Manifest,
    loader: Arc<Loader>,
    programs: Mutex<HashMap<EntryId, Arc<Program>>>,
    hosts: Mutex<HashMap<EntryId, Arc<ProcessHost>>>,
    next_pid: AtomicU64,
}

impl Runtime {
    /// Loads a manifest file or directory with a fresh engine.
    pub fn load(path: &std::path::Path) -> Result<Self, Error> {
        Ok(Runtime::new(
            Manifest::load(path)?,
            Arc::new(engine::loader()?),
        ))
    }

    /// A runtime over `manifest` that shares `loader` (and its compiled code) with others.
    pub fn new(manifest: Manifest, loader: Arc<Loader>) -> Self {
        Runtime {
            manifest,
            loader,
            programs: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashMap::new()),
            next_pid: AtomicU64::new(1),
        }
    }

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
        self.spawn_with(entry, host, args, vec![monitor.address()])
    }

    /// Spawns `entry` on `host` with `args`, unmonitored.
    pub fn spawn(&self, entry: &str, host: &str, args: &[Value]) -> Result<Pid, Error> {
        self.spawn_with(entry, host, args, Vec::new())
    }

    fn spawn_with(
        &self,
        entry: &str,
        host: &str,
        args: &[Value],
        monitors: Vec<tokio::sync::mpsc::UnboundedSender<crate::Event>>,
    ) -> Result<Pid, Error> {
        let entry = self.entry_id(entry)?;
        let host = self.host(&self.entry_id(host)?)?;
        let program = self.program(&entry)?;
        let params = program
            .signature
            .args_to_vals(args)
            .map_err(|source| Error::BadArgument {
                entry: entry.clone(),
                source: Box::new(source),
            })?;
        let pid = Pid(self.next_pid.fetch_add(1, Ordering::Relaxed));
        tracing::debug!(%pid, %entry, host = %host.id(), "spawn");
        host.spawn(pid, program, params, monitors);
        Ok(pid)
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

    fn entry_id(&self, id: &str) -> Result<EntryId, Error> {
        let id = EntryId::parse(id).map_err(|_| Error::UnknownEntry { id: id.to_string() })?;
        if self.manifest.get(&id).is_none() {
            return Err(Error::UnknownEntry { id: id.to_string() });
        }
        Ok(id)
    }

    /// The verified, compiled program of a `process.wasm` entry. Loaded on first use and kept;
    /// loaded again (hash checked again) when the binary's file changed since.
    pub fn program(&self, id: &EntryId) -> Result<Arc<Program>, Error> {
        if let Some(program) = self.lock_programs().get(id) {
            if FileStamp::of(&program.path).ok() == Some(program.stamp) {
                return Ok(program.clone());
            }
        }
        let (wasm, directory) = self.wasm_entry(id)?;
        let program = self.loader.load(id, wasm, directory)?;
        self.lock_programs().insert(id.clone(), program.clone());
        Ok(program)
    }

    fn wasm_entry(&self, id: &EntryId) -> Result<(&WasmSpec, &std::path::Path), Error> {
        let entry = self
            .manifest
            .get(id)
            .ok_or_else(|| Error::UnknownEntry { id: id.to_string() })?;
        let EntrySpec::Wasm(wasm) = &entry.spec else {
            return Err(Error::WrongEntryKind {
                id: id.clone(),
                expected: "process.wasm",
                actual: entry.spec.kind_name(),
            });
        };
        // The manifest checked that `fs` names a loaded fs.directory.
        match self.manifest.get(&wasm.fs).map(|e| &e.spec) {
            Some(EntrySpec::Directory(dir)) => Ok((wasm, dir.directory.as_path())),
            _ => Err(Error::UnknownEntry {
                id: wasm.fs.to_string(),
            }),
        }
    }

    fn host(&self, id: &EntryId) -> Result<Arc<ProcessHost>, Error> {
        let entry = self
            .manifest
            .get(id)
            .ok_or_else(|| Error::UnknownEntry { id: id.to_string() })?;
        let EntrySpec::Host(spec) = &entry.spec else {
            return Err(Error::WrongEntryKind {
                id: id.clone(),
                expected: "process.host",
                actual: entry.spec.kind_name(),
            });
        };
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(host) = hosts.get(id) {
            return Ok(host.clone());
        }
        // Started on first spawn: a manifest may declare hosts a run never uses.
        let host = Arc::new(ProcessHost::start(id.clone(), spec.clone())?);
        hosts.insert(id.clone(), host.clone());
        Ok(host)
    }

    fn lock_programs(&self) -> std::sync::MutexGuard<'_, HashMap<EntryId, Arc<Program>>> {
        self.programs.lock().unwrap_or_else(|e| e.into_inner())
    }
}
