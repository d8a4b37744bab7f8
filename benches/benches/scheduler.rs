//! Scheduler benchmarks. Each group measures wasmproc and, in the same run, bare wasmtime doing
//! the same work, so that the ratio means something on a shared, noisy machine.
//!
//! - `spawn_exit/compute`: spawn → EXIT of the compute guest (6 × 7), 64 in flight, 2 workers.
//!   `wasmproc` is the full runtime (entry lookup, hash-checked program, argument conversion,
//!   limits, epochs (no fuel: `bench.yaml` limits none), registry, EXIT delivery; compute
//!   imports nothing, so it gets no WASI context); `bare_*` is
//!   `InstancePre::instantiate_async` + `call_async` of the same component in tokio tasks: on-demand, pooling with wasmtime's defaults, wasmproc's own
//!   engine configuration (`engine::config`: its pool, slots reset in place) without metering
//!   (the best), and the same with wasmproc's metering (fuel, epoch deadline), to show what
//!   that costs by itself. Then 15 interleaved rounds give the ratio to the best.
//! - `sleepers`: 1,000 processes sleeping 100 ms at once on 2 workers, until the last EXIT;
//!   also prints the resident memory per sleeping process.
//! - `wake_latency_under_spin`: 1,000 processes sleeping 10 ms spawned at once on 2 workers
//!   beside 0, 1 and 2 guests that spin without calling the host (2: every worker busy).
//!   Criterion times the spawns to the last EXIT; the figure the goal is stated in is each
//!   sleeper's lateness (its EXIT's `wall_time` − 10 ms), printed as p50/p99/max beside what
//!   fair round-robin would give, and drawn as distributions in an SVG whose path is printed.
//!   Each sleeper's lifecycle trace splits its time: queued (spawn → Init, not lateness), wake
//!   (timer deadline → the Step that resumed it) and exit (that Step → Close); and the
//!   workers' CPU per sleeper says how long a burst of 1,000 keeps 2 workers busy.
//! - `guest_loop`: a guest that only computes (`loop.wat`, ~10 ms a call) through wasmproc
//!   with fuel not counted (its manifest limits none, as `bench.yaml`) and counted, beside bare
//!   wasmtime without metering: what epochs and fuel cost a guest's own code.
//! - `sleepers/100k`: 100,000 processes sleeping at once, beside bare wasmtime, with the
//!   `hostile` guest and a minimal one (see [`at_scale`]); one run each in a process of its
//!   own, figures printed, a plot written.

mod at_scale;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use wasmproc_benches::{cpu_ns, criterion_home, only_side, resident_bytes, selected};
use wasmproc_runtime::engine::{self, Pool, EPOCH_TICK, PREEMPTED_SLICE_TICKS};
use wasmproc_runtime::{Mailbox, Phase, Runtime, SpawnOptions};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

const IN_FLIGHT: u64 = 64;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn clock() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// `n` spawn → EXIT round trips through the runtime, `IN_FLIGHT` at a time. EXITs are waited
/// for the way the bare baseline waits for its tasks: the thread parks, no timer runtime (a
/// timer on every wait cost this side ~2% in the same rounds).
fn wasmproc_round_trips(rt: &Runtime, entry: &str, args: &[serde_json::Value], n: u64) -> Duration {
    let mut mailbox = Mailbox::new();
    let start = Instant::now();
    let (mut spawned, mut done) = (0, 0);
    while done < n {
        while spawned < n && spawned - done < IN_FLIGHT {
            rt.spawn_monitored(entry, "bench:two_workers", args, &mailbox)
                .unwrap();
            spawned += 1;
        }
        mailbox
            .receive_blocking(None)
            .expect("no timer to start")
            .expect("an EXIT");
        done += 1;
    }
    start.elapsed()
}

/// How the bare baseline allocates instances.
#[derive(Clone, Copy, PartialEq)]
enum Allocation {
    OnDemand,
    /// The pooling allocator with wasmtime's defaults.
    Pooling,
    /// wasmproc's own engine configuration (`engine::config`: pooling with slots reset in
    /// place, keep-resident memory found dirty by PAGEMAP_SCAN), metering left out unless
    /// asked for: the fastest configuration measured here.
    PoolingTuned,
}

struct Bare {
    /// Metered like wasmproc's engine (fuel, epoch deadline), to split the gap between engine
    /// configuration and runtime work.
    metered: bool,
    engine: Engine,
    pre: InstancePre<()>,
    export: ComponentExportIndex,
    scheduler: tokio::runtime::Runtime,
}

impl Bare {
    fn new(allocation: Allocation, metered: bool) -> Bare {
        let mut config = match allocation {
            // The very configuration the runtime's engine has (same pool, same environment).
            Allocation::PoolingTuned => {
                engine::config(Pool::from_env().unwrap(), engine::Fuel::NotCounted)
            }
            Allocation::Pooling => {
                let mut pool = PoolingAllocationConfig::default();
                pool.total_component_instances(1_000)
                    .total_core_instances(1_000)
                    .total_memories(1_000)
                    .total_tables(1_000)
                    .total_stacks(1_000)
                    .max_memory_size(16 << 20);
                let mut config = Config::new();
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
                config
            }
            Allocation::OnDemand => Config::new(),
        };
        config.consume_fuel(metered).epoch_interruption(metered);
        let engine = Engine::new(&config).unwrap();
        let bytes = std::fs::read(root().join("../guests/dist/compute.wasm")).unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        let export = component.get_export_index(None, "compute").unwrap();
        let pre = Linker::new(&engine).instantiate_pre(&component).unwrap();
        let scheduler = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Bare {
            metered,
            engine,
            pre,
            export,
            scheduler,
        }
    }

    fn round_trips(&self, n: u64) -> Duration {
        let start = Instant::now();
        self.scheduler.block_on(async {
            let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..n {
                let permit = permits.clone().acquire_owned().await.unwrap();
                let (engine, pre, export) = (self.engine.clone(), self.pre.clone(), self.export);
                let metered = self.metered;
                tasks.spawn(async move {
                    let mut store = Store::new(&engine, ());
                    if metered {
                        store.set_fuel(u64::MAX).unwrap();
                        store.set_epoch_deadline(2);
                        // As wasmproc does it: a callback that captures nothing (no box).
                        store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(2)));
                    }
                    let instance = pre.instantiate_async(&mut store).await.unwrap();
                    let func = instance.get_func(&mut store, export).unwrap();
                    let mut result = [Val::S32(0)];
                    func.call_async(&mut store, &[Val::S32(6), Val::S32(7)], &mut result)
                        .await
                        .unwrap();
                    drop(permit);
                    result
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        });
        start.elapsed()
    }
}

fn spawn_exit(c: &mut Criterion) {
    // Its engines are made before criterion filters: not at all when it is not selected.
    if !selected("spawn_exit/compute") {
        return;
    }
    let args = [json!(6), json!(7)];
    // Counted under callgrind (`benches/instructions.sh spawn`): `wasmproc:N`, `bare:N`
    // (`bare_pooling_tuned`) or `bare_metered:N`, each side alone in the process.
    if let Some((side, n)) = only_side() {
        match side.as_str() {
            "wasmproc" => {
                let rt = Runtime::load(&root().join("bench.yaml")).unwrap();
                wasmproc_round_trips(&rt, "bench:compute", &args, n);
            }
            "bare" => drop(Bare::new(Allocation::PoolingTuned, false).round_trips(n)),
            _ => drop(Bare::new(Allocation::PoolingTuned, true).round_trips(n)),
        }
        return;
    }
    let rt = Runtime::load(&root().join("bench.yaml")).unwrap();
    let mut group = c.benchmark_group("spawn_exit/compute");
    group.throughput(Throughput::Elements(1));
    group.bench_function("wasmproc", |b| {
        b.iter_custom(|n| wasmproc_round_trips(&rt, "bench:compute", &args, n))
    });
    let on_demand = Bare::new(Allocation::OnDemand, false);
    group.bench_function("bare_on_demand", |b| {
        b.iter_custom(|n| on_demand.round_trips(n))
    });
    let pooling = Bare::new(Allocation::Pooling, false);
    group.bench_function("bare_pooling", |b| {
        b.iter_custom(|n| pooling.round_trips(n))
    });
    let best = Bare::new(Allocation::PoolingTuned, false);
    group.bench_function("bare_pooling_tuned", |b| {
        b.iter_custom(|n| best.round_trips(n))
    });
    let metered = Bare::new(Allocation::PoolingTuned, true);
    group.bench_function("bare_pooling_tuned_metered", |b| {
        b.iter_custom(|n| metered.round_trips(n))
    });
    group.finish();
    // Under `--profile-time` only the chosen benchmark should show in a profiler.
    if !std::env::args().any(|a| a == "--profile-time") {
        ratio(&rt, &args, &best, &metered);
    }
}

/// The ratio the goal is stated in, from interleaved rounds: on a shared machine the load
/// changes between criterion's separate measurements, less within a pair of rounds.
fn ratio(rt: &Runtime, args: &[serde_json::Value], best: &Bare, metered: &Bare) {
    const ROUNDS: usize = 15;
    const N: u64 = 20_000;
    let per_second = |d: Duration| N as f64 / d.as_secs_f64();
    // CPU time (all threads) per spawn: what a round costs, whatever else the machine runs.
    let measured = |run: &dyn Fn() -> Duration| {
        let before = cpu_ns(None);
        let elapsed = run();
        let cpu_us = (cpu_ns(None) - before) as f64 / N as f64 / 1000.0;
        (per_second(elapsed), cpu_us)
    };
    let mut rounds: Vec<[f64; 5]> = (0..ROUNDS)
        .map(|round| {
            let ours = || measured(&|| wasmproc_round_trips(rt, "bench:compute", args, N));
            let bare = || measured(&|| best.round_trips(N));
            // Every other round the other one first: whichever runs second would otherwise
            // always inherit what the first left behind (warm caches, a busy neighbour).
            let ((ours, ours_cpu), (bare, bare_cpu)) = if round % 2 == 0 {
                let o = ours();
                (o, bare())
            } else {
                let b = bare();
                (ours(), b)
            };
            let (bare_metered, _) = measured(&|| metered.round_trips(N));
            [ours / bare, ours, bare / bare_metered, ours_cpu, bare_cpu]
        })
        .collect();
    let median = |i: usize| {
        let mut v: Vec<f64> = rounds.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[ROUNDS / 2]
    };
    let (metered_cost, ours_cpu, bare_cpu) = (median(2), median(3), median(4));
    rounds.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let [ratio, ours, ..] = rounds[ROUNDS / 2];
    let (low, high) = (rounds[ROUNDS / 4][0], rounds[ROUNDS - 1 - ROUNDS / 4][0]);
    eprintln!(
        "spawn_exit/compute: wasmproc / bare_pooling_tuned = {ratio:.2} (median of {ROUNDS} \
         interleaved rounds of {N}, middle half {low:.2}-{high:.2}; wasmproc {:.1}k/s in that \
         round); CPU per spawn, all threads: wasmproc {ours_cpu:.2} us, bare {bare_cpu:.2} us \
         (ratio {:.2}); bare is {metered_cost:.2}x faster unmetered than metered",
        ours / 1000.0,
        bare_cpu / ours_cpu
    );
}

/// Resident set size of this process, from /proc.
const SLEEPERS: u64 = 1_000;

/// Spawns `SLEEPERS` processes sleeping `ms`, runs `during` while they sleep, then waits for
/// every EXIT.
fn sleep_all(rt: &Runtime, clock: &tokio::runtime::Runtime, ms: u32, during: impl FnOnce()) {
    let mut mailbox = Mailbox::new();
    for _ in 0..SLEEPERS {
        rt.spawn_monitored("bench:sleeper", "bench:two_workers", &[json!(ms)], &mailbox)
            .unwrap();
    }
    during();
    clock.block_on(async {
        for _ in 0..SLEEPERS {
            mailbox
                .receive(Duration::from_secs(30))
                .await
                .expect("an EXIT");
        }
    });
}

fn sleepers(c: &mut Criterion) {
    if !selected("sleepers/1000_x_100ms") {
        return;
    }
    let rt = Runtime::load(&root().join("bench.yaml")).unwrap();
    let clock = clock();
    // Once: memory per sleeping process, measured while all of them sleep.
    let before = resident_bytes();
    let mut during = 0;
    sleep_all(&rt, &clock, 1000, || {
        std::thread::sleep(Duration::from_millis(500));
        during = resident_bytes();
    });
    eprintln!(
        "sleepers: {SLEEPERS} sleeping at once, resident memory {:.1} KiB per process",
        during.saturating_sub(before) as f64 / SLEEPERS as f64 / 1024.0
    );
    let mut group = c.benchmark_group("sleepers");
    group.sample_size(10);
    group.bench_function("1000_x_100ms", |b| {
        b.iter(|| sleep_all(&rt, &clock, 100, || {}))
    });
    group.finish();
}

const WAKE_SLEEPERS: usize = 1_000;
const WAKE_MS: u64 = 10;
/// Each guest's lateness, from the spawns of one round to its EXIT.
struct WakeRound {
    lateness: Vec<Duration>,
    /// From the first spawn to the last EXIT.
    last_exit: Duration,
    /// Suspensions of all the sleepers.
    yields: u64,
    parts: Parts,
}

/// Where each sleeper's time went, from its lifecycle trace: `queued` from the round's first
/// spawn to its Init (not in its lateness: wall time starts at Init), `wake` from its timer's
/// deadline (the Yield at which it started waiting, + `WAKE_MS`) to the Step that resumed it,
/// `exit` from that Step to its Close.
#[derive(Default)]
struct Parts {
    queued: Vec<Duration>,
    wake: Vec<Duration>,
    exit: Vec<Duration>,
}

impl Parts {
    fn of(
        start: Instant,
        phases: &mut tokio::sync::mpsc::UnboundedReceiver<wasmproc_runtime::Lifecycle>,
    ) -> Parts {
        let mut by_pid: std::collections::HashMap<_, Vec<_>> = Default::default();
        while let Ok(event) = phases.try_recv() {
            by_pid.entry(event.pid).or_default().push(event);
        }
        let mut parts = Parts::default();
        for events in by_pid.values() {
            let at = |phase: Phase, nth: usize| {
                events
                    .iter()
                    .filter(|e| e.phase == phase)
                    .nth(nth)
                    .map(|e| e.at)
            };
            let (Some(init), Some(waits), Some(resumed), Some(close)) = (
                at(Phase::Init, 0),
                at(Phase::Yield, 0),
                at(Phase::Step, 1),
                at(Phase::Close, 0),
            ) else {
                continue;
            };
            let deadline = waits + Duration::from_millis(WAKE_MS);
            parts.queued.push(init - start);
            parts.wake.push(resumed.saturating_duration_since(deadline));
            parts.exit.push(close - resumed);
        }
        parts
    }

    fn extend(&mut self, other: Parts) {
        self.queued.extend(other.queued);
        self.wake.extend(other.wake);
        self.exit.extend(other.exit);
    }

    fn print(mut self, name: &str) {
        for (part, samples) in [
            ("queued", &mut self.queued),
            ("wake", &mut self.wake),
            ("exit", &mut self.exit),
        ] {
            samples.sort();
            if samples.is_empty() {
                continue;
            }
            eprintln!(
                "wake_latency_under_spin/{name}: {part} p50 {:.2} / p99 {:.2} / max {:.2} ms",
                ms(quantile(samples, 0.5)),
                ms(quantile(samples, 0.99)),
                ms(quantile(samples, 1.0)),
            );
        }
    }
}

/// Starts `spinners` spinning guests, waits until each has been preempted once (so every
/// worker they take is busy), spawns `WAKE_SLEEPERS` sleepers of `WAKE_MS` at once, waits for
/// all their EXITs, then cancels the spinners.
fn wake_round(rt: &Runtime, clock: &tokio::runtime::Runtime, spinners: usize) -> WakeRound {
    let host = "bench:two_workers";
    let mut spin_exits = Mailbox::new();
    let (trace, mut phases) = tokio::sync::mpsc::unbounded_channel();
    let options = SpawnOptions {
        trace: Some(trace),
        ..SpawnOptions::default()
    };
    let spinning: Vec<_> = (0..spinners)
        .map(|_| {
            rt.spawn_with("bench:spinner", host, &[], &options, Some(&spin_exits))
                .unwrap()
        })
        .collect();
    let mut preempted = std::collections::HashSet::new();
    while preempted.len() < spinners {
        let event = phases.blocking_recv().expect("the spinners' trace");
        if event.phase == Phase::Yield {
            preempted.insert(event.pid);
        }
    }
    let mut mailbox = Mailbox::new();
    let (trace, mut sleeper_phases) = tokio::sync::mpsc::unbounded_channel();
    let traced = SpawnOptions {
        trace: Some(trace),
        ..SpawnOptions::default()
    };
    let start = Instant::now();
    for _ in 0..WAKE_SLEEPERS {
        rt.spawn_with(
            "bench:sleeper",
            host,
            &[json!(WAKE_MS)],
            &traced,
            Some(&mailbox),
        )
        .unwrap();
    }
    drop(traced);
    let mut round = WakeRound {
        lateness: Vec::with_capacity(WAKE_SLEEPERS),
        last_exit: Duration::ZERO,
        yields: 0,
        parts: Parts::default(),
    };
    clock.block_on(async {
        for _ in 0..WAKE_SLEEPERS {
            let exit = mailbox
                .receive(Duration::from_secs(60))
                .await
                .and_then(|e| e.into_exit())
                .expect("every sleeper's EXIT within a minute");
            assert_eq!(exit.outcome, Ok(json!(WAKE_MS)), "a sleeper failed");
            let wall = exit.accounting.wall_time;
            round
                .lateness
                .push(wall.saturating_sub(Duration::from_millis(WAKE_MS)));
            round.yields += u64::from(exit.accounting.yields);
            round.last_exit = round.last_exit.max(exit.accounting.ended - start);
        }
        round.parts = Parts::of(start, &mut sleeper_phases);
        for pid in spinning {
            rt.cancel(pid, "the round is over").unwrap();
            spin_exits
                .receive(Duration::from_secs(60))
                .await
                .expect("the spinner's EXIT");
        }
    });
    round
}

/// The `q` quantile of sorted `samples`.
fn quantile(samples: &[Duration], q: f64) -> Duration {
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn wake_latency_under_spin(c: &mut Criterion) {
    // Its runtime is made before criterion filters: not at all when it is not selected.
    if !selected("wake_latency_under_spin") {
        return;
    }
    let rt = Runtime::load(&root().join("bench.yaml")).unwrap();
    let clock = clock();
    let workers = 2;
    let mut series = Vec::new();
    let mut group = c.benchmark_group("wake_latency_under_spin");
    group
        .sample_size(10)
        .sampling_mode(criterion::SamplingMode::Flat);
    for spinners in [0, 1, 2] {
        let mut lateness = Vec::new();
        let mut last_exits = Vec::new();
        let mut yields = 0;
        let mut wake_rounds = 0;
        let mut parts = Parts::default();
        let cpu_before = cpu_ns(Some("wasmproc bench:"));
        group.bench_function(format!("{spinners}_spinners"), |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| {
                        let round = wake_round(&rt, &clock, spinners);
                        wake_rounds += 1;
                        lateness.extend(round.lateness);
                        last_exits.push(round.last_exit);
                        yields += round.yields;
                        parts.extend(round.parts);
                        round.last_exit
                    })
                    .sum()
            })
        });
        lateness.sort();
        last_exits.sort();
        if lateness.is_empty() {
            continue;
        }
        // Fair round-robin: a sleeper waits for the time wheel (1 ms resolution), and, when
        // every worker runs a spinner, for the rest of the slice under way (the spinners are
        // past their first slice: at most PREEMPTED_SLICE_TICKS ticks, taken as even over
        // the slice); its own CPU time is left out.
        let wheel = 1.0;
        let slice = ms(EPOCH_TICK) * PREEMPTED_SLICE_TICKS as f64;
        let busy = if spinners >= workers { slice } else { 0.0 };
        eprintln!(
            "wake_latency_under_spin/{spinners}_spinners: lateness p50 {:.1} / p99 {:.1} / max \
             {:.1} ms ({} wakes in {} rounds; fair round-robin: p50 {:.1} / p99 {:.1} / max \
             {:.1} ms); last EXIT {:.0} ms after the spawns (median round); {:.2} yields per \
             sleeper",
            ms(quantile(&lateness, 0.5)),
            ms(quantile(&lateness, 0.99)),
            ms(quantile(&lateness, 1.0)),
            lateness.len(),
            last_exits.len(),
            wheel * 0.5 + busy * 0.5,
            wheel * 0.99 + busy * 0.99,
            wheel + busy,
            ms(quantile(&last_exits, 0.5)),
            yields as f64 / lateness.len() as f64,
        );
        parts.print(&format!("{spinners}_spinners"));
        if spinners == 0 {
            // Spinners take every cycle given to them: only the quiet case says what a
            // sleeper costs (warm-up rounds included in both counts: criterion's warm-up
            // goes through the same closure).
            let cpu = Duration::from_nanos(cpu_ns(Some("wasmproc bench:")) - cpu_before);
            let sleepers = (wake_rounds * WAKE_SLEEPERS).max(1);
            eprintln!(
                "wake_latency_under_spin/0_spinners: workers' CPU {:.1} us per sleeper (spawn, \
                 sleep, wake, EXIT): 1,000 of them keep 2 workers busy {:.1} ms",
                cpu.as_secs_f64() * 1e6 / sleepers as f64,
                cpu.as_secs_f64() * 1e3 / sleepers as f64 * WAKE_SLEEPERS as f64 / workers as f64,
            );
        }
        let name = match spinners {
            1 => "1 spinner".to_string(),
            n => format!("{n} spinners"),
        };
        series.push((name, lateness));
    }
    group.finish();
    if !series.is_empty() {
        let path = criterion_home().join("wake_latency_under_spin/lateness.svg");
        match write_cdf_svg(&path, &series, WAKE_MS) {
            Ok(()) => eprintln!(
                "wake_latency_under_spin: distributions in {}",
                path.display()
            ),
            Err(e) => eprintln!(
                "wake_latency_under_spin: cannot write {}: {e}",
                path.display()
            ),
        }
    }
}

/// The cumulative distribution of each series of sorted latenesses, on a logarithmic time axis
/// (0.1 ms to the largest), with the goal (`goal_ms`) marked: a hand-written SVG, no plotting
/// dependency.
fn write_cdf_svg(
    path: &Path,
    series: &[(String, Vec<Duration>)],
    goal_ms: u64,
) -> std::io::Result<()> {
    use std::fmt::Write;
    const W: f64 = 720.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 40.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 50.0;
    const COLORS: [&str; 4] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"];
    let floor = 0.1f64;
    let largest = series
        .iter()
        .filter_map(|(_, s)| s.last())
        .map(|d| ms(*d))
        .fold(goal_ms as f64, f64::max);
    let decades = (largest.log10() - floor.log10()).ceil().max(1.0);
    let x = |v: f64| LEFT + (v.max(floor).log10() - floor.log10()) / decades * (W - LEFT - RIGHT);
    let y = |p: f64| TOP + (1.0 - p) * (H - TOP - BOTTOM);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{W}" height="{H}" fill="white"/><text x="{LEFT}" y="18">Wake lateness of {WAKE_SLEEPERS} sleepers of {goal_ms} ms on 2 workers (fraction woken within t)</text>"#
    );
    for d in 0..=decades as i32 {
        let v = floor * 10f64.powi(d);
        let (px, bottom) = (x(v), y(0.0));
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{bottom:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{v} ms</text>"##,
            bottom + 16.0
        );
    }
    // (1.0 has its line, not a label: it would cover 0.99's.)
    for p in [0.0, 0.25, 0.5, 0.75, 0.99] {
        let py = y(p);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{p}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0
        );
    }
    let goal = x(goal_ms as f64);
    let _ = writeln!(
        svg,
        r##"<line x1="{goal:.1}" y1="{TOP}" x2="{goal:.1}" y2="{:.1}" stroke="#c00" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#c00">goal: p99 ≤ {goal_ms} ms</text>"##,
        y(0.0),
        goal + 4.0,
        TOP + 12.0
    );
    for (i, (name, samples)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let n = samples.len() as f64;
        let mut points = String::new();
        // At most ~500 steps: every sample of a small series, evenly spaced ones of a large.
        let step = (samples.len() / 500).max(1);
        for (k, d) in samples.iter().enumerate().step_by(step) {
            let _ = write!(points, "{:.1},{:.1} ", x(ms(*d)), y((k + 1) as f64 / n));
        }
        if let Some(last) = samples.last() {
            let _ = write!(points, "{:.1},{:.1}", x(ms(*last)), y(1.0));
        }
        let _ = writeln!(
            svg,
            r#"<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}" fill="{color}">{name}: p50 {:.1}, p99 {:.1}, max {:.1} ms</text>"#,
            LEFT + 10.0,
            TOP + 30.0 + 16.0 * i as f64,
            ms(quantile(samples, 0.5)),
            ms(quantile(samples, 0.99)),
            ms(quantile(samples, 1.0)),
        );
    }
    let _ = writeln!(svg, "</svg>");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)
}

/// Iterations of `benches/loop.wat`'s loop per call: ~10 ms of compute on this machine.
const LOOP_ITERATIONS: u64 = 10_000_000;

/// A runtime over `loop.wat` written to criterion's directory, as entry `bench:loop`; its
/// manifest sets `limits.fuel` (so the runtime counts fuel) when `fuel` is given.
fn loop_runtime(fuel: Option<u64>) -> Runtime {
    let bytes = wat::parse_file(root().join("loop.wat")).unwrap();
    let dir = std::path::absolute(criterion_home())
        .unwrap()
        .join("guest_loop");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("loop.wasm"), &bytes).unwrap();
    let limits = fuel.map_or(String::new(), |fuel| {
        format!(", limits: {{ fuel: {fuel} }}")
    });
    let yaml = format!(
        "namespace: bench\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n  - {{ name: loop, kind: process.wasm, fs: bins, path: /loop.wasm, hash: \"{}\", method: run{limits} }}\n",
        dir.display(),
        wasmproc_runtime::manifest::Digest::of(&bytes),
    );
    let manifest = dir.join(format!("loop_{}.yaml", fuel.is_some()));
    std::fs::write(&manifest, yaml).unwrap();
    Runtime::load(&manifest).unwrap()
}

/// One call of the loop through `rt`, spawn to EXIT.
fn loop_through(rt: &Runtime) -> Duration {
    let mut mailbox = Mailbox::new();
    let start = Instant::now();
    rt.spawn_monitored(
        "bench:loop",
        "bench:host",
        &[json!(LOOP_ITERATIONS)],
        &mailbox,
    )
    .unwrap();
    let exit = mailbox.receive_blocking(None).unwrap().unwrap().into_exit();
    let elapsed = start.elapsed();
    assert!(
        exit.is_some_and(|exit| exit.outcome.is_ok()),
        "the loop ran to its end"
    );
    elapsed
}

/// The loop in bare wasmtime without fuel or epochs: a call on an instance made once.
struct BareLoop {
    store: Store<()>,
    run: wasmtime::component::TypedFunc<(u64,), (u64,)>,
}

impl BareLoop {
    fn new() -> BareLoop {
        let engine = Engine::new(Config::new().wasm_component_model(true)).unwrap();
        let bytes = wat::parse_file(root().join("loop.wat")).unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Linker::new(&engine)
            .instantiate(&mut store, &component)
            .unwrap();
        let run = instance.get_typed_func(&mut store, "run").unwrap();
        BareLoop { store, run }
    }

    fn call(&mut self) -> Duration {
        let start = Instant::now();
        self.run.call(&mut self.store, (LOOP_ITERATIONS,)).unwrap();
        start.elapsed()
    }
}

/// `guest_loop`: a guest that only computes, ~10 ms a call, through wasmproc with fuel not
/// counted (its manifest limits none) and counted (it limits the loop's), and in bare wasmtime
/// without metering. wasmproc always has epoch checks (preemption); fuel adds its own.
fn guest_loop(c: &mut Criterion) {
    if !selected("guest_loop") {
        return;
    }
    let unmetered = loop_runtime(None);
    let counted = loop_runtime(Some(u64::MAX / 2));
    let mut bare = BareLoop::new();
    let mut group = c.benchmark_group("guest_loop");
    group.sample_size(20);
    let time = |b: &mut criterion::Bencher, call: &mut dyn FnMut() -> Duration| {
        b.iter_custom(|n| (0..n).map(|_| call()).sum())
    };
    group.bench_function("wasmproc", |b| time(b, &mut || loop_through(&unmetered)));
    group.bench_function("wasmproc_fuel_counted", |b| {
        time(b, &mut || loop_through(&counted))
    });
    group.bench_function("bare", |b| time(b, &mut || bare.call()));
    group.finish();
    // Interleaved: the three in turn, 41 times; medians (the machine moves between a fast and
    // a slow phase within seconds: criterion's rows, one after another, can land in either).
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..41 {
        samples[0].push(loop_through(&unmetered));
        samples[1].push(loop_through(&counted));
        samples[2].push(bare.call());
    }
    let [ours, fuel, bare] = samples.map(|mut s| {
        s.sort();
        s[s.len() / 2]
    });
    eprintln!(
        "guest_loop: a call of {LOOP_ITERATIONS} iterations, medians of 41 interleaved: wasmproc \
         {:.2} ms, with fuel counted {:.2} ms, bare wasmtime {:.2} ms (bare / wasmproc {:.2}, \
         with fuel {:.2})",
        ms(ours),
        ms(fuel),
        ms(bare),
        bare.as_secs_f64() / ours.as_secs_f64(),
        bare.as_secs_f64() / fuel.as_secs_f64(),
    );
}

/// `sleepers/100k`, measured once outside criterion's groups (see [`at_scale`]), when the
/// filter selects it.
fn sleepers_at_scale(_: &mut Criterion) {
    if selected("sleepers/100k") {
        at_scale::run();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = spawn_exit, sleepers, wake_latency_under_spin, guest_loop, sleepers_at_scale
}
criterion_main!(benches);
