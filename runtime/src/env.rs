//! `env.variable` values, read from their storage when a process is spawned.
//!
//! Guests never see the host's environment as a whole: only the variables their entry binds in
//! `wasi.env`, each read from the storage its `env.variable` entry names.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use crate::error::Error;
use crate::id::EntryId;
use crate::manifest::{EntrySpec, EnvStorageSpec, EnvVariableSpec, Manifest};

/// The run-time side of the storages: `env.storage.memory` maps can change while running.
pub struct EnvStore {
    memory: HashMap<EntryId, RwLock<BTreeMap<String, String>>>,
}

impl EnvStore {
    pub fn new(manifest: &Manifest) -> Self {
        let memory = manifest
            .entries()
            .filter_map(|e| match &e.spec {
                EntrySpec::EnvStorage(EnvStorageSpec::Memory(values)) => {
                    Some((e.id.clone(), RwLock::new(values.clone())))
                }
                _ => None,
            })
            .collect();
        EnvStore { memory }
    }

    /// The value of an `env.variable` entry: from its storage, else its default.
    pub fn value(&self, manifest: &Manifest, variable: &EnvVariableSpec) -> Option<String> {
        let stored = match &variable.storage {
            None => std::env::var(&variable.variable).ok(),
            Some(storage) => match manifest.get(storage).map(|e| &e.spec) {
                Some(EntrySpec::EnvStorage(EnvStorageSpec::Os)) => {
                    std::env::var(&variable.variable).ok()
                }
                Some(EntrySpec::EnvStorage(EnvStorageSpec::Static(values))) => {
                    values.get(&variable.variable).cloned()
                }
                Some(EntrySpec::EnvStorage(EnvStorageSpec::Memory(_))) => self
                    .memory
                    .get(storage)
                    .and_then(|m| read(m).get(&variable.variable).cloned()),
                // The manifest checked that `storage` names a storage.
                _ => None,
            },
        };
        stored.or_else(|| variable.default.clone())
    }

    /// Changes the value of an `env.variable` whose storage is an `env.storage.memory`.
    pub fn set(&self, manifest: &Manifest, id: &EntryId, value: String) -> Result<(), Error> {
        let refuse = |reason: &str| Error::EnvNotWritable {
            id: id.clone(),
            reason: reason.to_string(),
        };
        let variable = match manifest.get(id).map(|e| &e.spec) {
            Some(EntrySpec::EnvVariable(v)) => v,
            Some(_) | None => return Err(Error::UnknownEntry { id: id.to_string() }),
        };
        if variable.readonly {
            return Err(refuse("it is readonly"));
        }
        let storage = variable
            .storage
            .as_ref()
            .and_then(|s| self.memory.get(s))
            .ok_or_else(|| refuse("only variables in an env.storage.memory can change"))?;
        storage
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(variable.variable.clone(), value);
        Ok(())
    }
}

fn read(
    map: &RwLock<BTreeMap<String, String>>,
) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, String>> {
    map.read().unwrap_or_else(|e| e.into_inner())
}
