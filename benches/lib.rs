//! Nothing to link: the benchmarks are in `benches/scheduler.rs` (`just bench`).
