//! Manifests: YAML files with a `namespace` and a list of `entries`, loaded alone or as a
//! directory of them, checked field by field before anything is compiled or run.
//!
//! Errors name the file, the line (of the YAML problem, or of the entry), the entry and the
//! reason. Parsing needs no engine, so it is tested on its own.

mod entry;
mod hash;
mod parse;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use entry::{Command, DirectorySpec, Entry, EntrySpec, HostSpec, Method, Origin, WasmSpec};
pub use hash::Digest;

use crate::error::ErrorKind;
use crate::id::EntryId;

/// A manifest problem, located as precisely as the input allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub kind: ErrorKind,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The entry at fault, when the problem is inside one.
    pub entry: Option<String>,
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
    /// Loads a manifest file, or every `*.yaml`/`*.yml` file below a directory (in path order).
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
            collect_yaml_files(path, &mut files).map_err(|e| io_error(path, e))?;
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
            let text = std::fs::read_to_string(&file).map_err(|e| io_error(&file, e))?;
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

    /// Entry IDs that point at other entries must name loaded entries of the right kind.
    fn check_references(&self) -> Result<(), ManifestError> {
        for entry in self.entries.values() {
            let EntrySpec::Wasm(wasm) = &entry.spec else {
                continue;
            };
            let problem = match self.entries.get(&wasm.fs) {
                None => format!("fs: unknown entry `{}`", wasm.fs),
                Some(target) if !matches!(target.spec, EntrySpec::Directory(_)) => format!(
                    "fs: entry `{}` is a `{}`, expected a `fs.directory`",
                    wasm.fs,
                    target.spec.kind_name()
                ),
                Some(_) => continue,
            };
            return Err(ManifestError {
                kind: ErrorKind::InvalidEntry,
                file: entry.origin.file.clone(),
                line: entry.origin.line,
                column: None,
                entry: Some(entry.id.to_string()),
                message: problem,
            });
        }
        Ok(())
    }

    pub fn get(&self, id: &EntryId) -> Option<&Entry> {
        self.entries.get(id)
    }

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

fn collect_yaml_files(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    children.sort();
    for child in children {
        if child.is_dir() {
            collect_yaml_files(&child, files)?;
        } else if matches!(
            child.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(child);
        }
    }
    Ok(())
}
