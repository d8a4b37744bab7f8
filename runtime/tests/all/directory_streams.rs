//! Directory listings hold neither host threads nor host memory a guest can multiply: the
//! blocking threads are shared by every process on a host, and what a listing holds lives
//! outside `max_memory`.

use crate::common::{load_mounted, receive, write_wat, Mounted};
use crate::wasi_p3::mounted_guest;
use serde_json::json;
use wasmproc_runtime::{Exit, Mailbox, Runtime};

/// A WASI 0.3 guest's `hold(count, ms)`: starts `count` `read-directory` streams on its first
/// preopen, reads none of them, then waits `ms` (a `wait-for` in its callback loop) and returns
/// `count`.
const P3_DIRECTORY_HOLDER: &str = r#"
(component $C
  (import "wasi:filesystem/types@0.3.0" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (; filesystem types ;)
    (export "[method]descriptor.read-directory" (func (param "self" (borrow $d))
      (result (tuple (stream $entry') (future (result (error $error')))))))))
  (alias export $types "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.3.0" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (import "wasi:clocks/monotonic-clock@0.3.0" (instance $clock
    (export "wait-for" (func async (param "how-long" u64)))))
  (; libc ;)
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $read-directory (canon lower (func $types "[method]descriptor.read-directory")
    (memory (core memory $libc "memory"))))
  (core func $wait-for (canon lower (func $clock "wait-for") async))
  (core func $ws.new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $subtask.drop (canon subtask.drop))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "read-directory" (func $read-directory (param i32 i32)))
    (import "" "wait-for" (func $wait-for (param i64) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "subtask.drop" (func $subtask.drop (param i32)))
    (import "" "task.return" (func $ret (param i32)))
    (global $count (mut i32) (i32.const 0))
    (func (export "hold") (param $count i32) (param $ms i32) (result i32)
      (local $dir i32) (local $i i32) (local $status i32) (local $set i32)
      (global.set $count (local.get $count))
      (call $get-dirs (i32.const 1024))
      (local.set $dir (i32.load (i32.load (i32.const 1024))))
      (block $done
        (loop $more
          (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
          ;; The stream and the future, kept (their handles at 1536, overwritten).
          (call $read-directory (local.get $dir) (i32.const 1536))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more)))
      (local.set $status
        (call $wait-for (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000))))
      (if (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 2))
        (then (call $ret (local.get $count)) (return (i32.const 0))))
      (local.set $set (call $ws.new))
      (call $join (i32.shr_u (local.get $status) (i32.const 4)) (local.get $set))
      (i32.or (i32.const 2) (i32.shl (local.get $set) (i32.const 4))))
    (func (export "callback") (param $event i32) (param $handle i32) (param $state i32) (result i32)
      (if (i32.ne (local.get $event) (i32.const 1)) (then unreachable))
      (if (i32.ne (local.get $state) (i32.const 2)) (then unreachable))
      (call $subtask.drop (local.get $handle))
      (call $ret (global.get $count))
      (i32.const 0)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "read-directory" (func $read-directory))
    (export "wait-for" (func $wait-for))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "subtask.drop" (func $subtask.drop))
    (export "task.return" (func $ret))))))
  (func (export "hold") async (param "count" u32) (param "ms" u32) (result u32)
    (canon lift (core func $i "hold") async (callback (core func $i "callback")))))
"#;

/// A WASI 0.3 guest holding directory streams it never reads holds no host thread: wasmtime-wasi
/// gave each such stream a blocking thread until its second entry was read, so 100 of them
/// took all 64 of the host's, and every other guest's file operations waited for the guest to
/// end.
#[test]
fn unread_wasi_p3_directory_streams_hold_no_host_thread() {
    let (mount, bins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for i in 0..10 {
        std::fs::write(mount.path().join(format!("file{i}")), "x").unwrap();
    }
    write_wat(
        bins.path(),
        "holder.wasm",
        &crate::wasi_p3::with_libc_and_filesystem_types(P3_DIRECTORY_HOLDER),
    );
    std::fs::copy(
        crate::common::dist().join("probe.wasm"),
        bins.path().join("probe.wasm"),
    )
    .unwrap();
    let rt = load_mounted(
        bins.path(),
        mount.path(),
        "/data",
        &[
            Mounted {
                name: "holder",
                binary: "holder.wasm",
                method: "hold",
                fields:
                    "imports: [wasi:clocks, wasi:filesystem], limits: { max_execution_ms: 20000 }",
            },
            Mounted {
                name: "probe",
                binary: "probe.wasm",
                method: "try-fs",
                fields: "imports: [wasi:cli, wasi:filesystem], limits: { max_execution_ms: 3000 }",
            },
        ],
    );
    let mut holding = Mailbox::new();
    rt.spawn_monitored("t:holder", "t:host", &[json!(100), json!(5000)], &holding)
        .unwrap();
    // Its streams are started before its wait; the reader comes while it waits.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let exit = run(
        &rt,
        "t:probe",
        &[json!("read"), json!("/data/file0"), json!("")],
    );
    assert_eq!(exit.outcome, Ok(json!({ "ok": "x" })), "{exit:?}");
    let held = receive(&mut holding).expect("the holder's EXIT");
    assert_eq!(held.outcome, Ok(json!(100)));
}

fn run(rt: &Runtime, entry: &str, args: &[serde_json::Value]) -> Exit {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, "t:host", args, &mailbox).unwrap();
    receive(&mut mailbox).expect("an EXIT")
}

/// A WASI 0.3 guest's `list()`: reads its first preopen's `read-directory` stream one entry at a
/// time to its end, then the listing's future; returns entries × 2^16 + directories × 2^8 +
/// symbolic links, or 2^31 + 100 + the error-code case when the future says it failed.
const P3_LISTER: &str = r#"
(component $C
  (import "wasi:filesystem/types@0.3.0" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (; filesystem types ;)
    (export "[method]descriptor.read-directory" (func (param "self" (borrow $d))
      (result (tuple (stream $entry') (future (result (error $error')))))))))
  (alias export $types "descriptor" (type $descriptor))
  (alias export $types "directory-entry" (type $directory-entry))
  (alias export $types "error-code" (type $error-code))
  (import "wasi:filesystem/preopens@0.3.0" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (; libc ;)
  (type $entries (stream $directory-entry))
  (type $outcome (future (result (error $error-code))))
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $read-directory (canon lower (func $types "[method]descriptor.read-directory")
    (memory (core memory $libc "memory"))))
  (core func $stream.read (canon stream.read $entries async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $future.read (canon future.read $outcome async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $ws.new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "read-directory" (func $read-directory (param i32 i32)))
    (import "" "stream.read" (func $stream.read (param i32 i32 i32) (result i32)))
    (import "" "future.read" (func $future.read (param i32 i32) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "task.return" (func $ret (param i32)))
    (global $set (mut i32) (i32.const 0))
    (global $reader (mut i32) (i32.const 0))
    (global $future (mut i32) (i32.const 0))
    (global $tally (mut i32) (i32.const 0))
    (; wait ;)
    ;; A read's status: count the entry at 4096 (its type's case at 0), read on, or read the
    ;; future once the stream ended.
    (func $read (param $status i32) (result i32) (local $case i32)
      (loop $more
        (if (i32.eq (local.get $status) (i32.const -1))
          (then (return (call $wait (global.get $reader)))))
        (if (i32.shr_u (local.get $status) (i32.const 4))
          (then
            (local.set $case (i32.load8_u (i32.const 4096)))
            (global.set $tally (i32.add (global.get $tally) (i32.const 65536)))
            (if (i32.eq (local.get $case) (i32.const 2))
              (then (global.set $tally (i32.add (global.get $tally) (i32.const 256)))))
            (if (i32.eq (local.get $case) (i32.const 4))
              (then (global.set $tally (i32.add (global.get $tally) (i32.const 1)))))))
        ;; Dropped (1): the listing ended.
        (if (i32.ne (i32.and (local.get $status) (i32.const 15)) (i32.const 1))
          (then
            (local.set $status (call $stream.read (global.get $reader) (i32.const 4096) (i32.const 1)))
            (br $more))))
      (local.set $status (call $future.read (global.get $future) (i32.const 1600)))
      (if (i32.eq (local.get $status) (i32.const -1))
        (then (return (call $wait (global.get $future)))))
      (call $finish))
    (func $finish (result i32)
      (call $ret (if (result i32) (i32.load8_u (i32.const 1600))
        (then (i32.add (i32.const 0x80000064) (i32.load8_u (i32.const 1604))))
        (else (global.get $tally))))
      (i32.const 0))
    (func (export "list") (result i32)
      (global.set $set (call $ws.new))
      (call $get-dirs (i32.const 1024))
      (call $read-directory (i32.load (i32.load (i32.const 1024))) (i32.const 1536))
      (global.set $reader (i32.load (i32.const 1536)))
      (global.set $future (i32.load (i32.const 1540)))
      (call $read (call $stream.read (global.get $reader) (i32.const 4096) (i32.const 1))))
    (func (export "callback") (param $event i32) (param $handle i32) (param $state i32) (result i32)
      ;; A stream read (2) ended, or the future's (4).
      (if (i32.eq (local.get $event) (i32.const 2)) (then (return (call $read (local.get $state)))))
      (if (i32.eq (local.get $event) (i32.const 4)) (then (return (call $finish))))
      unreachable))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "read-directory" (func $read-directory))
    (export "stream.read" (func $stream.read))
    (export "future.read" (func $future.read))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "task.return" (func $ret))))))
  (func (export "list") async (result u32)
    (canon lift (core func $i "list") async (callback (core func $i "callback")))))
"#;

/// Listed a batch at a time, a directory still lists whole: every entry across batches, each
/// with its own type (a symbolic link is one), without `.` and `..`, and its future says ok.
#[test]
fn a_wasi_p3_directory_listing_has_every_entry_across_batches() {
    let (rt, mount, _bins) = mounted_guest(
        "lister",
        P3_LISTER,
        "list",
        "imports: [wasi:filesystem], limits: { max_execution_ms: 10000 }",
    );
    for i in 0..150 {
        std::fs::write(mount.path().join(format!("file{i}")), "x").unwrap();
    }
    for dir in ["a", "b", "c"] {
        std::fs::create_dir(mount.path().join(dir)).unwrap();
    }
    std::os::unix::fs::symlink("file0", mount.path().join("link")).unwrap();
    std::os::unix::fs::symlink("a", mount.path().join("dir-link")).unwrap();
    let exit = run(&rt, "t:lister", &[]);
    // 150 files, 3 directories, 2 symbolic links.
    assert_eq!(
        exit.outcome,
        Ok(json!((155 << 16) + (3 << 8) + 2)),
        "{exit:?}"
    );
}

/// A WASI 0.2 component's `hoard()`: calls `read-directory` on its first preopen until it
/// fails, keeping every listing; returns the listings it got × 256 + the error-code case.
const P2_LISTING_HOARDER: &str = r#"
(component $C
  (import "wasi:filesystem/types@0.2.12" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (export "directory-entry-stream" (type $s (sub resource)))
    (; filesystem types 0.2 ;)
    (export "[method]descriptor.read-directory" (func (param "self" (borrow $d))
      (result (result (own $s) (error $error')))))))
  (alias export $types "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.2.12" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (; libc ;)
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $read-directory (canon lower (func $types "[method]descriptor.read-directory")
    (memory (core memory $libc "memory"))))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "read-directory" (func $read-directory (param i32 i32)))
    (func (export "hoard") (result i32) (local $dir i32) (local $got i32)
      (call $get-dirs (i32.const 1024))
      (local.set $dir (i32.load (i32.load (i32.const 1024))))
      (loop $more
        ;; result<own<directory-entry-stream>, error-code> at 1536: its case at 0, the
        ;; stream or the error at 4.
        (call $read-directory (local.get $dir) (i32.const 1536))
        (if (i32.eqz (i32.load8_u (i32.const 1536)))
          (then (local.set $got (i32.add (local.get $got) (i32.const 1))) (br $more))))
      (i32.add (i32.shl (local.get $got) (i32.const 8)) (i32.load8_u (i32.const 1540)))))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "read-directory" (func $read-directory))))))
  (func (export "hoard") (result u32) (canon lift (core func $i "hoard"))))
"#;

/// A WASI 0.2 listing is the whole directory in host memory until the guest drops it: a
/// process holds at most `MAX_DIRECTORY_LISTINGS`, then `read-directory` fails with
/// `insufficient-memory` (case 22). It held one per handle before: 10,000 copies of the
/// listing outside `max_memory`, and then the handle limit ended the process.
#[test]
fn a_wasi_p2_guest_holds_a_bounded_number_of_directory_listings() {
    let (rt, mount, _bins) = mounted_guest(
        "hoarder",
        P2_LISTING_HOARDER,
        "hoard",
        "imports: [wasi:filesystem], limits: { max_execution_ms: 10000 }",
    );
    std::fs::write(mount.path().join("file"), "x").unwrap();
    let exit = run(&rt, "t:hoarder", &[]);
    let held = wasmproc_runtime::MAX_DIRECTORY_LISTINGS as u64;
    assert_eq!(exit.outcome, Ok(json!((held << 8) + 22)), "{exit:?}");
}
