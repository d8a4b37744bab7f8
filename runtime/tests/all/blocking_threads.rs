//! Host threads a guest's file I/O holds: each regular-file operation runs on a thread of its
//! host's blocking pool, and that pool is bounded, however many processes read at once (and
//! after their EXITs, a thread is held at most until its one operation ends).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::receive;
use serde_json::json;
use wasmproc_runtime::{Mailbox, Runtime};

/// A preview 1 core module whose `main()` reads `big.bin` from its first preopen (fd 3) to the
/// end, 1 MiB per `fd_read` (each one a blocking operation on the host), and returns the bytes
/// read (-1: the open failed, -2: a read failed).
const READER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (data (i32.const 16) "big.bin")
  (func (export "main") (result i64)
    (local $fd i32) (local $n i32) (local $total i64)
    ;; dirfd 3, follow symlinks, the path, no oflags, rights fd_read, fd out at 64
    (if (call $open (i32.const 3) (i32.const 1) (i32.const 16) (i32.const 7)
                    (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 64))
      (then (return (i64.const -1))))
    (local.set $fd (i32.load (i32.const 64)))
    ;; one iovec at 128: 1 MiB at 64 KiB
    (i32.store (i32.const 128) (i32.const 65536))
    (i32.store (i32.const 132) (i32.const 1048576))
    (loop $more
      (if (call $read (local.get $fd) (i32.const 128) (i32.const 1) (i32.const 136))
        (then (return (i64.const -2))))
      (local.set $n (i32.load (i32.const 136)))
      (local.set $total (i64.add (local.get $total) (i64.extend_i32_u (local.get $n))))
      (br_if $more (local.get $n)))
    (local.get $total)))
"#;

const FILE_BYTES: usize = 4 << 20;

/// The host's threads' names, as `/proc` shows them.
const HOST_THREADS: &str = "wasmproc bounde";

/// The reader as `bounded:reader` on the one-worker host `bounded:host`, `mount` at `/data`.
/// A namespace no other test uses: threads are told apart by name, the host's ID in it.
fn runtime(mount: &std::path::Path, bins: &std::path::Path) -> Runtime {
    let reader = crate::common::write_wat(bins, "reader.wasm", READER);
    let text = format!(
        "namespace: bounded\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: data, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 1, queue_size: 1000 }} }}\n  - {{ name: reader, kind: process.wasm, fs: bins, path: /reader.wasm, hash: \"{}\", method: main, imports: [wasi:cli, wasi:filesystem], wasi: {{ mounts: [{{ fs: data, guest: /data }}] }} }}\n",
        bins.display(),
        mount.display(),
        reader,
    );
    crate::common::load_written(bins, &text)
}

/// Threads of this test process whose name starts with `prefix` (the kernel keeps 15 bytes).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

/// Samples the most threads named `prefix` while `during` runs.
fn most_threads_during(prefix: &'static str, during: impl FnOnce()) -> usize {
    let (done, most) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let sampler = {
        let (done, most) = (done.clone(), most.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(threads_named(prefix), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    during();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    most.load(Ordering::Relaxed)
}

#[test]
fn processes_reading_files_at_once_hold_a_bounded_number_of_host_threads_also_when_stopped() {
    let (mount, bins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(mount.path().join("big.bin"), vec![7u8; FILE_BYTES]).unwrap();
    let rt = runtime(mount.path(), bins.path());
    const READERS: usize = 400;
    // Its one worker and its blocking pool.
    let bound = 1 + wasmproc_runtime::BLOCKING_THREADS;
    // The host's threads are named `wasmproc bounded:host`, cut to 15 bytes by the kernel.
    let most = most_threads_during(HOST_THREADS, || {
        let mut mailbox = Mailbox::new();
        for _ in 0..READERS {
            rt.spawn_monitored("bounded:reader", "bounded:host", &[], &mailbox)
                .unwrap();
        }
        for _ in 0..READERS {
            let exit = receive(&mut mailbox).expect("an EXIT");
            assert_eq!(exit.outcome, Ok(json!(FILE_BYTES)));
        }
    });
    eprintln!("{READERS} processes reading at once: at most {most} host threads");
    assert!(
        most <= bound,
        "{most} threads, more than the {bound} the host may run"
    );
    // Terminated while their reads run: every EXIT arrives, without waiting for the reads
    // still under way, and the threads stay within the same bound.
    let most = most_threads_during(HOST_THREADS, || {
        let mut mailbox = Mailbox::new();
        let pids: Vec<_> = (0..READERS)
            .map(|_| {
                rt.spawn_monitored("bounded:reader", "bounded:host", &[], &mailbox)
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        for pid in pids {
            let _ = rt.terminate(pid);
        }
        for _ in 0..READERS {
            let exit = receive(&mut mailbox).expect("an EXIT");
            let finished = exit.outcome == Ok(json!(FILE_BYTES));
            let terminated = matches!(&exit.outcome, Err(e) if e.kind == wasmproc_runtime::ErrorKind::Terminated);
            assert!(finished || terminated, "{:?}", exit.outcome);
        }
    });
    assert!(
        most <= bound,
        "{most} threads when terminated, more than {bound}"
    );
}
