//! Per-process limits: `max_execution_ms` (wall clock, yields included; Wippy's), `max_memory`
//! (linear memory, enforced by a store limiter: a denied `memory.grow` returns -1 to the guest)
//! and `fuel` (an instruction budget). Both wasmproc's own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;

/// An entry's `limits:`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_execution: Option<Duration>,
    /// Bytes of linear memory, all memories of the instance together.
    pub max_memory: Option<u64>,
    pub fuel: Option<u64>,
}

/// Watches memory growth: enforces `max_memory` and records the peak and any denial where
/// the process's task can read them even after its store is gone.
pub struct MemoryLimiter {
    max: Option<u64>,
    total: u64,
    pub(crate) usage: Arc<MemoryUsage>,
}

/// Shared between the limiter (in the store) and the process task.
#[derive(Debug, Default)]
pub struct MemoryUsage {
    peak: AtomicU64,
    /// The size a denied `memory.grow` asked for; 0 when nothing was denied.
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
        let total = self.total - current as u64 + desired as u64;
        if self.max.is_some_and(|max| total > max) {
            self.usage.denied.store(total, Ordering::Relaxed);
            return Ok(false);
        }
        self.total = total;
        self.usage.peak.fetch_max(total, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
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
}
