//! A process's file operations on the host's blocking threads are bounded
//! (`MAX_FILE_OPERATIONS` at once), so that one guest's flood of them does not delay another's.

use std::time::Duration;

use crate::common::receive;
use crate::wasi_p3::mounted_guest;
use serde_json::json;
use wasmproc_runtime::Mailbox;

/// A WASI 0.3 guest's `flood(count, mode, deep, ms)`. Mode 0: starts `count`
/// `create-directory-at` calls at once in its first preopen (each a subtask), of directories
/// `aaa`, `aab`, ... in `a/a/...` `deep` levels down (a long path, so that each call takes a
/// while), and waits for none of them; mode 1: opens `big.bin` there (through `open-at`,
/// awaited) and starts `count` `read-via-stream` streams on it, each with a read of 8 KiB
/// pending. Then it waits `ms` (a `wait-for`) and returns `count`. Mode 2: makes the `count`
/// directories one after another, each call awaited, and returns `count`.
const P3_FLOOD: &str = r#"
(component $C
  (import "wasi:filesystem/types@0.3.0" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (; filesystem types ;)
    (export "[method]descriptor.create-directory-at" (func async (param "self" (borrow $d))
      (param "path" string) (result (result (error $error')))))
    (export "[method]descriptor.open-at" (func async
      (param "self" (borrow $d)) (param "path-flags" $path-flags') (param "path" string)
      (param "open-flags" $open-flags') (param "flags" $descriptor-flags')
      (result (result (own $d) (error $error')))))
    (export "[method]descriptor.read-via-stream" (func
      (param "self" (borrow $d)) (param "offset" u64)
      (result (tuple (stream u8) (future (result (error $error')))))))))
  (alias export $types "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.3.0" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (import "wasi:clocks/monotonic-clock@0.3.0" (instance $clock
    (export "wait-for" (func async (param "how-long" u64)))))
  (; libc ;)
  (type $bytes (stream u8))
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $mkdir (canon lower (func $types "[method]descriptor.create-directory-at") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $open-at (canon lower (func $types "[method]descriptor.open-at") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $read-via-stream (canon lower (func $types "[method]descriptor.read-via-stream")
    (memory (core memory $libc "memory"))))
  (core func $stream.read (canon stream.read $bytes async (memory (core memory $libc "memory"))))
  (core func $wait-for (canon lower (func $clock "wait-for") async))
  (core func $ws.new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $subtask.drop (canon subtask.drop))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "mkdir" (func $mkdir (param i32 i32 i32 i32) (result i32)))
    (import "" "open-at" (func $open-at (param i32 i32) (result i32)))
    (import "" "read-via-stream" (func $read-via-stream (param i32 i64 i32)))
    (import "" "stream.read" (func $stream.read (param i32 i32 i32) (result i32)))
    (import "" "wait-for" (func $wait-for (param i64) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "subtask.drop" (func $subtask.drop (param i32)))
    (import "" "task.return" (func $ret (param i32)))
    (data (i32.const 2048) "big.bin")
    (global $set (mut i32) (i32.const 0))
    (global $count (mut i32) (i32.const 0))
    (global $ms (mut i32) (i32.const 0))
    ;; The length of the path the directories are made in: `a/a/.../a/`.
    (global $deep (mut i32) (i32.const 0))
    ;; 1 while the open is awaited, 2 while the wait is, 3 while a directory is made (mode 2).
    (global $phase (mut i32) (i32.const 0))
    (global $dir (mut i32) (i32.const 0))
    (global $i (mut i32) (i32.const 0))
    (; open-at parameters ;)
    (func $wait (param $status i32) (result i32)
      (call $join (i32.shr_u (local.get $status) (i32.const 4)) (global.get $set))
      (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))
    ;; Waits `ms`, then returns `count`.
    (func $then-wait (result i32) (local $status i32)
      (global.set $phase (i32.const 2))
      (local.set $status
        (call $wait-for (i64.mul (i64.extend_i32_u (global.get $ms)) (i64.const 1000000))))
      (if (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 2))
        (then (call $ret (global.get $count)) (return (i32.const 0))))
      (call $wait (local.get $status)))
    ;; A letter of the name of directory $i: ($i / $place) mod 26, from `a`.
    (func $letter (param $i i32) (param $place i32) (result i32)
      (i32.add (i32.const 97) (i32.rem_u (i32.div_u (local.get $i) (local.get $place)) (i32.const 26))))
    ;; Starts making directory $i: its path at 4096, `deep`'s bytes then its name (read by the
    ;; call); its result at 1600 (overwritten). Returns the call's status.
    (func $mkdir-at (param $i i32) (result i32)
      (i32.store8 (i32.add (global.get $deep) (i32.const 4096))
        (call $letter (local.get $i) (i32.const 676)))
      (i32.store8 (i32.add (global.get $deep) (i32.const 4097))
        (call $letter (local.get $i) (i32.const 26)))
      (i32.store8 (i32.add (global.get $deep) (i32.const 4098))
        (call $letter (local.get $i) (i32.const 1)))
      (call $mkdir (global.get $dir) (i32.const 4096)
        (i32.add (global.get $deep) (i32.const 3)) (i32.const 1600)))
    ;; Mode 2: the next directory, once the one before is made.
    (func $next (result i32) (local $status i32)
      (loop $more
        (if (i32.ge_u (global.get $i) (global.get $count))
          (then (call $ret (global.get $count)) (return (i32.const 0))))
        (local.set $status (call $mkdir-at (global.get $i)))
        (global.set $i (i32.add (global.get $i) (i32.const 1)))
        (br_if $more (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 2))))
      (call $wait (local.get $status)))
    ;; The open's result at 1536: read streams on the file, a read pending on each.
    (func $after-open (result i32) (local $file i32) (local $i i32)
      (if (i32.load8_u (i32.const 1536)) (then unreachable))
      (local.set $file (i32.load (i32.const 1540)))
      (block $done
        (loop $more
          (br_if $done (i32.ge_u (local.get $i) (global.get $count)))
          ;; The stream and the future at 1600, overwritten; their reads into 16384.
          (call $read-via-stream (local.get $file) (i64.const 0) (i32.const 1600))
          (drop (call $stream.read (i32.load (i32.const 1600)) (i32.const 16384) (i32.const 8192)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more)))
      (call $then-wait))
    (func (export "flood") (param $count i32) (param $mode i32) (param $deep i32) (param $ms i32)
      (result i32) (local $dir i32) (local $i i32) (local $status i32)
      (global.set $deep (i32.mul (local.get $deep) (i32.const 2)))
      (block $done
        (loop $more
          (br_if $done (i32.ge_u (local.get $i) (global.get $deep)))
          (i32.store16 (i32.add (i32.const 4096) (local.get $i)) (i32.const 0x2f61))
          (local.set $i (i32.add (local.get $i) (i32.const 2)))
          (br $more)))
      (local.set $i (i32.const 0))
      (global.set $count (local.get $count))
      (global.set $ms (local.get $ms))
      (global.set $set (call $ws.new))
      (call $get-dirs (i32.const 1024))
      (local.set $dir (i32.load (i32.load (i32.const 1024))))
      (global.set $dir (local.get $dir))
      (if (i32.eq (local.get $mode) (i32.const 2))
        (then (global.set $phase (i32.const 3)) (return (call $next))))
      (if (i32.eqz (local.get $mode))
        (then
          (block $done
            (loop $more
              (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
              (drop (call $mkdir-at (local.get $i)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $more)))
          (return (call $then-wait))))
      ;; `big.bin`, to read.
      (call $open-at-parameters (local.get $dir) (i32.const 0) (i32.const 2048) (i32.const 7)
        (i32.const 0) (i32.const 1))
      (global.set $phase (i32.const 1))
      (local.set $status (call $open-at (i32.const 1280) (i32.const 1536)))
      (if (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 2))
        (then (return (call $after-open))))
      (call $wait (local.get $status)))
    (func (export "callback") (param $event i32) (param $handle i32) (param $state i32) (result i32)
      ;; Only the subtasks joined (1) come here: the open, then the wait; or each directory.
      (if (i32.ne (local.get $event) (i32.const 1)) (then unreachable))
      (if (i32.ne (local.get $state) (i32.const 2))
        (then (return (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))))
      (call $subtask.drop (local.get $handle))
      (if (i32.eq (global.get $phase) (i32.const 1)) (then (return (call $after-open))))
      (if (i32.eq (global.get $phase) (i32.const 3)) (then (return (call $next))))
      (call $ret (global.get $count))
      (i32.const 0)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "mkdir" (func $mkdir))
    (export "open-at" (func $open-at))
    (export "read-via-stream" (func $read-via-stream))
    (export "stream.read" (func $stream.read))
    (export "wait-for" (func $wait-for))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "subtask.drop" (func $subtask.drop))
    (export "task.return" (func $ret))))))
  (func (export "flood") async (param "count" u32) (param "mode" u32) (param "deep" u32)
    (param "ms" u32) (result u32)
    (canon lift (core func $i "flood") async (callback (core func $i "callback")))))
"#;

/// Entries in `dir`.
fn entries(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// A WASI 0.3 guest may start thousands of file operations at once, and the host's blocking
/// threads take operations first come, first served: another guest's operations waited behind
/// all of them. Now a process has at most `MAX_FILE_OPERATIONS` on the threads at once: a guest
/// making directories one after another goes on making them while another's 3,000 directory
/// creations wait (before, it made at most one while 1,500 of them were made: its next one
/// waited behind them all).
#[test]
fn a_guests_file_operations_do_not_wait_behind_anothers_flood() {
    let (rt, mount, _bins) = mounted_guest(
        "flood",
        P3_FLOOD,
        "flood",
        "imports: [wasi:clocks, wasi:filesystem], limits: { max_execution_ms: 60000 }",
    );
    std::fs::write(mount.path().join("big.bin"), vec![7u8; 1 << 20]).unwrap();
    const FLOOD: usize = 3000;
    const DEEP: usize = 1000;
    let deep = (0..DEEP).fold(mount.path().to_path_buf(), |path, _| path.join("a"));
    std::fs::create_dir_all(&deep).unwrap();
    // The steady guest's directories are the root's entries but `big.bin` and `a`.
    let steady_made = || entries(mount.path()) - 2;
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what} never happened"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let mut mailbox = Mailbox::new();
    let steady = rt
        .spawn_monitored(
            "t:flood",
            "t:host",
            &[json!(17_000), json!(2), json!(0), json!(0)],
            &mailbox,
        )
        .unwrap();
    wait_for("the steady guest's first directories", &|| {
        steady_made() >= 5
    });
    let flood = rt
        .spawn_monitored(
            "t:flood",
            "t:host",
            &[json!(FLOOD), json!(0), json!(DEEP), json!(60_000)],
            &mailbox,
        )
        .unwrap();
    // Once a sixth of the flood is made, all of it has long been started.
    wait_for("the flood", &|| entries(&deep) >= FLOOD / 6);
    let before = steady_made();
    wait_for("two thirds of the flood", &|| {
        entries(&deep) >= FLOOD * 4 / 6
    });
    let during = steady_made() - before;
    eprintln!("the steady guest made {during} directories while the flood made half of its");
    assert!(
        during >= 100,
        "the steady guest made {during} directories while the flood made {}",
        FLOOD / 2
    );
    // Ended with thousands of operations waiting: each EXIT arrives.
    for pid in [steady, flood] {
        let _ = rt.terminate(pid);
    }
    for _ in 0..2 {
        let exit = receive(&mut mailbox).expect("an EXIT");
        assert!(
            matches!(&exit.outcome, Err(e) if e.kind == wasmproc_runtime::ErrorKind::Terminated),
            "{:?}",
            exit.outcome
        );
    }
    // A flood of reads (2,000 streams, a read of 8 KiB pending on each) ends, with its EXIT.
    rt.spawn_monitored(
        "t:flood",
        "t:host",
        &[json!(2000), json!(1), json!(0), json!(100)],
        &mailbox,
    )
    .unwrap();
    let read = receive(&mut mailbox).expect("the reads' EXIT");
    assert_eq!(read.outcome, Ok(json!(2000)));
}

/// A WASI 0.2 component's `hoard(n, mode)`: opens `big.bin` in its first preopen and makes
/// `n` streams on it. Reads (`mode` 0): asks each for 64 KiB (a non-blocking `read`, which
/// starts reading in the background), waits 100 ms, then polls them all; returns how many
/// were ready. Writes (`mode` 1): returns how many of the `n` `write-via-stream` streams
/// `check-write` lets it write to. Mode 2: asks as mode 0, then makes a `blocking-read` of 16
/// bytes of the last stream and returns how many it got.
const P2_HOARDER: &str = r#"
(component $C
  (import "wasi:io/error@0.2.0" (instance $error
    (export "error" (type (sub resource)))))
  (alias export $error "error" (type $error-type))
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $p (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow $p))))
    (export "poll" (func (param "in" (list (borrow $p))) (result (list u32))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (alias outer $C $error-type (type $e))
    (export "error" (type $e' (eq $e)))
    (export "input-stream" (type $i (sub resource)))
    (export "output-stream" (type $o (sub resource)))
    (type $se (variant (case "last-operation-failed" (own $e')) (case "closed")))
    (export "stream-error" (type $se' (eq $se)))
    (export "[method]input-stream.read"
      (func (param "self" (borrow $i)) (param "len" u64) (result (result (list u8) (error $se')))))
    (export "[method]input-stream.blocking-read"
      (func (param "self" (borrow $i)) (param "len" u64) (result (result (list u8) (error $se')))))
    (alias outer $C $pollable (type $p))
    (export "pollable" (type $p' (eq $p)))
    (export "[method]input-stream.subscribe" (func (param "self" (borrow $i)) (result (own $p'))))
    (export "[method]output-stream.check-write"
      (func (param "self" (borrow $o)) (result (result u64 (error $se')))))))
  (alias export $streams "input-stream" (type $input-stream))
  (alias export $streams "output-stream" (type $output-stream))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer $C $pollable (type $p))
    (export "pollable" (type $p' (eq $p)))
    (export "subscribe-duration" (func (param "when" u64) (result (own $p'))))))
  (import "wasi:filesystem/types@0.2.12" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (alias outer $C $input-stream (type $i))
    (export "input-stream" (type $i' (eq $i)))
    (alias outer $C $output-stream (type $o))
    (export "output-stream" (type $o' (eq $o)))
    (; filesystem types 0.2 ;)
    (export "[method]descriptor.open-at" (func
      (param "self" (borrow $d)) (param "path-flags" $path-flags') (param "path" string)
      (param "open-flags" $open-flags') (param "flags" $descriptor-flags')
      (result (result (own $d) (error $error')))))
    (export "[method]descriptor.read-via-stream" (func
      (param "self" (borrow $d)) (param "offset" u64) (result (result (own $i') (error $error')))))
    (export "[method]descriptor.write-via-stream" (func
      (param "self" (borrow $d)) (param "offset" u64) (result (result (own $o') (error $error')))))))
  (alias export $types "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.2.12" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (; libc ;)
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $open-at (canon lower (func $types "[method]descriptor.open-at")
    (memory (core memory $libc "memory"))))
  (core func $read-via-stream (canon lower (func $types "[method]descriptor.read-via-stream")
    (memory (core memory $libc "memory"))))
  (core func $write-via-stream (canon lower (func $types "[method]descriptor.write-via-stream")
    (memory (core memory $libc "memory"))))
  (core func $read (canon lower (func $streams "[method]input-stream.read")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $blocking-read (canon lower (func $streams "[method]input-stream.blocking-read")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $check-write (canon lower (func $streams "[method]output-stream.check-write")
    (memory (core memory $libc "memory"))))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $poll (canon lower (func $poll "poll")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $subscribe-stream (canon lower (func $streams "[method]input-stream.subscribe")))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "open-at" (func $open-at (param i32 i32 i32 i32 i32 i32 i32)))
    (import "" "read-via-stream" (func $read-via-stream (param i32 i64 i32)))
    (import "" "write-via-stream" (func $write-via-stream (param i32 i64 i32)))
    (import "" "read" (func $read (param i32 i64 i32)))
    (import "" "blocking-read" (func $blocking-read (param i32 i64 i32)))
    (import "" "check-write" (func $check-write (param i32 i32)))
    (import "" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "" "block" (func $block (param i32)))
    (import "" "poll" (func $poll (param i32 i32 i32)))
    (import "" "subscribe-stream" (func $subscribe-stream (param i32) (result i32)))
    (data (i32.const 1400) "big.bin")
    ;; The `n` streams' handles at 2048 + 4i.
    (func $stream (param $i i32) (result i32)
      (i32.add (i32.const 2048) (i32.shl (local.get $i) (i32.const 2))))
    ;; Whether the result<_, _> at 1600 is ok.
    (func $ok (result i32) (i32.eqz (i32.load8_u (i32.const 1600))))
    (func (export "hoard") (param $n i32) (param $mode i32) (result i32)
      (local $file i32) (local $i i32) (local $got i32) (local $writes i32)
      (local.set $writes (i32.eq (local.get $mode) (i32.const 1)))
      (call $get-dirs (i32.const 1024))
      ;; open-at big.bin: create and write for writes, read for reads.
      (call $open-at (i32.load (i32.load (i32.const 1024))) (i32.const 0) (i32.const 1400)
        (i32.const 7) (local.get $writes) (i32.add (i32.const 1) (local.get $writes))
        (i32.const 1536))
      (if (i32.load8_u (i32.const 1536)) (then unreachable))
      (local.set $file (i32.load (i32.const 1540)))
      (block $done
        (loop $more
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (if (local.get $writes)
            (then (call $write-via-stream (local.get $file) (i64.const 0) (i32.const 1600)))
            (else (call $read-via-stream (local.get $file) (i64.const 0) (i32.const 1600))))
          (if (i32.eqz (call $ok)) (then unreachable))
          (i32.store (call $stream (local.get $i)) (i32.load (i32.const 1604)))
          (if (local.get $writes)
            (then
              (call $check-write (i32.load (call $stream (local.get $i))) (i32.const 1600))
              (if (i32.and (call $ok) (i64.ne (i64.load (i32.const 1608)) (i64.const 0)))
                (then (local.set $got (i32.add (local.get $got) (i32.const 1))))))
            (else
              (call $read (i32.load (call $stream (local.get $i))) (i64.const 65536) (i32.const 1600))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more)))
      (if (local.get $writes) (then (return (local.get $got))))
      ;; Mode 2: a blocking read of 16 bytes of the last stream (past the buffers), its length.
      (if (i32.eq (local.get $mode) (i32.const 2))
        (then
          (call $blocking-read (i32.load (call $stream (i32.sub (local.get $n) (i32.const 1))))
            (i64.const 16) (i32.const 1600))
          (if (i32.eqz (call $ok)) (then unreachable))
          (return (i32.load (i32.const 1608)))))
      ;; Each stream's pollable at 4096 + 4i.
      (local.set $i (i32.const 0))
      (block $done
        (loop $more
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (i32.store (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 2)))
            (call $subscribe-stream (i32.load (call $stream (local.get $i)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more)))
      (call $block (call $subscribe (i64.const 100000000)))
      ;; The ready ones' indices: a list at 1600.
      (call $poll (i32.const 4096) (local.get $n) (i32.const 1600))
      (i32.load (i32.const 1604))))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "open-at" (func $open-at))
    (export "read-via-stream" (func $read-via-stream))
    (export "write-via-stream" (func $write-via-stream))
    (export "read" (func $read))
    (export "blocking-read" (func $blocking-read))
    (export "check-write" (func $check-write))
    (export "subscribe" (func $subscribe))
    (export "block" (func $block))
    (export "poll" (func $poll))
    (export "subscribe-stream" (func $subscribe-stream))))))
  (func (export "hoard") (param "n" u32) (param "mode" u32) (result u32)
    (canon lift (core func $i "hoard"))))
"#;

/// A WASI 0.2 stream read ahead in the background as soon as a guest asked, up to 64 KiB,
/// held until the guest took it, and a guest may make as many streams on one file as it has
/// handles: thousands of reads on the host's threads at once, 64 KiB each held outside
/// `max_memory`. Now a process's streams hold at most `MAX_STREAM_BUFFERS` buffers: the 17th
/// stream's read waits for one (100 of 100 streams had read before), and a write is permitted
/// to 16 streams at once (100 of 100 before).
#[test]
fn a_wasi_p2_guests_streams_hold_a_bounded_number_of_buffers() {
    let (rt, mount, _bins) = mounted_guest(
        "hoarder",
        P2_HOARDER,
        "hoard",
        "imports: [wasi:clocks, wasi:io, wasi:filesystem], limits: { max_execution_ms: 5000 }",
    );
    std::fs::write(mount.path().join("big.bin"), vec![7u8; 1 << 20]).unwrap();
    let buffers = wasmproc_runtime::MAX_STREAM_BUFFERS;
    // A blocking read needs no buffer: past them all, it reads at once.
    for (mode, what, expected) in [
        (0, "read", buffers),
        (1, "may write", buffers),
        (2, "read past the buffers", 16),
    ] {
        let mut mailbox = Mailbox::new();
        rt.spawn_monitored("t:hoarder", "t:host", &[json!(100), json!(mode)], &mailbox)
            .unwrap();
        let exit = receive(&mut mailbox).expect("an EXIT");
        assert_eq!(exit.outcome, Ok(json!(expected)), "streams that {what}");
    }
}

/// A WASI 0.3 guest's `checksum(size)`: opens `big.bin` in its first preopen, reads it whole
/// through `read-via-stream`, `size` bytes a read, then reads the stream's future; returns the
/// bytes' hash (h = h × 31 + byte, from 0, wrapping), or 0xffffffff when the future says the
/// reading failed.
const P3_READER: &str = r#"
(component $C
  (import "wasi:filesystem/types@0.3.0" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (; filesystem types ;)
    (export "[method]descriptor.open-at" (func async
      (param "self" (borrow $d)) (param "path-flags" $path-flags') (param "path" string)
      (param "open-flags" $open-flags') (param "flags" $descriptor-flags')
      (result (result (own $d) (error $error')))))
    (export "[method]descriptor.read-via-stream" (func
      (param "self" (borrow $d)) (param "offset" u64)
      (result (tuple (stream u8) (future (result (error $error')))))))))
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
  (core func $read-via-stream (canon lower (func $types "[method]descriptor.read-via-stream")
    (memory (core memory $libc "memory"))))
  (core func $stream.read (canon stream.read $bytes async (memory (core memory $libc "memory"))))
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
    (import "" "read-via-stream" (func $read-via-stream (param i32 i64 i32)))
    (import "" "stream.read" (func $stream.read (param i32 i32 i32) (result i32)))
    (import "" "future.read" (func $future.read (param i32 i32) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "subtask.drop" (func $subtask.drop (param i32)))
    (import "" "task.return" (func $ret (param i32)))
    (data (i32.const 2048) "big.bin")
    (global $set (mut i32) (i32.const 0))
    (global $size (mut i32) (i32.const 0))
    (global $reader (mut i32) (i32.const 0))
    (global $future (mut i32) (i32.const 0))
    (global $hash (mut i32) (i32.const 0))
    (; open-at parameters ;)
    (; wait ;)
    ;; A read's status: hash what it read (at 16384), read on, or read the future once the
    ;; stream ended.
    (func $read (param $status i32) (result i32) (local $j i32) (local $n i32)
      (loop $more
        (if (i32.eq (local.get $status) (i32.const -1))
          (then (return (call $wait (global.get $reader)))))
        (local.set $n (i32.shr_u (local.get $status) (i32.const 4)))
        (local.set $j (i32.const 0))
        (block $hashed
          (loop $byte
            (br_if $hashed (i32.ge_u (local.get $j) (local.get $n)))
            (global.set $hash (i32.add (i32.mul (global.get $hash) (i32.const 31))
              (i32.load8_u (i32.add (i32.const 16384) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $byte)))
        ;; Dropped (1): the file ended.
        (if (i32.ne (i32.and (local.get $status) (i32.const 15)) (i32.const 1))
          (then
            (local.set $status
              (call $stream.read (global.get $reader) (i32.const 16384) (global.get $size)))
            (br $more))))
      (local.set $status (call $future.read (global.get $future) (i32.const 1600)))
      (if (i32.eq (local.get $status) (i32.const -1))
        (then (return (call $wait (global.get $future)))))
      (call $finish))
    (func $finish (result i32)
      (call $ret (if (result i32) (i32.load8_u (i32.const 1600))
        (then (i32.const -1))
        (else (global.get $hash))))
      (i32.const 0))
    ;; The open's result at 1536: the file's stream and future at 1700.
    (func $after-open (result i32)
      (if (i32.load8_u (i32.const 1536)) (then unreachable))
      (call $read-via-stream (i32.load (i32.const 1540)) (i64.const 0) (i32.const 1700))
      (global.set $reader (i32.load (i32.const 1700)))
      (global.set $future (i32.load (i32.const 1704)))
      (call $read (call $stream.read (global.get $reader) (i32.const 16384) (global.get $size))))
    (func (export "checksum") (param $size i32) (result i32) (local $status i32)
      (global.set $size (local.get $size))
      (global.set $set (call $ws.new))
      (call $get-dirs (i32.const 1024))
      ;; `big.bin`, to read.
      (call $open-at-parameters (i32.load (i32.load (i32.const 1024))) (i32.const 0)
        (i32.const 2048) (i32.const 7) (i32.const 0) (i32.const 1))
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
      ;; A stream read (2) ended, or the future's (4).
      (if (i32.eq (local.get $event) (i32.const 2)) (then (return (call $read (local.get $state)))))
      (if (i32.eq (local.get $event) (i32.const 4)) (then (return (call $finish))))
      unreachable))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "open-at" (func $open-at))
    (export "read-via-stream" (func $read-via-stream))
    (export "stream.read" (func $stream.read))
    (export "future.read" (func $future.read))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "subtask.drop" (func $subtask.drop))
    (export "task.return" (func $ret))))))
  (func (export "checksum") async (param "size" u32) (result u32)
    (canon lift (core func $i "checksum") async (callback (core func $i "callback")))))
"#;

/// wasmproc reads WASI 0.3 `read-via-stream` streams itself: a file read whole, whatever the
/// size of the guest's reads (one byte, less than a chunk, a chunk, more), comes byte for byte,
/// across chunks and what was read ahead.
#[test]
fn a_wasi_p3_file_read_through_its_stream_comes_whole_whatever_the_read_size() {
    let (rt, mount, _bins) = mounted_guest(
        "reader",
        P3_READER,
        "checksum",
        "imports: [wasi:filesystem], limits: { max_execution_ms: 60000 }",
    );
    let content: Vec<u8> = (0..100_003u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(mount.path().join("big.bin"), &content).unwrap();
    let hash = content
        .iter()
        .fold(0u32, |h, &b| h.wrapping_mul(31).wrapping_add(b as u32));
    for size in [1, 3000, 8192, 20_000] {
        let mut mailbox = Mailbox::new();
        rt.spawn_monitored("t:reader", "t:host", &[json!(size)], &mailbox)
            .unwrap();
        let exit = receive(&mut mailbox).expect("an EXIT");
        assert_eq!(exit.outcome, Ok(json!(hash)), "reads of {size} bytes");
    }
}

/// A WASI 0.2 component's `write_and_drop(n, keep)`: opens (creating) `out` in its first
/// preopen, and `n` times makes a stream at offset 4 × i, writes `abcd` to it (`check-write`,
/// waiting on the stream until it permits, then `write`) and drops it at once (`keep` 0),
/// keeps it to the end of the process (1), or `blocking-flush`es it and keeps it (2); with
/// `keep` 3, each write is of 1 MiB instead (more than `check-write` permits); returns
/// `n` (or 1000 + i where stream i refused the write, 2000 + i where its flush failed).
const P2_WRITE_AND_DROP: &str = r#"
(component $C
  (import "wasi:io/error@0.2.0" (instance $error
    (export "error" (type (sub resource)))))
  (alias export $error "error" (type $error-type))
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $p (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow $p))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (alias outer $C $error-type (type $e))
    (export "error" (type $e' (eq $e)))
    (export "output-stream" (type $o (sub resource)))
    (alias outer $C $pollable (type $p))
    (export "pollable" (type $p' (eq $p)))
    (export "[method]output-stream.subscribe" (func (param "self" (borrow $o)) (result (own $p'))))
    (type $se (variant (case "last-operation-failed" (own $e')) (case "closed")))
    (export "stream-error" (type $se' (eq $se)))
    (export "[method]output-stream.check-write"
      (func (param "self" (borrow $o)) (result (result u64 (error $se')))))
    (export "[method]output-stream.write"
      (func (param "self" (borrow $o)) (param "contents" (list u8)) (result (result (error $se')))))
    (export "[method]output-stream.blocking-flush"
      (func (param "self" (borrow $o)) (result (result (error $se')))))))
  (alias export $streams "output-stream" (type $output-stream))
  (import "wasi:filesystem/types@0.2.12" (instance $types
    (export "descriptor" (type $d (sub resource)))
    (alias outer $C $output-stream (type $o))
    (export "output-stream" (type $o' (eq $o)))
    (; filesystem types 0.2 ;)
    (export "[method]descriptor.open-at" (func
      (param "self" (borrow $d)) (param "path-flags" $path-flags') (param "path" string)
      (param "open-flags" $open-flags') (param "flags" $descriptor-flags')
      (result (result (own $d) (error $error')))))
    (export "[method]descriptor.write-via-stream" (func
      (param "self" (borrow $d)) (param "offset" u64) (result (result (own $o') (error $error')))))))
  (alias export $types "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.2.12" (instance $preopens
    (alias outer $C $descriptor (type $d))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))
  (; libc ;)
  (core func $get-dirs (canon lower (func $preopens "get-directories")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $open-at (canon lower (func $types "[method]descriptor.open-at")
    (memory (core memory $libc "memory"))))
  (core func $write-via-stream (canon lower (func $types "[method]descriptor.write-via-stream")
    (memory (core memory $libc "memory"))))
  (core func $check-write (canon lower (func $streams "[method]output-stream.check-write")
    (memory (core memory $libc "memory"))))
  (core func $write (canon lower (func $streams "[method]output-stream.write")
    (memory (core memory $libc "memory"))))
  (core func $drop (canon resource.drop $output-stream))
  (core func $blocking-flush (canon lower (func $streams "[method]output-stream.blocking-flush")
    (memory (core memory $libc "memory"))))
  (core func $subscribe (canon lower (func $streams "[method]output-stream.subscribe")))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $drop-pollable (canon resource.drop $pollable))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-directories" (func $get-dirs (param i32)))
    (import "" "open-at" (func $open-at (param i32 i32 i32 i32 i32 i32 i32)))
    (import "" "write-via-stream" (func $write-via-stream (param i32 i64 i32)))
    (import "" "check-write" (func $check-write (param i32 i32)))
    (import "" "write" (func $write (param i32 i32 i32 i32)))
    (import "" "drop" (func $drop (param i32)))
    (import "" "blocking-flush" (func $blocking-flush (param i32 i32)))
    (import "" "subscribe" (func $subscribe (param i32) (result i32)))
    (import "" "block" (func $block (param i32)))
    (import "" "drop-pollable" (func $drop-pollable (param i32)))
    (data (i32.const 1400) "out")
    (data (i32.const 1408) "abcd")
    (func (export "write-and-drop") (param $n i32) (param $keep i32) (result i32)
      (local $file i32) (local $i i32) (local $stream i32) (local $pollable i32)
      (call $get-dirs (i32.const 1024))
      ;; open-at `out`: create, write.
      (call $open-at (i32.load (i32.load (i32.const 1024))) (i32.const 0) (i32.const 1400)
        (i32.const 3) (i32.const 1) (i32.const 2) (i32.const 1536))
      (if (i32.load8_u (i32.const 1536)) (then unreachable))
      (local.set $file (i32.load (i32.const 1540)))
      (block $done
        (loop $more
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (call $write-via-stream (local.get $file)
            (i64.extend_i32_u (i32.mul (local.get $i) (i32.const 4))) (i32.const 1600))
          (if (i32.load8_u (i32.const 1600)) (then unreachable))
          (local.set $stream (i32.load (i32.const 1604)))
          ;; `check-write` until it permits 4 bytes, waiting on the stream between.
          (loop $permitted
            (call $check-write (local.get $stream) (i32.const 1600))
            (if (i32.load8_u (i32.const 1600)) (then (return (i32.add (i32.const 1000) (local.get $i)))))
            (if (i64.lt_u (i64.load (i32.const 1608)) (i64.const 4))
              (then
                (local.set $pollable (call $subscribe (local.get $stream)))
                (call $block (local.get $pollable))
                (call $drop-pollable (local.get $pollable))
                (br $permitted))))
          (if (i32.eq (local.get $keep) (i32.const 3))
            (then
              ;; 1 MiB at 64 KiB, past the 64 KiB `check-write` permits.
              (drop (memory.grow (i32.const 17)))
              (call $write (local.get $stream) (i32.const 65536) (i32.const 1048576) (i32.const 1600)))
            (else
              (call $write (local.get $stream) (i32.const 1408) (i32.const 4) (i32.const 1600))))
          (if (i32.load8_u (i32.const 1600)) (then (return (i32.add (i32.const 1000) (local.get $i)))))
          (if (i32.eq (local.get $keep) (i32.const 2))
            (then
              (call $blocking-flush (local.get $stream) (i32.const 1600))
              (if (i32.load8_u (i32.const 1600)) (then (return (i32.add (i32.const 2000) (local.get $i)))))))
          (if (i32.eqz (local.get $keep)) (then (call $drop (local.get $stream))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more)))
      (local.get $n)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "get-directories" (func $get-dirs))
    (export "open-at" (func $open-at))
    (export "write-via-stream" (func $write-via-stream))
    (export "check-write" (func $check-write))
    (export "write" (func $write))
    (export "drop" (func $drop))
    (export "blocking-flush" (func $blocking-flush))
    (export "subscribe" (func $subscribe))
    (export "block" (func $block))
    (export "drop-pollable" (func $drop-pollable))))))
  (func (export "write-and-drop") (param "n" u32) (param "keep" u32) (result u32)
    (canon lift (core func $i "write-and-drop"))))
"#;

/// A write a WASI 0.2 guest handed to a stream is made even when it drops the stream at once,
/// while the write still waits for one of the process's turns (the drop waits for it), or
/// when the process ends with the stream (the write is made after). Before, each was stopped
/// while it waited for its turn: none of 200 was made. And a guest writing once to each of
/// 200 streams never waits for itself: a write's buffer is given back once it is written, and
/// a `blocking-flush` takes none (it held one for a write that never came: the seventeenth
/// stream waited for a buffer until `max_execution_ms`).
#[test]
fn a_wasi_p2_guests_stream_writes_are_all_made_and_never_wait_for_their_own_buffers() {
    let (rt, mount, _bins) = mounted_guest(
        "writer",
        P2_WRITE_AND_DROP,
        "write-and-drop",
        "imports: [wasi:io, wasi:filesystem], limits: { max_execution_ms: 10000 }",
    );
    let out = mount.path().join("out");
    for keep in [0, 1, 2] {
        let _ = std::fs::remove_file(&out);
        let mut mailbox = Mailbox::new();
        rt.spawn_monitored("t:writer", "t:host", &[json!(200), json!(keep)], &mailbox)
            .unwrap();
        let exit = receive(&mut mailbox).expect("an EXIT");
        assert_eq!(exit.outcome, Ok(json!(200)));
        // Kept streams' writes end after the EXIT, each at its own offset and in no order: the
        // file may reach its length with a hole before the writes under it are made.
        let expected = b"abcd".repeat(200);
        let start = std::time::Instant::now();
        while std::fs::read(&out).unwrap() != expected && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let written = std::fs::read(&out).unwrap();
        assert_eq!(written, expected, "streams kept: {keep}");
    } // A write past what `check-write` permits traps: it went through before, so each of the
      // 16 buffers could carry a write of up to `max_value` (64 MiB).
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:writer", "t:host", &[json!(1), json!(3)], &mailbox)
        .unwrap();
    let exit = receive(&mut mailbox).expect("an EXIT");
    let error = exit.outcome.expect_err("the write past check-write");
    assert_eq!(error.kind, wasmproc_runtime::ErrorKind::Trap, "{error:?}");
    assert!(error.message.contains("check-write"), "{error:?}");
}
