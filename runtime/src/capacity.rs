//! How instances get their memory, tables and stacks, chosen so that the processes a pool asks
//! for fit within the kernel's `vm.max_map_count` (65,530 by default, raised only by root).
//!
//! Every live instance costs the process memory maps, and past the limit `mmap` and `mprotect`
//! fail with ENOMEM: the next instantiation ends in a `host_failure`. wasmtime's pooling
//! allocator is the fastest way to instantiate, but it costs 2 maps per slot before anything
//! runs and up to 7 more per live instance (counted in `/proc/self/maps`, see
//! `MAPS_PER_POOLED_*`). A pool that fits uses it; a larger one takes its stacks and memories
//! from `arena`, a few maps for hundreds of processes; without a pool (0 processes), instances
//! are allocated on demand, up to 10 maps each. The figures are for the most a process may hold
//! (`limits::MEMORIES_PER_PROCESS`...), not for a typical guest: capacity must hold when every
//! live process is built to cost the most. Either way the admission semaphore holds the live
//! processes to [`Capacity::processes`], and spawns past it queue, then are refused with
//! `queue_full`.

use std::fmt;

/// Maps a pool slot costs before it is used: its fiber stack and the stack's guard page.
pub const MAPS_PER_POOLED_SLOT: u64 = 2;

/// Maps a live pooled instance adds, at most: each linear memory's accessible part splits its
/// slot's reservation (2 maps) and its copy-on-write image is a mapping of its own (1), for
/// each of a process's 2 memories, and 1 more (measured, 1,000 live: this project's sleeper
/// 4 maps each, with one memory; a spinner with 2 memories with data 6; tables add none). It
/// was 4, the sleeper's: 9,556 slots of processes with two such memories would have passed the
/// default limit (`runtime/tests/capacity.rs`, 2026-12-07).
pub const MAPS_PER_POOLED_INSTANCE: u64 = 7;

/// Maps a live instance costs without a pool, at most: each memory's reservation, accessible
/// part and copy-on-write image (3), for each of 2 memories, its fiber stack and guard page,
/// and 2 more (measured, 1,000 live: the sleeper 6.99 each, with one memory; a spinner with 2
/// memories with data 8.8 against 4.8 with one without). It was 7, the sleeper's.
pub const MAPS_PER_ON_DEMAND_INSTANCE: u64 = 10;

/// Maps a process in the arena costs, at most: one stack chunk and one memory chunk per this
/// many processes (1 GiB chunks of 2 MiB stacks and of memories up to 2 MiB).
pub const PROCESSES_PER_ARENA_MAP: u64 = 256;

/// Maps left for everything else the runtime maps: its threads' stacks, shared libraries,
/// compiled code, the allocator's arenas, Lua states, sockets' buffers.
pub const RESERVED_MAPS: u64 = 8_192;

/// The kernel's default `vm.max_map_count`, assumed when it cannot be read.
pub const DEFAULT_MAX_MAP_COUNT: u64 = 65_530;

/// Where instances come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// wasmtime's pooling allocator: slots with guard pages, reset in place.
    Pooled,
    /// Stacks and memories carved out of large mappings (`arena`).
    Arena,
    /// wasmtime's on-demand allocator (a pool of 0 processes): no slots, but several maps per
    /// live instance, so as many processes as those leave room for.
    OnDemand,
}

impl fmt::Display for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Allocation::Pooled => "pooled",
            Allocation::Arena => "arena",
            Allocation::OnDemand => "on demand",
        })
    }
}

/// What a pool of `processes` gets on a kernel allowing `max_map_count` maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// How instances get their memory.
    pub allocation: Allocation,
    /// The kernel's `vm.max_map_count`: memory maps one process may have.
    pub max_map_count: u64,
    /// Maps the processes may take at most, all of them live.
    pub maps: u64,
    /// Processes live at once: the pool's size, or without a pool what the maps allow (more
    /// wait for a place).
    pub processes: u32,
}

impl Capacity {
    /// The capacity of a pool of `processes` on this kernel.
    pub fn of(processes: u32) -> Capacity {
        Capacity::within(processes, max_map_count())
    }

    /// The capacity of a pool of `processes` when `max_map_count` maps are allowed.
    pub fn within(processes: u32, max_map_count: u64) -> Capacity {
        let n = u64::from(processes);
        let pooled = n * (MAPS_PER_POOLED_SLOT + MAPS_PER_POOLED_INSTANCE);
        if processes == 0 {
            let fit = max_map_count.saturating_sub(RESERVED_MAPS) / MAPS_PER_ON_DEMAND_INSTANCE;
            let processes = u32::try_from(fit).unwrap_or(u32::MAX).max(1);
            return Capacity {
                allocation: Allocation::OnDemand,
                max_map_count,
                maps: u64::from(processes) * MAPS_PER_ON_DEMAND_INSTANCE,
                processes,
            };
        }
        let (allocation, maps) = if pooled + RESERVED_MAPS <= max_map_count {
            (Allocation::Pooled, pooled)
        } else {
            (Allocation::Arena, 2 * n.div_ceil(PROCESSES_PER_ARENA_MAP))
        };
        Capacity {
            allocation,
            max_map_count,
            maps,
            processes,
        }
    }

    /// The most processes a pooled engine holds on this kernel.
    pub fn largest_pool(max_map_count: u64) -> u32 {
        let per = MAPS_PER_POOLED_SLOT + MAPS_PER_POOLED_INSTANCE;
        u32::try_from(max_map_count.saturating_sub(RESERVED_MAPS) / per).unwrap_or(u32::MAX)
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.allocation {
            Allocation::OnDemand => write!(
                f,
                "{} processes at once (no pool: {MAPS_PER_ON_DEMAND_INSTANCE} maps each, at most {} of vm.max_map_count {})",
                self.processes, self.maps, self.max_map_count
            ),
            allocation => write!(
                f,
                "{} processes at once ({allocation}: at most {} of vm.max_map_count {} maps; a pooled engine holds up to {})",
                self.processes,
                self.maps,
                self.max_map_count,
                Capacity::largest_pool(self.max_map_count)
            ),
        }
    }
}

/// The kernel's limit on this process's memory maps, read once: every decision a process makes
/// from it (its engines' configurations, their places, the engine a compiler process
/// rebuilds) agrees, even when an operator changes `vm.max_map_count` while it runs. Read
/// afresh, a pool could be pooled in the engine and arena in a compile, whose code the engine
/// then refused as incompatible.
pub fn max_map_count() -> u64 {
    static READ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *READ.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_MAP_COUNT)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_that_fits_is_pooled_and_a_larger_one_takes_the_arena() {
        let default = Capacity::within(1_000, DEFAULT_MAX_MAP_COUNT);
        assert_eq!(default.allocation, Allocation::Pooled);
        assert_eq!(default.processes, 1_000);
        let largest = Capacity::largest_pool(DEFAULT_MAX_MAP_COUNT);
        assert_eq!(
            Capacity::within(largest, DEFAULT_MAX_MAP_COUNT).allocation,
            Allocation::Pooled
        );
        let many = Capacity::within(largest + 1, DEFAULT_MAX_MAP_COUNT);
        assert_eq!(many.allocation, Allocation::Arena);
        // The pool: 15,000 slots ran out of maps at 8,652 live processes.
        assert_eq!(
            Capacity::within(15_000, DEFAULT_MAX_MAP_COUNT).allocation,
            Allocation::Arena
        );
        let million = Capacity::within(1_000_000, DEFAULT_MAX_MAP_COUNT);
        assert!(
            million.maps + RESERVED_MAPS <= DEFAULT_MAX_MAP_COUNT,
            "{million}"
        );
        // Raised as Elasticsearch documents, the pool goes further.
        assert!(Capacity::largest_pool(262_144) > 28_000);
        // Without a pool, as many as the maps leave room for, each costing the most a process
        // may: 5,733 by default (8,864 sleepers ended in ENOMEM before admission existed).
        let on_demand = Capacity::within(0, DEFAULT_MAX_MAP_COUNT);
        assert_eq!(on_demand.allocation, Allocation::OnDemand);
        assert_eq!(on_demand.processes, 5_733);
        assert!(on_demand.maps + RESERVED_MAPS <= DEFAULT_MAX_MAP_COUNT);
    }
}
