//! The one wasmtime configuration every process runs under.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine};

use crate::arena;
use crate::capacity::{Allocation, Capacity};
use crate::code_cache::{CacheConfig, CodeCache};
use crate::error::Error;
use crate::limits::{CORE_INSTANCES_PER_PROCESS, MEMORIES_PER_PROCESS, TABLES_PER_PROCESS};
use crate::loader::Loader;
use crate::manifest::Manifest;

/// How often the epoch advances: the unit of preemption and of wall-clock checks. Fine enough
/// that slices are short: the thread costs 0.6% of a core at 2 ms (0.14% at 5 ms, 1.4% at
/// 1 ms; measured on a loaded 2-core VM).
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// A guest's first slice: it runs at most this many ticks (2–4 ms) before it yields to the
/// scheduler: long enough that a short call never yields (a synchronous guest is one Step).
/// On a worker running a spinner, a timer that fires waits for the rest of the slice (see
/// `preemption`). 1,000 sleepers of 10 ms beside a spinner on each of 2 workers: p99 lateness
/// 88-104 ms and the last EXIT 85-101 ms after the spawns with 5–10 ms slices, 33-42 ms and
/// 44-48 ms with 2–4 ms (1 ms ticks, 2–3 ms slices: no better, 31-41 ms and 43-60 ms);
/// alternating runs of one session on a loaded machine (2026-12-02).
pub const SLICE_TICKS: u64 = 2;

/// The slices after a guest's first (it was preempted, so it computes): they end at the next
/// tick, 0–2 ms (about 2 ms when nothing else waits, since the guest resumes right after the
/// tick that ended its last). A spinner's turn is then about half as long, and so is the wait
/// of a timer that fires behind it; the first slice still lets a short call finish in one Step.
pub const PREEMPTED_SLICE_TICKS: u64 = 1;

/// Tables are small: this much of one is always enough to keep.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// How instances get their memory, tables and stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Processes that can be instantiated at once; more wait for a slot (0: no pool, every
    /// instance is allocated on demand).
    pub processes: u32,
    /// The largest linear memory a process can have: a pool slot's size.
    pub memory: u64,
    /// How much of a slot's memory stays mapped when its process ends, reset in place for the
    /// next one (more is given back to the system).
    pub keep_resident: u64,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            processes: 1_000,
            memory: 64 << 20,
            keep_resident: 1 << 20,
        }
    }
}

/// Whether an engine's compiled code counts fuel. Counting costs every guest, limited or not:
/// the checks it adds made the `http_service` guest run 17% more instructions per request,
/// and a tight loop 25% slower beside the epoch checks preemption needs (measured,
/// 2026-12-07). So a runtime counts only when an entry's `limits.fuel` needs it
/// ([`Fuel::for_manifest`]); EXITs then carry `fuel_used` (without, it is unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fuel {
    /// Stores start with their `limits.fuel` (or all there is) and report what they used.
    Counted,
    /// No fuel checks in compiled code: `limits.fuel` is refused, `fuel_used` unknown.
    NotCounted,
}

impl Fuel {
    /// Counted when some `process.wasm` entry of `manifest` sets `limits.fuel`.
    pub fn for_manifest(manifest: &Manifest) -> Fuel {
        let limited = manifest.entries().any(|entry| match &entry.spec {
            crate::manifest::EntrySpec::Wasm(wasm) => wasm.limits.fuel.is_some(),
            _ => false,
        });
        if limited {
            Fuel::Counted
        } else {
            Fuel::NotCounted
        }
    }

    /// Whether this is [`Fuel::Counted`].
    pub fn counted(self) -> bool {
        self == Fuel::Counted
    }
}

impl std::fmt::Display for Fuel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fuel::Counted => "counted",
            Fuel::NotCounted => "not counted",
        })
    }
}

impl Pool {
    /// The defaults, as the environment overrides them: `WASMPROC_POOL` (processes, default
    /// 1000; 0 turns the pool off), `WASMPROC_POOL_MEMORY` (default 64MiB) and
    /// `WASMPROC_POOL_KEEP_RESIDENT` (default 1MiB).
    pub fn from_env() -> Result<Pool, Error> {
        Pool::default().overridden(|name| std::env::var(name).ok())
    }

    /// The pool a manifest's `process.host` entries ask for, as the environment overrides it.
    /// One pool serves every host of a runtime (they share one engine, so each binary is
    /// compiled once): it holds the sum of the hosts' `pool.processes`, in slots of the
    /// largest `pool.memory`, keeping the largest `pool.keep_resident` (a field a host leaves
    /// out counts as the default). A manifest without hosts gets the defaults.
    pub fn for_manifest(manifest: &Manifest) -> Result<Pool, Error> {
        Pool::asked_by(manifest).overridden(|name| std::env::var(name).ok())
    }

    /// What the hosts ask for, before the environment.
    fn asked_by(manifest: &Manifest) -> Pool {
        let defaults = Pool::default();
        manifest
            .hosts()
            .map(|(_, host)| host.pool)
            .map(|host| Pool {
                processes: host.processes.unwrap_or(defaults.processes),
                memory: host.memory.unwrap_or(defaults.memory),
                keep_resident: host.keep_resident.unwrap_or(defaults.keep_resident),
            })
            .reduce(|a, b| Pool {
                processes: a.processes.saturating_add(b.processes),
                memory: a.memory.max(b.memory),
                keep_resident: a.keep_resident.max(b.keep_resident),
            })
            .unwrap_or(defaults)
    }

    /// This pool with each setting the environment (read by `var`) gives replaced.
    fn overridden(self, var: impl Fn(&str) -> Option<String>) -> Result<Pool, Error> {
        let bad = |name: &str, e: String| Error::EngineStart {
            reason: format!("{name}: {e}"),
        };
        let size = |name: &str, value: u64| match var(name) {
            Some(v) => crate::limits::parse_size(&v).map_err(|e| bad(name, e)),
            None => Ok(value),
        };
        let processes = match var("WASMPROC_POOL") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| bad("WASMPROC_POOL", format!("{e}")))?,
            None => self.processes,
        };
        Ok(Pool {
            processes,
            memory: size("WASMPROC_POOL_MEMORY", self.memory)?,
            keep_resident: size("WASMPROC_POOL_KEEP_RESIDENT", self.keep_resident)?,
        })
    }
}

/// An engine for asynchronous component execution with epoch preemption, counting `fuel`.
pub fn new(pool: Pool, fuel: Fuel) -> Result<Engine, Error> {
    let capacity = Capacity::of(pool.processes);
    tracing::info!(
        allocation = %capacity.allocation,
        processes = capacity.processes,
        maps = capacity.maps,
        max_map_count = capacity.max_map_count,
        %fuel,
        hibernation = crate::hibernation::in_engine(capacity.allocation, false),
        "instance capacity: {capacity}"
    );
    Engine::new(&config(pool, fuel)).map_err(|e| Error::EngineStart {
        reason: format!("{e:#}"),
    })
}

/// The configuration of the engine processes run on (public so that benchmarks compare bare
/// wasmtime under exactly this configuration). Without the component model's concurrency
/// support: binaries that use its async ABI run on a second engine ([`concurrent_config`]).
pub fn config(pool: Pool, fuel: Fuel) -> Config {
    configured(pool, fuel, false, Capacity::of(pool.processes))
}

/// The most processes of component-model-async binaries (WASI 0.3 guests) that run at once
/// beside a pooled main engine; more wait for a slot. A pooled engine's slots are reserved
/// address space and maps from the start, so that engine's pool is this size (or the main
/// one's, if smaller) until such guests are common.
pub const CONCURRENT_PROCESSES: u32 = 256;

/// The pool of the engine for component-model-async binaries, beside a main engine's `pool`.
/// A main pool too large for wasmtime's pooling allocator takes the arena, which maps memory
/// only as processes use it: the concurrent engine's arena then holds as many processes as the
/// main one (a pool of 100,000 runs 100,000 WASI 0.3 sleepers at once, not 256), and the two
/// engines share the pool's places (the loader gives them one admission).
pub fn concurrent_pool(pool: Pool) -> Pool {
    concurrent_pool_within(pool, crate::capacity::max_map_count())
}

/// [`concurrent_pool`] on a kernel allowing `max_map_count` maps.
fn concurrent_pool_within(pool: Pool, max_map_count: u64) -> Pool {
    let arena = Capacity::within(pool.processes, max_map_count).allocation == Allocation::Arena;
    Pool {
        processes: if arena {
            pool.processes
        } else {
            pool.processes.min(CONCURRENT_PROCESSES)
        },
        ..pool
    }
}

/// The configuration of the engine for binaries that use the component model's async ABI:
/// the main one's, with concurrency support on (every store then carries an event loop).
pub fn concurrent_config(pool: Pool, fuel: Fuel) -> Config {
    configured(pool, fuel, true, Capacity::of(pool.processes))
}

/// An engine's configuration for `pool` on a kernel of `capacity` (which decides how
/// instances get their memory, and so the code compiled for them).
pub(crate) fn configured(pool: Pool, fuel: Fuel, concurrent: bool, capacity: Capacity) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Compiled in, wasmtime turns concurrency support on by default; it costs every store.
    config.concurrency_support(concurrent);
    config.wasm_component_model_async(concurrent);
    config.epoch_interruption(true);
    config.consume_fuel(fuel.counted());
    if capacity.allocation == Allocation::Arena {
        arena(&mut config, pool, concurrent);
    } else if capacity.allocation == Allocation::Pooled {
        // Sized for many small processes: a component (with the preview1 adapter) has a few
        // core instances, memories and tables. Slots are reserved address space, touched only
        // when used. Memories are bounds-checked (small reservations) so that thousands fit.
        // Each process's share (`limits::MEMORIES_PER_PROCESS`...) times the processes: one
        // process cannot take another's.
        let n = pool.processes;
        let mut pooling = wasmtime::PoolingAllocationConfig::default();
        pooling
            .total_component_instances(n)
            .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_PROCESS))
            .total_memories(n.saturating_mul(MEMORIES_PER_PROCESS))
            .total_tables(n.saturating_mul(TABLES_PER_PROCESS))
            .max_core_instances_per_component(CORE_INSTANCES_PER_PROCESS)
            .max_memories_per_component(MEMORIES_PER_PROCESS)
            .max_tables_per_component(TABLES_PER_PROCESS)
            // A concurrent store may hold a second fiber while its first waits on a subtask.
            .total_stacks(if concurrent { n.saturating_mul(2) } else { n })
            .max_memory_size(usize::try_from(pool.memory).unwrap_or(usize::MAX));
        // A slot given back is reset by copying the image back over the pages the guest
        // dirtied (found with PAGEMAP_SCAN on Linux 6.7+) instead of `madvise`: on 2 cores,
        // each `madvise` and each copy-on-write fault cost a TLB shootdown to the other core,
        // and those were 40% of a spawn (measured: 2.5-4x the spawns per second).
        let keep = usize::try_from(pool.keep_resident).unwrap_or(usize::MAX);
        pooling
            .linear_memory_keep_resident(keep)
            .table_keep_resident(keep.min(TABLE_KEEP_RESIDENT))
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.memory_reservation(pool.memory);
        config.memory_guard_size(64 << 10);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
    }
    config
}

/// The fiber stack every process runs on (wasmtime's default; WebAssembly frames may take
/// `max_wasm_stack`, 512 KiB of it, host calls the rest).
const ASYNC_STACK_SIZE: usize = 2 << 20;

/// Stacks and memories from [`crate::arena`]: on demand, a memory at most a pool slot's size,
/// every access bounds-checked (no guard region), data segments copied in (a copy-on-write
/// image would be a mapping per memory). The main engine's stacks may be hibernated, the
/// concurrent one's not (see [`crate::hibernation`]).
fn arena(config: &mut Config, pool: Pool, concurrent: bool) {
    let max = usize::try_from(pool.memory).unwrap_or(usize::MAX);
    let hibernates = crate::hibernation::in_engine(Allocation::Arena, concurrent);
    config
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand)
        .async_stack_size(ASYNC_STACK_SIZE)
        .memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        .guard_before_linear_memory(false)
        .memory_init_cow(false)
        .memory_may_move(true)
        .with_host_memory(Arc::new(arena::MemorySource(arena::Memories::new(
            max, hibernates,
        ))))
        .with_host_stack(Arc::new(arena::StackSource {
            stacks: arena::Stacks::new(ASYNC_STACK_SIZE, false),
            hibernates,
        }));
}

/// A loader (compile cache) over a fresh engine, pooled as the environment says.
pub fn loader() -> Result<Loader, Error> {
    loader_with(Pool::from_env()?)
}

/// A loader over a fresh engine with this pool, counting fuel (it can load any entry),
/// compiling every binary it loads.
pub fn loader_with(pool: Pool) -> Result<Loader, Error> {
    loader_counting(pool, Fuel::Counted)
}

/// [`loader_with`], counting fuel or not: an engine that does not count refuses entries that
/// set `limits.fuel`.
pub fn loader_counting(pool: Pool, fuel: Fuel) -> Result<Loader, Error> {
    Loader::new(new(pool, fuel)?, pool, fuel)
}

/// A loader over a fresh engine with this pool that keeps compiled code in the cache `cache`
/// names. A cache that cannot be used is a warning (once), not an error: binaries are then
/// compiled, as without a cache.
pub fn loader_caching(pool: Pool, fuel: Fuel, cache: &CacheConfig) -> Result<Loader, Error> {
    let engine = new(pool, fuel)?;
    let disk = CodeCache::open_or_warn(cache, &engine);
    Ok(Loader::new(engine, pool, fuel)?.with_code_cache(disk))
}

/// Advances an engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    clock: CoarseClock,
    thread: Option<JoinHandle<()>>,
}

/// Milliseconds since an [`EpochTicker`] started, as of its last tick: a clock of
/// [`EPOCH_TICK`] resolution that costs one load to read (the system clock cost a spawn
/// 50 ns on the VMs measured).
#[derive(Clone, Debug, Default)]
pub struct CoarseClock(Arc<AtomicU64>);

impl CoarseClock {
    pub(crate) fn millis(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the time, as the epoch thread does (tests that step the clock).
    #[cfg(test)]
    pub(crate) fn set(&self, millis: u64) {
        self.0.store(millis, Ordering::Relaxed);
    }
}

impl EpochTicker {
    /// Fails when the thread cannot start: without it no guest would ever be preempted.
    pub fn start(engine: &Engine) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let clock = CoarseClock::default();
        let thread = {
            let (engine, stop, clock) = (engine.clone(), stop.clone(), clock.clone());
            let started = std::time::Instant::now();
            std::thread::Builder::new()
                .name("wasmproc epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                        let now = started.elapsed().as_millis() as u64;
                        clock.0.store(now, Ordering::Relaxed);
                    }
                })
                .map_err(|e| Error::EngineStart {
                    reason: format!("cannot start the epoch thread: {e}"),
                })?
        };
        Ok(EpochTicker {
            stop,
            clock,
            thread: Some(thread),
        })
    }

    pub(crate) fn clock(&self) -> &CoarseClock {
        &self.clock
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::EntrySpec;

    fn manifest(hosts: &[&str]) -> Manifest {
        let mut text = String::from("namespace: t\nentries:\n");
        for (i, host) in hosts.iter().enumerate() {
            text += &format!("  - {{ name: h{i}, kind: process.host, host: {host} }}\n");
        }
        Manifest::parse(&text, std::path::Path::new("t.yaml")).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn pool(manifest: &Manifest) -> Pool {
        Pool::asked_by(manifest).overridden(no_env).unwrap()
    }

    #[test]
    fn one_host_sizes_the_pool_and_several_share_one() {
        assert_eq!(pool(&manifest(&[])), Pool::default());
        assert_eq!(pool(&manifest(&["{ workers: 1 }"])), Pool::default());
        let one = manifest(&["{ pool: { processes: 50, memory: 8MiB, keep_resident: 64KiB } }"]);
        assert!(matches!(
            one.entries().next().map(|e| &e.spec),
            Some(EntrySpec::Host(h)) if h.pool.processes == Some(50)
        ));
        assert_eq!(
            pool(&one),
            Pool {
                processes: 50,
                memory: 8 << 20,
                keep_resident: 64 << 10,
            }
        );
        // Several: the sum of their processes, the largest slot, the most kept.
        let two = manifest(&[
            "{ pool: { processes: 50, memory: 8MiB } }",
            "{ pool: { processes: 30, memory: 96MiB, keep_resident: 2MiB } }",
        ]);
        assert_eq!(
            pool(&two),
            Pool {
                processes: 80,
                memory: 96 << 20,
                keep_resident: 2 << 20,
            }
        );
    }

    #[test]
    fn the_environment_overrides_the_manifest() {
        let one = manifest(&["{ pool: { processes: 50, memory: 8MiB } }"]);
        let env = |name: &str| (name == "WASMPROC_POOL_MEMORY").then(|| "32MiB".to_string());
        let pool = Pool::asked_by(&one).overridden(env).unwrap();
        assert_eq!((pool.processes, pool.memory), (50, 32 << 20));
        let bad = |name: &str| (name == "WASMPROC_POOL").then(|| "many".to_string());
        let err = Pool::default().overridden(bad).unwrap_err();
        assert!(err.to_string().contains("WASMPROC_POOL"), "{err}");
    }

    #[test]
    fn bad_pool_fields_are_named() {
        for (host, expected) in [
            ("{ pool: { memory: lots } }", "host.pool.memory"),
            (
                "{ pool: { keep_resident: 1 parsec } }",
                "host.pool.keep_resident",
            ),
            (
                "{ pool: { memory: 0 } }",
                "host.pool.memory must be greater than 0",
            ),
            ("{ pool: { slots: 3 } }", "slots"),
        ] {
            let text = format!(
                "namespace: t\nentries:\n  - {{ name: h, kind: process.host, host: {host} }}\n"
            );
            let err = Manifest::parse(&text, std::path::Path::new("t.yaml")).unwrap_err();
            assert!(err.to_string().contains(expected), "{host}: {err}");
        }
    }

    #[test]
    fn the_concurrent_engines_pool_holds_its_share_beside_a_pooled_engine_and_all_in_the_arena() {
        let main = Pool {
            processes: 10_000,
            ..Pool::default()
        };
        // Pooled on a kernel that allows 200,000 maps: the concurrent engine gets its share.
        let concurrent = concurrent_pool_within(main, 200_000);
        assert_eq!(concurrent.processes, CONCURRENT_PROCESSES);
        assert_eq!(
            (concurrent.memory, concurrent.keep_resident),
            (main.memory, main.keep_resident)
        );
        let small = Pool {
            processes: 10,
            ..Pool::default()
        };
        assert_eq!(concurrent_pool_within(small, 200_000), small);
        // In the arena (the default limit holds ~6,300 pooled slots): as many as the main one.
        assert_eq!(
            concurrent_pool_within(main, crate::capacity::DEFAULT_MAX_MAP_COUNT),
            main
        );
        let million = Pool {
            processes: 1_000_000,
            ..Pool::default()
        };
        assert_eq!(concurrent_pool_within(million, 200_000), million);
    }
}
