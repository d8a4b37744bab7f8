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

/// `wat`, a component named `$C`, with `(; sleep imports ;)` replaced by what a WASI 0.2
/// sleeper imports: `$block` (`pollable.block`), `$subscribe` (`subscribe-duration`) and
/// `$drop` (the pollable's drop), as core functions.
#[allow(dead_code)] // As below.
pub fn with_sleep_imports(wat: &str) -> String {
    wat.replace(
        "(; sleep imports ;)",
        r#"(import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $p (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow $p))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer $C $pollable (type $p))
    (export "pollable" (type $p' (eq $p)))
    (export "subscribe-duration" (func (param "when" u64) (result (own $p'))))))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $drop (canon resource.drop $pollable))"#,
    )
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

/// A preview 1 module whose `main(hold_ms)` opens `plain.txt` in its first preopen (fd 3) until
/// an open fails, keeps every file open for `hold_ms` (a clock `poll_oneoff`), and returns the
/// failed open's errno × 2^24 + the files it opened.
#[allow(dead_code)] // Not every test binary that includes this file uses it.
pub const P1_HOARDER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "plain.txt")
  (func (export "main") (param $hold_ms i32) (result i32)
    (local $opened i32) (local $errno i32)
    (block $refused
      (loop $again
        (local.set $errno (call $open (i32.const 3) (i32.const 1) (i32.const 32) (i32.const 9)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 64)))
        (br_if $refused (local.get $errno))
        (local.set $opened (i32.add (local.get $opened) (i32.const 1)))
        (br $again)))
    ;; One clock subscription at 128: userdata 0, tag 0 (clock), monotonic (id 1), the
    ;; timeout in nanoseconds, relative (flags 0); the event goes to 256, the count to 320.
    (i32.store (i32.const 144) (i32.const 1))
    (i64.store (i32.const 152)
      (i64.mul (i64.extend_i32_u (local.get $hold_ms)) (i64.const 1000000)))
    (drop (call $poll (i32.const 128) (i32.const 256) (i32.const 1) (i32.const 320)))
    (i32.or (i32.shl (local.get $errno) (i32.const 24)) (local.get $opened))))
"#;

/// The first line a process prints on `stdout` (from `StdioStreams::pipes`), waiting at most
/// 10 s for it: a listening guest's address, say.
#[allow(dead_code)] // Not every test binary that includes this file uses it.
pub fn first_line(stdout: tokio::io::DuplexStream) -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use tokio::io::AsyncBufReadExt;
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(stdout);
            tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
                .await
                .expect("it prints a line")
                .unwrap();
            line
        })
}

/// One `process.wasm` entry of [`load_mounted`]: its name, its binary (a file of the
/// manifest's directory), its method, and the rest of its fields (`imports`, `limits`).
#[allow(dead_code)] // As above.
pub struct Mounted<'a> {
    pub name: &'a str,
    pub binary: &'a str,
    pub method: &'a str,
    pub fields: &'a str,
}

/// Writes and loads a manifest in `bins` with the host `t:host` (2 workers) and `entries`, each
/// with `mount` at `guest` and its binary's hash taken from the file.
#[allow(dead_code)] // As above.
pub fn load_mounted(
    bins: &std::path::Path,
    mount: &std::path::Path,
    guest: &str,
    entries: &[Mounted],
) -> Runtime {
    let mut text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: mount, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n",
        bins.display(),
        mount.display()
    );
    for Mounted {
        name,
        binary,
        method,
        fields,
    } in entries
    {
        let hash =
            wasmproc_runtime::manifest::Digest::of(&std::fs::read(bins.join(binary)).unwrap());
        text += &format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: {binary}, hash: \"{hash}\", method: {method}, {fields}, wasi: {{ mounts: [{{ fs: mount, guest: {guest} }}] }} }}\n"
        );
    }
    load_written(bins, &text)
}
