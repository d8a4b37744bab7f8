//! The error vocabulary: one stable, snake_case [`ErrorKind`] shared by the runtime, the CLI's
//! JSON, scenarios and the Lua layer. Messages add context; kinds never change meaning.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::id::EntryId;
use crate::loader::LoadError;
use crate::manifest::ManifestError;
use crate::value::ValueError;

/// Declares the kinds once: the enum, its list and its names cannot drift apart.
macro_rules! error_kinds {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// What went wrong, as a word a scenario or a script can match on.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorKind {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant,)*
        }

        impl ErrorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant,)*];

            /// The kind's stable snake_case name (`hash_mismatch`, ...).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $name,)*
                }
            }
        }
    };
}

error_kinds! {
    /// A manifest file is not YAML, or not shaped like a manifest.
    InvalidManifest => "invalid_manifest",
    /// An entry misses a required field or has an invalid one (`fs is required`, ...).
    InvalidEntry => "invalid_entry",
    /// Two entries share one `namespace:name`.
    DuplicateEntry => "duplicate_entry",
    /// An entry kind this runtime does not know.
    UnsupportedEntryKind => "unsupported_entry_kind",
    /// An ID names no loaded entry.
    UnknownEntry => "unknown_entry",
    /// An ID names an entry of another kind than the one asked for.
    WrongEntryKind => "wrong_entry_kind",
    /// No CLI command has this name.
    UnknownCommand => "unknown_command",
    /// A `process.host` (or, for CLI commands, a `terminal.host`) is missing or ambiguous.
    MissingHost => "missing_host",
    /// `hash` is not `<algorithm>:<hex digest>`.
    InvalidHashFormat => "invalid_hash_format",
    /// `hash` names an algorithm other than sha256.
    UnsupportedHashAlgorithm => "unsupported_hash_algorithm",
    /// The binary's sha256 differs from the entry's `hash`.
    HashMismatch => "hash_mismatch",
    /// The binary could not be read from its `fs.directory`.
    BinaryUnreadable => "binary_unreadable",
    /// The bytes are not a valid WebAssembly component.
    InvalidBinary => "invalid_binary",
    /// The binary imports an interface the entry does not grant.
    UngrantedImport => "ungranted_import",
    /// The binary imports an interface (or version) that wasmproc does not provide.
    UnsupportedImport => "unsupported_import",
    /// The entry's `method` is not a function exported by the binary.
    MissingExport => "missing_export",
    /// Spawn arguments do not fit the export's parameters.
    BadArgument => "bad_argument",
    /// A `required` environment variable has no value.
    MissingEnv => "missing_env",
    /// An environment variable cannot be changed (readonly, or not in a memory storage).
    EnvNotWritable => "env_not_writable",
    /// A mount's host directory cannot be opened.
    MountUnavailable => "mount_unavailable",
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...).
    Trap => "trap",
    /// The process exceeded `max_execution_ms`, `max_memory`, `fuel` or `max_value` (its result,
    /// or a spawn's arguments), or its binary does not fit the instance pool; the message names
    /// which.
    LimitExceeded => "limit_exceeded",
    /// The process was cancelled (`cancel(pid, reason)`).
    Cancelled => "cancelled",
    /// The process was terminated (`terminate(pid)`).
    Terminated => "terminated",
    /// A process linked to this one ended with an error (Lua's `spawn_linked`, `link`).
    LinkDown => "link_down",
    /// The host's queue of processes waiting to start is full (`queue_size`).
    QueueFull => "queue_full",
    /// A PID names no process this runtime knows.
    UnknownProcess => "unknown_process",
    /// The guest called `exit` with a non-zero code.
    ExitCode => "exit_code",
    /// A Lua script failed: a syntax error (refused at spawn), `error(...)`, a failed
    /// `assert`, or `return nil, err`.
    ScriptError => "script_error",
    /// The host failed while running the process (a bug: reported, never swallowed).
    HostFailure => "host_failure",
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown error kind `{s}` (known: {})", known.join(", "))
            })
    }
}

/// A host function's refusal of a call that breaks its interface's rules (a write past what
/// `check-write` permitted): the guest's fault, so its process ends with `trap`, not
/// `host_failure`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GuestBrokeARule(pub String);

/// Why the runtime refused a request (load a manifest, spawn a process).
///
/// Errors that happen *inside* a running process are not this type: they arrive in its EXIT
/// event as an [`crate::ExitError`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest could not be read, parsed or validated.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An ID names no loaded entry.
    #[error("unknown entry `{id}`")]
    UnknownEntry {
        /// The ID as given.
        id: String,
    },
    /// An ID names an entry of another kind than the one asked for.
    #[error("entry `{id}` is a `{actual}`, expected a `{expected}`")]
    WrongEntryKind {
        /// The entry.
        id: EntryId,
        /// The kind the request needs.
        expected: crate::manifest::EntryKind,
        /// The entry's kind.
        actual: crate::manifest::EntryKind,
    },
    /// An entry's binary cannot be run.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Spawn arguments do not fit the export's parameters, or exceed `max_value`.
    #[error("entry `{entry}`: {source}")]
    BadArgument {
        /// The entry spawned.
        entry: EntryId,
        /// What does not fit.
        #[source]
        source: Box<ValueError>,
    },
    /// No `process.host` entry is loaded.
    #[error("no `process.host` entry is loaded: a process needs a host to run on")]
    NoHost,
    /// A `required` environment variable has no value.
    #[error(
        "entry `{entry}`: required environment variable `{name}` (from `{variable}`) has no value"
    )]
    MissingEnv {
        /// The entry spawned.
        entry: EntryId,
        /// The `env.variable` entry's ID.
        variable: String,
        /// The variable's name as the guest sees it.
        name: String,
    },
    /// The host's queue of processes waiting to start is full.
    #[error("host `{host}` is busy: its queue of {queue_size} processes waiting to start is full")]
    QueueFull {
        /// The `process.host` entry.
        host: EntryId,
        /// Its `queue_size`.
        queue_size: usize,
    },
    /// A PID names no process this runtime knows (or still remembers).
    #[error("no process {pid} (it never existed here, or ended too long ago to be remembered)")]
    UnknownProcess {
        /// The PID asked about.
        pid: crate::event::Pid,
    },
    /// An environment variable cannot be changed.
    #[error("env.variable `{id}` cannot be changed: {reason}")]
    EnvNotWritable {
        /// The `env.variable` entry.
        id: EntryId,
        /// Why (readonly, or not in a memory storage).
        reason: String,
    },
    /// A mount's host directory cannot be opened; `reason` names the host directory.
    #[error("entry `{entry}`: mount `{guest}`: {reason}")]
    MountUnavailable {
        /// The entry spawned.
        entry: EntryId,
        /// The mount's path in the guest.
        guest: String,
        /// Why, naming the host directory.
        reason: String,
    },
    /// Several `process.host` entries are loaded and the request named none.
    #[error("several `process.host` entries are loaded ({hosts}): name the one to use")]
    AmbiguousHost {
        /// Their IDs, comma-separated.
        hosts: String,
    },
    /// The WebAssembly engine could not be created.
    #[error("the WebAssembly engine could not start: {reason}")]
    EngineStart {
        /// What wasmtime reported.
        reason: String,
    },
    /// A `process.host` could not start its scheduler.
    #[error("host `{host}` could not start: {reason}")]
    HostStart {
        /// The `process.host` entry.
        host: EntryId,
        /// What failed.
        reason: String,
    },
    /// A Lua script was refused (a syntax error, at spawn).
    #[error("script `{name}`: {message}")]
    Script {
        /// The script's name.
        name: String,
        /// The Lua error.
        message: String,
    },
}

impl Error {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Manifest(e) => e.kind,
            Error::UnknownEntry { .. } => ErrorKind::UnknownEntry,
            Error::NoHost | Error::AmbiguousHost { .. } => ErrorKind::MissingHost,
            Error::UnknownProcess { .. } => ErrorKind::UnknownProcess,
            Error::QueueFull { .. } => ErrorKind::QueueFull,
            Error::MissingEnv { .. } => ErrorKind::MissingEnv,
            Error::EnvNotWritable { .. } => ErrorKind::EnvNotWritable,
            Error::MountUnavailable { .. } => ErrorKind::MountUnavailable,
            Error::WrongEntryKind { .. } => ErrorKind::WrongEntryKind,
            Error::Load(e) => e.kind(),
            Error::BadArgument { source, .. } => match **source {
                ValueError::TooLarge { .. } => ErrorKind::LimitExceeded,
                _ => ErrorKind::BadArgument,
            },
            Error::HostStart { .. } | Error::EngineStart { .. } => ErrorKind::HostFailure,
            Error::Script { .. } => ErrorKind::ScriptError,
        }
    }
}

/// An error shown with its kind first, `error[hash_mismatch]: message`, as the CLI, the
/// harness and scripts show it: the kind is the stable word callers match on, the message only
/// adds context.
pub struct Kinded<'a> {
    kind: ErrorKind,
    message: &'a dyn fmt::Display,
}

impl<'a> Kinded<'a> {
    /// `message` shown under `kind`.
    pub fn new(kind: ErrorKind, message: &'a dyn fmt::Display) -> Self {
        Kinded { kind, message }
    }
}

impl fmt::Display for Kinded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message may quote a binary or a guest (a trap's backtrace names its functions).
        let message = crate::printable::printable_lines(&self.message);
        write!(f, "error[{}]: {message}", self.kind)
    }
}

impl Error {
    /// This error under its kind: `error[kind]: message`.
    pub fn kinded(&self) -> Kinded<'_> {
        Kinded::new(self.kind(), self)
    }
}

impl ManifestError {
    /// This error under its kind: `error[kind]: message`.
    pub fn kinded(&self) -> Kinded<'_> {
        Kinded::new(self.kind, self)
    }
}

impl crate::event::ExitError {
    /// This error under its kind: `error[kind]: message` (its own `Display` is `kind: message`,
    /// the form scripts see).
    pub fn kinded(&self) -> Kinded<'_> {
        Kinded::new(self.kind, &self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for &kind in ErrorKind::ALL {
            assert_eq!(kind.as_str().parse::<ErrorKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        let err = "no_such_kind".parse::<ErrorKind>().unwrap_err();
        assert!(err.contains("hash_mismatch"), "{err}");
    }

    /// Users match on the kinds the README lists: the list must be the whole of them.
    #[test]
    fn the_readme_lists_every_kind_and_no_other() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("the README");
        let section = readme
            .split("\n## Errors\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has an Errors section");
        let paragraph = section
            .split("\n\n")
            .find(|p| p.contains("snake_case kind"));
        let listed: std::collections::BTreeSet<&str> = paragraph
            .expect("the paragraph listing the kinds")
            .split('`')
            .skip(1)
            .step_by(2)
            // A kind's spelling: other code spans (`nil, err`) are prose.
            .filter(|word| word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .collect();
        let kinds: std::collections::BTreeSet<&str> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        let missing: Vec<_> = kinds.difference(&listed).collect();
        let unknown: Vec<_> = listed.difference(&kinds).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README.md's Errors section: missing {missing:?}, not a kind {unknown:?}"
        );
    }
}
