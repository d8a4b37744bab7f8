//! wasmproc-runtime runs WebAssembly components as supervised processes.
//!
//! The data flow is: [`manifest`] (YAML entries, validated) → `loader` (read the binary, check
//! its sha256, compile, or load the code an earlier run compiled from the [`code_cache`] when
//! the caller opted in, check imports and the export) → `host` (a scheduler per
//! `process.host`) → `process` (Init → Step → Close) → exactly one [`Exit`] per monitor.
//!
//! This crate does not parse command lines, run scenarios or print anything: the `wasmproc` CLI
//! and the `wasmproc-harness` crate do. Errors are typed, with a stable [`ErrorKind`].

#![warn(missing_docs)]

mod arena;
pub mod bounded_text;
pub mod capacity;
pub mod code_cache;
pub mod compile_isolation;
pub mod descriptors;
mod directory_listing;
pub mod engine;
mod env;
mod error;
mod event;
mod file_operations;
pub mod file_tree;
pub mod hibernation;
mod host;
mod id;
mod imports;
mod inspect;
mod limits;
mod loader;
mod lock;
mod log_budget;
#[cfg(feature = "lua")]
pub mod lua;
mod mailbox;
pub mod manifest;
mod network;
mod p1_call;
mod pagemap;
mod preemption;
pub mod printable;
mod process;
mod registry;
mod runtime;
pub mod serve;
pub mod source_file;
mod special_files;
mod store_data;
mod value;
mod wasi;
mod write_quota;
pub mod yaml_bounds;

pub use directory_listing::MAX_DIRECTORY_LISTINGS;
pub use error::{Error, ErrorKind, Kinded};
pub use event::{Accounting, Event, Exit, ExitError, Lifecycle, Output, Phase, Pid, TraceSink};
pub use file_operations::{MAX_FILE_OPERATIONS, MAX_STREAM_BUFFERS};
pub use host::BLOCKING_THREADS;
pub use id::EntryId;
pub use inspect::{inspect, BinaryKind, Inspection};
pub use limits::{Limits, CORE_INSTANCES_PER_PROCESS, MEMORIES_PER_PROCESS, TABLES_PER_PROCESS};
pub use loader::{HandlerProgram, LoadError, Loader, Program, MAX_BINARY_BYTES, RECHECK};
pub use mailbox::Mailbox;
pub use manifest::Manifest;
pub use network::http::MAX_HTTP_CONNECTIONS;
pub use network::http_parts::MAX_HTTP_PARTS;
pub use network::NetworkPolicy;
pub use registry::{REMEMBERED_EXITS, RETAINED_BYTES};
pub use runtime::{Runtime, SpawnOptions};
pub use serde_json::Value;
pub use value::{from_val, type_name, Signature, ValueError};
pub use wasi::{Stdio, StdioStreams};
pub use write_quota::NEW_NAME_BYTES;
