//! Manifests: YAML files with a `namespace` and a list of `entries`, loaded alone or as a
//! directory of them, checked field by field before anything is compiled or run.
//!
//! Errors name the file, the line (of the YAML problem, or of the entry), the entry and the
//! reason. Parsing needs no engine, so it is tested on its own.

mod entry;
mod hash;
mod location;
mod parse;
mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use entry::{
    Command, DirectorySpec, Entry, EntryKind, EntrySpec, EnvBinding, EnvStorageSpec,
    EnvVariableSpec, Family, HostPool, HostSpec, HttpEndpointSpec, Method, Mount, Origin, WasiSpec,
    WasmSpec, DEFAULT_HTTP_ADDR,
};
pub use hash::Digest;
pub use location::strip_location;

use crate::error::ErrorKind;
use crate::id::EntryId;

/// A manifest problem, located as precisely as the input allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// What is wrong, as a stable word.
    pub kind: ErrorKind,
    /// The manifest file.
    pub file: PathBuf,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// The column (1-based), when known.
    pub column: Option<usize>,
    /// The entry at fault, when the problem is inside one.
    pub entry: Option<String>,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(entry) = &self.entry {
            write!(f, "entry `{entry}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Every entry of one or more manifest files, by ID.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    entries: BTreeMap<EntryId, Entry>,
}

impl Manifest {
    /// Loads a manifest file, or every `*.yaml`/`*.yml` file below a directory (in path order;
    /// symlinks followed, each directory and file taken once).
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let io_error = |file: &Path, e: std::io::Error| ManifestError {
            kind: ErrorKind::InvalidManifest,
            file: file.to_path_buf(),
            line: None,
            column: None,
            entry: None,
            message: format!("cannot read: {e}"),
        };
        let mut files = Vec::new();
        if path.is_dir() {
            files = crate::file_tree::files_below(path, &mut |file| {
                Ok(matches!(
                    file.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                ))
            })
            .map_err(|e| io_error(path, e))?;
            if files.is_empty() {
                return Err(ManifestError {
                    message: "no manifest (*.yaml, *.yml) in this directory".into(),
                    ..io_error(path, std::io::Error::other(""))
                });
            }
        } else {
            files.push(path.to_path_buf());
        }
        let mut manifest = Manifest::default();
        for file in files {
            let text = crate::source_file::read_text(&file, crate::yaml_bounds::MAX_BYTES)
                .map_err(|e| io_error(&file, e))?;
            manifest.add_file(&text, &file)?;
        }
        manifest.check_references()?;
        Ok(manifest)
    }

    /// Parses one manifest's text as if read from `file` (relative paths resolve against its
    /// folder).
    pub fn parse(text: &str, file: &Path) -> Result<Manifest, ManifestError> {
        let mut manifest = Manifest::default();
        manifest.add_file(text, file)?;
        manifest.check_references()?;
        Ok(manifest)
    }

    fn add_file(&mut self, text: &str, file: &Path) -> Result<(), ManifestError> {
        for entry in parse::parse_file(text, file)? {
            if let Some(previous) = self.entries.get(&entry.id) {
                return Err(ManifestError {
                    kind: ErrorKind::DuplicateEntry,
                    file: entry.origin.file.clone(),
                    line: entry.origin.line,
                    column: None,
                    entry: Some(entry.id.to_string()),
                    message: format!("already declared at {}", previous.origin),
                });
            }
            self.entries.insert(entry.id.clone(), entry);
        }
        Ok(())
    }

    /// Entry IDs that point at other entries must name loaded entries of the right kind, and
    /// command names must be unique across every loaded file.
    fn check_references(&self) -> Result<(), ManifestError> {
        let mut commands: BTreeMap<&str, &Entry> = BTreeMap::new();
        for entry in self.entries.values() {
            let fail = |message: String| ManifestError {
                kind: ErrorKind::InvalidEntry,
                file: entry.origin.file.clone(),
                line: entry.origin.line,
                column: None,
                entry: Some(entry.id.to_string()),
                message,
            };
            match &entry.spec {
                EntrySpec::Wasm(wasm) => {
                    self.expect_kind("fs", &wasm.fs, Wanted::Kind(EntryKind::Directory))
                        .map_err(fail)?;
                    for (i, binding) in wasm.wasi.env.iter().enumerate() {
                        self.expect_kind(
                            &format!("wasi.env[{i}].id"),
                            &binding.id,
                            Wanted::Kind(EntryKind::EnvVariable),
                        )
                        .map_err(fail)?;
                    }
                    for (i, mount) in wasm.wasi.mounts.iter().enumerate() {
                        self.expect_kind(
                            &format!("wasi.mounts[{i}].fs"),
                            &mount.fs,
                            Wanted::Kind(EntryKind::Directory),
                        )
                        .map_err(fail)?;
                    }
                    if let Some(command) = &wasm.command {
                        if let Some(other) = commands.insert(&command.name, entry) {
                            return Err(fail(format!(
                                "command `{}` is already registered by `{}` ({})",
                                command.name, other.id, other.origin
                            )));
                        }
                    }
                }
                EntrySpec::HttpEndpoint(endpoint) => {
                    self.expect_kind("handler", &endpoint.handler, Wanted::Kind(EntryKind::Wasm))
                        .map_err(fail)?;
                }
                EntrySpec::EnvVariable(variable) => {
                    if let Some(storage) = &variable.storage {
                        self.expect_kind("storage", storage, Wanted::AnyStorage)
                            .map_err(fail)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `field` of some entry names `id`, which must be a loaded entry of the kind `expected`.
    fn expect_kind(&self, field: &str, id: &EntryId, expected: Wanted) -> Result<(), String> {
        let Some(target) = self.entries.get(id) else {
            return Err(format!("{field}: unknown entry `{id}`"));
        };
        let actual = target.spec.kind();
        let matches = match expected {
            Wanted::Kind(kind) => actual == kind,
            Wanted::AnyStorage => actual.is_storage(),
        };
        if matches {
            Ok(())
        } else {
            Err(format!(
                "{field}: entry `{id}` is a `{actual}`, expected a `{expected}`"
            ))
        }
    }

    /// The `process.wasm` entry registered as CLI command `name`.
    pub fn command(&self, name: &str) -> Option<(&Entry, &WasmSpec)> {
        self.commands()
            .find(|(_, wasm)| wasm.command.as_ref().is_some_and(|c| c.name == name))
    }

    /// Every `process.wasm` entry that registers a CLI command, by entry ID (not the order of
    /// the file: a manifest may be a directory of files).
    pub fn commands(&self) -> impl Iterator<Item = (&Entry, &WasmSpec)> {
        self.entries.values().filter_map(|e| match &e.spec {
            EntrySpec::Wasm(wasm) if wasm.command.is_some() => Some((e, wasm.as_ref())),
            _ => None,
        })
    }

    /// The `terminal.host` entries.
    pub fn terminals(&self) -> impl Iterator<Item = &EntryId> {
        self.entries.values().filter_map(|e| match &e.spec {
            EntrySpec::Terminal => Some(&e.id),
            _ => None,
        })
    }

    /// Points an `fs.directory` entry at another host directory (scenarios bind entries to
    /// fresh temporary directories this way).
    pub fn set_directory(&mut self, id: &EntryId, directory: PathBuf) -> Result<(), String> {
        match self.entries.get_mut(id).map(|e| &mut e.spec) {
            Some(EntrySpec::Directory(spec)) => {
                spec.directory = directory;
                Ok(())
            }
            Some(other) => Err(format!(
                "entry `{id}` is a `{}`, not an `fs.directory`",
                other.kind()
            )),
            None => Err(format!("unknown entry `{id}`")),
        }
    }

    /// The entry with this ID.
    pub fn get(&self, id: &EntryId) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Every entry, in ID order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The `process.host` entries, in ID order.
    pub fn hosts(&self) -> impl Iterator<Item = (&EntryId, &HostSpec)> {
        self.entries.values().filter_map(|e| match &e.spec {
            EntrySpec::Host(host) => Some((&e.id, host)),
            _ => None,
        })
    }
}

/// The kind a reference must name.
#[derive(Clone, Copy)]
enum Wanted {
    Kind(EntryKind),
    /// Any `env.storage.*`.
    AnyStorage,
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::Kind(kind) => kind.fmt(f),
            Wanted::AnyStorage => f.write_str("env.storage.*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_are_the_entries_that_register_one_by_entry_id() {
        let hash = format!("sha256:{}", "0".repeat(64));
        let mut text = String::from(
            "namespace: t\nentries:\n  - { name: bins, kind: fs.directory, directory: . }\n",
        );
        for (name, command) in [("b", Some("build")), ("plain", None), ("a", Some("add"))] {
            let meta = command.map_or(String::new(), |c| {
                format!(", meta: {{ command: {{ name: {c}, short: x }} }}")
            });
            text += &format!(
                "  - {{ name: {name}, kind: process.wasm, fs: t:bins, path: a.wasm, method: run, hash: \"{hash}\"{meta} }}\n"
            );
        }
        let manifest = Manifest::parse(&text, std::path::Path::new("t.yaml")).unwrap();
        let commands: Vec<String> = manifest
            .commands()
            .map(|(entry, wasm)| format!("{} {}", entry.id, wasm.command.as_ref().unwrap().name))
            .collect();
        assert_eq!(commands, ["t:a add", "t:b build"]);
        assert_eq!(
            manifest.command("add").map(|(e, _)| e.id.to_string()),
            Some("t:a".into())
        );
        assert!(manifest.command("plain").is_none());
    }
}
