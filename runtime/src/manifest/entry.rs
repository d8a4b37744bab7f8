//! Typed manifest entries: what each `kind` means once its fields are checked.

use std::path::{Path, PathBuf};

use crate::id::EntryId;
use crate::manifest::hash::Digest;

/// One loaded entry, with where it came from (for error messages).
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its `namespace:name`, unique in the manifest.
    pub id: EntryId,
    /// Where it was declared.
    pub origin: Origin,
    /// What it is, with its checked fields.
    pub spec: EntrySpec,
}

/// The file (and, when found, the line) that declared an entry.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The manifest file.
    pub file: PathBuf,
    /// The entry's line in it (1-based), when found.
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

/// An entry's checked fields, by kind.
#[derive(Clone, Debug)]
pub enum EntrySpec {
    /// `fs.directory`.
    Directory(DirectorySpec),
    /// `process.wasm`. Shared: the runtime keeps it where each spawn finds it.
    Wasm(std::sync::Arc<WasmSpec>),
    /// `process.host`.
    Host(HostSpec),
    /// `env.variable`.
    EnvVariable(EnvVariableSpec),
    /// `env.storage.os`, `env.storage.static` or `env.storage.memory`.
    EnvStorage(EnvStorageSpec),
    /// `terminal.host` (it has no fields).
    Terminal,
    /// `http.endpoint`: a `process.wasm` handler served over HTTP (`wasmproc serve`).
    HttpEndpoint(HttpEndpointSpec),
}

/// `http.endpoint`: where `wasmproc serve` answers requests, and with which entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpEndpointSpec {
    /// The `process.wasm` entry whose binary exports a `wasi:http` handler.
    pub handler: EntryId,
    /// The address to listen on (`addr`, default 127.0.0.1:8080).
    pub addr: std::net::SocketAddr,
}

/// Where an `http.endpoint` listens when it does not say.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// Declares the kinds once: the enum, its list and its words cannot drift apart.
macro_rules! entry_kinds {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// What an entry is, as the manifest's `kind:` names it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EntryKind {
            $($(#[doc = $doc])* $variant,)*
        }

        impl EntryKind {
            /// Every kind, in the order error messages list them.
            pub const ALL: &'static [EntryKind] = &[$(EntryKind::$variant,)*];

            /// The manifest's word for this kind.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EntryKind::$variant => $name,)*
                }
            }
        }
    };
}

entry_kinds! {
    /// A host directory guests may be given.
    Directory => "fs.directory",
    /// A WebAssembly program that runs as a process.
    Wasm => "process.wasm",
    /// A scheduler: workers, a queue and a pool of instances.
    Host => "process.host",
    /// The terminal CLI commands run in.
    Terminal => "terminal.host",
    /// An environment variable guests may be given.
    EnvVariable => "env.variable",
    /// Variables read from the runtime's own environment.
    EnvStorageOs => "env.storage.os",
    /// Variables fixed in the manifest.
    EnvStorageStatic => "env.storage.static",
    /// Variables fixed in the manifest that guests may change for the run.
    EnvStorageMemory => "env.storage.memory",
    /// A `process.wasm` handler served over HTTP.
    HttpEndpoint => "http.endpoint",
}

impl EntryKind {
    /// The kind a manifest's `kind:` word names.
    pub fn parse(word: &str) -> Option<EntryKind> {
        EntryKind::ALL.iter().copied().find(|k| k.as_str() == word)
    }

    /// Every kind's word, comma-separated (for messages that list them).
    pub fn listed() -> String {
        let words: Vec<_> = EntryKind::ALL.iter().map(|k| k.as_str()).collect();
        words.join(", ")
    }

    /// An `env.storage.*` kind.
    pub fn is_storage(self) -> bool {
        matches!(
            self,
            EntryKind::EnvStorageOs | EntryKind::EnvStorageStatic | EntryKind::EnvStorageMemory
        )
    }
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EntrySpec {
    /// The entry's `kind:`.
    pub fn kind(&self) -> EntryKind {
        match self {
            EntrySpec::Directory(_) => EntryKind::Directory,
            EntrySpec::Wasm(_) => EntryKind::Wasm,
            EntrySpec::Host(_) => EntryKind::Host,
            EntrySpec::EnvVariable(_) => EntryKind::EnvVariable,
            EntrySpec::EnvStorage(EnvStorageSpec::Os) => EntryKind::EnvStorageOs,
            EntrySpec::EnvStorage(EnvStorageSpec::Static(_)) => EntryKind::EnvStorageStatic,
            EntrySpec::EnvStorage(EnvStorageSpec::Memory(_)) => EntryKind::EnvStorageMemory,
            EntrySpec::Terminal => EntryKind::Terminal,
            EntrySpec::HttpEndpoint(_) => EntryKind::HttpEndpoint,
        }
    }
}

/// `fs.directory`: a host directory (resolved against the manifest's folder).
#[derive(Clone, Debug)]
pub struct DirectorySpec {
    /// The host directory, joined to the manifest's folder and normalized.
    pub directory: PathBuf,
}

/// `process.wasm`: a WebAssembly program that runs as a process.
#[derive(Clone, Debug)]
pub struct WasmSpec {
    /// The `fs.directory` entry holding the binary.
    pub fs: EntryId,
    /// The binary's path inside that directory, relative and free of `..`.
    pub path: PathBuf,
    /// The binary's expected sha256: a binary whose digest differs is never compiled.
    pub hash: Digest,
    /// The export a spawn calls (`main` when not given).
    pub method: Method,
    /// Interface families granted to the process (`wasi:cli`, ...).
    pub imports: Vec<Family>,
    /// What the guest sees through WASI.
    pub wasi: WasiSpec,
    /// Its `limits:` (each `None` when not given).
    pub limits: crate::limits::Limits,
    /// Set when `meta.command` registers the process as a CLI command.
    pub command: Option<Command>,
    /// Where the process may connect (`network:`), the default when the entry has none.
    /// Shared with the processes that use it (`wasi:http`, `wasi:sockets`).
    pub network: std::sync::Arc<crate::network::NetworkPolicy>,
}

/// What the guest sees of the world through WASI.
#[derive(Clone, Debug, Default)]
pub struct WasiSpec {
    /// Command-line arguments after the program name.
    pub args: Vec<String>,
    /// The initial working directory (absolute).
    pub cwd: Option<String>,
    /// Environment variables, from `env.variable` entries.
    pub env: Vec<EnvBinding>,
    /// Host directories the guest may open.
    pub mounts: Vec<Mount>,
}

/// `wasi.env[]`: the guest sees the value of the `env.variable` entry `id` under `name`.
#[derive(Clone, Debug)]
pub struct EnvBinding {
    /// The `env.variable` entry.
    pub id: EntryId,
    /// The variable's name as the guest sees it.
    pub name: String,
    /// A required value that is missing refuses the spawn; an optional one is left out.
    pub required: bool,
}

/// `wasi.mounts[]`: the `fs.directory` entry `fs` appears to the guest at `guest`.
#[derive(Clone, Debug)]
pub struct Mount {
    /// The `fs.directory` entry.
    pub fs: EntryId,
    /// The path the guest opens it at.
    pub guest: String,
    /// The guest may read but not write (default: false).
    pub read_only: bool,
}

/// `env.variable`: a named value read from a storage.
#[derive(Clone, Debug)]
pub struct EnvVariableSpec {
    /// The name looked up in the storage.
    pub variable: String,
    /// The `env.storage.*` entry; the host environment when absent.
    pub storage: Option<EntryId>,
    /// The value when the storage has none.
    pub default: Option<String>,
    /// Whether the value may be changed at run time (memory storages only).
    pub readonly: bool,
}

/// Where `env.variable` values are read from.
#[derive(Clone, Debug)]
pub enum EnvStorageSpec {
    /// The host process's environment.
    Os,
    /// A fixed map written in the manifest.
    Static(std::collections::BTreeMap<String, String>),
    /// A map that starts with these values and can be changed at run time.
    Memory(std::collections::BTreeMap<String, String>),
}

/// A family of host interfaces an entry may be granted, named by its WIT package.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `wasi:io`: streams and polling.
    Io,
    /// `wasi:cli`: stdio, arguments, environment, exit.
    Cli,
    /// `wasi:clocks`.
    Clocks,
    /// `wasi:filesystem`: the entry's mounts.
    Filesystem,
    /// `wasi:random`.
    Random,
    /// `wasi:sockets`, within the entry's network policy.
    Sockets,
    /// `wasi:http` outgoing requests, within the entry's network policy.
    Http,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 7] = [
        Family::Io,
        Family::Cli,
        Family::Clocks,
        Family::Filesystem,
        Family::Random,
        Family::Sockets,
        Family::Http,
    ];

    /// The WIT package name, as `imports:` and import names spell it.
    pub fn package(self) -> &'static str {
        match self {
            Family::Io => "wasi:io",
            Family::Cli => "wasi:cli",
            Family::Clocks => "wasi:clocks",
            Family::Filesystem => "wasi:filesystem",
            Family::Random => "wasi:random",
            Family::Sockets => "wasi:sockets",
            Family::Http => "wasi:http",
        }
    }

    /// Parses a grant. `wasi:poll` is the pre-0.2 name of `wasi:io`'s poll interface.
    pub fn parse(text: &str) -> Option<Family> {
        let text = text.trim();
        if text == "wasi:poll" {
            return Some(Family::Io);
        }
        Family::ALL.into_iter().find(|f| f.package() == text)
    }

    /// The family of a component import (`wasi:cli/stdout@0.2.0`) or of a core module's
    /// preview 1 import written `module::name` (`wasi_snapshot_preview1::fd_write`).
    pub fn of_import(import: &str) -> Option<Family> {
        if let Some((module, name)) = import.split_once("::") {
            return Family::of_p1_import(module, name);
        }
        let package = import.split(['/', '@']).next().unwrap_or(import);
        Family::ALL.into_iter().find(|f| f.package() == package)
    }

    /// The family a preview 1 import belongs to: stdio, args, environment and exit are
    /// `wasi:cli`; paths and directories `wasi:filesystem`; time and polling `wasi:clocks`.
    pub fn of_p1_import(module: &str, name: &str) -> Option<Family> {
        if module != "wasi_snapshot_preview1" {
            return None;
        }
        Some(match name {
            n if n.starts_with("path_") || n.starts_with("fd_prestat") || n == "fd_readdir" => {
                Family::Filesystem
            }
            n if n.starts_with("clock_") || n == "poll_oneoff" => Family::Clocks,
            "random_get" => Family::Random,
            n if n.starts_with("sock_") => Family::Sockets,
            _ => Family::Cli,
        })
    }

    /// Families whose types this one's interfaces use, so granting it grants them too:
    /// `wasi:cli`'s stdout is a `wasi:io` stream, `wasi:filesystem`'s timestamps are
    /// `wasi:clocks` datetimes, and so on.
    pub fn implies(self) -> &'static [Family] {
        match self {
            Family::Io | Family::Random => &[],
            Family::Clocks | Family::Cli => &[Family::Io],
            Family::Filesystem | Family::Sockets | Family::Http => &[Family::Io, Family::Clocks],
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.package())
    }
}

impl WasmSpec {
    /// The binary's path on the host, given its `fs.directory`'s directory.
    pub fn binary_path(&self, directory: &Path) -> PathBuf {
        directory.join(&self.path)
    }
}

/// The export a process runs: `func`, or `interface#func` inside an exported interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    /// The exported interface holding `func`, if any.
    pub interface: Option<String>,
    /// The function's name.
    pub func: String,
}

impl Method {
    /// The core module export this method calls: `main` runs a command's `_start` when the
    /// module exports no `main`; an interface-qualified method names none.
    pub fn core_export(&self, exports: impl Fn(&str) -> bool) -> String {
        match (&self.interface, self.func.as_str()) {
            (None, "main") if !exports("main") => "_start".to_string(),
            (None, name) => name.to_string(),
            (Some(_), _) => String::new(),
        }
    }

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
    /// The command's name on the CLI.
    pub name: String,
    /// A one-line description for the CLI's help.
    pub short: Option<String>,
}

/// `process.host`: a scheduler that processes are spawned into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// Worker threads (default: the number of CPUs).
    pub workers: usize,
    /// How many spawn requests may wait for a worker.
    pub queue_size: usize,
    /// `pool`: what this host asks of the runtime's instance pool (see
    /// [`crate::engine::Pool::for_manifest`]).
    pub pool: HostPool,
}

/// A `process.host`'s `pool` fields; each left out takes the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostPool {
    /// Processes of this host instantiated at once.
    pub processes: Option<u32>,
    /// The largest linear memory a process can have (a pool slot's size).
    pub memory: Option<u64>,
    /// How much of a slot's memory stays mapped when its process ends.
    pub keep_resident: Option<u64>,
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

    #[test]
    fn every_kind_parses_from_its_own_word_only() {
        for &kind in EntryKind::ALL {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EntryKind::parse("process"), None);
        assert_eq!(EntryKind::parse("env.storage.*"), None);
    }

    /// Manifest authors learn the kinds from the README: its Manifests section names each.
    #[test]
    fn the_readme_names_every_kind() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("the README");
        let section = readme
            .split("\n## Manifests\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has a Manifests section");
        let missing: Vec<_> = EntryKind::ALL
            .iter()
            .map(|k| k.as_str())
            .filter(|word| {
                !section.contains(&format!("`{word}`"))
                    && !section.contains(&format!("kind: {word}"))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "README.md's Manifests section does not name {missing:?}"
        );
    }
}
