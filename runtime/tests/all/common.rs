//! Helpers shared by the runtime's integration tests.

use std::time::Duration;

use wasmproc_runtime::{Event, Exit, Mailbox, Runtime, Value};

/// The next EXIT in `mailbox`, waiting up to 10 s.
pub fn receive(mailbox: &mut Mailbox) -> Option<Exit> {
    mailbox
        .receive_blocking(Some(Duration::from_secs(10)))
        .unwrap()
        .and_then(Event::into_exit)
}

/// The committed guest binaries (`guests/dist`).
pub fn dist() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/dist")
}

/// Writes `wat`, compiled, as `dir/file` and returns the binary's digest.
#[allow(dead_code)] // As below.
pub fn write_wat(
    dir: &std::path::Path,
    file: &str,
    wat: &str,
) -> wasmproc_runtime::manifest::Digest {
    let bytes = wat::parse_str(wat).unwrap_or_else(|e| panic!("{file}'s WAT: {e}"));
    std::fs::write(dir.join(file), &bytes).unwrap();
    wasmproc_runtime::manifest::Digest::of(&bytes)
}

/// Writes `text` as `dir/wasmproc.yaml` and loads it.
#[allow(dead_code)] // `capacity`, a test binary of its own, includes this file too.
pub fn load_written(dir: &std::path::Path, text: &str) -> Runtime {
    let manifest = dir.join("wasmproc.yaml");
    std::fs::write(&manifest, text).unwrap();
    Runtime::load(&manifest).unwrap()
}

/// Spawns `entry` on `host` without arguments and returns the value it returned (a failure
/// panics, naming the entry).
#[allow(dead_code)] // As above.
pub fn value_of(rt: &Runtime, entry: &str, host: &str) -> Value {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, host, &[], &mailbox).unwrap();
    let exit = receive(&mut mailbox).expect("an EXIT");
    exit.outcome
        .unwrap_or_else(|e| panic!("{entry} failed: {e:?}"))
}
