//! Compiling in a child process, bounded in memory and CPU time.
//!
//! A valid binary can be built to make Cranelift slow and hungry: its SSA construction costs
//! about (locals read) × (blocks they are read through) in time and memory. Found attacking,
//! 2026-12-07: a 100 KB module (one function of 1,000 locals and 10,000 loops) took 3.6 s and
//! 555 MB to compile, and a 5 MB one (50,000 locals, 500,000 loops) ran `wasmproc validate` to
//! 24 GB, all of this machine's memory, until the kernel killed it after 221 s. wasmtime treats
//! such inputs as compile-time bugs to fix one by one; a host that compiles binaries it does not
//! trust needs a bound now.
//!
//! So a process that calls [`isolate`] (the `wasmproc` CLI does, at start) compiles every
//! binary in a child process: the same executable, run as [`worker`], with `RLIMIT_DATA` and
//! `RLIMIT_CPU` set to [`CompileLimits`]. The child builds an engine of the same configuration
//! (without the instance pool, which compiling does not use), compiles, and writes the
//! serialized code to its stdout; the loader deserializes it on its own engine, which checks
//! that the configurations match. A compile past a limit is refused with an error that names
//! the limit and how to raise it; the host itself never holds the compiler's memory.
//!
//! The bytes deserialized come from this executable's own compiler, through a pipe only the
//! two processes hold: the trust is the same as compiling in process (and as the code cache's,
//! see `code_cache`). A library user that does not call [`isolate`] compiles in process.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

use crate::capacity::Capacity;
use crate::code_cache::ArtifactKind;
use crate::engine::{Fuel, Pool};

/// What one compile in the child may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// Bytes of heap (`RLIMIT_DATA`).
    pub memory: u64,
    /// Seconds of CPU time, all of its threads together (`RLIMIT_CPU`), or
    /// [`CPU_SECONDS_PER_MIB`] per MiB of the binary when that is more (see
    /// [`CompileLimits::for_binary`]).
    pub cpu_seconds: u64,
}

/// CPU seconds a compile may take per MiB of binary, past [`CompileLimits::cpu_seconds`]: large
/// binaries need time in proportion. A generated 24 MB module of 20,000 ordinary functions
/// took 46 s of CPU (1.9 s per MB, release build, 2026-12-07), so a fixed 120 s would refuse
/// valid binaries from ~60 MB; crafted ones are slow far beyond their size (a 100 KB module
/// took 3.6 s).
pub const CPU_SECONDS_PER_MIB: u64 = 5;

impl Default for CompileLimits {
    /// 4 GiB and 120 s: this project's largest guests compile in 0.13 s and 27 MB resident
    /// (release build), crafted ones took 24 GB and minutes. Binaries far larger than ours
    /// were not measured: their users may need to raise the limits.
    fn default() -> Self {
        CompileLimits {
            memory: 4 << 30,
            cpu_seconds: 120,
        }
    }
}

impl CompileLimits {
    /// These limits for a binary of `bytes` bytes: the CPU time grows with its size.
    pub fn for_binary(self, bytes: usize) -> CompileLimits {
        let proportional = (bytes as u64).saturating_mul(CPU_SECONDS_PER_MIB) >> 20;
        CompileLimits {
            cpu_seconds: self.cpu_seconds.max(proportional),
            ..self
        }
    }

    /// These limits as a child of this process gets them: a hard limit this process inherited
    /// (`ulimit -H -d`, `ulimit -H -t`) that is lower applies instead, since no child can
    /// raise it.
    fn within_hard_limits(self) -> CompileLimits {
        CompileLimits {
            memory: self.memory.min(hard_limit(libc::RLIMIT_DATA)),
            cpu_seconds: self.cpu_seconds.min(hard_limit(libc::RLIMIT_CPU)),
        }
    }

    /// The defaults, as `WASMPROC_COMPILE_MEMORY` (a size: `512MiB`) and
    /// `WASMPROC_COMPILE_CPU_SECONDS` override them.
    pub fn from_env() -> Result<CompileLimits, String> {
        let defaults = CompileLimits::default();
        let memory = match std::env::var("WASMPROC_COMPILE_MEMORY") {
            Ok(v) => crate::limits::parse_size(&v)
                .map_err(|e| format!("WASMPROC_COMPILE_MEMORY: {e}"))?,
            Err(_) => defaults.memory,
        };
        let cpu_seconds = match std::env::var("WASMPROC_COMPILE_CPU_SECONDS") {
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| {
                    format!("WASMPROC_COMPILE_CPU_SECONDS: `{v}` is not a whole number of seconds above 0")
                })?,
            Err(_) => defaults.cpu_seconds,
        };
        Ok(CompileLimits {
            memory,
            cpu_seconds,
        })
    }
}

/// How this process compiles in a child: the program and arguments that run [`worker`].
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The executable: [`Isolation::this_executable`] for a program that runs [`worker`] itself.
    pub program: PathBuf,
    /// The arguments before the compile's own (the CLI's hidden subcommand).
    pub args: Vec<OsString>,
    /// What each compile may use.
    pub limits: CompileLimits,
}

impl Isolation {
    /// This process's own executable: `/proc/self/exe`, which stays this image even when its
    /// file was replaced or removed since it started (an upgrade, or someone who can write
    /// its directory), else the path it was started from.
    pub fn this_executable() -> std::io::Result<PathBuf> {
        let proc = PathBuf::from("/proc/self/exe");
        if proc.exists() {
            return Ok(proc);
        }
        std::env::current_exe()
    }
}

static ISOLATION: OnceLock<Isolation> = OnceLock::new();

/// At most one compiler process per core at once, so that the limits bound the host's compile
/// memory as a whole (cores × `memory`), not per compile: loads run off the workers (see
/// `host::off_the_worker`), so scripts spawning many entries on first use could otherwise start
/// as many compilers as a host has blocking threads. More at once would not compile faster:
/// each compile already uses every core.
static COMPILERS: Turns = Turns::new();

/// A counting semaphore over threads (the waits are blocking: loads happen off the workers).
struct Turns {
    taken: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

/// A turn taken from [`Turns`], given back when dropped.
struct Turn<'a>(&'a Turns);

impl Turns {
    const fn new() -> Turns {
        Turns {
            taken: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    /// How many turns there are: one per core.
    fn limit() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Waits for a turn.
    fn take(&self) -> Turn<'_> {
        let mut taken = crate::lock::lock(&self.taken);
        while *taken >= Turns::limit() {
            taken = self
                .freed
                .wait(taken)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *taken += 1;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *crate::lock::lock(&self.0.taken) -= 1;
        self.0.freed.notify_one();
    }
}

/// From now on, every loader of this process compiles in a child as `isolation` says. Only the
/// first call counts.
pub fn isolate(isolation: Isolation) {
    let _ = ISOLATION.set(isolation);
}

/// How this process compiles, if in a child.
pub(crate) fn isolation() -> Option<&'static Isolation> {
    ISOLATION.get()
}

/// The configuration an engine was built from, which the child rebuilds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Recipe {
    pub pool: Pool,
    pub fuel: Fuel,
    /// The engine with the component model's concurrency support.
    pub concurrent: bool,
    /// The `vm.max_map_count` the engine's pool was sized by (which decides pooled or arena,
    /// and so the code): the child uses the parent's figure, not its own reading, which an
    /// operator may have changed since.
    pub max_map_count: u64,
}

impl Recipe {
    /// The recipe of an engine the parent configured for `pool`, with the figure of
    /// [`crate::capacity::max_map_count`], as its engines were.
    pub(crate) fn of(pool: Pool, fuel: Fuel, concurrent: bool) -> Recipe {
        Recipe {
            pool,
            fuel,
            concurrent,
            max_map_count: crate::capacity::max_map_count(),
        }
    }

    /// The configuration of the child's engine: the parent's, without an instance pool.
    fn config(&self) -> wasmtime::Config {
        let capacity = Capacity::within(self.pool.processes, self.max_map_count);
        let mut config = crate::engine::configured(self.pool, self.fuel, self.concurrent, capacity);
        // Compiling uses no instance: no pool (its reservations would count for nothing here).
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
        config
    }

    /// The child's one argument:
    /// `processes,memory,keep_resident,fuel,concurrent,max_map_count,kind`.
    fn encode(&self, kind: ArtifactKind) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.pool.processes,
            self.pool.memory,
            self.pool.keep_resident,
            u8::from(self.fuel.counted()),
            u8::from(self.concurrent),
            self.max_map_count,
            match kind {
                ArtifactKind::Component => "component",
                ArtifactKind::Module => "module",
            }
        )
    }

    fn decode(text: &str) -> Option<(Recipe, ArtifactKind)> {
        let fields: Vec<&str> = text.split(',').collect();
        let [processes, memory, keep_resident, fuel, concurrent, max_map_count, kind] = fields[..]
        else {
            return None;
        };
        let flag = |v: &str| match v {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        let recipe = Recipe {
            pool: Pool {
                processes: processes.parse().ok()?,
                memory: memory.parse().ok()?,
                keep_resident: keep_resident.parse().ok()?,
            },
            fuel: if flag(fuel)? {
                Fuel::Counted
            } else {
                Fuel::NotCounted
            },
            concurrent: flag(concurrent)?,
            max_map_count: max_map_count.parse().ok()?,
        };
        let kind = match kind {
            "component" => ArtifactKind::Component,
            "module" => ArtifactKind::Module,
            _ => return None,
        };
        Some((recipe, kind))
    }
}

impl Isolation {
    /// `bytes` compiled in a child as an engine of `recipe` would: its serialized code.
    pub(crate) fn compile(
        &self,
        recipe: &Recipe,
        kind: ArtifactKind,
        bytes: &[u8],
    ) -> wasmtime::Result<Vec<u8>> {
        let wanted = self.limits.for_binary(bytes.len());
        let limits = wanted.within_hard_limits();
        let _turn = COMPILERS.take();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .arg(recipe.encode(kind))
            .env("WASMPROC_COMPILE_MEMORY", limits.memory.to_string())
            .env(
                "WASMPROC_COMPILE_CPU_SECONDS",
                limits.cpu_seconds.to_string(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                wasmtime::Error::new(CompilerUnavailable(format!(
                    "could not start the compiler process `{}`: {e}",
                    self.program.display()
                )))
            })?;
        // Written while its output is read: neither side waits on a full pipe, whatever the
        // child does. A child that died early (a limit) closes the pipe; its status says why.
        let stdin = child.stdin.take();
        let (output, written) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| stdin.map(|mut stdin| stdin.write_all(bytes)).transpose());
            let output = child.wait_with_output();
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the writer panicked")));
            (output, written)
        });
        let output = output.map_err(|e| {
            wasmtime::Error::new(CompilerUnavailable(format!(
                "the compiler process could not be read: {e}"
            )))
        })?;
        if output.status.success() {
            written.map_err(|e| {
                wasmtime::Error::new(CompilerUnavailable(format!(
                    "the compiler process did not read the binary: {e}"
                )))
            })?;
            return Ok(output.stdout);
        }
        Err(failure(
            &output.status,
            &String::from_utf8_lossy(&output.stderr),
            wanted,
            limits,
        ))
    }
}

/// The compiler process could not be started or read: the host's failure, not the binary's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompilerUnavailable(pub String);

/// A compile the limits stopped: the binary may be valid, but it costs more to compile than
/// this host allows.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileRefused(pub String);

/// Why the child failed, as the host tells it: a [`CompileRefused`] when a limit stopped it,
/// else what the compiler said.
///
/// `limits` are what the child got: `wanted`, or lower where this process's hard limits were
/// (the refusal then names those, since raising the variable would change nothing).
fn failure(
    status: &std::process::ExitStatus,
    stderr: &str,
    wanted: CompileLimits,
    limits: CompileLimits,
) -> wasmtime::Error {
    use std::os::unix::process::ExitStatusExt;
    let stderr = stderr.trim();
    let signal = status.signal();
    let refused = |reason: String| wasmtime::Error::new(CompileRefused(reason));
    let raise = |variable: &str, ulimit: &str, lowered: bool| {
        if lowered {
            format!("the hard limit this process inherited (`ulimit -H {ulimit}`; {variable} is higher)")
        } else {
            format!("the compile limit ({variable} raises it)")
        }
    };
    let cpu = raise(
        "WASMPROC_COMPILE_CPU_SECONDS",
        "-t",
        limits.cpu_seconds < wanted.cpu_seconds,
    );
    let memory = raise(
        "WASMPROC_COMPILE_MEMORY",
        "-d",
        limits.memory < wanted.memory,
    );
    // Past RLIMIT_CPU the kernel sends SIGXCPU (and SIGKILL at the hard limit, which the
    // system's out-of-memory killer sends too); past RLIMIT_DATA an allocation fails and Rust
    // aborts, saying so.
    if signal == Some(libc::SIGXCPU) {
        return refused(format!(
            "compiling took more than {} s of CPU time, {cpu}",
            limits.cpu_seconds
        ));
    }
    if signal == Some(libc::SIGKILL) {
        return refused(format!(
            "the compiler process was killed, by the system (out of memory?) or past {} s \
             of CPU time, {cpu}",
            limits.cpu_seconds
        ));
    }
    if stderr.contains("memory allocation of") || signal == Some(libc::SIGABRT) {
        return refused(format!(
            "compiling needed more than {} bytes of memory, {memory}",
            limits.memory
        ));
    }
    wasmtime::Error::msg(match (stderr.is_empty(), signal) {
        (false, _) => stderr.to_string(),
        (true, Some(signal)) => format!("the compiler process ended by signal {signal}"),
        (true, None) => format!("the compiler process failed ({status})"),
    })
}

/// The child: `recipe` is its one argument, the binary its stdin; its serialized code goes to
/// stdout, or the compile's error to stderr (exit status 1). The limits come from the
/// environment the parent set.
pub fn worker(recipe: &str) -> ExitCode {
    match work(recipe) {
        Ok(code) => match std::io::stdout().lock().write_all(&code) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("could not write the compiled code: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn work(recipe: &str) -> Result<Vec<u8>, String> {
    let limits = CompileLimits::from_env()?;
    limit(libc::RLIMIT_DATA, limits.memory)?;
    limit(libc::RLIMIT_CPU, limits.cpu_seconds)?;
    // A compile stopped by a limit ends by a signal (SIGABRT, SIGXCPU) whose default action
    // dumps core: where core files are on, each refusal would write gigabytes into the
    // current directory.
    limit(libc::RLIMIT_CORE, 0)?;
    let (recipe, kind) =
        Recipe::decode(recipe).ok_or_else(|| format!("not a compile recipe: `{recipe}`"))?;
    // All of it (the parent sends only a binary it holds in memory): a child that stopped
    // reading early would leave the parent's write waiting.
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("could not read the binary: {e}"))?;
    let engine = wasmtime::Engine::new(&recipe.config()).map_err(|e| format!("{e:#}"))?;
    let compiled = match kind {
        ArtifactKind::Component => {
            wasmtime::component::Component::new(&engine, &bytes).and_then(|c| c.serialize())
        }
        ArtifactKind::Module => wasmtime::Module::new(&engine, &bytes).and_then(|m| m.serialize()),
    };
    compiled.map_err(|e| format!("{e:#}"))
}

/// Sets `resource`'s soft limit to `value`, and its hard limit a little above for CPU time (the
/// kernel's SIGKILL 5 s after the SIGXCPU that should have ended it), else to it. Never above
/// the hard limit this process was given, which it could not raise.
fn limit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), String> {
    let failed = |what: &str| {
        format!(
            "could not {what} the compile limit: {}",
            std::io::Error::last_os_error()
        )
    };
    let inherited = rlimit(resource).ok_or_else(|| failed("read"))?.rlim_max;
    let soft = value.min(inherited);
    let hard = if resource == libc::RLIMIT_CPU {
        value.saturating_add(5).min(inherited)
    } else {
        soft
    };
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct passed; it changes only this process's limits.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(failed("set"));
    }
    Ok(())
}

/// This process's limits on `resource`.
fn rlimit(resource: libc::__rlimit_resource_t) -> Option<libc::rlimit> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct passed.
    (unsafe { libc::getrlimit(resource, &mut current) } == 0).then_some(current)
}

/// This process's hard limit on `resource` (unlimited when it cannot be read: the child then
/// fails to set its own, and says so).
fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    rlimit(resource).map_or(u64::MAX, |limit| limit.rlim_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_survives_its_argument() {
        let recipe = Recipe {
            pool: Pool {
                processes: 7,
                memory: 1 << 20,
                keep_resident: 4096,
            },
            fuel: Fuel::NotCounted,
            concurrent: true,
            max_map_count: 262_144,
        };
        let (back, kind) = Recipe::decode(&recipe.encode(ArtifactKind::Module)).unwrap();
        assert_eq!(back.pool, recipe.pool);
        assert_eq!(back.fuel, recipe.fuel);
        assert!(back.concurrent);
        assert_eq!(back.max_map_count, 262_144);
        assert_eq!(kind, ArtifactKind::Module);
        assert!(Recipe::decode("1,2,3,1,0,9,").is_none());
        assert!(Recipe::decode("1,2,3,1,0,module").is_none());
        assert!(Recipe::decode("1,2,3,2,0,9,module").is_none());
    }

    /// An operator may change `vm.max_map_count` while a host runs; a compiler process started
    /// after that reading the new figure could configure its engine for the arena where the
    /// host's is pooled (or the reverse), and the host then refused every binary it compiled.
    #[test]
    fn the_compilers_engine_is_sized_by_the_parents_map_limit_not_its_own_reading() {
        let pool = Pool {
            processes: 1_000,
            memory: 2 << 20,
            keep_resident: 64 << 10,
        };
        // 1,000 slots are pooled under the kernel's default limit and take the arena under
        // 10,000 maps: the figure decides the code.
        let (arena, pooled) = (10_000, crate::capacity::DEFAULT_MAX_MAP_COUNT);
        let capacity = |maps| Capacity::within(pool.processes, maps);
        assert_eq!(
            capacity(arena).allocation,
            crate::capacity::Allocation::Arena
        );
        assert_eq!(
            capacity(pooled).allocation,
            crate::capacity::Allocation::Pooled
        );
        let recipe = Recipe {
            pool,
            fuel: Fuel::NotCounted,
            concurrent: false,
            max_map_count: arena,
        };
        let (recipe, _) = Recipe::decode(&recipe.encode(ArtifactKind::Module)).unwrap();
        let compiler = wasmtime::Engine::new(&recipe.config()).unwrap();
        let binary = wat::parse_str("(module (memory 1) (func (export \"f\")))").unwrap();
        let code = wasmtime::Module::new(&compiler, &binary)
            .and_then(|m| m.serialize())
            .unwrap();
        let host = |maps| {
            let config = crate::engine::configured(pool, Fuel::NotCounted, false, capacity(maps));
            wasmtime::Engine::new(&config).unwrap()
        };
        // SAFETY: code an engine of this crate's configuration just wrote.
        let on =
            |engine: &wasmtime::Engine| unsafe { wasmtime::Module::deserialize(engine, &code) };
        on(&host(arena)).expect("the host whose figure the recipe carried runs its code");
        let refused = on(&host(pooled)).expect_err("a host sized by another figure refuses it");
        assert!(
            format!("{refused:#}").contains("memory reservation"),
            "{refused:#}"
        );
    }

    #[test]
    fn at_most_one_compiler_per_core_runs_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let turns = Turns::new();
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..4 * Turns::limit() {
                scope.spawn(|| {
                    let _turn = turns.take();
                    let now = running.fetch_add(1, Ordering::AcqRel) + 1;
                    most.fetch_max(now, Ordering::AcqRel);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
        let most = most.load(Ordering::Acquire);
        assert!(most <= Turns::limit(), "{most} at once");
        assert_eq!(*crate::lock::lock(&turns.taken), 0, "every turn given back");
    }

    #[test]
    fn large_binaries_get_cpu_time_in_proportion_to_their_size() {
        let limits = CompileLimits::default();
        assert_eq!(limits.for_binary(100 << 10).cpu_seconds, 120);
        assert_eq!(limits.for_binary(24 << 20).cpu_seconds, 120);
        assert_eq!(limits.for_binary(25 << 20).cpu_seconds, 125);
        assert_eq!(limits.for_binary(256 << 20).cpu_seconds, 1280);
        assert_eq!(limits.for_binary(256 << 20).memory, limits.memory);
        let one = CompileLimits {
            cpu_seconds: 1,
            ..limits
        };
        assert_eq!(
            one.for_binary(100 << 10).cpu_seconds,
            1,
            "a small binary keeps the limit"
        );
    }

    #[test]
    fn a_limit_is_named_with_how_to_raise_it() {
        use std::os::unix::process::ExitStatusExt;
        let limits = CompileLimits::default();
        // What the host says of a child that ended with `status` (a signal, or an exit code
        // shifted as `wait` reports it) and `stderr`, having had `had` of the `limits` wanted.
        let said = |status: i32, stderr: &str, had: CompileLimits| {
            failure(
                &std::process::ExitStatus::from_raw(status),
                stderr,
                limits,
                had,
            )
        };
        let cpu = said(libc::SIGXCPU, "", limits);
        assert!(cpu.downcast_ref::<CompileRefused>().is_some());
        let cpu = cpu.to_string();
        assert!(
            cpu.contains("120 s of CPU time") && cpu.contains("WASMPROC_COMPILE_CPU_SECONDS"),
            "{cpu}"
        );
        let memory = said(
            libc::SIGABRT,
            "memory allocation of 1048576 bytes failed",
            limits,
        );
        assert!(
            memory.to_string().contains("WASMPROC_COMPILE_MEMORY"),
            "{memory}"
        );
        let killed = said(libc::SIGKILL, "", limits).to_string();
        assert!(
            killed.contains("killed") && killed.contains("out of memory"),
            "{killed}"
        );
        let invalid = said(1 << 8, "failed to parse WebAssembly module\n", limits);
        assert!(invalid.downcast_ref::<CompileRefused>().is_none());
        assert_eq!(invalid.to_string(), "failed to parse WebAssembly module");

        // A hard limit this process inherited, lower than the configured one, is what the
        // child got: the refusal names it (the variable would change nothing).
        let lowered = CompileLimits {
            memory: 256 << 20,
            cpu_seconds: 7,
        };
        let memory = said(libc::SIGABRT, "", lowered).to_string();
        assert!(
            memory.contains("more than 268435456 bytes")
                && memory.contains("(`ulimit -H -d`; WASMPROC_COMPILE_MEMORY is higher)"),
            "{memory}"
        );
        let cpu = said(libc::SIGXCPU, "", lowered).to_string();
        assert!(
            cpu.contains("7 s") && cpu.contains("`ulimit -H -t`"),
            "{cpu}"
        );
    }
}
