//! Per-process limits: `max_execution_ms` (wall clock, yields included; Wippy's), `max_memory`
//! (linear memory and tables, enforced by a store limiter: a denied `memory.grow` or
//! `table.grow` returns -1 to the guest) and `fuel` (an instruction budget). Both wasmproc's own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;

/// The most component-model handles a process holds at once: resources, and with WASI 0.3
/// streams, futures, subtasks and waitable sets. Each lives in host memory, outside
/// `max_memory`: a guest starting a minute-long `wait-for` in a loop held ~850 bytes of host
/// memory per pending timer (85 MB at wasmtime's default bound of 100,000). Past it the
/// process ends with `limit_exceeded`.
pub const MAX_HANDLES: usize = 10_000;

/// What one process may hold at once of what its engine's instance pool holds for all of them
/// (the pool has its `processes` times these): linear memories, tables and core instances,
/// whatever the allocation (pooled, arena, on demand). A component instantiating a module
/// again and again took the pool's memories for every other process: with 15 memories, one
/// spinning process of a 10-process pool (20 memories) made the next spawns end in
/// `host_failure` ("maximum concurrent limit of 20 for memory stripe 0 reached") while it ran
/// (found attacking, 2026-12-07). A binary that needs more memories or tables is refused at
/// load (`Loader::fits_a_process`); more core instances, at load on a pooled engine, else as
/// it is instantiated (this limiter), with `limit_exceeded`. This project's
/// guests have 1 memory, 2 tables, at most 4 core instances; core instances cost the pool only
/// a count, and toolchains that link many modules (one per library) have more.
pub const MEMORIES_PER_PROCESS: u32 = 2;
/// See [`MEMORIES_PER_PROCESS`].
pub const TABLES_PER_PROCESS: u32 = 4;
/// See [`MEMORIES_PER_PROCESS`].
pub const CORE_INSTANCES_PER_PROCESS: u32 = 32;

/// `refusal`, with the share of the instance pool one process may hold.
pub(crate) fn per_process_share(refusal: &str) -> String {
    format!(
        "a process holds at most {MEMORIES_PER_PROCESS} linear memories, {TABLES_PER_PROCESS} tables and {CORE_INSTANCES_PER_PROCESS} core instances, its share of the instance pool: {refusal}"
    )
}

/// An entry's `limits:`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `max_execution_ms`: wall-clock time from Init to Close, yields included; `None`: no limit.
    pub max_execution: Option<Duration>,
    /// Bytes of linear memory and tables, all of the instance's together (a table element
    /// counts `TABLE_ELEMENT_BYTES`).
    pub max_memory: Option<u64>,
    /// Instructions the guest may run; `None`: no limit.
    pub fuel: Option<u64>,
    /// Bytes a converted result, or a spawn's arguments together, may count
    /// (`crate::value::DEFAULT_MAX_VALUE` when not set).
    pub max_value: Option<u64>,
    /// Bytes the process may write to files in its mounts, each file, directory or link it
    /// creates counting [`NEW_NAME_BYTES`](crate::NEW_NAME_BYTES); `None`: no limit. A call
    /// past it writes nothing and fails as on a full disk.
    pub max_written: Option<u64>,
}

impl Limits {
    /// `max_value`, or its default.
    pub fn max_value(&self) -> u64 {
        self.max_value.unwrap_or(crate::value::DEFAULT_MAX_VALUE)
    }
}

/// What one table element costs the host, as `max_memory` counts it: wasmtime keeps a
/// pointer per element (a `funcref` table of 100 million elements took 800 MB).
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// Watches memory and table growth: enforces `max_memory` over both (tables were not
/// counted: a guest grew one by 100 million elements, 800 MB of the host's memory, under a
/// `max_memory` of 1 MiB) and records the peak and any denial where the process's task can
/// read them even after its store is gone.
pub struct MemoryLimiter {
    max: Option<u64>,
    /// Bytes of memories and tables together.
    total: u64,
    pub(crate) usage: Arc<MemoryUsage>,
}

/// Shared between the limiter (in the store) and the process task.
#[derive(Debug, Default)]
pub struct MemoryUsage {
    peak: AtomicU64,
    /// The total a denied growth (of a memory or a table, at instantiation too) asked for;
    /// 0 when nothing was denied.
    denied: AtomicU64,
}

impl MemoryUsage {
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    pub fn denied(&self) -> Option<u64> {
        Some(self.denied.load(Ordering::Relaxed)).filter(|&d| d > 0)
    }
}

impl MemoryLimiter {
    pub fn new(max: Option<u64>) -> Self {
        MemoryLimiter {
            max,
            total: 0,
            usage: Arc::default(),
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current as u64, desired as u64))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |elements: usize| (elements as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow(bytes(current), bytes(desired)))
    }

    fn instances(&self) -> usize {
        CORE_INSTANCES_PER_PROCESS as usize
    }

    fn memories(&self) -> usize {
        MEMORIES_PER_PROCESS as usize
    }

    fn tables(&self) -> usize {
        TABLES_PER_PROCESS as usize
    }
}

impl MemoryLimiter {
    /// Something of `current` bytes wants to be `desired` bytes: allowed unless the total
    /// would pass the maximum.
    fn grow(&mut self, current: u64, desired: u64) -> bool {
        let total = (self.total - current.min(self.total)).saturating_add(desired);
        if self.max.is_some_and(|max| total > max) {
            self.usage.denied.store(total, Ordering::Relaxed);
            return false;
        }
        self.total = total;
        self.usage.peak.fetch_max(total, Ordering::Relaxed);
        true
    }
}

/// `64MiB`, `512KiB`, `2GB`, `1048576`: binary (KiB, MiB, GiB) and decimal (KB, MB, GB) units.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 64MiB, 512KiB, 1048576)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("64 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn the_limiter_denies_growth_past_the_maximum_and_records_the_peak() {
        let mut limiter = MemoryLimiter::new(Some(4 << 16));
        assert!(limiter.memory_growing(0, 2 << 16, None).unwrap());
        assert!(limiter.memory_growing(2 << 16, 4 << 16, None).unwrap());
        assert!(!limiter.memory_growing(4 << 16, 5 << 16, None).unwrap());
        assert_eq!(limiter.usage.peak(), 4 << 16);
        assert_eq!(limiter.usage.denied(), Some(5 << 16));
    }

    #[test]
    fn tables_count_toward_the_same_maximum_as_memories() {
        let mut limiter = MemoryLimiter::new(Some(1 << 20));
        assert!(limiter.memory_growing(0, 512 << 10, None).unwrap());
        // 512 KiB of memory and 64 Ki elements (512 KiB) of table: exactly the maximum.
        assert!(limiter.table_growing(0, 64 << 10, None).unwrap());
        assert_eq!(limiter.usage.peak(), 1 << 20);
        assert!(!limiter.table_growing(64 << 10, 100_000_000, None).unwrap());
        assert_eq!(limiter.usage.denied(), Some((512 << 10) + 800_000_000));
        assert!(!limiter
            .memory_growing(512 << 10, (512 << 10) + 1, None)
            .unwrap());
    }
}
