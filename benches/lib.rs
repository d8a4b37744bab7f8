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

/// CPU time of this process's threads so far, in nanoseconds (Linux schedstat): of all of
/// them, or of those whose name starts with `prefix` (a host's workers are `wasmproc <host>`,
/// cut to 15 bytes by the kernel).
pub fn cpu_ns(prefix: Option<&str>) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok().map(|t| t.path()))
        .filter(|task| {
            prefix.is_none_or(|prefix| {
                std::fs::read_to_string(task.join("comm")).is_ok_and(|c| c.starts_with(prefix))
            })
        })
        .filter_map(|task| std::fs::read_to_string(task.join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Where criterion writes its reports: `$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`, or
/// `criterion` in the target directory this benchmark was built in (`<target>/release/deps`).
pub fn criterion_home() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return std::path::Path::new(&target).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| "target/criterion".into())
}

/// Whether criterion's filter (the first argument that is neither a flag nor a flag's value)
/// selects `name`. Unlike a bare "first argument not starting with `-`", this reads
/// `--measurement-time 5` as a flag and its value, not as the filter `5`.
pub fn selected(name: &str) -> bool {
    // criterion 0.8's options that take a value as the next argument.
    const VALUED: &[&str] = &[
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--profile-time",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
        "--color",
        "--colour",
        "-c",
        "-s",
        "--plotting-backend",
        "--output-format",
        "--format",
    ];
    let mut args = std::env::args().skip(1);
    let mut filter = None;
    while let Some(arg) = args.next() {
        if VALUED.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filter = Some(arg);
            break;
        }
    }
    filter.is_none_or(|f| name.contains(&f) || f.contains(name))
}

/// `WASMPROC_BENCH_ONLY=SIDE:N`: a benchmark group that reads it runs only N of its operations
/// on that side (`wasmproc`, `bare`, ...) and measures nothing, for `benches/instructions.sh`
/// to count instructions under callgrind. `None` when it is not set (or not `SIDE:N`).
pub fn only_side() -> Option<(String, u64)> {
    let only = std::env::var("WASMPROC_BENCH_ONLY").ok()?;
    let (side, n) = only.split_once(':')?;
    Some((side.to_string(), n.parse().ok()?))
}
