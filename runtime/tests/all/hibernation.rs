//! A process that waits gives its fiber stack's pages back and gets its bytes back whole
//! (`runtime/src/hibernation.rs`), in an engine whose pool takes the arena.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use wasmproc_runtime::capacity::{Allocation, Capacity};
use wasmproc_runtime::hibernation::{hibernated, hibernated_memory, IDLE_BEFORE_HIBERNATION};
use wasmproc_runtime::{ErrorKind, Mailbox, Pid, Runtime};

use crate::common::{receive, with_sleep_imports, write_wat};

/// The guests' `$nest(depth, ms)`: it calls their `$sleep(ms)` at the bottom.
const NEST: &str = r#"
    (func $nest (param $depth i32) (param $ms i32) (result i64)
      (local $a i64) (local $b i64) (local $c i64) (local $d i64)
      (local $e i64) (local $f i64) (local $g i64) (local $h i64)
      (if (i32.eqz (local.get $depth))
        (then (call $sleep (local.get $ms)) (return (i64.const 0))))
      (local.set $a (i64.add (i64.mul (i64.extend_i32_u (local.get $depth))
                                      (i64.const 0x9E3779B97F4A7C15))
                             (i64.const 1)))
      (local.set $b (i64.rotl (local.get $a) (i64.const 7)))
      (local.set $c (i64.xor (local.get $b) (i64.const 0x5555)))
      (local.set $d (i64.mul (local.get $c) (i64.const 31)))
      (local.set $e (i64.rotl (local.get $d) (i64.const 13)))
      (local.set $f (i64.add (local.get $e) (local.get $a)))
      (local.set $g (i64.xor (local.get $f) (local.get $b)))
      (local.set $h (i64.mul (local.get $g) (i64.const 3)))
      (i64.add
        (i64.rotl
          (call $nest (i32.sub (local.get $depth) (i32.const 1)) (local.get $ms))
          (i64.const 1))
        (i64.xor
          (i64.add (i64.add (local.get $a) (local.get $b)) (i64.add (local.get $c) (local.get $d)))
          (i64.add (i64.add (local.get $e) (local.get $f)) (i64.add (local.get $g) (local.get $h))))))
"#;

/// `nest(depth, ms)`: recurses `depth` levels, each keeping eight values live across the call
/// below it (Cranelift keeps them in the level's native frame, on the fiber stack), sleeps `ms`
/// at the bottom (WASI 0.2: subscribe to the monotonic clock, block), and returns a checksum of
/// every level's values. A stack that came back different changes the checksum or crashes.
const NESTED_SLEEPER: &str = r#"
(component $C
  (; sleep imports ;)
  (core module $m
    (import "host" "block" (func $block (param i32)))
    (import "host" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "host" "drop" (func $drop (param i32)))
    (func $sleep (param $ms i32)
      (local $p i32)
      (local.set $p
        (call $subscribe (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000))))
      (call $block (local.get $p))
      (call $drop (local.get $p)))
    (; nest ;)
    (func (export "nest") (param $depth i32) (param $ms i32) (result i64)
      (call $nest (local.get $depth) (local.get $ms))))
  (core instance $host
    (export "block" (func $block))
    (export "subscribe" (func $subscribe))
    (export "drop" (func $drop)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "nest") (param "depth" u32) (param "ms" u32) (result u64)
    (canon lift (core func $i "nest"))))
"#;

/// [`NESTED_SLEEPER`] as a core module: WASI preview 1, sleeping in `poll_oneoff`.
const NESTED_SLEEPER_P1: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; One clock subscription at 128: userdata 0, tag 0 (clock), monotonic (id 1), the timeout in
  ;; nanoseconds, relative (flags 0); the event goes to 256, the count to 320.
  (func $sleep (param $ms i32)
    (i32.store (i32.const 144) (i32.const 1))
    (i64.store (i32.const 152)
      (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (drop (call $poll (i32.const 128) (i32.const 256) (i32.const 1) (i32.const 320))))
  (; nest ;)
  (func (export "nest") (param $depth i32) (param $ms i32) (result i64)
    (call $nest (local.get $depth) (local.get $ms))))
"#;

/// `fill(seed, ms)`: writes a page of its first memory from `seed` and sleeps `ms` in
/// `poll_oneoff`; then grows that memory (which moves it to a larger block of the arena, so
/// that its next hibernation must find it there), writes 6 pages of it (every other one the
/// same in every process, the rest from `seed`) and a page of its second memory, and sleeps
/// again; then returns a checksum of those pages and of its data segment's first 16 bytes.
/// Memory that came back different changes the checksum.
const MEMORY_SLEEPER_P1: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory $main (export "memory") 1)
  (memory $second 1)
  (data (memory $main) (i32.const 4096) "wasmproc hibernates memory pages")
  (func $sleep (param $ms i32)
    (i32.store $main (i32.const 144) (i32.const 1))
    (i64.store $main (i32.const 152)
      (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (drop (call $poll (i32.const 128) (i32.const 256) (i32.const 1) (i32.const 320))))
  (func $word (param $seed i64) (param $i i64) (result i64)
    (if (result i64) (i64.eqz (i64.and (i64.shr_u (local.get $i) (i64.const 9)) (i64.const 1)))
      (then (i64.mul (local.get $i) (i64.const 0x9E3779B97F4A7C15)))
      (else (i64.add (i64.mul (local.get $seed) (i64.const 0x100000001)) (local.get $i)))))
  (func (export "fill") (param $seed i32) (param $ms i32) (result i64)
    (local $i i32) (local $s i64) (local $sum i64)
    (local.set $s (i64.extend_i32_u (local.get $seed)))
    (block $done (loop $first
      (br_if $done (i32.ge_u (local.get $i) (i32.const 512)))
      (i64.store $main (i32.add (i32.const 0x2000) (i32.shl (local.get $i) (i32.const 3)))
        (i64.add (i64.mul (local.get $s) (i64.const 0x1234567)) (i64.extend_i32_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $first)))
    (call $sleep (local.get $ms))
    (local.set $i (i32.const 0))
    (drop (memory.grow $main (i32.const 8)))
    (block $done (loop $fill
      (br_if $done (i32.ge_u (local.get $i) (i32.const 3072)))
      (i64.store $main (i32.add (i32.const 0x10000) (i32.shl (local.get $i) (i32.const 3)))
        (call $word (local.get $s) (i64.extend_i32_u (local.get $i))))
      (if (i32.lt_u (local.get $i) (i32.const 512))
        (then (i64.store $second (i32.add (i32.const 0x8000) (i32.shl (local.get $i) (i32.const 3)))
          (i64.xor (local.get $s) (i64.shl (i64.extend_i32_u (local.get $i)) (i64.const 20))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $fill)))
    (call $sleep (local.get $ms))
    (local.set $sum (i64.xor (i64.load $main (i32.const 4096)) (i64.load $main (i32.const 4104))))
    (local.set $i (i32.const 0))
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const 512)))
      (local.set $sum (i64.xor (i64.rotl (local.get $sum) (i64.const 5))
        (i64.load $main (i32.add (i32.const 0x2000) (i32.shl (local.get $i) (i32.const 3))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    (local.set $i (i32.const 0))
    (block $done (loop $add
      (br_if $done (i32.ge_u (local.get $i) (i32.const 3072)))
      (local.set $sum (i64.xor (i64.rotl (local.get $sum) (i64.const 5))
        (i64.load $main (i32.add (i32.const 0x10000) (i32.shl (local.get $i) (i32.const 3))))))
      (if (i32.lt_u (local.get $i) (i32.const 512))
        (then (local.set $sum (i64.xor (i64.rotl (local.get $sum) (i64.const 5))
          (i64.load $second (i32.add (i32.const 0x8000) (i32.shl (local.get $i) (i32.const 3))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $add)))
    (local.get $sum))
  (func (export "big") (param $seed i32) (param $ms i32) (result i64)
    (local $i i32) (local $s i64) (local $sum i64)
    (local.set $s (i64.extend_i32_u (local.get $seed)))
    (drop (memory.grow $main (i32.const 14)))
    (block $done (loop $fill
      (br_if $done (i32.ge_u (local.get $i) (i32.const 114688)))
      (i64.store $main (i32.add (i32.const 0x10000) (i32.shl (local.get $i) (i32.const 3)))
        (i64.add (i64.mul (local.get $s) (i64.const 0x9E3779B97F4A7C15))
                 (i64.extend_i32_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $fill)))
    (call $sleep (local.get $ms))
    (local.set $i (i32.const 0))
    (block $done (loop $add
      (br_if $done (i32.ge_u (local.get $i) (i32.const 114688)))
      (local.set $sum (i64.xor (i64.rotl (local.get $sum) (i64.const 5))
        (i64.load $main (i32.add (i32.const 0x10000) (i32.shl (local.get $i) (i32.const 3))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $add)))
    (local.get $sum)))
"#;

/// What `fill(seed, _)` returns, computed here.
fn memory_checksum(seed: u64) -> i64 {
    let data = b"wasmproc hibernates memory pages";
    let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
    let mut sum = word(0) ^ word(8);
    for i in 0..512u64 {
        sum = sum.rotate_left(5) ^ seed.wrapping_mul(0x1234567).wrapping_add(i);
    }
    for i in 0..3072u64 {
        let first = if (i >> 9) & 1 == 0 {
            i.wrapping_mul(0x9E3779B97F4A7C15)
        } else {
            seed.wrapping_mul(0x1_0000_0001).wrapping_add(i)
        };
        sum = sum.rotate_left(5) ^ first;
        if i < 512 {
            sum = sum.rotate_left(5) ^ (seed ^ (i << 20));
        }
    }
    sum as i64
}

/// What `big(seed, _)` returns, computed here: 14 wasm pages of words that differ in every
/// process, far past what a process's memories may keep when hibernated.
fn big_checksum(seed: u64) -> i64 {
    (0..114_688u64).fold(0u64, |sum, i| {
        sum.rotate_left(5) ^ seed.wrapping_mul(0x9E3779B97F4A7C15).wrapping_add(i)
    }) as i64
}

/// What `nest(depth, _)` returns, computed here.
fn checksum(depth: u32) -> u64 {
    let mut sum = 0u64;
    for level in 1..=u64::from(depth) {
        let a = level.wrapping_mul(0x9E3779B97F4A7C15).wrapping_add(1);
        let b = a.rotate_left(7);
        let c = b ^ 0x5555;
        let d = c.wrapping_mul(31);
        let e = d.rotate_left(13);
        let f = e.wrapping_add(a);
        let g = f ^ b;
        let h = g.wrapping_mul(3);
        let own = (a.wrapping_add(b).wrapping_add(c.wrapping_add(d)))
            ^ (e.wrapping_add(f).wrapping_add(g.wrapping_add(h)));
        sum = sum.rotate_left(1).wrapping_add(own);
    }
    sum
}

/// The nested sleepers (`t:nest`, a component; `t:nest_p1`, a core module) and the memory
/// sleeper (`t:fill`) on a host of 2 workers, limited to `max_execution_ms` where given, over
/// a pool that takes the arena, with the directory their binaries are in; `None` where this
/// kernel's map limit holds the pool pooled (then nothing is the arena's to hibernate).
fn arena_runtime(max_execution_ms: Option<u64>) -> Option<(tempfile::TempDir, Runtime)> {
    let binaries = tempfile::tempdir().unwrap();
    let dir = binaries.path();
    let pool = wasmproc_runtime::engine::Pool {
        processes: 20_000,
        memory: 1 << 20,
        ..Default::default()
    };
    let max_map_count = wasmproc_runtime::capacity::max_map_count();
    if Capacity::within(pool.processes, max_map_count).allocation != Allocation::Arena {
        eprintln!("vm.max_map_count {max_map_count} holds this pool pooled; skipped");
        return None;
    }
    let limits = max_execution_ms
        .map(|ms| format!(", limits: {{ max_execution_ms: {ms} }}"))
        .unwrap_or_default();
    let entry = |name: &str, wat: &str, method: &str| {
        let wat = with_sleep_imports(&wat.replace("(; nest ;)", NEST));
        let digest = write_wat(dir, &format!("{name}.wasm"), &wat);
        format!("  - {{ name: {name}, kind: process.wasm, fs: bins, path: {name}.wasm, hash: \"{digest}\", method: {method}, imports: [wasi:clocks]{limits} }}\n")
    };
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n{}{}{}{}",
        dir.display(),
        entry("nest", NESTED_SLEEPER, "nest"),
        entry("nest_p1", NESTED_SLEEPER_P1, "nest"),
        entry("fill", MEMORY_SLEEPER_P1, "fill"),
        entry("big", MEMORY_SLEEPER_P1, "big"),
    );
    let manifest = wasmproc_runtime::Manifest::parse(&text, Path::new("inline.yaml")).unwrap();
    let loader = wasmproc_runtime::engine::loader_with(pool).unwrap();
    Some((
        binaries,
        Runtime::new(manifest, std::sync::Arc::new(loader)),
    ))
}

/// Waits (up to 10 s) until at least `n` stacks are hibernated.
fn until_hibernated(n: usize) {
    let start = Instant::now();
    while hibernated() < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} of {n} stacks hibernated after 10 s",
            hibernated()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns `entry` once for each of `runs` (its arguments, and the value its EXIT must carry),
/// monitored by `mailbox`: each process's PID with that value.
fn spawn_each(
    rt: &Runtime,
    entry: &str,
    runs: impl IntoIterator<Item = ([serde_json::Value; 2], serde_json::Value)>,
    mailbox: &Mailbox,
) -> HashMap<Pid, serde_json::Value> {
    runs.into_iter()
        .map(|(args, want)| {
            let pid = rt.spawn_monitored(entry, "t:host", &args, mailbox).unwrap();
            (pid, want)
        })
        .collect()
}

/// One EXIT from each process of `expected`, carrying its value.
fn each_exits_with(mailbox: &mut Mailbox, mut expected: HashMap<Pid, serde_json::Value>) {
    for _ in 0..expected.len() {
        let exit = receive(mailbox).expect("an EXIT");
        let want = expected.remove(&exit.from).expect("one EXIT per process");
        assert_eq!(exit.outcome, Ok(want), "process {:?}", exit.from);
    }
}

#[test]
fn sleeping_processes_give_their_stacks_back_and_wake_with_every_frame_whole() {
    let Some((_binaries, rt)) = arena_runtime(None) else {
        return;
    };
    let mut mailbox = Mailbox::new();
    // Depths from a few frames to several pages of live stack; each sleeps long past the idle
    // time, so that all of them are hibernated at once before any wakes.
    let depths: Vec<u32> = (0..60).map(|i| [1, 7, 40, 150][i % 4]).collect();
    let sleep_ms = 1_500 + 10 * IDLE_BEFORE_HIBERNATION.as_millis() as u64;
    let runs = depths
        .iter()
        .map(|&depth| ([json!(depth), json!(sleep_ms)], json!(checksum(depth))));
    let expected = spawn_each(&rt, "t:nest", runs, &mailbox);
    until_hibernated(depths.len());
    each_exits_with(&mut mailbox, expected);
}

#[test]
fn a_hibernated_process_that_is_cancelled_or_runs_out_of_time_still_exits_once() {
    let Some((_binaries, rt)) = arena_runtime(None) else {
        return;
    };
    let limit_ms = 6 * IDLE_BEFORE_HIBERNATION.as_millis() as u64;
    let Some((_limited_binaries, limited)) = arena_runtime(Some(limit_ms)) else {
        return;
    };
    let mut mailbox = Mailbox::new();
    let mut limited_mailbox = Mailbox::new();
    // Asleep for a minute: only the cancel or the limit ends them, each dropping a store whose
    // fiber (hibernated by then) must unwind on its own stack.
    let cancelled: Vec<_> = (0..8)
        .map(|_| {
            rt.spawn_monitored("t:nest", "t:host", &[json!(20), json!(60_000)], &mailbox)
                .unwrap()
        })
        .collect();
    let timed_out: Vec<_> = (0..8)
        .map(|_| {
            limited
                .spawn_monitored(
                    "t:nest",
                    "t:host",
                    &[json!(20), json!(60_000)],
                    &limited_mailbox,
                )
                .unwrap()
        })
        .collect();
    until_hibernated(16);
    // Others' stacks count too: time enough for these to have been hibernated themselves.
    std::thread::sleep(3 * IDLE_BEFORE_HIBERNATION);
    for &pid in &cancelled {
        rt.cancel(pid, "enough").unwrap();
    }
    for _ in &cancelled {
        let exit = receive(&mut mailbox).expect("an EXIT");
        assert!(cancelled.contains(&exit.from));
        assert_eq!(exit.outcome.unwrap_err().kind, ErrorKind::Cancelled);
    }
    for _ in &timed_out {
        let exit = receive(&mut limited_mailbox).expect("an EXIT");
        assert!(timed_out.contains(&exit.from));
        assert_eq!(exit.outcome.unwrap_err().kind, ErrorKind::LimitExceeded);
    }
    std::thread::sleep(2 * IDLE_BEFORE_HIBERNATION);
    assert_eq!(mailbox.try_receive(), None, "exactly one EXIT each");
    assert_eq!(limited_mailbox.try_receive(), None, "exactly one EXIT each");
}

#[test]
fn a_core_modules_stack_is_hibernated_and_comes_back_whole_too() {
    let Some((_binaries, rt)) = arena_runtime(None) else {
        return;
    };
    let mut mailbox = Mailbox::new();
    let sleep_ms = 1_500 + 10 * IDLE_BEFORE_HIBERNATION.as_millis() as u64;
    // A core module's i64 result, as the EXIT carries it.
    let runs = [3u32, 60].into_iter().flat_map(|depth| {
        (0..10).map(move |_| {
            (
                [json!(depth), json!(sleep_ms)],
                json!(checksum(depth) as i64),
            )
        })
    });
    let expected = spawn_each(&rt, "t:nest_p1", runs, &mailbox);
    until_hibernated(expected.len());
    each_exits_with(&mut mailbox, expected);
}

#[test]
fn sleeping_processes_give_their_memories_pages_back_and_wake_with_every_byte_whole() {
    let Some((_binaries, rt)) = arena_runtime(None) else {
        return;
    };
    let mut mailbox = Mailbox::new();
    // Twice: before and after the memory moves.
    let sleep_ms = 1_000 + 5 * IDLE_BEFORE_HIBERNATION.as_millis() as u64;
    let runs =
        (1..=50u64).map(|seed| ([json!(seed), json!(sleep_ms)], json!(memory_checksum(seed))));
    let expected = spawn_each(&rt, "t:fill", runs, &mailbox);
    until_hibernated(expected.len());
    // Asleep the second time, each holds at least 9 pages of data (the subscription, the data
    // segment, the 6 written pages, the second memory's): far more than the other tests'
    // sleepers hold, and more than the 3 of the first time.
    let start = Instant::now();
    while hibernated_memory() < expected.len() * 9 * 4096 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} bytes of memory hibernated",
            hibernated_memory()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    each_exits_with(&mut mailbox, expected);
}

#[test]
fn a_process_whose_memories_hold_more_than_is_kept_hibernates_its_stack_and_keeps_its_memory() {
    let Some((_binaries, rt)) = arena_runtime(None) else {
        return;
    };
    let mut mailbox = Mailbox::new();
    let sleep_ms = 1_000 + 5 * IDLE_BEFORE_HIBERNATION.as_millis() as u64;
    let runs = (1..=8u64).map(|seed| ([json!(seed), json!(sleep_ms)], json!(big_checksum(seed))));
    let expected = spawn_each(&rt, "t:big", runs, &mailbox);
    until_hibernated(expected.len());
    each_exits_with(&mut mailbox, expected);
}

#[test]
fn a_runtime_dropped_while_its_processes_are_hibernated_ends_each_with_one_exit() {
    let Some((_binaries, rt)) = arena_runtime(None) else {
        return;
    };
    let mut mailbox = Mailbox::new();
    let pids: Vec<_> = (0..6)
        .map(|i| {
            let entry = if i % 2 == 0 { "t:nest" } else { "t:nest_p1" };
            rt.spawn_monitored(entry, "t:host", &[json!(25), json!(60_000)], &mailbox)
                .unwrap()
        })
        .collect();
    until_hibernated(pids.len());
    std::thread::sleep(3 * IDLE_BEFORE_HIBERNATION);
    drop(rt);
    for _ in &pids {
        let exit = receive(&mut mailbox).expect("an EXIT for every process");
        assert!(pids.contains(&exit.from));
        assert_eq!(exit.outcome.unwrap_err().kind, ErrorKind::HostFailure);
    }
    assert_eq!(mailbox.try_receive(), None, "exactly one EXIT each");
}

#[test]
fn processes_waking_around_the_idle_time_some_cancelled_each_exit_once_with_their_frames_whole() {
    let Some((_binaries, rt)) = arena_runtime(None) else {
        return;
    };
    let mut mailbox = Mailbox::new();
    let idle = IDLE_BEFORE_HIBERNATION.as_millis() as u64;
    // Sleeps spread across the idle time (some hibernate, some wake just before, or while their
    // timer fires), depths 0-119; every seventh cancelled while others wake.
    let mut expected = std::collections::HashMap::new();
    let mut cancelled = Vec::new();
    for i in 0..400u64 {
        let depth = (i * 37 % 120) as u32;
        let ms = idle / 2 + (i * 53 % (3 * idle));
        let pid = rt
            .spawn_monitored("t:nest", "t:host", &[json!(depth), json!(ms)], &mailbox)
            .unwrap();
        if i % 7 == 3 {
            cancelled.push(pid);
        }
        expected.insert(pid, checksum(depth));
    }
    std::thread::sleep(Duration::from_millis(idle + idle / 3));
    until_hibernated(1);
    for &pid in &cancelled {
        // A process that already ended cannot be cancelled: its EXIT carries its value.
        let _ = rt.cancel(pid, "enough");
    }
    for _ in 0..expected.len() {
        let exit = receive(&mut mailbox).expect("an EXIT");
        let want = expected.remove(&exit.from).expect("one EXIT per process");
        match exit.outcome {
            Err(error) if cancelled.contains(&exit.from) => {
                assert_eq!(error.kind, ErrorKind::Cancelled, "{error:?}")
            }
            outcome => assert_eq!(outcome, Ok(json!(want)), "process {:?}", exit.from),
        }
    }
    assert_eq!(mailbox.try_receive(), None, "exactly one EXIT each");
}
