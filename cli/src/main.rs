//! `wasmproc`: run WebAssembly components as supervised processes from a manifest.

mod args;
mod cache;
mod lua;
mod manifest_path;
mod run;
mod serve;
mod spawn;
mod test;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use wasmproc_runtime::code_cache::CacheConfig;

#[derive(Parser)]
#[command(
    name = "wasmproc",
    version,
    about = "Run WebAssembly components as supervised processes",
    long_about = "Run WebAssembly components as supervised processes.\n\n\
        A manifest (YAML) declares entries: `fs.directory` (where binaries live), `process.wasm` \
        (a component, its sha256, the export to run, its WASI grants) and `process.host` (a \
        scheduler). wasmproc verifies each binary's hash before compiling it, runs the export as \
        a process and reports exactly one EXIT event with its return value or a typed error."
)]
struct Cli {
    /// Log more (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Compile every binary, reading and writing no compiled code on disk (as
    /// WASMPROC_CACHE=off).
    #[arg(long, global = true)]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a CLI command registered by a `meta.command`, with the terminal as its stdio.
    ///
    /// `wasmproc run list` lists the commands. `wasmproc run <name> [args...]` runs one: the
    /// arguments are appended to the process's WASI arguments and, when the export takes
    /// parameters, converted to them (each read as a YAML value). The exit status mirrors the
    /// process: 0 when it returned, the guest's code when it called exit, 1 for another error
    /// (printed on stderr), 2 when it could not start.
    ///
    /// The manifest is `--manifest`, else $WASMPROC_MANIFEST, else `wasmproc.yaml` in the
    /// current directory or the nearest parent that has one. Commands need a `terminal.host`
    /// and a `process.host` entry.
    #[command(
        after_help = "Examples:\n  wasmproc run list\n  wasmproc run greet World\n  \
        wasmproc run --exec myns:compute_worker --print-value 6 7"
    )]
    Run(run::RunArgs),
    /// Run a Lua script as a process, with Wippy's `process`, `time` and `channel` modules.
    ///
    /// The script runs on a `process.host` of the manifest and may spawn, monitor, link,
    /// cancel and terminate processes: `process.spawn_monitored(entry, host, args...)` returns a
    /// PID or `nil, err`; `process.receive(timeout)` returns the next event (EXIT, CANCEL,
    /// LINK_DOWN) as a table with both the seed's shape (`type = "EXIT"`, `value`) and Wippy's
    /// current one (`kind = "pid.exit"`, `from`, `result = { value, error }`), or nil when the
    /// timeout passes. Arguments after the script are its `...`; what it returns is printed
    /// (as JSON, unless nil). Exit status 1 when the script fails, 2 when it is refused.
    #[command(after_help = "Examples:\n  \
        wasmproc lua examples/seed.lua --manifest conformance/apps/seed.yaml\n  \
        wasmproc lua examples/product.lua --manifest conformance/apps/seed.yaml 6 7")]
    Lua(lua::LuaArgs),
    /// Run YAML scenarios against your own guests, with libtest's output and flags.
    ///
    /// Each scenario file (a YAML file with a top-level `scenario:`) is one test, named by its
    /// path. Paths in a scenario (its manifest, and the manifest's binaries) resolve relative to
    /// the scenario file. The format is documented in conformance/README.md. Exit status: 0 when
    /// every scenario passed, 101 when one failed, 2 when none could be found.
    #[command(after_help = "Examples:\n  wasmproc test my-scenarios/\n  \
        wasmproc test my-scenarios/ --list\n  wasmproc test my-scenarios/ http --format terse")]
    Test(test::TestArgs),
    /// Run the official WASI test suite (its `prod/testsuite-base` layout) through wasmproc.
    ///
    /// Every `NAME.wasm` with a `NAME.json` spec (`args`, `env`, `dirs`, `root`, `exit_code`,
    /// `stdout`, `stderr`; or `operations`: `run`, live `read`/`write`/`connect`/`send`/`recv`,
    /// `wait` for a command, and `run`, `request`s, `kill`, `wait` for a `wasi:http/service`
    /// test, with `proposals` and `servers`) below the directories is a test named
    /// `<suite>/<NAME>` (the suite from the directory's manifest.json). Known failures go in
    /// --expectations (the suite runner's TOML, or JSON). Exit status: 0 when every test went
    /// as expected, 101 when one did not, 2 when no test was found or the arguments are wrong.
    #[command(
        after_help = "Example (a checkout of WebAssembly/wasi-testsuite, branch prod/testsuite-base):\n  \
        wasmproc wasi-testsuite wasi-testsuite/tests/rust/testsuite/wasm32-wasip1 --format terse"
    )]
    WasiTestsuite(test::WasiTestsuiteArgs),
    /// Describe a binary and check it can run: kind, exports with WIT signatures, imports by
    /// interface family, the `imports:` grants it needs, its sha256 as a manifest wants it.
    ///
    /// With --entry, also checks the binary against that `process.wasm` entry: hash, grants and
    /// method. Exit status: 0 when valid, 1 when there are problems (listed), 2 when the file or
    /// the manifest cannot be read.
    #[command(
        after_help = "Examples:\n  wasmproc validate guests/dist/greet.wasm\n  \
        wasmproc validate guests/dist/greet.wasm --entry myns:greet --json"
    )]
    Validate(validate::ValidateArgs),
    /// Answer HTTP requests with a `process.wasm` entry that exports a `wasi:http` handler.
    ///
    /// The entry is a `process.wasm` entry, or an `http.endpoint` (`handler: ns:name`,
    /// `addr: 127.0.0.1:8080`), or when none is given the manifest's only `http.endpoint`. The
    /// binary exports `wasi:http/handler@0.3` (WASI 0.3's service world) or
    /// `wasi:http/incoming-handler@0.2` (WASI 0.2's proxy world); the entry's `method` is not
    /// used. Each request gets a fresh instance under the entry's limits: a place in the pool
    /// (requests past it wait), `max_memory`, `fuel`, `max_written`, and `max_execution_ms`
    /// (default 30 s) to answer and again to send the body; a handler that traps or runs out
    /// gets a 500. Its stdout and stderr are the server's; its outgoing requests follow the
    /// entry's `network` policy. Prints `Serving HTTP on http://ADDR/` on stderr, then serves until SIGINT or
    /// SIGTERM, finishes the requests in flight and exits 0. Exit status 2 when it cannot start.
    #[command(after_help = "Example:
          wasmproc serve myns:web\n  wasmproc serve myns:http_service --addr 127.0.0.1:0")]
    Serve(serve::ServeArgs),
    /// Spawn one process, wait for its EXIT and print it as JSON.
    ///
    /// Prints `{"type":"EXIT","from":"<1>","value":42,...}` on success, or
    /// `{"type":"EXIT",...,"error":{"kind":"trap","message":"..."}}` when the process failed;
    /// captured stdout and stderr are included when not empty. Exit status: 0 when the process
    /// returned a value, 1 when it ended with an error, 2 when it could not be spawned (the
    /// error, with its kind, goes to stderr).
    #[command(after_help = "Example:\n  wasmproc spawn wasmproc.yaml myns:compute_worker 6 7")]
    Spawn {
        /// A manifest file, or a directory: every *.yaml / *.yml below it is loaded.
        manifest: PathBuf,
        /// The `process.wasm` entry to run, as `namespace:name`.
        entry: String,
        /// Arguments for the export, each read as a YAML value (`6`, `1.5`, `text`, `[1, 2]`,
        /// `{a: 1}`) and converted to the parameter's type.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
        /// The `process.host` to run on (`namespace:name`); default: the manifest's only one.
        #[arg(long)]
        host: Option<String>,
        /// How long to wait for the EXIT (e.g. `500ms`, `30s`, `2m`).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// The compiled-code cache: `info` shows it, `clear` empties it.
    ///
    /// `run`, `spawn`, `lua`, `test` and `wasi-testsuite` keep each binary's compiled code on
    /// disk, keyed by the binary's sha256 (checked against the manifest first) and the engine's
    /// configuration, so that the next run loads it instead of compiling. Each file is
    /// authenticated with a key kept in the cache directory (mode 0600): a file altered,
    /// truncated or copied from elsewhere is refused, compiled again and replaced.
    ///
    /// Exit status: 0 when done, 1 when the directory cannot be read or emptied, 2 when there
    /// is no cache directory (no WASMPROC_CACHE_DIR, XDG_CACHE_HOME or HOME) or it is invalid.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Compiles one binary from stdin under the compile limits (this executable runs itself
    /// so; not for users).
    #[command(hide = true)]
    CompileWorker {
        /// The engine's configuration and the binary's kind, as the parent encodes them.
        recipe: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&Cli::command().after_help(after_help()).get_matches())
        .unwrap_or_else(|e| e.exit());
    if let Command::CompileWorker { recipe } = &cli.command {
        return wasmproc_runtime::compile_isolation::worker(recipe);
    }
    init_logging(cli.verbose);
    if let Err(code) = isolate_compiles() {
        return code;
    }
    if let Some((before, after)) = wasmproc_runtime::descriptors::raise_soft_limit() {
        tracing::debug!("open files limit (RLIMIT_NOFILE) raised from {before} to {after}");
    }
    let cache = || code_cache(cli.no_cache);
    match cli.command {
        Command::Run(args) => cache().map_or_else(|code| code, |c| run::run(args, &c)),
        Command::Lua(args) => cache().map_or_else(|code| code, |c| lua::lua(args, &c)),
        Command::Test(args) => cache().map_or_else(|code| code, |c| test::test(args, &c)),
        Command::Validate(args) => validate::validate(args),
        Command::Serve(args) => cache().map_or_else(|code| code, |c| serve::serve(args, &c)),
        Command::WasiTestsuite(args) => {
            cache().map_or_else(|code| code, |c| test::wasi_testsuite(args, &c))
        }
        Command::Cache(command) => cache::cache(command),
        Command::CompileWorker { .. } => unreachable!("handled before logging starts"),
        Command::Spawn {
            manifest,
            entry,
            args,
            host,
            timeout,
        } => cache().map_or_else(
            |code| code,
            |c| spawn::spawn(&manifest, &entry, &args, host.as_deref(), timeout, &c),
        ),
    }
}

/// Binaries are compiled in a child process of this executable, bounded in memory and CPU time
/// (see `wasmproc_runtime::compile_isolation`): a crafted binary cannot make this process's
/// compiler take the machine's memory.
fn isolate_compiles() -> Result<(), ExitCode> {
    use wasmproc_runtime::compile_isolation::{isolate, CompileLimits, Isolation};
    let limits = CompileLimits::from_env().map_err(|e| {
        eprintln!("wasmproc: error[host_failure]: {e}");
        ExitCode::from(2)
    })?;
    match Isolation::this_executable() {
        Ok(program) => isolate(Isolation {
            program,
            args: vec!["compile-worker".into()],
            limits,
        }),
        Err(e) => {
            tracing::warn!("compiling in this process, unbounded: cannot find this executable: {e}")
        }
    }
    Ok(())
}

/// Where compiled code is kept, as the environment and `--no-cache` say.
fn code_cache(no_cache: bool) -> Result<CacheConfig, ExitCode> {
    if no_cache {
        return Ok(CacheConfig::off());
    }
    CacheConfig::from_env().map_err(|e| {
        eprintln!("wasmproc: error[host_failure]: {e}");
        ExitCode::from(2)
    })
}

/// Where logs go, and how many processes this kernel lets a pool hold (read when asked).
fn after_help() -> String {
    use wasmproc_runtime::capacity::{self, Capacity};
    let max_map_count = capacity::max_map_count();
    format!(
        "Logs go to stderr; set WASMPROC_LOG (e.g. WASMPROC_LOG=debug) or pass -v.\n\n\
         Compiled code is kept between runs in $WASMPROC_CACHE_DIR, else \
         $XDG_CACHE_HOME/wasmproc/compiled, else ~/.cache/wasmproc/compiled (at most \
         $WASMPROC_CACHE_MAX, default 512MiB); WASMPROC_CACHE=off or --no-cache turns that off, \
         `wasmproc cache clear` empties it.\n\n\
         Binaries are compiled in a child process limited to $WASMPROC_COMPILE_MEMORY of heap \
         (default 4GiB) and $WASMPROC_COMPILE_CPU_SECONDS of CPU time (default 120, or 5 s per \
         MiB of binary when that is more): a binary \
         whose compile needs more is refused as invalid_binary, naming the limit (lower hard \
         limits this process inherited, ulimit -H -d and -t, apply instead).\n\n\
         Capacity: this kernel allows {max_map_count} memory maps per process \
         (vm.max_map_count). A pool of up to {} processes (`pool.processes`, WASMPROC_POOL) \
         uses wasmtime's pooling allocator; a larger one takes fiber stacks and memories from a \
         few large mappings (no guard pages; memories bounds-checked), a few maps per hundreds \
         of processes, so memory is its limit; there a process that has waited 100 ms gives its \
         stack's and memories' pages back until it wakes (WASMPROC_HIBERNATE=0 turns that off). Without a \
         pool (WASMPROC_POOL=0) {} processes \
         run at once (up to 10 maps each). Processes of binaries using the component model's async ABI \
         (WASI 0.3) count toward these, except that a pool using the pooling allocator lets {} \
         of them run besides its own. Spawns past these wait, then are refused with queue_full. \
         The engine logs its capacity at start (WASMPROC_LOG=info).",
        Capacity::largest_pool(max_map_count),
        Capacity::within(0, max_map_count).processes,
        wasmproc_runtime::engine::CONCURRENT_PROCESSES
    )
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMPROC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A refusal: printed with its kind, exit status 2.
fn refused(error: wasmproc_runtime::Kinded<'_>) -> ExitCode {
    eprintln!("wasmproc: {error}");
    ExitCode::from(2)
}

/// Waits for the one event of a process (no timeout: as long as it takes).
fn wait_for_exit(
    mailbox: &mut wasmproc_runtime::Mailbox,
    timeout: Option<Duration>,
) -> Result<Option<wasmproc_runtime::Exit>, ExitCode> {
    match mailbox.receive_blocking(timeout) {
        Ok(event) => Ok(event.and_then(wasmproc_runtime::Event::into_exit)),
        Err(e) => {
            eprintln!("wasmproc: error[host_failure]: cannot start a timer: {e}");
            Err(ExitCode::from(2))
        }
    }
}
