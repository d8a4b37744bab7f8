//! At the engine's capacity (a pool larger than the kernel's map limit would let wasmtime's
//! pooling allocator hold; no pool at all): every process it holds runs at once, the next ones
//! queue, the one past the queue is refused with `queue_full`, and every spawned process's EXIT
//! arrives. (Pooled, 15,000 slots ran out of memory maps at 8,652 live processes on the default
//! `vm.max_map_count`, without a pool at ~8,800, and each spawn past that ended with
//! `host_failure: Cannot allocate memory`.)

#[path = "all/common.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use wasmproc_runtime::capacity::{self, Allocation, Capacity};
use wasmproc_runtime::{ErrorKind, Mailbox, Phase, Runtime, SpawnOptions};

const POOL: usize = 15_000;
const QUEUE: usize = 100;

fn maps() -> u64 {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count() as u64)
        .unwrap_or(0)
}

#[test]
fn a_pool_past_the_map_limit_runs_every_process_queues_the_next_and_refuses_with_queue_full() {
    let max_map_count = capacity::max_map_count();
    if Capacity::within(POOL as u32, max_map_count).allocation != Allocation::Arena {
        // Raised past what this pool needs pooled: the arena is not what holds it here.
        eprintln!("vm.max_map_count {max_map_count} holds {POOL} pooled processes; skipped");
        return;
    }
    fill_then_refuse(POOL as u32, POOL, &Sleeper::Guest);
    fill_then_refuse(POOL as u32, POOL, &Sleeper::Heaviest);
}

#[test]
fn without_a_pool_as_many_run_as_the_map_limit_allows_and_the_rest_queue() {
    let live = Capacity::of(0).processes as usize;
    if live > 20_000 {
        eprintln!("vm.max_map_count lets {live} processes run without a pool; skipped");
        return;
    }
    fill_then_refuse(0, live, &Sleeper::Guest);
    fill_then_refuse(0, live, &Sleeper::Heaviest);
}

/// The largest pool wasmtime's pooling allocator holds on this kernel, full of processes that
/// each hold the most a process may: their memory maps fit. With the figures of a typical
/// guest (4 maps per live instance, not 7), 9,556 slots were pooled, and such processes would
/// have passed the default limit by ~11,000 maps, each instantiation past it a `host_failure`.
#[test]
fn the_largest_pool_holds_processes_that_each_cost_the_most_maps_they_may() {
    let live = Capacity::largest_pool(capacity::max_map_count());
    if live > 20_000 {
        eprintln!("vm.max_map_count lets {live} processes run pooled; skipped");
        return;
    }
    fill_then_refuse(live, live as usize, &Sleeper::Heaviest);
}

/// What fills the engine.
enum Sleeper {
    /// The `hostile` guest's `sleep`: a Rust WASI 0.2 guest, one memory.
    Guest,
    /// [`HEAVIEST_SLEEPER`]: as many memories (with data) and tables as a process may hold.
    Heaviest,
}

/// `benches/minimal_sleeper.wat` with two more core instances, each with a linear memory with a
/// data segment (a copy-on-write image) and a table: the most memory maps a process may cost
/// (`MEMORIES_PER_PROCESS`, `TABLES_PER_PROCESS`).
const HEAVIEST_SLEEPER: &str = r#"
(component $C
  (; sleep imports ;)
  (core module $heavy
    (memory 1)
    (data (i32.const 0) "a page of its own")
    (table 1 funcref))
  (core instance $a (instantiate $heavy))
  (core instance $b (instantiate $heavy))
  (core module $m
    (import "host" "block" (func $block (param i32)))
    (import "host" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "host" "drop" (func $drop (param i32)))
    (func (export "sleep") (param $ms i32) (result i32)
      (local $p i32)
      (local.set $p
        (call $subscribe (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000))))
      (call $block (local.get $p))
      (call $drop (local.get $p))
      (local.get $ms)))
  (core instance $host
    (export "block" (func $block))
    (export "subscribe" (func $subscribe))
    (export "drop" (func $drop)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "sleep") (param "ms" u32) (result u32) (canon lift (core func $i "sleep"))))
"#;

/// One engine fills this process's memory maps at a time: tests run on threads of one process.
static FILLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// On an engine whose pool asks for `pool` processes (0: none) and holds `live` at once: fills
/// it with `sleeper`, fills the queue, is refused, then ends them all and receives every EXIT.
fn fill_then_refuse(pool: u32, live: usize, sleeper: &Sleeper) {
    let _one_at_a_time = FILLING.lock().unwrap_or_else(|e| e.into_inner());
    let max_map_count = capacity::max_map_count();
    let dir = tempfile::tempdir().unwrap();
    let bins = common::dist();
    let entry = match sleeper {
        Sleeper::Guest => format!(
            "{{ name: bins, kind: fs.directory, directory: \"{}\" }}\n  - {{ name: sleeper, kind: process.wasm, fs: bins, path: /hostile.wasm, hash: \"sha256:b9e487e31f613f952a558faea747b13673515489059600f8a1c2e50a05f41d59\", method: sleep, imports: [wasi:clocks, wasi:cli] }}",
            bins.display()
        ),
        Sleeper::Heaviest => {
            let digest = common::write_wat(
                dir.path(),
                "heaviest.wasm",
                &common::with_sleep_imports(HEAVIEST_SLEEPER),
            );
            format!(
                "{{ name: bins, kind: fs.directory, directory: \"{}\" }}\n  - {{ name: sleeper, kind: process.wasm, fs: bins, path: /heaviest.wasm, hash: \"{digest}\", method: sleep, imports: [wasi:clocks, wasi:io] }}",
                dir.path().display()
            )
        }
    };
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"namespace: many
entries:
  - {entry}
  - name: host
    kind: process.host
    host: {{ workers: 2, queue_size: {QUEUE}, pool: {{ processes: {pool}, memory: 2MiB, keep_resident: 64KiB }} }}
"#
        ),
    )
    .unwrap();
    let rt = Runtime::load(&manifest).unwrap();
    let (trace, mut events) = tokio::sync::mpsc::unbounded_channel();
    let traced = SpawnOptions {
        trace: Some(trace),
        ..SpawnOptions::default()
    };
    let mut mailbox = Mailbox::new();
    // Spawned in steps the queue holds, each let in before the next: the queue counts the
    // processes not started yet, as a full engine's would.
    let mut pids = Vec::with_capacity(live + QUEUE);
    let mut started = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while started < live {
        while pids.len() < live && pids.len() - started < QUEUE {
            let pid = rt
                .spawn_with(
                    "many:sleeper",
                    "many:host",
                    &[json!(600_000)],
                    &traced,
                    Some(&mailbox),
                )
                .expect("a place in the engine or the queue");
            pids.push(pid);
        }
        match events.try_recv() {
            Ok(event) => started += usize::from(event.phase == Phase::Init),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
        assert!(Instant::now() < deadline, "{started} of {live} started");
    }
    assert!(
        maps() < max_map_count,
        "{} maps with {live} processes live",
        maps()
    );
    // The engine is full: these wait for a place, and the one after them is refused.
    for _ in 0..QUEUE {
        let pid = rt
            .spawn_monitored("many:sleeper", "many:host", &[json!(1)], &mailbox)
            .expect("a place in the queue");
        pids.push(pid);
    }
    let refused = rt
        .spawn_monitored("many:sleeper", "many:host", &[json!(1)], &mailbox)
        .expect_err("the queue is full");
    assert_eq!(refused.kind(), ErrorKind::QueueFull, "{refused}");
    // Every process ends and says so: the sleepers cancelled, the queued ones run.
    for &pid in &pids[..live] {
        rt.cancel(pid, "the test is over").unwrap();
    }
    let (mut cancelled, mut ok) = (0, 0);
    for _ in 0..pids.len() {
        let exit = common::receive(&mut mailbox).expect("an EXIT");
        match exit.outcome {
            Ok(value) => {
                assert_eq!(value, json!(1));
                ok += 1;
            }
            Err(error) => {
                assert_eq!(error.kind, ErrorKind::Cancelled, "{error}");
                cancelled += 1;
            }
        }
    }
    assert_eq!((cancelled, ok), (live, QUEUE));
}
