//! Special files in mounts (a FIFO here) are refused when a guest opens them, instead of
//! blocking a host thread that outlives the guest.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::receive;
use serde_json::json;
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{Exit, Mailbox, Runtime};

/// A preview 1 core module whose `main(plain)` opens `fifo` (or, when `plain` is not 0,
/// `plain.txt`) in its first preopen (fd 3) for reading and returns `path_open`'s errno (0:
/// opened).
const P1_OPENER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "fifo")
  (data (i32.const 32) "plain.txt")
  (func (export "main") (param $plain i32) (result i32)
    ;; dirfd 3, follow symlinks, the path, no oflags, rights fd_read, fd out at 64
    (call $open (i32.const 3) (i32.const 1)
      (select (i32.const 32) (i32.const 16) (local.get $plain))
      (select (i32.const 9) (i32.const 4) (local.get $plain))
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 64))))
"#;

/// A mount directory holding a FIFO `fifo` and a regular file `plain.txt`.
fn mount_with_a_fifo() -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    std::fs::write(dir.join("plain.txt"), "plain").unwrap();
    temp
}

/// The probe's `try-fs` (`t:probe`) and the preview 1 opener (`t:p1`), both with `mount` at
/// `/data` and at most 2 s to run; its binaries and manifest live in `bins`.
fn runtime(mount: &Path, bins: &Path) -> Runtime {
    let dist = crate::common::dist();
    let probe = std::fs::read(dist.join("probe.wasm")).unwrap();
    let p1 = wat::parse_str(P1_OPENER).unwrap();
    std::fs::write(bins.join("probe.wasm"), &probe).unwrap();
    std::fs::write(bins.join("p1.wasm"), &p1).unwrap();
    let entry = |name: &str, file: &str, hash: Digest, method: &str| {
        format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: {file}, hash: \"{hash}\", method: {method}, imports: [wasi:cli, wasi:filesystem], limits: {{ max_execution_ms: 2000 }}, wasi: {{ mounts: [{{ fs: data, guest: /data }}] }} }}\n"
        )
    };
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: data, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n{}{}",
        bins.display(),
        mount.display(),
        entry("probe", "probe.wasm", Digest::of(&probe), "try-fs"),
        entry("p1", "p1.wasm", Digest::of(&p1), "main"),
    );
    let manifest = bins.join("wasmproc.yaml");
    std::fs::write(&manifest, text).unwrap();
    Runtime::load(&manifest).unwrap()
}

fn run(rt: &Runtime, entry: &str, args: &[serde_json::Value]) -> Exit {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, "t:host", args, &mailbox).unwrap();
    receive(&mut mailbox).expect("an EXIT")
}

/// Whether anything holds `fifo` open for reading (or waits in an open to read it): opening
/// its write end without blocking succeeds only then.
fn someone_reads(fifo: &Path) -> bool {
    const O_NONBLOCK: i32 = 0o4000; // Linux
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(fifo)
        .is_ok()
}

#[test]
fn a_fifo_in_a_mount_is_refused_and_holds_no_host_thread() {
    let (mount, bins) = (mount_with_a_fifo(), tempfile::tempdir().unwrap());
    let rt = runtime(mount.path(), bins.path());
    // A component (through wasi:filesystem's open-at).
    let exit = run(
        &rt,
        "t:probe",
        &[json!("read"), json!("/data/fifo"), json!("")],
    );
    let value = exit
        .outcome
        .expect("the open fails in the guest, the process does not");
    assert!(value.get("err").is_some(), "{value}");
    // A core module (through preview 1's path_open): ENOTSUP (58).
    assert_eq!(run(&rt, "t:p1", &[json!(0)]).outcome, Ok(json!(58)));
    // Nothing was left waiting on the FIFO once the EXITs came.
    std::thread::sleep(Duration::from_millis(100));
    assert!(!someone_reads(&mount.path().join("fifo")));
    // Regular files still open.
    let exit = run(
        &rt,
        "t:probe",
        &[json!("read"), json!("/data/plain.txt"), json!("")],
    );
    assert_eq!(exit.outcome, Ok(json!({ "ok": "plain" })));
    assert_eq!(run(&rt, "t:p1", &[json!(1)]).outcome, Ok(json!(0)));
}

#[test]
fn many_guests_opening_fifos_do_not_starve_the_file_operations_of_others() {
    let (mount, bins) = (mount_with_a_fifo(), tempfile::tempdir().unwrap());
    let rt = runtime(mount.path(), bins.path());
    let mut mailbox = Mailbox::new();
    for _ in 0..600 {
        rt.spawn_monitored(
            "t:probe",
            "t:host",
            &[json!("read"), json!("/data/fifo"), json!("")],
            &mailbox,
        )
        .unwrap();
    }
    for _ in 0..600 {
        let exit = receive(&mut mailbox).expect("an EXIT");
        assert!(exit.outcome.is_ok(), "{:?}", exit.outcome);
    }
    let exit = run(
        &rt,
        "t:probe",
        &[json!("read"), json!("/data/plain.txt"), json!("")],
    );
    assert_eq!(exit.outcome, Ok(json!({ "ok": "plain" })));
}

/// A WASI 0.3 guest's `open(plain)`: opens `/data/plain.txt` (1) or `/data/fifo` (0) for
/// reading through `wasi:filesystem/types@0.3.0`'s `open-at` (an async call it waits for in
/// its callback loop); 0 when it opened, 100 + the error-code case when it did not.
const P3_OPENER: &str = r#"
(component $C
  (import "wasi:filesystem/types@0.3.0" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (; filesystem types ;)
    (export "[method]descriptor.open-at" (func async
      (param "self" (borrow $d)) (param "path-flags" $path-flags') (param "path" string)
      (param "open-flags" $open-flags') (param "flags" $descriptor-flags')
      (result (result (own $d) (error $error')))))))
  (alias export $types "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.3.0" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (; libc ;)
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $open-at (canon lower (func $types "[method]descriptor.open-at") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $ws.new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $subtask.drop (canon subtask.drop))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "open-at" (func $open-at (param i32 i32) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "subtask.drop" (func $subtask.drop (param i32)))
    (import "" "task.return" (func $ret (param i32)))
    (data (i32.const 2048) "fifo")
    (data (i32.const 2064) "plain.txt")
    (global $set (mut i32) (i32.const 0))
    (; open-at parameters ;)
    ;; The result<own<descriptor>, error-code> at 1536: its case at 0, the error's case at 4.
    (func $outcome (result i32)
      (if (result i32) (i32.eqz (i32.load8_u (i32.const 1536)))
        (then (i32.const 0))
        (else (i32.add (i32.const 100) (i32.load8_u (i32.const 1540))))))
    (func (export "open") (param $plain i32) (result i32)
      (local $status i32)
      (call $get-dirs (i32.const 1024))
      ;; The path, followed if a link, to read.
      (call $open-at-parameters (i32.load (i32.load (i32.const 1024))) (i32.const 1)
        (select (i32.const 2064) (i32.const 2048) (local.get $plain))
        (select (i32.const 9) (i32.const 4) (local.get $plain)) (i32.const 0) (i32.const 1))
      (local.set $status (call $open-at (i32.const 1280) (i32.const 1536)))
      (if (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 2))
        (then (call $ret (call $outcome)) (return (i32.const 0))))
      (global.set $set (call $ws.new))
      (call $join (i32.shr_u (local.get $status) (i32.const 4)) (global.get $set))
      (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))
    (func (export "callback") (param $event i32) (param $handle i32) (param $state i32) (result i32)
      (if (i32.ne (local.get $event) (i32.const 1)) (then unreachable))
      ;; Started, not returned yet: wait on.
      (if (i32.ne (local.get $state) (i32.const 2))
        (then (return (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))))
      (call $subtask.drop (local.get $handle))
      (call $ret (call $outcome))
      (i32.const 0)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "open-at" (func $open-at))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "subtask.drop" (func $subtask.drop))
    (export "task.return" (func $ret))))))
  (func (export "open") async (param "plain" u32) (result u32)
    (canon lift (core func $i "open") async (callback (core func $i "callback")))))
"#;

/// WASI 0.3's `open-at` is guarded too: a FIFO is `unsupported` (case 26) and leaves nothing
/// waiting on it; a regular file opens.
#[test]
fn a_wasi_p3_guest_cannot_open_a_fifo_either() {
    let (mount, bins) = (mount_with_a_fifo(), tempfile::tempdir().unwrap());
    let opener = crate::common::write_wat(
        bins.path(),
        "p3.wasm",
        &crate::wasi_p3::with_libc_and_filesystem_types(P3_OPENER),
    );
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: data, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n  - {{ name: p3, kind: process.wasm, fs: bins, path: p3.wasm, hash: \"{}\", method: open, imports: [wasi:filesystem], limits: {{ max_execution_ms: 2000 }}, wasi: {{ mounts: [{{ fs: data, guest: /data }}] }} }}\n",
        bins.path().display(),
        mount.path().display(),
        opener,
    );
    let manifest = bins.path().join("wasmproc.yaml");
    std::fs::write(&manifest, text).unwrap();
    let rt = Runtime::load(&manifest).unwrap();
    assert_eq!(run(&rt, "t:p3", &[json!(0)]).outcome, Ok(json!(126)));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!someone_reads(&mount.path().join("fifo")));
    assert_eq!(run(&rt, "t:p3", &[json!(1)]).outcome, Ok(json!(0)));
}
