//! The error vocabulary: one stable, snake_case [`ErrorKind`] shared by the runtime, the CLI's
//! JSON, scenarios and the Lua layer. Messages add context; kinds never change meaning.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::id::EntryId;
use crate::loader::LoadError;
use crate::manifest::ManifestError;
use crate::value::ValueError;

/// What went wrong, as a word a scenario or a script can match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A manifest file is not YAML, or not shaped like a manifest.
    InvalidManifest,
    /// An entry misses a required field or has an invalid one (`fs is required`, ...).
    InvalidEntry,
    /// Two entries share one `namespace:name`.
    DuplicateEntry,
    /// An entry kind this runtime does not know.
    UnsupportedEntryKind,
    /// An ID names no loaded entry.
    UnknownEntry,
    /// An ID names an entry of another kind than the one asked for.
    WrongEntryKind,
    /// `hash` is not `<algorithm>:<hex digest>`.
    InvalidHashFormat,
    /// `hash` names an algorithm other than sha256.
    UnsupportedHashAlgorithm,
    /// The binary's sha256 differs from the entry's `hash`.
    HashMismatch,
    /// The binary could not be read from its `fs.directory`.
    BinaryUnreadable,
    /// The bytes are not a valid WebAssembly component.
    InvalidBinary,
    /// The binary imports an interface the entry does not grant.
    UngrantedImport,
    /// The entry's `method` is not a function exported by the binary.
    MissingExport,
    /// Spawn arguments do not fit the export's parameters.
    BadArgument,
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...).
    Trap,
    /// The host failed while running the process (a bug: reported, never swallowed).
    HostFailure,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::InvalidManifest,
        ErrorKind::InvalidEntry,
        ErrorKind::DuplicateEntry,
        ErrorKind::UnsupportedEntryKind,
        ErrorKind::UnknownEntry,
        ErrorKind::WrongEntryKind,
        ErrorKind::InvalidHashFormat,
        ErrorKind::UnsupportedHashAlgorithm,
        ErrorKind::HashMismatch,
        ErrorKind::BinaryUnreadable,
        ErrorKind::InvalidBinary,
        ErrorKind::UngrantedImport,
        ErrorKind::MissingExport,
        ErrorKind::BadArgument,
        ErrorKind::Trap,
        ErrorKind::HostFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidManifest => "invalid_manifest",
            ErrorKind::InvalidEntry => "invalid_entry",
            ErrorKind::DuplicateEntry => "duplicate_entry",
            ErrorKind::UnsupportedEntryKind => "unsupported_entry_kind",
            ErrorKind::UnknownEntry => "unknown_entry",
            ErrorKind::WrongEntryKind => "wrong_entry_kind",
            ErrorKind::InvalidHashFormat => "invalid_hash_format",
            ErrorKind::UnsupportedHashAlgorithm => "unsupported_hash_algorithm",
            ErrorKind::HashMismatch => "hash_mismatch",
            ErrorKind::BinaryUnreadable => "binary_unreadable",
            ErrorKind::InvalidBinary => "invalid_binary",
            ErrorKind::UngrantedImport => "ungranted_import",
            ErrorKind::MissingExport => "missing_export",
            ErrorKind::BadArgument => "bad_argument",
            ErrorKind::Trap => "trap",
            ErrorKind::HostFailure => "host_failure",
        }
    }
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
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown error kind `{s}` (known: {})", known.join(", "))
            })
    }
}

/// Why the runtime refused a request (load a manifest, spawn a process).
///
/// Errors that happen *inside* a running process are not this type: they arrive in its EXIT
/// event as an [`crate::ExitError`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("unknown entry `{id}`")]
    UnknownEntry { id: String },
    #[error("entry `{id}` is a `{actual}`, expected a `{expected}`")]
    WrongEntryKind {
        id: EntryId,
        expected: &'static str,
        actual: &'static str,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("entry `{entry}`: {source}")]
    BadArgument {
        entry: EntryId,
        #[source]
        source: Box<ValueError>,
    },
    #[error("no `process.host` entry is loaded: a process needs a host to run on")]
    NoHost,
    #[error("several `process.host` entries are loaded ({hosts}): name the one to use")]
    AmbiguousHost { hosts: String },
    #[error("the WebAssembly engine could not start: {reason}")]
    EngineStart { reason: String },
    #[error("host `{host}` could not start: {reason}")]
    HostStart { host: EntryId, reason: String },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Manifest(e) => e.kind,
            Error::UnknownEntry { .. } | Error::NoHost | Error::AmbiguousHost { .. } => {
                ErrorKind::UnknownEntry
            }
            Error::WrongEntryKind { .. } => ErrorKind::WrongEntryKind,
            Error::Load(e) => e.kind(),
            Error::BadArgument { .. } => ErrorKind::BadArgument,
            Error::HostStart { .. } | Error::EngineStart { .. } => ErrorKind::HostFailure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in ErrorKind::ALL {
            assert_eq!(kind.as_str().parse::<ErrorKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        let err = "no_such_kind".parse::<ErrorKind>().unwrap_err();
        assert!(err.contains("hash_mismatch"), "{err}");
    }
}
