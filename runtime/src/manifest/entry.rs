//! Typed manifest entries: what each `kind` means once its fields are checked.

use std::path::{Path, PathBuf};

use crate::id::EntryId;
use crate::manifest::hash::Digest;

/// One loaded entry, with where it came from (for error messages).
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: EntryId,
    pub origin: Origin,
    pub spec: EntrySpec,
}

/// The file (and, when found, the line) that declared an entry.
#[derive(Clone, Debug)]
pub struct Origin {
    pub file: PathBuf,
    pub line: Option<usize>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub enum EntrySpec {
    Directory(DirectorySpec),
    Wasm(WasmSpec),
    Host(HostSpec),
}

impl EntrySpec {
    /// The manifest's word for this kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            EntrySpec::Directory(_) => "fs.directory",
            EntrySpec::Wasm(_) => "process.wasm",
            EntrySpec::Host(_) => "process.host",
        }
    }
}

/// `fs.directory`: a host directory (resolved against the manifest's folder).
#[derive(Clone, Debug)]
pub struct DirectorySpec {
    pub directory: PathBuf,
}

/// `process.wasm`: a WebAssembly program that runs as a process.
#[derive(Clone, Debug)]
pub struct WasmSpec {
    /// The `fs.directory` entry holding the binary.
    pub fs: EntryId,
    /// The binary's path inside that directory, relative and free of `..`.
    pub path: PathBuf,
    pub hash: Digest,
    pub method: Method,
    /// Interface families granted to the process (`wasi:cli`, ...).
    pub imports: Vec<String>,
    pub command: Option<Command>,
}

impl WasmSpec {
    pub fn binary_path(&self, directory: &Path) -> PathBuf {
        directory.join(&self.path)
    }
}

/// The export a process runs: `func`, or `interface#func` inside an exported interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    pub interface: Option<String>,
    pub func: String,
}

impl Method {
    /// An empty method means `main`, as in Wippy.
    pub fn parse(text: &str) -> Result<Method, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Method {
                interface: None,
                func: "main".to_string(),
            });
        }
        match text.split_once('#') {
            None => Ok(Method {
                interface: None,
                func: text.to_string(),
            }),
            Some((interface, func)) if !interface.is_empty() && !func.is_empty() => Ok(Method {
                interface: Some(interface.to_string()),
                func: func.to_string(),
            }),
            Some(_) => Err(format!(
                "method `{text}` must be `func` or `interface#func`"
            )),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.interface {
            Some(interface) => write!(f, "{interface}#{}", self.func),
            None => f.write_str(&self.func),
        }
    }
}

/// `meta.command`: registers the process as a CLI command.
#[derive(Clone, Debug)]
pub struct Command {
    pub name: String,
    pub short: Option<String>,
}

/// `process.host`: a scheduler that processes are spawned into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// Worker threads (default: the number of CPUs).
    pub workers: usize,
    /// How many spawn requests may wait for a worker.
    pub queue_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_forms() {
        assert_eq!(Method::parse("").unwrap().to_string(), "main");
        assert_eq!(Method::parse("compute").unwrap().to_string(), "compute");
        let m = Method::parse("wasi:cli/run@0.2.0#run").unwrap();
        assert_eq!(m.interface.as_deref(), Some("wasi:cli/run@0.2.0"));
        assert_eq!(m.func, "run");
        assert!(Method::parse("#run").is_err());
        assert!(Method::parse("iface#").is_err());
    }
}
