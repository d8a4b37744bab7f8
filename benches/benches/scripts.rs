//! Lua scripts as processes, at scale (`just bench`).
//!
//! - `scripts/10000_waiting`: 10,000 scripts spawned at once on 2 workers, each waiting in
//!   `process.receive()`, then each cancelled (it receives the CANCEL event and returns): time
//!   from the first spawn to the last EXIT. Once, while all of them wait, it prints the
//!   resident memory per waiting script, beside its baseline: the same number of bare Lua
//!   states (the same standard libraries, each with a coroutine suspended), made by mlua
//!   directly in the same run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use wasmproc_benches::resident_bytes;
use wasmproc_runtime::{Mailbox, Pid, Runtime, SpawnOptions};

const SCRIPTS: usize = 10_000;

const WAITER: &str = "local event = process.receive() return event and event.type";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Spawns `SCRIPTS` waiting scripts, runs `during` while they wait, then cancels each and
/// collects every EXIT: the time taken, less `during`'s.
fn wait_all(rt: &Arc<Runtime>, during: impl FnOnce()) -> Duration {
    let mut mailbox = Mailbox::new();
    let options = SpawnOptions::default();
    let start = Instant::now();
    let pids: Vec<Pid> = (0..SCRIPTS)
        .map(|_| {
            rt.spawn_lua(
                WAITER,
                "waiter",
                "bench:two_workers",
                &[],
                &options,
                Some(&mailbox),
            )
            .expect("spawn")
        })
        .collect();
    if std::env::var_os("SCRIPTS_PHASES").is_some() {
        eprintln!("spawned {SCRIPTS} in {:?}", start.elapsed());
    }
    let paused = Instant::now();
    during();
    let pause = paused.elapsed();
    for pid in &pids {
        rt.cancel(*pid, "done").expect("cancel");
    }
    for _ in 0..SCRIPTS {
        let exit = mailbox
            .receive_blocking(Some(Duration::from_secs(60)))
            .expect("a timer")
            .and_then(|event| event.into_exit())
            .expect("an EXIT");
        // Each heard its CANCEL in `receive` and returned the event's type.
        assert_eq!(
            exit.outcome.as_ref().ok(),
            Some(&serde_json::json!("CANCEL")),
            "{exit:?}"
        );
    }
    start.elapsed() - pause
}

/// The baseline: `SCRIPTS` bare Lua states with the same libraries, each with a coroutine
/// suspended in a yield, as a waiting script's state is.
fn bare_states() -> Vec<(mlua::Lua, mlua::Thread)> {
    use mlua::{Lua, LuaOptions, StdLib};
    let libs = StdLib::COROUTINE | StdLib::TABLE | StdLib::STRING | StdLib::UTF8 | StdLib::MATH;
    (0..SCRIPTS)
        .map(|_| {
            let lua = Lua::new_with(libs, LuaOptions::default()).unwrap();
            let f = lua
                .load("local event = coroutine.yield() return event")
                .into_function()
                .unwrap();
            let thread = lua.create_thread(f).unwrap();
            thread.resume::<()>(()).unwrap();
            (lua, thread)
        })
        .collect()
}

fn scripts(c: &mut Criterion) {
    // The baseline first, kept while the scripts are measured: freed memory stays in the
    // allocator, and would hide what the second measurement allocates.
    let before = resident_bytes();
    let states = bare_states();
    let bare = resident_bytes().saturating_sub(before) as f64 / SCRIPTS as f64 / 1024.0;
    let rt = Arc::new(Runtime::load(&root().join("bench.yaml")).unwrap());
    let before = resident_bytes();
    let mut during = 0;
    // Two seconds for every script to reach its `receive`.
    wait_all(&rt, || {
        std::thread::sleep(Duration::from_secs(2));
        during = resident_bytes();
    });
    let script = during.saturating_sub(before) as f64 / SCRIPTS as f64 / 1024.0;
    drop(states);
    eprintln!(
        "scripts: {SCRIPTS} waiting in receive at once, resident memory {script:.1} KiB per \
         script; bare Lua states (same libraries, a suspended coroutine): {bare:.1} KiB each"
    );
    let mut group = c.benchmark_group("scripts");
    group.sample_size(10);
    group.bench_function("10000_waiting", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| wait_all(&rt, || {})).sum())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    targets = scripts
}
criterion_main!(benches);
