//! What the benchmarks (`benches/scheduler.rs`, `benches/scripts.rs`; `just bench`) share.

/// This process's resident memory, in bytes (`/proc/self/statm`; 0 where there is none).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
