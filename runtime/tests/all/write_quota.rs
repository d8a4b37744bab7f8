//! `limits.max_written`: what a process writes to its mounts is bounded, through every way a
//! guest writes (preview 1, WASI 0.2 and its streams, WASI 0.3 and its streams); past it a
//! call fails as on a full disk and writes nothing.

use std::path::Path;

use crate::common::{load_mounted, receive, write_wat, Mounted};
use serde_json::json;
use wasmproc_runtime::{ErrorKind, Exit, Mailbox, Runtime, NEW_NAME_BYTES};

/// preview 1's `nospc`.
const NOSPC: i64 = 51;

/// A preview 1 module whose `run(op, n)` does one writing call in its first preopen (fd 3) and
/// returns its errno (100 + the errno when opening `file` failed first): `op` 0 opens (creating)
/// `file` and `fd_write`s `n` bytes to it, 1 `fd_pwrite`s them at 1 GiB, 2 sets its size to `n`,
/// 3 creates the directory `dir`, 4 the symbolic link `link` to `file`, 5 the hard link `hard`
/// to `file`, 6 writes `n` bytes to stdout, 7 writes `n` bytes to `file` twice (the second
/// write's errno), 8 as 0 but traps when the write fails.
const P1_WRITER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite"
    (func $pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size"
    (func $set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink"
    (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link"
    (func $link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "file")
  (data (i32.const 32) "dir")
  (data (i32.const 48) "link")
  (data (i32.const 64) "hard")
  ;; `file`, created (or truncated): its descriptor, or -(100 + errno).
  (func $file (result i32) (local $e i32)
    ;; create | truncate; rights fd_read | fd_write | fd_filestat_set_size
    (local.set $e (call $open (i32.const 3) (i32.const 1) (i32.const 16) (i32.const 4)
      (i32.const 9) (i64.const 4194370) (i64.const 0) (i32.const 0) (i32.const 100)))
    (if (result i32) (local.get $e)
      (then (i32.sub (i32.const 0) (i32.add (i32.const 100) (local.get $e))))
      (else (i32.load (i32.const 100)))))
  ;; One buffer of `n` bytes at 4096 (an empty one first: the write takes the first that is not).
  (func $buffers (param $n i32)
    (i32.store (i32.const 200) (i32.const 4096))
    (i32.store (i32.const 204) (i32.const 0))
    (i32.store (i32.const 208) (i32.const 4096))
    (i32.store (i32.const 212) (local.get $n)))
  (func $write_n (param $fd i32) (result i32)
    (call $write (local.get $fd) (i32.const 200) (i32.const 2) (i32.const 104)))
  (func (export "run") (param $op i32) (param $n i32) (result i32) (local $fd i32) (local $e i32)
    (if (i32.eq (local.get $op) (i32.const 3))
      (then (return (call $mkdir (i32.const 3) (i32.const 32) (i32.const 3)))))
    (if (i32.eq (local.get $op) (i32.const 4))
      (then (return (call $symlink (i32.const 16) (i32.const 4) (i32.const 3) (i32.const 48) (i32.const 4)))))
    (if (i32.eq (local.get $op) (i32.const 5))
      (then (return (call $link (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 4)
        (i32.const 3) (i32.const 64) (i32.const 4)))))
    (call $buffers (local.get $n))
    (if (i32.eq (local.get $op) (i32.const 6)) (then (return (call $write_n (i32.const 1)))))
    (local.set $fd (call $file))
    (if (i32.lt_s (local.get $fd) (i32.const 0))
      (then (return (i32.sub (i32.const 0) (local.get $fd)))))
    (if (i32.eq (local.get $op) (i32.const 0)) (then (return (call $write_n (local.get $fd)))))
    (if (i32.eq (local.get $op) (i32.const 1))
      (then (return (call $pwrite (local.get $fd) (i32.const 200) (i32.const 2)
        (i64.const 1073741824) (i32.const 104)))))
    (if (i32.eq (local.get $op) (i32.const 2))
      (then (return (call $set_size (local.get $fd) (i64.extend_i32_u (local.get $n))))))
    (if (i32.eq (local.get $op) (i32.const 7))
      (then (drop (call $write_n (local.get $fd))) (return (call $write_n (local.get $fd)))))
    (local.set $e (call $write_n (local.get $fd)))
    (if (local.get $e) (then unreachable))
    (i32.const 0)))
"#;

/// A runtime whose entries run `binary` (from `bins`, method `method`) with `mount` at `/out`,
/// one entry per quota: `q<max>` with `limits.max_written: <max>`, and `free` without.
fn runtime(bins: &Path, mount: &Path, binary: &str, method: &str, quotas: &[u64]) -> Runtime {
    let names: Vec<(String, String)> = std::iter::once(("free".to_string(), String::new()))
        .chain(
            quotas
                .iter()
                .map(|max| (format!("q{max}"), format!(", max_written: {max}"))),
        )
        .map(|(name, limit)| {
            let fields = format!(
                "imports: [wasi:cli, wasi:filesystem], limits: {{ max_execution_ms: 5000{limit} }}"
            );
            (name, fields)
        })
        .collect();
    let entries: Vec<Mounted> = names
        .iter()
        .map(|(name, fields)| Mounted {
            name,
            binary,
            method,
            fields,
        })
        .collect();
    load_mounted(bins, mount, "/out", &entries)
}

fn run(rt: &Runtime, entry: &str, args: &[serde_json::Value]) -> Exit {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, "t:host", args, &mailbox).unwrap();
    receive(&mut mailbox).expect("an EXIT")
}

fn size_of(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.len())
}

#[test]
fn a_core_modules_writes_stop_at_its_quota_through_every_preview_1_call() {
    let (bins, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_wat(bins.path(), "p1.wasm", P1_WRITER);
    let name = NEW_NAME_BYTES;
    let quotas = [name - 1, name, name + 1000, 100];
    let rt = runtime(bins.path(), out.path(), "p1.wasm", "run", &quotas);
    let errno = |entry: &str, op: i64, n: i64| {
        let exit = run(&rt, entry, &[json!(op), json!(n)]);
        exit.outcome
            .unwrap_or_else(|e| panic!("{entry} {op} {n}: {e:?}"))
    };
    let file = out.path().join("file");
    let q = |max: u64| format!("t:q{max}");

    // Creating the file costs a name: one byte short, the open fails and creates nothing.
    assert_eq!(errno(&q(name - 1), 0, 10), json!(100 + NOSPC));
    assert_eq!(size_of(&file), None);
    // Exactly a name: created, and no byte may be written to it.
    assert_eq!(errno(&q(name), 0, 1), json!(NOSPC));
    assert_eq!(size_of(&file), Some(0));
    // A name and 1000 bytes: a write of 1000 goes (the empty buffer before it is skipped, as
    // preview 1 does); 1001 writes nothing.
    assert_eq!(errno(&q(name + 1000), 0, 1000), json!(0));
    assert_eq!(size_of(&file), Some(1000));
    std::fs::remove_file(&file).unwrap();
    assert_eq!(errno(&q(name + 1000), 0, 1001), json!(NOSPC));
    assert_eq!(size_of(&file), Some(0));
    // The quota is the process's, not the call's: a second write of 600 does not fit.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(errno(&q(name + 1000), 7, 600), json!(NOSPC));
    assert_eq!(size_of(&file), Some(600));
    // An existing file costs no name to open.
    assert_eq!(errno(&q(name), 0, 0), json!(0));
    // fd_pwrite, far from the start: its bytes count, not the hole before them.
    assert_eq!(errno(&q(100), 1, 100), json!(0));
    assert_eq!(size_of(&file), Some((1 << 30) + 100));
    assert_eq!(errno(&q(100), 1, 101), json!(NOSPC));
    assert_eq!(size_of(&file), Some(0));
    // Growing a file with fd_filestat_set_size counts the growth (the file was just truncated).
    assert_eq!(errno(&q(100), 2, 100), json!(0));
    assert_eq!(size_of(&file), Some(100));
    assert_eq!(errno(&q(100), 2, 101), json!(NOSPC));
    assert_eq!(size_of(&file), Some(0));
    // Directories and links cost a name each.
    assert_eq!(errno(&q(name - 1), 3, 0), json!(NOSPC));
    assert!(!out.path().join("dir").exists());
    assert_eq!(errno(&q(name), 3, 0), json!(0));
    assert!(out.path().join("dir").is_dir());
    assert_eq!(errno(&q(name - 1), 4, 0), json!(NOSPC));
    assert_eq!(errno(&q(name - 1), 5, 0), json!(NOSPC));
    assert_eq!(size_of(&out.path().join("link")), None);
    assert_eq!(size_of(&out.path().join("hard")), None);
    assert_eq!(errno(&q(name), 4, 0), json!(0));
    assert_eq!(errno(&q(name), 5, 0), json!(0));
    assert!(out.path().join("link").is_symlink());
    assert!(out.path().join("hard").is_file());
    // A call that fails for its own reasons keeps nothing of its charge: the name exists.
    assert_eq!(errno(&q(name), 3, 0), json!(20));
    // Standard output is not a file in a mount: not counted.
    assert_eq!(errno(&q(name - 1), 6, 60_000), json!(0));
    // Without a quota, nothing is counted.
    assert_eq!(errno("t:free", 0, 100_000), json!(0));
    assert_eq!(size_of(&file), Some(100_000));
}

#[test]
fn a_trap_after_a_refused_write_ends_the_process_with_the_quota_named() {
    let (bins, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_wat(bins.path(), "p1.wasm", P1_WRITER);
    let max = NEW_NAME_BYTES + 10;
    let rt = runtime(bins.path(), out.path(), "p1.wasm", "run", &[max]);
    let exit = run(&rt, &format!("t:q{max}"), &[json!(8), json!(11)]);
    let error = exit.outcome.expect_err("the guest traps");
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error:?}");
    assert!(
        error.message.starts_with(&format!(
            "max_written ({max} bytes) exceeded: a write of 11 bytes was refused after 4096 bytes, then the guest trapped: "
        )),
        "{error:?}"
    );
    // Without the quota, the same write goes.
    let exit = run(&rt, "t:free", &[json!(8), json!(11)]);
    assert_eq!(exit.outcome, Ok(json!(0)));
}

/// The probe's `try-fs` in `/out` (a Rust guest built for preview 1 and adapted: its writes go
/// through WASI 0.2's `write-via-stream` and `append-via-stream` streams, its directories and
/// links through `create-directory-at` and `symlink-at`).
#[test]
fn a_components_writes_stop_at_its_quota_through_wasi_0_2_and_its_streams() {
    let (bins, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::copy(
        crate::common::dist().join("probe.wasm"),
        bins.path().join("probe.wasm"),
    )
    .unwrap();
    let name = NEW_NAME_BYTES;
    // "written by probe": 16 bytes; "appended": 8.
    let quotas = [name - 1, name + 15, name + 16, 7, 8];
    let rt = runtime(bins.path(), out.path(), "probe.wasm", "try-fs", &quotas);
    let try_fs = |max: u64, op: &str, path: &str, target: &str| {
        let exit = run(
            &rt,
            &format!("t:q{max}"),
            &[json!(op), json!(path), json!(target)],
        );
        exit.outcome
            .unwrap_or_else(|e| panic!("{op} {path}: {e:?}"))
    };
    let full = json!({ "err": "StorageFull" });
    let ok = json!({ "ok": "ok" });
    let file = out.path().join("x");

    // Creating `x` costs a name; its 16 bytes, the rest.
    assert_eq!(try_fs(name - 1, "write", "/out/x", ""), full);
    assert_eq!(size_of(&file), None);
    assert_eq!(try_fs(name + 15, "write", "/out/x", ""), full);
    assert_eq!(size_of(&file), Some(0));
    assert_eq!(try_fs(name + 16, "write", "/out/x", ""), ok);
    assert_eq!(size_of(&file), Some(16));
    // An existing file: no name to pay; appending 8 bytes.
    assert_eq!(try_fs(7, "append", "/out/x", ""), full);
    assert_eq!(size_of(&file), Some(16));
    assert_eq!(try_fs(8, "append", "/out/x", ""), ok);
    assert_eq!(size_of(&file), Some(24));
    // Truncating writes nothing.
    assert_eq!(try_fs(7, "set-len", "/out/x", ""), ok);
    assert_eq!(size_of(&file), Some(0));
    // Directories and links cost a name.
    assert_eq!(try_fs(name - 1, "create-dir", "/out/d", ""), full);
    assert!(!out.path().join("d").exists());
    assert_eq!(try_fs(name + 15, "create-dir", "/out/d", ""), ok);
    assert_eq!(try_fs(name - 1, "symlink", "/out/l", "x"), full);
    assert!(!out.path().join("l").is_symlink());
    assert_eq!(try_fs(name + 15, "symlink", "/out/l", "x"), ok);
    assert!(out.path().join("l").is_symlink());
}

/// A WASI 0.3 guest's `write(n, mode)`: opens (creating) `/out/w` through `open-at`, hands a
/// stream to `write-via-stream` (at offset 0) or, when `mode` has bit 0, `append-via-stream`,
/// writes `n` bytes into it until they are all taken or the stream is dropped (or, when `mode`
/// has bit 1, cancels the first write that has to wait), ends the stream and reads the call's
/// future: returns the bytes taken × 256 + 0 when the future says `ok`, 100 + the error-code
/// case when not (and 100 + the case when the open failed). Its callback loop waits on each
/// step in turn.
const P3_WRITER: &str = r#"
(component $C
  (import "wasi:filesystem/types@0.3.0" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (; filesystem types ;)
    (export "[method]descriptor.open-at" (func async
      (param "self" (borrow $d)) (param "path-flags" $path-flags') (param "path" string)
      (param "open-flags" $open-flags') (param "flags" $descriptor-flags')
      (result (result (own $d) (error $error')))))
    (export "[method]descriptor.write-via-stream" (func
      (param "self" (borrow $d)) (param "data" (stream u8)) (param "offset" u64)
      (result (future (result (error $error'))))))
    (export "[method]descriptor.append-via-stream" (func
      (param "self" (borrow $d)) (param "data" (stream u8))
      (result (future (result (error $error'))))))))
  (alias export $types "descriptor" (type $descriptor))
  (alias export $types "error-code" (type $error-code))
  (import "wasi:filesystem/preopens@0.3.0" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (; libc ;)
  (type $bytes (stream u8))
  (type $outcome (future (result (error $error-code))))
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $open-at (canon lower (func $types "[method]descriptor.open-at") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $write-via-stream (canon lower (func $types "[method]descriptor.write-via-stream")))
  (core func $append-via-stream (canon lower (func $types "[method]descriptor.append-via-stream")))
  (core func $stream.new (canon stream.new $bytes))
  (core func $stream.write (canon stream.write $bytes async (memory (core memory $libc "memory"))))
  (core func $stream.drop-writable (canon stream.drop-writable $bytes))
  (core func $stream.cancel-write (canon stream.cancel-write $bytes))
  (core func $future.read (canon future.read $outcome async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $ws.new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $subtask.drop (canon subtask.drop))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "open-at" (func $open-at (param i32 i32) (result i32)))
    (import "" "write-via-stream" (func $write-via-stream (param i32 i32 i64) (result i32)))
    (import "" "append-via-stream" (func $append-via-stream (param i32 i32) (result i32)))
    (import "" "stream.new" (func $stream.new (result i64)))
    (import "" "stream.write" (func $stream.write (param i32 i32 i32) (result i32)))
    (import "" "stream.drop-writable" (func $stream.drop-writable (param i32)))
    (import "" "stream.cancel-write" (func $stream.cancel-write (param i32) (result i32)))
    (import "" "future.read" (func $future.read (param i32 i32) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "subtask.drop" (func $subtask.drop (param i32)))
    (import "" "task.return" (func $ret (param i32)))
    (data (i32.const 2048) "w")
    (global $set (mut i32) (i32.const 0))
    (global $n (mut i32) (i32.const 0))
    (global $append (mut i32) (i32.const 0))
    (global $writer (mut i32) (i32.const 0))
    (global $future (mut i32) (i32.const 0))
    (global $taken (mut i32) (i32.const 0))
    (global $cancel (mut i32) (i32.const 0))
    (global $cancelled (mut i32) (i32.const 0))
    (; open-at parameters ;)
    (; wait ;)
    ;; The result<_, error-code> (or result<own<descriptor>, error-code>) at $at: 0 when ok,
    ;; else 100 + the error's case.
    (func $code (param $at i32) (result i32)
      (if (result i32) (i32.eqz (i32.load8_u (local.get $at)))
        (then (i32.const 0))
        (else (i32.add (i32.const 100) (i32.load8_u (i32.add (local.get $at) (i32.const 4)))))))
    (func $after-open (result i32) (local $file i32) (local $pair i64) (local $reader i32)
      (if (i32.load8_u (i32.const 1536))
        (then (call $ret (call $code (i32.const 1536))) (return (i32.const 0))))
      (local.set $file (i32.load (i32.const 1540)))
      (local.set $pair (call $stream.new))
      (local.set $reader (i32.wrap_i64 (local.get $pair)))
      (global.set $writer (i32.wrap_i64 (i64.shr_u (local.get $pair) (i64.const 32))))
      (global.set $future
        (if (result i32) (global.get $append)
          (then (call $append-via-stream (local.get $file) (local.get $reader)))
          (else (call $write-via-stream (local.get $file) (local.get $reader) (i64.const 0)))))
      (call $written (call $stream.write (global.get $writer) (i32.const 16384) (global.get $n))))
    ;; A write's status: more to write, or the stream ends and its future is read.
    (func $written (param $status i32) (result i32)
      (if (i32.eq (local.get $status) (i32.const -1))
        (then
          (if (global.get $cancel)
            (then
              (global.set $cancel (i32.const 0))
              (global.set $cancelled (i32.const 1))
              (local.set $status (call $stream.cancel-write (global.get $writer)))
              (if (i32.ne (local.get $status) (i32.const -1))
                (then (return (call $written (local.get $status)))))))
          (return (call $wait (global.get $writer)))))
      (global.set $taken (i32.add (global.get $taken) (i32.shr_u (local.get $status) (i32.const 4))))
      ;; Completed (not dropped: 1, nor cancelled: 2), not cancelled by the guest, and bytes
      ;; left: write them.
      (if (i32.and
            (i32.eqz (i32.or (global.get $cancelled) (i32.and (local.get $status) (i32.const 15))))
            (i32.lt_u (global.get $taken) (global.get $n)))
        (then (return (call $written (call $stream.write (global.get $writer)
          (i32.add (i32.const 16384) (global.get $taken))
          (i32.sub (global.get $n) (global.get $taken)))))))
      (call $stream.drop-writable (global.get $writer))
      (local.set $status (call $future.read (global.get $future) (i32.const 1600)))
      (if (i32.eq (local.get $status) (i32.const -1))
        (then (return (call $wait (global.get $future)))))
      (call $finish))
    (func $finish (result i32)
      (call $ret (i32.add (i32.shl (global.get $taken) (i32.const 8)) (call $code (i32.const 1600))))
      (i32.const 0))
    (func (export "write") (param $n i32) (param $mode i32) (result i32) (local $status i32)
      (global.set $n (local.get $n))
      (global.set $append (i32.and (local.get $mode) (i32.const 1)))
      (global.set $cancel (i32.and (local.get $mode) (i32.const 2)))
      (global.set $set (call $ws.new))
      (call $get-dirs (i32.const 1024))
      ;; `w`, created, to write.
      (call $open-at-parameters (i32.load (i32.load (i32.const 1024))) (i32.const 0)
        (i32.const 2048) (i32.const 1) (i32.const 1) (i32.const 2))
      (local.set $status (call $open-at (i32.const 1280) (i32.const 1536)))
      (if (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 2))
        (then (return (call $after-open))))
      (call $wait (i32.shr_u (local.get $status) (i32.const 4))))
    (func (export "callback") (param $event i32) (param $handle i32) (param $state i32) (result i32)
      ;; The open (a subtask: 1) returned (2), or not yet.
      (if (i32.eq (local.get $event) (i32.const 1))
        (then
          (if (i32.ne (local.get $state) (i32.const 2))
            (then (return (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))))
          (call $subtask.drop (local.get $handle))
          (return (call $after-open))))
      ;; A stream write (3) ended.
      (if (i32.eq (local.get $event) (i32.const 3)) (then (return (call $written (local.get $state)))))
      ;; The future was read (4).
      (if (i32.eq (local.get $event) (i32.const 4)) (then (return (call $finish))))
      unreachable))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "open-at" (func $open-at))
    (export "write-via-stream" (func $write-via-stream))
    (export "append-via-stream" (func $append-via-stream))
    (export "stream.new" (func $stream.new))
    (export "stream.write" (func $stream.write))
    (export "stream.drop-writable" (func $stream.drop-writable))
    (export "stream.cancel-write" (func $stream.cancel-write))
    (export "future.read" (func $future.read))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "subtask.drop" (func $subtask.drop))
    (export "task.return" (func $ret))))))
  (func (export "write") async (param "n" u32) (param "mode" u32) (result u32)
    (canon lift (core func $i "write") async (callback (core func $i "callback")))))
"#;

/// `insufficient-space`'s case in WASI 0.3's `error-code`.
const P3_FULL: u32 = 22;

/// WASI 0.3's streams move a guest's bytes with no host call; wasmproc's consumer charges them
/// chunk by chunk (8 KiB) before each is written, and a chunk past the quota ends the stream.
#[test]
fn a_wasi_p3_guests_stream_writes_stop_at_its_quota() {
    let (bins, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_wat(
        bins.path(),
        "p3.wasm",
        &crate::wasi_p3::with_libc_and_filesystem_types(P3_WRITER),
    );
    let name = NEW_NAME_BYTES;
    let quotas = [name - 1, name + 100, name + 20_000, name + 40_000, 100];
    let rt = runtime(bins.path(), out.path(), "p3.wasm", "write", &quotas);
    let write = |entry: &str, n: u32, mode: u32| {
        let exit = run(&rt, entry, &[json!(n), json!(mode)]);
        let value = exit
            .outcome
            .unwrap_or_else(|e| panic!("{entry} {n}: {e:?}"));
        let value = value.as_u64().expect("a number") as u32;
        (value >> 8, value & 0xff)
    };
    let q = |max: u64| format!("t:q{max}");
    let file = out.path().join("w");
    let full = 100 + P3_FULL;
    let (at_0, append, cancel) = (0, 1, 2);

    // The open that creates `w` pays a name.
    assert_eq!(write(&q(name - 1), 10, at_0), (0, full));
    assert_eq!(size_of(&file), None);
    assert_eq!(write(&q(name + 100), 100, at_0), (100, 0));
    assert_eq!(size_of(&file), Some(100));
    // 101 bytes: one chunk past the quota, none of it written.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(write(&q(name + 100), 101, at_0), (0, full));
    assert_eq!(size_of(&file), Some(0));
    // 30,000 bytes under 20,000 (and a name): two chunks of 8 KiB go, the third does not fit.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(write(&q(name + 20_000), 30_000, at_0), (16_384, full));
    assert_eq!(size_of(&file), Some(16_384));
    // Appending to the existing file: no name, 100 bytes.
    assert_eq!(write(&q(100), 100, append), (100, 0));
    assert_eq!(size_of(&file), Some(16_484));
    assert_eq!(write(&q(100), 101, append), (0, full));
    assert_eq!(size_of(&file), Some(16_484));
    // Without a quota, all of it.
    assert_eq!(write("t:free", 30_000, append), (30_000, 0));
    assert_eq!(size_of(&file), Some(46_484));
    // A write cancelled while a chunk is being written (when one has to wait: a chunk the
    // blocking thread wrote before the consumer looked completes at once, 1 run in 10 here)
    // takes no chunk after it: the stream and its future end with what was written, and so
    // does the process.
    std::fs::remove_file(&file).unwrap();
    let (taken, code) = write(&q(name + 40_000), 40_000, at_0 | cancel);
    assert_eq!(code, 0);
    assert!(taken <= 40_000, "{taken}");
    assert_eq!(size_of(&file), Some(u64::from(taken)));
}

/// A WASI 0.2 component's `run(op, n)`, calling `wasi:filesystem` directly (no stream): `op` 0
/// opens (creating) `f` in its first preopen and `descriptor.write`s `n` bytes at offset 0, 1
/// opens it and `set-size`s it to `n`, 2 `link-at`s `h` to `f`. Returns 0 when the call (and
/// the open) succeeded, else 100 + the error-code case.
const P2_WRITER: &str = r#"
(component $C
  (import "wasi:filesystem/types@0.2.12" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (; filesystem types 0.2 ;)
    (export "[method]descriptor.open-at" (func
      (param "self" (borrow $d)) (param "path-flags" $path-flags') (param "path" string)
      (param "open-flags" $open-flags') (param "flags" $descriptor-flags')
      (result (result (own $d) (error $error')))))
    (export "[method]descriptor.write" (func
      (param "self" (borrow $d)) (param "buffer" (list u8)) (param "offset" u64)
      (result (result u64 (error $error')))))
    (export "[method]descriptor.set-size" (func
      (param "self" (borrow $d)) (param "size" u64) (result (result (error $error')))))
    (export "[method]descriptor.link-at" (func
      (param "self" (borrow $d)) (param "old-path-flags" $path-flags') (param "old-path" string)
      (param "new-descriptor" (borrow $d)) (param "new-path" string)
      (result (result (error $error')))))))
  (alias export $types "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.2.12" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (; libc ;)
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $open-at (canon lower (func $types "[method]descriptor.open-at")
    (memory (core memory $libc "memory"))))
  (core func $write (canon lower (func $types "[method]descriptor.write")
    (memory (core memory $libc "memory"))))
  (core func $set-size (canon lower (func $types "[method]descriptor.set-size")
    (memory (core memory $libc "memory"))))
  (core func $link-at (canon lower (func $types "[method]descriptor.link-at")
    (memory (core memory $libc "memory"))))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "open-at" (func $open-at (param i32 i32 i32 i32 i32 i32 i32)))
    (import "" "write" (func $write (param i32 i32 i32 i64 i32)))
    (import "" "set-size" (func $set-size (param i32 i64 i32)))
    (import "" "link-at" (func $link-at (param i32 i32 i32 i32 i32 i32 i32 i32)))
    (data (i32.const 2048) "f")
    (data (i32.const 2056) "h")
    (func (export "run") (param $op i32) (param $n i32) (result i32) (local $dir i32) (local $file i32)
      (call $get-dirs (i32.const 1024))
      (local.set $dir (i32.load (i32.load (i32.const 1024))))
      (if (i32.eq (local.get $op) (i32.const 2))
        (then
          (call $link-at (local.get $dir) (i32.const 0) (i32.const 2048) (i32.const 1)
            (local.get $dir) (i32.const 2056) (i32.const 1) (i32.const 1536))
          ;; result<_, error-code>: its case at 0, the error's at 1.
          (return (if (result i32) (i32.load8_u (i32.const 1536))
            (then (i32.add (i32.const 100) (i32.load8_u (i32.const 1537))))
            (else (i32.const 0))))))
      ;; open-at: create, write
      (call $open-at (local.get $dir) (i32.const 0) (i32.const 2048) (i32.const 1)
        (i32.const 1) (i32.const 2) (i32.const 1536))
      (if (i32.load8_u (i32.const 1536))
        (then (return (i32.add (i32.const 100) (i32.load8_u (i32.const 1540))))))
      (local.set $file (i32.load (i32.const 1540)))
      (if (i32.eqz (local.get $op))
        (then
          (call $write (local.get $file) (i32.const 16384) (local.get $n) (i64.const 0)
            (i32.const 1600))
          ;; result<u64, error-code>: its case at 0, the value or the error at 8.
          (return (if (result i32) (i32.load8_u (i32.const 1600))
            (then (i32.add (i32.const 100) (i32.load8_u (i32.const 1608))))
            (else (i32.const 0))))))
      (call $set-size (local.get $file) (i64.extend_i32_u (local.get $n)) (i32.const 1600))
      (if (result i32) (i32.load8_u (i32.const 1600))
        (then (i32.add (i32.const 100) (i32.load8_u (i32.const 1601))))
        (else (i32.const 0)))))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "open-at" (func $open-at))
    (export "write" (func $write))
    (export "set-size" (func $set-size))
    (export "link-at" (func $link-at))))))
  (func (export "run") (param "op" u32) (param "n" u32) (result u32)
    (canon lift (core func $i "run"))))
"#;

/// `insufficient-space`'s case in WASI 0.2's `error-code`.
const P2_FULL: i64 = 23;

/// What a WASI 0.2 component writes without a stream (`descriptor.write`), the growth it asks of
/// `set-size`, and a hard link it makes are charged as well.
#[test]
fn a_components_direct_writes_size_changes_and_links_are_charged() {
    let (bins, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_wat(
        bins.path(),
        "p2.wasm",
        &crate::wasi_p3::with_libc_and_filesystem_types(P2_WRITER),
    );
    let name = NEW_NAME_BYTES;
    let rt = runtime(bins.path(), out.path(), "p2.wasm", "run", &[name + 10, 10]);
    let code = |max: u64, op: i64, n: i64| {
        let exit = run(&rt, &format!("t:q{max}"), &[json!(op), json!(n)]);
        exit.outcome.unwrap_or_else(|e| panic!("{op} {n}: {e:?}"))
    };
    let (file, full) = (out.path().join("f"), json!(100 + P2_FULL));
    // The open that creates `f` pays a name; then `descriptor.write`'s bytes.
    assert_eq!(code(10, 0, 1), full);
    assert_eq!(size_of(&file), None);
    assert_eq!(code(name + 10, 0, 10), json!(0));
    assert_eq!(size_of(&file), Some(10));
    assert_eq!(code(10, 0, 11), full);
    assert_eq!(size_of(&file), Some(10));
    // Growing it from 10 to 20 costs 10; to 31, 21.
    assert_eq!(code(10, 1, 20), json!(0));
    assert_eq!(size_of(&file), Some(20));
    assert_eq!(code(10, 1, 31), full);
    assert_eq!(size_of(&file), Some(20));
    // Shrinking costs nothing.
    assert_eq!(code(10, 1, 0), json!(0));
    // A hard link is a name.
    assert_eq!(code(10, 2, 0), full);
    assert!(!out.path().join("h").exists());
    assert_eq!(code(name + 10, 2, 0), json!(0));
    assert!(out.path().join("h").is_file());
}

/// A WASI 0.3 guest's `op(kind, n)`, each an async call it waits for in its callback loop:
/// `kind` 0 opens `w` in its first preopen (for writing, creating it) and `set-size`s it to
/// `n`, 1 `create-directory-at`s `d`, 2 `symlink-at`s `s` to `w`, 3 `link-at`s `k` to `w`.
/// Returns 0 when the calls succeeded, else 100 + the error-code case.
const P3_NAMER: &str = r#"
(component $C
  (import "wasi:filesystem/types@0.3.0" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (; filesystem types ;)
    (export "[method]descriptor.open-at" (func async
      (param "self" (borrow $d)) (param "path-flags" $path-flags') (param "path" string)
      (param "open-flags" $open-flags') (param "flags" $descriptor-flags')
      (result (result (own $d) (error $error')))))
    (export "[method]descriptor.set-size" (func async
      (param "self" (borrow $d)) (param "size" u64) (result (result (error $error')))))
    (export "[method]descriptor.create-directory-at" (func async
      (param "self" (borrow $d)) (param "path" string) (result (result (error $error')))))
    (export "[method]descriptor.symlink-at" (func async
      (param "self" (borrow $d)) (param "old-path" string) (param "new-path" string)
      (result (result (error $error')))))
    (export "[method]descriptor.link-at" (func async
      (param "self" (borrow $d)) (param "old-path-flags" $path-flags') (param "old-path" string)
      (param "new-descriptor" (borrow $d)) (param "new-path" string)
      (result (result (error $error')))))))
  (alias export $types "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.3.0" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (; libc ;)
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $open-at (canon lower (func $types "[method]descriptor.open-at") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $set-size (canon lower (func $types "[method]descriptor.set-size") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $create-dir (canon lower (func $types "[method]descriptor.create-directory-at") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $symlink (canon lower (func $types "[method]descriptor.symlink-at") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $link (canon lower (func $types "[method]descriptor.link-at") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $ws.new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $subtask.drop (canon subtask.drop))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "open-at" (func $open-at (param i32 i32) (result i32)))
    (import "" "set-size" (func $set-size (param i32 i64 i32) (result i32)))
    (import "" "create-dir" (func $create-dir (param i32 i32 i32 i32) (result i32)))
    (import "" "symlink" (func $symlink (param i32 i32) (result i32)))
    (import "" "link" (func $link (param i32 i32) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "subtask.drop" (func $subtask.drop (param i32)))
    (import "" "task.return" (func $ret (param i32)))
    (data (i32.const 2048) "w")
    (data (i32.const 2056) "d")
    (data (i32.const 2064) "s")
    (data (i32.const 2072) "k")
    (global $set (mut i32) (i32.const 0))
    (global $n (mut i32) (i32.const 0))
    ;; 0: opening `w` (its result at 1536); 1: the last call (its result at 1600).
    (global $stage (mut i32) (i32.const 1))
    (; open-at parameters ;)
    ;; A call's status: wait for it, or go on.
    (func $step (param $status i32) (result i32)
      (if (i32.ne (i32.and (local.get $status) (i32.const 15)) (i32.const 2))
        (then
          (call $join (i32.shr_u (local.get $status) (i32.const 4)) (global.get $set))
          (return (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))))
      (call $done))
    (func $done (result i32)
      (if (i32.eqz (global.get $stage))
        (then
          (if (i32.load8_u (i32.const 1536))
            (then (return (call $finish (i32.const 1536)))))
          (global.set $stage (i32.const 1))
          (return (call $step (call $set-size (i32.load (i32.const 1540))
            (i64.extend_i32_u (global.get $n)) (i32.const 1600))))))
      (call $finish (i32.const 1600)))
    ;; Returns the outcome of the result<_, error-code> at $at.
    (func $finish (param $at i32) (result i32)
      (call $ret (if (result i32) (i32.load8_u (local.get $at))
        (then (i32.add (i32.const 100) (i32.load8_u (i32.add (local.get $at) (i32.const 4)))))
        (else (i32.const 0))))
      (i32.const 0))
    (func (export "op") (param $kind i32) (param $n i32) (result i32) (local $dir i32)
      (global.set $n (local.get $n))
      (global.set $set (call $ws.new))
      (call $get-dirs (i32.const 1024))
      (local.set $dir (i32.load (i32.load (i32.const 1024))))
      (if (i32.eqz (local.get $kind))
        (then
          ;; `w`, created, to write.
          (call $open-at-parameters (local.get $dir) (i32.const 0) (i32.const 2048) (i32.const 1)
            (i32.const 1) (i32.const 2))
          (global.set $stage (i32.const 0))
          (return (call $step (call $open-at (i32.const 1280) (i32.const 1536))))))
      (if (i32.eq (local.get $kind) (i32.const 1))
        (then (return (call $step
          (call $create-dir (local.get $dir) (i32.const 2056) (i32.const 1) (i32.const 1600))))))
      (if (i32.eq (local.get $kind) (i32.const 2))
        (then
          ;; symlink-at's parameters at 1280: self, old path, new path.
          (i32.store (i32.const 1280) (local.get $dir))
          (i32.store (i32.const 1284) (i32.const 2048))
          (i32.store (i32.const 1288) (i32.const 1))
          (i32.store (i32.const 1292) (i32.const 2064))
          (i32.store (i32.const 1296) (i32.const 1))
          (return (call $step (call $symlink (i32.const 1280) (i32.const 1600))))))
      ;; link-at's parameters at 1280: self, old-path-flags, old path, new descriptor, new path.
      (i32.store (i32.const 1280) (local.get $dir))
      (i32.store8 (i32.const 1284) (i32.const 0))
      (i32.store (i32.const 1288) (i32.const 2048))
      (i32.store (i32.const 1292) (i32.const 1))
      (i32.store (i32.const 1296) (local.get $dir))
      (i32.store (i32.const 1300) (i32.const 2072))
      (i32.store (i32.const 1304) (i32.const 1))
      (call $step (call $link (i32.const 1280) (i32.const 1600))))
    (func (export "callback") (param $event i32) (param $handle i32) (param $state i32) (result i32)
      ;; Only subtasks (1) are waited for: on until one returned (2).
      (if (i32.ne (local.get $event) (i32.const 1)) (then unreachable))
      (if (i32.ne (local.get $state) (i32.const 2))
        (then (return (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))))
      (call $subtask.drop (local.get $handle))
      (call $done)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "open-at" (func $open-at))
    (export "set-size" (func $set-size))
    (export "create-dir" (func $create-dir))
    (export "symlink" (func $symlink))
    (export "link" (func $link))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "subtask.drop" (func $subtask.drop))
    (export "task.return" (func $ret))))))
  (func (export "op") async (param "kind" u32) (param "n" u32) (result u32)
    (canon lift (core func $i "op") async (callback (core func $i "callback")))))
"#;

/// WASI 0.3's `set-size`, `create-directory-at`, `symlink-at` and `link-at` are charged as WASI
/// 0.2's are.
#[test]
fn a_wasi_p3_guests_size_changes_directories_and_links_are_charged() {
    let (bins, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_wat(
        bins.path(),
        "p3.wasm",
        &crate::wasi_p3::with_libc_and_filesystem_types(P3_NAMER),
    );
    let name = NEW_NAME_BYTES;
    let rt = runtime(
        bins.path(),
        out.path(),
        "p3.wasm",
        "op",
        &[name - 1, name, 10],
    );
    let code = |max: u64, kind: i64, n: i64| {
        let exit = run(&rt, &format!("t:q{max}"), &[json!(kind), json!(n)]);
        exit.outcome.unwrap_or_else(|e| panic!("{kind} {n}: {e:?}"))
    };
    let full = json!(100 + P3_FULL);
    let file = out.path().join("w");
    std::fs::write(&file, [1; 10]).unwrap();
    // Growing `w` from 10 to 20 costs 10; to 31, 21.
    assert_eq!(code(10, 0, 20), json!(0));
    assert_eq!(size_of(&file), Some(20));
    assert_eq!(code(10, 0, 31), full);
    assert_eq!(size_of(&file), Some(20));
    // A directory, a symbolic link and a hard link are a name each.
    for (kind, made) in [(1, "d"), (2, "s"), (3, "k")] {
        assert_eq!(code(name - 1, kind, 0), full, "{made}");
        assert_eq!(size_of(&out.path().join(made)), None);
        assert_eq!(code(name, kind, 0), json!(0), "{made}");
        assert!(size_of(&out.path().join(made)).is_some());
    }
}
