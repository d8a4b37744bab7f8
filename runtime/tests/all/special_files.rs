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
