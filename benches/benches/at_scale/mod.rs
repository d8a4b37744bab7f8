//! `sleepers/100k`: many processes sleeping at once, beside bare wasmtime sleeping as many.
//!
//! Four guests each: the `hostile` guest's `sleep` (a Rust WASI 0.2 component) and
//! `minimal_sleeper.wat` (one core instance, no memory), so that what a sleeping process costs
//! because of its guest's shape shows apart from what the runtime adds; and their WASI 0.3
//! counterparts, waiting with the async ABI on the concurrent engine: the `p3_probe`'s `sleep`
//! (Rust) and `minimal_p3_sleeper.wat`.
//!
//! One run of each side with each guest, each in a fresh child process (a criterion sample of
//! 100,000 processes would take minutes): the time to spawn them and to collect every EXIT,
//! and, sampled as they start, resident memory and memory maps (`/proc/self/maps` lines, what
//! `vm.max_map_count` limits) against live processes. The figures per process are the growth
//! from before the first spawn to the peak (the last sample with the most live, taken once
//! every process has waited long enough to be hibernated), divided by the processes live then. A plot
//! of every run is written beside criterion's reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wasmproc_runtime::engine::{self, Pool};
use wasmproc_runtime::hibernation::IDLE_BEFORE_HIBERNATION;
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{Phase, Runtime, SpawnOptions};
use wasmtime::component::{Component, Linker, ResourceTable, Val};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Processes spawned (`WASMPROC_SLEEPERS` overrides it).
const SLEEPERS: usize = 100_000;
/// How long each sleeps (`WASMPROC_SLEEP_MS`): long enough that the first still sleeps when the
/// last starts.
const SLEEP_MS: u32 = 30_000;
/// Samples taken while they start.
const SAMPLES: usize = 50;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// What the process holds now.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    live: usize,
    resident: u64,
    page_tables: u64,
    /// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`).
    heap: u64,
    maps: usize,
}

impl Sample {
    fn now(live: usize) -> Sample {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        let maps = std::fs::read("/proc/self/maps")
            .map(|m| m.iter().filter(|&&b| b == b'\n').count())
            .unwrap_or(0);
        // SAFETY: no preconditions; it walks the allocator's arenas under their locks.
        let heap = unsafe { libc::mallinfo2() };
        Sample {
            live,
            resident: kib("VmRSS:"),
            page_tables: kib("VmPTE:"),
            heap: (heap.uordblks + heap.hblkhd) as u64,
            maps,
        }
    }

    /// One line of text, as a run's child process hands it back.
    fn line(&self) -> String {
        let Sample {
            live,
            resident,
            page_tables,
            heap,
            maps,
        } = self;
        format!("{live} {resident} {page_tables} {heap} {maps}")
    }

    fn parse(line: &str) -> Option<Sample> {
        let mut fields = line.split_whitespace().map(str::parse::<u64>);
        let mut next = || fields.next()?.ok();
        Some(Sample {
            live: usize::try_from(next()?).ok()?,
            resident: next()?,
            page_tables: next()?,
            heap: next()?,
            maps: usize::try_from(next()?).ok()?,
        })
    }
}

/// One side's run of one guest.
struct Run {
    /// The side, then the guest.
    name: String,
    base: Sample,
    samples: Vec<Sample>,
    spawned_in: Duration,
    collected_in: Duration,
    /// EXIT outcomes by kind (`ok` for a value).
    outcomes: BTreeMap<String, usize>,
}

impl Run {
    fn peak(&self) -> Sample {
        self.samples
            .iter()
            .copied()
            .max_by_key(|s| s.live)
            .unwrap_or_default()
    }

    fn report(&self) {
        let (base, peak) = (self.base, self.peak());
        let per = |grown: f64| grown / peak.live.max(1) as f64;
        eprintln!(
            "sleepers/100k {}: {} live at the peak; spawned in {:.2} s, every EXIT in {:.2} s; \
             per process: {:.1} KiB resident (+{:.1} KiB page tables; of it {:.1} KiB allocated \
             on the heap), {:.3} maps; \
             peak {} maps of {} allowed; EXITs {:?}",
            self.name,
            peak.live,
            self.spawned_in.as_secs_f64(),
            self.collected_in.as_secs_f64(),
            per(peak.resident.saturating_sub(base.resident) as f64) / 1024.0,
            per(peak.page_tables.saturating_sub(base.page_tables) as f64) / 1024.0,
            per(peak.heap.saturating_sub(base.heap) as f64) / 1024.0,
            per(peak.maps.saturating_sub(base.maps) as f64),
            peak.maps,
            max_map_count(),
            self.outcomes,
        );
    }
}

fn max_map_count() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A guest whose `sleep(ms)` the sleepers run.
struct Guest {
    name: &'static str,
    /// A manifest whose `many:sleeper` is this guest's `sleep`, on the host `many:host`.
    manifest: PathBuf,
    bytes: Vec<u8>,
    /// Its `ms` parameter, as bare wasmtime passes it.
    ms: fn(u32) -> Val,
    /// It waits with the component model's async ABI (WASI 0.3): bare wasmtime runs it on the
    /// concurrent engine's configuration, as wasmproc does.
    concurrent: bool,
}

impl Guest {
    /// The `hostile` guest, as `sleepers.yaml` names it.
    fn hostile() -> Guest {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        Guest {
            name: "hostile",
            manifest: here.join("sleepers.yaml"),
            bytes: std::fs::read(here.join("../guests/dist/hostile.wasm")).unwrap(),
            ms: Val::U32,
            concurrent: false,
        }
    }

    /// The `p3_probe` guest's `sleep(ms: u64)`, with a copy of `sleepers.yaml` (same host and
    /// pool) that names it and grants what it imports.
    fn p3() -> std::io::Result<Guest> {
        let dist =
            std::path::absolute(Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/dist"))?;
        let bytes = std::fs::read(dist.join("p3_probe.wasm"))?;
        let manifest = rewritten("p3", &dist, "p3_probe.wasm", &bytes, WASI_P3_IMPORTS)?;
        Ok(Guest {
            name: "p3",
            manifest,
            bytes,
            ms: |ms| Val::U64(ms.into()),
            concurrent: true,
        })
    }

    /// `minimal_sleeper.wat`, compiled beside criterion's reports with a copy of
    /// `sleepers.yaml` (same host and pool) that names it.
    fn minimal() -> std::io::Result<Guest> {
        Guest::from_wat("minimal", "minimal_sleeper", None, false)
    }

    /// `minimal_p3_sleeper.wat` (WASI 0.3, the callback ABI), as [`Guest::minimal`].
    fn minimal_p3() -> std::io::Result<Guest> {
        Guest::from_wat(
            "minimal_p3",
            "minimal_p3_sleeper",
            Some("[wasi:clocks]"),
            true,
        )
    }

    /// `benches/<file>.wat`, compiled beside criterion's reports with a copy of
    /// `sleepers.yaml` (same host and pool) that names it, granted `imports` if given.
    fn from_wat(
        name: &'static str,
        file: &str,
        imports: Option<&str>,
        concurrent: bool,
    ) -> std::io::Result<Guest> {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bytes =
            wat::parse_file(here.join(format!("{file}.wat"))).map_err(std::io::Error::other)?;
        let dir = guest_home(name)?;
        let binary = format!("{file}.wasm");
        std::fs::write(dir.join(&binary), &bytes)?;
        let manifest = rewritten(name, &dir, &binary, &bytes, imports)?;
        Ok(Guest {
            name,
            manifest,
            bytes,
            ms: Val::U32,
            concurrent,
        })
    }
}

/// The `imports:` of an entry running the `p3_probe` (it imports `wasi:http` and
/// `wasi:sockets` too, though its `sleep` uses neither).
const WASI_P3_IMPORTS: Option<&str> = Some("[wasi:clocks, wasi:cli, wasi:http, wasi:sockets]");

/// A directory for `guest`'s files beside criterion's reports; absolute, as a manifest's
/// `directory` must be here (a relative one would be read from where the manifest lies).
fn guest_home(guest: &str) -> std::io::Result<PathBuf> {
    let dir = std::path::absolute(wasmproc_benches::criterion_home())?
        .join("sleepers_100k")
        .join(guest);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A copy of `sleepers.yaml` written to `guest`'s directory whose sleeper is `file` (`bytes`)
/// in `dir`, with `imports` if given: the same host and pool for every guest.
fn rewritten(
    guest: &str,
    dir: &Path,
    file: &str,
    bytes: &[u8],
    imports: Option<&str>,
) -> std::io::Result<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let hostile = std::fs::read_to_string(here.join("sleepers.yaml"))?;
    let mut replaced = 0;
    let text: Vec<String> = hostile
        .lines()
        .map(|line| {
            let (indent, field) = line.split_at(line.len() - line.trim_start().len());
            let new = match (field.split_once(':').map(|(k, _)| k), imports) {
                (Some("directory"), _) => format!("directory: {}", dir.display()),
                (Some("path"), _) => format!("path: /{file}"),
                (Some("hash"), _) => format!("hash: {}", Digest::of(bytes)),
                (Some("imports"), Some(imports)) => format!("imports: {imports}"),
                _ => return line.to_string(),
            };
            replaced += 1;
            format!("{indent}{new}")
        })
        .collect();
    let expected = if imports.is_some() { 4 } else { 3 };
    assert_eq!(
        replaced, expected,
        "sleepers.yaml has one directory, path, hash and imports each"
    );
    let manifest = guest_home(guest)?.join("sleepers.yaml");
    std::fs::write(&manifest, text.join("\n"))?;
    Ok(manifest)
}

/// Spawns the sleepers through the runtime; `None` when the runtime does not start.
fn wasmproc(guest: &Guest, n: usize, ms: u32) -> Option<Run> {
    let rt = match Runtime::load(&guest.manifest) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "sleepers/100k wasmproc {}: the runtime does not start: {e}",
                guest.name
            );
            return None;
        }
    };
    let clock = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // One process first: the binary compiled, the host started, before the base is measured.
    let mut mailbox = wasmproc_runtime::Mailbox::new();
    rt.spawn_monitored("many:sleeper", "many:host", &[json!(1)], &mailbox)
        .unwrap();
    clock.block_on(mailbox.receive(Duration::from_secs(60)));
    let base = Sample::now(0);
    // Live processes are counted from their Init and Close events.
    let (trace, mut events) = tokio::sync::mpsc::unbounded_channel();
    let options = SpawnOptions {
        trace: Some(trace),
        ..SpawnOptions::default()
    };
    let mut live = 0usize;
    let mut count = |events: &mut tokio::sync::mpsc::UnboundedReceiver<_>| {
        while let Ok(wasmproc_runtime::Lifecycle { phase, .. }) = events.try_recv() {
            match phase {
                Phase::Init => live += 1,
                Phase::Close => live -= 1,
                _ => {}
            }
        }
        live
    };
    let mut outcomes = BTreeMap::new();
    let mut samples = Vec::with_capacity(2 * SAMPLES);
    let start = Instant::now();
    let monitor = wasmproc_runtime::Mailbox::new();
    let mut mailbox = monitor;
    for i in 0..n {
        if let Err(e) = rt.spawn_with(
            "many:sleeper",
            "many:host",
            &[json!(ms)],
            &options,
            Some(&mailbox),
        ) {
            *outcomes
                .entry(format!("refused: {}", e.kind()))
                .or_insert(0) += 1;
        }
        if (i + 1) % (n / SAMPLES).max(1) == 0 {
            samples.push(Sample::now(count(&mut events)));
        }
    }
    let spawned_in = start.elapsed();
    let spawned = n - outcomes.values().sum::<usize>();
    // Until every spawned process started (or some already ended).
    let mut exits = 0;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let live = count(&mut events);
        samples.push(Sample::now(live));
        while let Some(event) = mailbox.try_receive() {
            exits += 1;
            tally(&mut outcomes, event);
        }
        if live + exits >= spawned {
            break;
        }
    }
    until_hibernation_settles();
    samples.push(settled(|| count(&mut events)));
    eprintln!(
        "sleepers/100k: {} processes hibernated at the sample",
        wasmproc_runtime::hibernation::hibernated()
    );
    clock.block_on(async {
        while exits < spawned {
            match mailbox.receive(Duration::from_secs(120)).await {
                Some(event) => tally(&mut outcomes, event),
                None => {
                    *outcomes.entry("lost".into()).or_insert(0) += spawned - exits;
                    break;
                }
            }
            exits += 1;
        }
    });
    Some(Run {
        name: format!("wasmproc {}", guest.name),
        base,
        samples,
        spawned_in,
        collected_in: start.elapsed(),
        outcomes,
    })
}

/// A sample taken once every process has started and then waited long enough to be
/// hibernated (`wasmproc_runtime::hibernation`): what a sleeping process holds from then on.
/// Taken on both sides, so that they are compared at the same point.
fn settled(live: impl FnOnce() -> usize) -> Sample {
    std::thread::sleep(3 * IDLE_BEFORE_HIBERNATION);
    Sample::now(live())
}

/// Until the count of hibernated processes has stopped rising (at most 10 s): with 100,000
/// processes, the workers hibernate the last ones some hundreds of milliseconds after they
/// started (each takes a few microseconds), and a sample taken before would count some still
/// awake, a different number each run.
fn until_hibernation_settles() {
    let start = Instant::now();
    let mut last = usize::MAX;
    while start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(2 * IDLE_BEFORE_HIBERNATION);
        let now = wasmproc_runtime::hibernation::hibernated();
        if now == last {
            return;
        }
        last = now;
    }
}

fn tally(outcomes: &mut BTreeMap<String, usize>, event: wasmproc_runtime::Event) {
    let kind = match event.into_exit().map(|e| e.outcome) {
        Some(Ok(_)) => "ok".to_string(),
        Some(Err(e)) => e.kind.to_string(),
        None => "other event".to_string(),
    };
    *outcomes.entry(kind).or_insert(0) += 1;
}

struct BareState {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for BareState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// The same sleepers in bare wasmtime under wasmproc's engine configuration for the same pool:
/// one tokio task each, instantiate and call, nothing else.
fn bare(guest: &Guest, n: usize, ms: u32) -> Option<Run> {
    let manifest = wasmproc_runtime::Manifest::load(&guest.manifest).unwrap();
    let pool = Pool::for_manifest(&manifest).unwrap();
    let fuel = engine::Fuel::for_manifest(&manifest);
    let config = if guest.concurrent {
        engine::concurrent_config(engine::concurrent_pool(pool), fuel)
    } else {
        engine::config(pool, fuel)
    };
    let engine = match Engine::new(&config) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!(
                "sleepers/100k bare {}: the engine does not start: {e:#}",
                guest.name
            );
            return None;
        }
    };
    let component = Component::new(&engine, &guest.bytes).unwrap();
    let export = component.get_export_index(None, "sleep").unwrap();
    let mut linker = Linker::<BareState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    if guest.concurrent {
        wasmtime_wasi::p3::add_to_linker(&mut linker).unwrap();
        // Its HTTP and sockets imports, which `sleep` does not call.
        linker.define_unknown_imports_as_traps(&component).unwrap();
    }
    let pre = linker.instantiate_pre(&component).unwrap();
    let arg = guest.ms;
    let scheduler = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let one = |ms: u32| {
        let (engine, pre, live) = (engine.clone(), pre.clone(), live.clone());
        async move {
            let state = BareState {
                ctx: wasmtime_wasi::WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
            };
            let mut store = Store::new(&engine, state);
            if fuel.counted() {
                store.set_fuel(u64::MAX).unwrap();
            }
            store.set_epoch_deadline(2);
            store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(2)));
            let instance = pre.instantiate_async(&mut store).await?;
            live.fetch_add(1, Ordering::Relaxed);
            let func = instance.get_func(&mut store, export).unwrap();
            let mut result = [Val::Bool(false)];
            let called = func.call_async(&mut store, &[arg(ms)], &mut result).await;
            live.fetch_sub(1, Ordering::Relaxed);
            called
        }
    };
    scheduler.block_on(one(1)).unwrap();
    let base = Sample::now(0);
    let mut samples = Vec::with_capacity(2 * SAMPLES);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tasks.push(scheduler.spawn(one(ms)));
        if (i + 1) % (n / SAMPLES).max(1) == 0 {
            samples.push(Sample::now(live.load(Ordering::Relaxed)));
        }
    }
    let spawned_in = start.elapsed();
    let mut finished = 0;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        samples.push(Sample::now(live.load(Ordering::Relaxed)));
        let done = tasks.iter().filter(|t| t.is_finished()).count();
        if live.load(Ordering::Relaxed) + done >= n || done == finished && done == n {
            break;
        }
        finished = done;
    }
    samples.push(settled(|| live.load(Ordering::Relaxed)));
    let mut outcomes = BTreeMap::new();
    scheduler.block_on(async {
        for task in tasks {
            let kind = match task.await {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => format!("error: {}", e.root_cause()),
                Err(e) => format!("task: {e}"),
            };
            *outcomes.entry(kind).or_insert(0) += 1;
        }
    });
    Some(Run {
        name: format!("bare {}", guest.name),
        base,
        samples,
        spawned_in,
        collected_in: start.elapsed(),
        outcomes,
    })
}

/// Set in the child process that runs one side with one guest: `<side> <guest> <file>`, the
/// file taking its samples back to the parent.
const CHILD: &str = "WASMPROC_SLEEPERS_CHILD";

/// Runs each side with each guest, each in a child process of its own (a run that follows
/// another in the same process finds the pages its predecessor freed still resident, and its
/// own resident growth then reads low), and writes the plot.
pub fn run() {
    if let Ok(child) = std::env::var(CHILD) {
        return run_child(&child);
    }
    let n = env_or("WASMPROC_SLEEPERS", SLEEPERS);
    let ms = env_or("WASMPROC_SLEEP_MS", SLEEP_MS);
    eprintln!(
        "sleepers/100k: {n} processes sleeping {ms} ms, vm.max_map_count {}",
        max_map_count()
    );
    // `WASMPROC_SLEEPERS_BARE=0` leaves bare wasmtime out (looking for the ceiling, say).
    let with_bare = env_or("WASMPROC_SLEEPERS_BARE", 1) != 0;
    // `WASMPROC_SLEEPER_GUESTS=hostile` (or `minimal`, `p3`, or a list) runs those only.
    let chosen = std::env::var("WASMPROC_SLEEPER_GUESTS").unwrap_or_default();
    let wanted = |name: &str| chosen.is_empty() || chosen.split(',').any(|g| g.trim() == name);
    let dir = wasmproc_benches::criterion_home().join("sleepers_100k");
    let mut curves = Vec::new();
    for guest in ["hostile", "minimal", "p3", "minimal_p3"]
        .into_iter()
        .filter(|g| wanted(g))
    {
        for side in ["wasmproc", "bare"] {
            if side == "bare" && !with_bare {
                continue;
            }
            match run_in_child(side, guest, &dir) {
                Ok(curve) => curves.push(curve),
                Err(e) => eprintln!("sleepers/100k {side} {guest}: {e}"),
            }
        }
    }
    match write_plot(&curves) {
        Ok(path) => eprintln!("sleepers/100k: plot in {}", path.display()),
        Err(e) => eprintln!("sleepers/100k: no plot: {e}"),
    }
}

/// This benchmark binary again, running `side` with `guest` only; its report goes to stderr
/// as it is, its samples come back through a file in `dir`.
fn run_in_child(side: &str, guest: &str, dir: &Path) -> std::io::Result<Curve> {
    std::fs::create_dir_all(dir)?;
    let samples = dir.join(format!("{side}_{guest}.samples"));
    let _ = std::fs::remove_file(&samples);
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(["--bench", "sleepers/100k"])
        .env(CHILD, format!("{side} {guest} {}", samples.display()))
        .stdout(std::process::Stdio::null())
        .status()?;
    let text = std::fs::read_to_string(&samples)
        .map_err(|e| std::io::Error::other(format!("the run left no samples ({status}): {e}")))?;
    Ok(Curve::parse(&text))
}

/// A run's samples, as the plot draws them.
struct Curve {
    name: String,
    base: Sample,
    samples: Vec<Sample>,
}

impl Curve {
    /// Its name, then its base, then a sample a line.
    fn text(&self) -> String {
        let mut text = format!("{}\n{}\n", self.name, self.base.line());
        for sample in &self.samples {
            text.push_str(&sample.line());
            text.push('\n');
        }
        text
    }

    fn parse(text: &str) -> Curve {
        let mut lines = text.lines();
        let name = lines.next().unwrap_or_default().to_string();
        let mut samples = lines.filter_map(Sample::parse);
        Curve {
            name,
            base: samples.next().unwrap_or_default(),
            samples: samples.collect(),
        }
    }
}

/// In the child: one side with one guest, reported, its samples written for the parent.
fn run_child(spec: &str) {
    let n = env_or("WASMPROC_SLEEPERS", SLEEPERS);
    let ms = env_or("WASMPROC_SLEEP_MS", SLEEP_MS);
    let mut parts = spec.splitn(3, ' ');
    let (side, guest, out) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let guest = match guest {
        "hostile" => Guest::hostile(),
        "minimal" => match Guest::minimal() {
            Ok(guest) => guest,
            Err(e) => return eprintln!("sleepers/100k: no minimal guest: {e}"),
        },
        "p3" => match Guest::p3() {
            Ok(guest) => guest,
            Err(e) => return eprintln!("sleepers/100k: no p3 guest: {e}"),
        },
        "minimal_p3" => match Guest::minimal_p3() {
            Ok(guest) => guest,
            Err(e) => return eprintln!("sleepers/100k: no minimal_p3 guest: {e}"),
        },
        other => return eprintln!("sleepers/100k: no guest `{other}` ({CHILD}={spec})"),
    };
    let run = match side {
        "wasmproc" => wasmproc(&guest, n, ms),
        "bare" => bare(&guest, n, ms),
        other => return eprintln!("sleepers/100k: no side `{other}` ({CHILD}={spec})"),
    };
    let Some(run) = run else { return };
    run.report();
    let curve = Curve {
        name: run.name,
        base: run.base,
        samples: run.samples,
    };
    if let Err(e) = std::fs::write(out, curve.text()) {
        eprintln!("sleepers/100k: cannot hand the samples back through {out}: {e}");
    }
}

/// Resident memory and maps against live processes, one line per run, as an SVG.
fn write_plot(runs: &[Curve]) -> std::io::Result<PathBuf> {
    let dir = wasmproc_benches::criterion_home().join("sleepers_100k");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("resident.svg");
    let (w, h, pad) = (640.0, 300.0, 60.0);
    let max_live = runs
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.live))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="12">"#,
        2.0 * h
    );
    let colours = [
        "#c03", "#06c", "#f80", "#3a3", "#90c", "#0aa", "#963", "#555",
    ];
    type Measure = fn(&Sample, &Sample) -> f64;
    let charts: [(&str, Measure); 2] = [
        ("resident memory above base, MiB", |s, b| {
            s.resident.saturating_sub(b.resident) as f64 / 1048576.0
        }),
        ("memory maps (/proc/self/maps lines)", |s, _| s.maps as f64),
    ];
    for (c, (title, measure)) in charts.iter().enumerate() {
        let top = c as f64 * h;
        let max_y = runs
            .iter()
            .flat_map(|r| r.samples.iter().map(|s| measure(s, &r.base)))
            .fold(1.0, f64::max);
        let _ = write!(
            svg,
            r#"<text x="{pad}" y="{}">{title} against live processes (max {max_y:.0}; x max {max_live:.0})</text>"#,
            top + 20.0
        );
        let _ = write!(
            svg,
            r##"<rect x="{pad}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            top + 30.0,
            w - 2.0 * pad,
            h - 70.0
        );
        for (r, run) in runs.iter().enumerate() {
            let mut points: Vec<(f64, f64)> = run
                .samples
                .iter()
                .map(|s| (s.live as f64, measure(s, &run.base)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let line: Vec<String> = points
                .iter()
                .map(|(x, y)| {
                    format!(
                        "{:.1},{:.1}",
                        pad + x / max_live * (w - 2.0 * pad),
                        top + h - 40.0 - y / max_y * (h - 70.0)
                    )
                })
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{}">{}</text>"#,
                colours[r % colours.len()],
                line.join(" "),
                w - pad - 80.0,
                top + 50.0 + 15.0 * r as f64,
                colours[r % colours.len()],
                run.name
            );
        }
    }
    svg.push_str("</svg>\n");
    std::fs::write(&path, svg)?;
    Ok(path)
}
