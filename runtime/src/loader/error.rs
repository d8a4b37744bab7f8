//! Why an entry's binary cannot be run: each reason names the entry and maps to one
//! [`ErrorKind`].

use std::path::PathBuf;

use crate::error::ErrorKind;
use crate::id::EntryId;
use crate::inspect::BinaryKind;
use crate::manifest::{Digest, Method};

/// Why an entry's binary cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The binary could not be read from its `fs.directory`.
    #[error("entry `{entry}`: cannot read {}: {source}", path.display())]
    Unreadable {
        /// The entry loaded.
        entry: EntryId,
        /// The binary's path on the host.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The binary's sha256 differs from the entry's `hash`; nothing was compiled.
    #[error("entry `{entry}`: hash mismatch for {}: expected {expected}, actual {actual}", path.display())]
    HashMismatch {
        /// The entry loaded.
        entry: EntryId,
        /// The binary's path on the host.
        path: PathBuf,
        // Boxed: digests are 32 bytes each, and every `Result` carrying this error pays for
        // its largest variant.
        /// The entry's `hash`.
        expected: Box<Digest>,
        /// The digest of the bytes read.
        actual: Box<Digest>,
    },
    /// The bytes are not a valid WebAssembly component or core module.
    #[error("entry `{entry}`: {} is not a valid WebAssembly {what}: {reason}", path.display())]
    InvalidBinary {
        /// The entry loaded.
        entry: EntryId,
        /// The binary's path on the host.
        path: PathBuf,
        /// What the binary claims to be.
        what: BinaryKind,
        /// What wasmtime reported.
        reason: String,
    },
    /// A binary whose compile the compile limits stopped (see `compile_isolation`):
    /// `invalid_binary`, since this host cannot run it, but it may well be valid.
    #[error("entry `{entry}`: {} (a WebAssembly {what}) could not be compiled: {reason}", path.display())]
    NotCompiled {
        /// The entry loaded.
        entry: EntryId,
        /// The binary's path on the host.
        path: PathBuf,
        /// What the binary claims to be.
        what: BinaryKind,
        /// The limit and how to raise it.
        reason: String,
    },
    /// A valid binary that a slot of the instance pool cannot hold: a memory or table larger
    /// than a slot's, or more of them than a slot has: `limit_exceeded`, not `invalid_binary`,
    /// since the binary itself is valid.
    #[error("entry `{entry}`: {reason}")]
    PoolTooSmall {
        /// The entry loaded.
        entry: EntryId,
        /// Names the file, what wasmtime found and the settings to change.
        reason: String,
    },
    /// The binary imports interfaces the entry does not grant; nothing was linked.
    #[error("entry `{entry}`: the binary imports {} that the entry does not grant{} (imports: [{}])", listed(imports), advice(imports), granted.join(", "))]
    UngrantedImports {
        /// The entry loaded.
        entry: EntryId,
        /// The imports not granted.
        imports: Vec<String>,
        /// The entry's `imports:` list.
        granted: Vec<String>,
    },
    /// The binary imports an interface (or version) that wasmproc does not provide.
    #[error(
        "entry `{entry}`: the binary needs a host interface wasmproc does not provide: {reason}"
    )]
    UnsupportedImport {
        /// The entry loaded.
        entry: EntryId,
        /// Which import, and why.
        reason: String,
    },
    /// A limit the engine cannot honour (a `max_memory` larger than a pool slot, `fuel` on an
    /// engine that does not count it).
    #[error("entry `{entry}`: {reason}")]
    LimitNotHonoured {
        /// The entry loaded.
        entry: EntryId,
        /// Which limit, and what the engine allows.
        reason: String,
    },
    /// The entry's `method` is not a function exported by the binary.
    #[error(
        "entry `{entry}`: method `{method}` is not an exported function (exported functions: {})",
        list_or_none(available)
    )]
    MissingExport {
        /// The entry loaded.
        entry: EntryId,
        /// The entry's `method`.
        method: Method,
        /// The functions the binary exports.
        available: Vec<String>,
    },
    /// An entry to be served over HTTP whose binary exports no `wasi:http` handler.
    #[error(
        "entry `{entry}`: {} exports no wasi:http handler to serve (`wasi:http/handler@0.3.x` or `wasi:http/incoming-handler@0.2.x`; exported functions: {})",
        path.display(),
        list_or_none(available)
    )]
    NotAHandler {
        /// The entry loaded.
        entry: EntryId,
        /// The binary's path on the host.
        path: PathBuf,
        /// The functions the binary exports.
        available: Vec<String>,
    },
    /// The binary uses the component model's async ABI, and the engine for such binaries
    /// could not start (see `engine::concurrent_config`).
    #[error("entry `{entry}`: it uses the component model's async ABI, and the engine that runs such binaries could not start: {reason}")]
    NoConcurrentEngine {
        /// The entry loaded.
        entry: EntryId,
        /// Why the engine did not start.
        reason: String,
    },
    /// The compiler process could not be started or read (see `compile_isolation`): the
    /// host's failure, not the binary's.
    #[error("entry `{entry}`: {reason}")]
    CompilerUnavailable {
        /// The entry loaded.
        entry: EntryId,
        /// What failed.
        reason: String,
    },
}

/// What to add to `imports:` to grant these, when they are families wasmproc knows.
fn advice(imports: &[String]) -> String {
    // Each family once, in the order imports name them (imports of different families may
    // alternate, thousands of them).
    let mut families: Vec<_> = Vec::new();
    for family in imports
        .iter()
        .filter_map(|i| crate::manifest::Family::of_import(i))
        .map(|f| f.package())
    {
        if !families.contains(&family) {
            families.push(family);
        }
    }
    if families.is_empty() {
        String::new()
    } else {
        format!(": add {} to its imports", families.join(", "))
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        listed(items)
    }
}

/// Names a message lists at most: a binary may export or import 100,000 (wasmparser's bound),
/// each name up to 100,000 bytes, which made one message up to the binary's size.
const MAX_LISTED: usize = 32;

/// `items`, comma-separated, the first [`MAX_LISTED`] and how many more.
fn listed(items: &[String]) -> String {
    let shown = items[..items.len().min(MAX_LISTED)].join(", ");
    match items.len().checked_sub(MAX_LISTED) {
        Some(more) if more > 0 => format!("{shown}, … and {more} more"),
        _ => shown,
    }
}

impl LoadError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoadError::Unreadable { .. } => ErrorKind::BinaryUnreadable,
            LoadError::HashMismatch { .. } => ErrorKind::HashMismatch,
            LoadError::InvalidBinary { .. } | LoadError::NotCompiled { .. } => {
                ErrorKind::InvalidBinary
            }
            LoadError::PoolTooSmall { .. } => ErrorKind::LimitExceeded,
            LoadError::UngrantedImports { .. } => ErrorKind::UngrantedImport,
            LoadError::UnsupportedImport { .. } => ErrorKind::UnsupportedImport,
            LoadError::LimitNotHonoured { .. } => ErrorKind::InvalidEntry,
            LoadError::MissingExport { .. } | LoadError::NotAHandler { .. } => {
                ErrorKind::MissingExport
            }
            LoadError::NoConcurrentEngine { .. } | LoadError::CompilerUnavailable { .. } => {
                ErrorKind::HostFailure
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary may name 100,000 exports or imports: a message lists the first few.
    #[test]
    fn a_message_lists_a_binarys_names_up_to_a_bound() {
        let names: Vec<String> = (0..100_000).map(|i| format!("f{i}")).collect();
        let error = LoadError::MissingExport {
            entry: EntryId::parse("t:e").unwrap(),
            method: Method::parse("nope").unwrap(),
            available: names.clone(),
        }
        .to_string();
        assert!(error.ends_with("f30, f31, … and 99968 more)"), "{error}");
        assert!(error.len() < 400, "{}", error.len());

        let imports: Vec<String> = (0..10_000)
            .map(|i| match i % 2 {
                0 => format!("wasi:cli/environment@0.2.{i}"),
                _ => format!("wasi:io/streams@0.2.{i}"),
            })
            .collect();
        let error = LoadError::UngrantedImports {
            entry: EntryId::parse("t:e").unwrap(),
            imports,
            granted: vec![],
        }
        .to_string();
        assert!(error.len() < 2_000, "{}", error.len());
        assert!(
            error.contains(": add wasi:cli, wasi:io to its imports"),
            "{error}"
        );
        assert_eq!(listed(&names[..2]), "f0, f1");
    }
}
