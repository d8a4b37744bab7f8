//! The runtime's integration tests, one module per area, linked into one binary (one link of
//! wasmtime instead of one per file). `capacity` stays a binary of its own: it counts this
//! process's memory maps and fills the kernel's map limit, which other tests would disturb.

mod common;
mod directory_streams;
mod file_operations;
mod loopback;
mod warnings;

mod blocking_threads;
mod code_cache;
mod fuel;
mod hibernation;
mod http_parts;
#[cfg(feature = "lua")]
mod lua;
mod manifest_bounds;
mod manifest_fuzz;
mod name_lookup;
mod network;
mod open_files;
mod p3_guest;
mod random_types;
mod serve;
mod spawn;
mod special_files;
mod value_conversion;
mod wasi_p3;
mod wasi_random;
mod write_quota;
