//! `wasmproc`: run WebAssembly components as supervised processes from a manifest.

mod args;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wasmproc_runtime::{Event, Mailbox, Runtime};

#[derive(Parser)]
#[command(
    name = "wasmproc",
    version,
    about = "Run WebAssembly components as supervised processes",
    long_about = "Run WebAssembly components as supervised processes.\n\n\
        A manifest (YAML) declares entries: `fs.directory` (where binaries live), `process.wasm` \
        (a component, its sha256 and the export to run) and `process.host` (a scheduler). \
        wasmproc verifies each binary's hash before compiling it, runs the export as a process \
        and reports exactly one EXIT event with its return value or a typed error.",
    after_help = "Logs go to stderr; set WASMPROC_LOG (e.g. WASMPROC_LOG=debug) or pass -v."
)]
struct Cli {
    /// Log more (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Spawn one process, wait for its EXIT and print it as JSON.
    ///
    /// Prints `{"type":"EXIT","from":"<1>","value":42,...}` on success, or
    /// `{"type":"EXIT",...,"error":{"kind":"trap","message":"..."}}` when the process failed.
    /// Exit status: 0 when the process returned a value, 1 when it ended with an error, 2 when
    /// it could not be spawned (the error, with its kind, goes to stderr).
    #[command(
        after_help = "Example:\n  wasmproc spawn conformance/apps/fixtures.yaml fixtures:compute_worker 6 7"
    )]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Spawn {
            manifest,
            entry,
            args,
            host,
            timeout,
        } => spawn(&manifest, &entry, &args, host.as_deref(), timeout),
    }
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
fn refused(error: &wasmproc_runtime::Error) -> ExitCode {
    eprintln!("wasmproc: error[{}]: {error}", error.kind());
    ExitCode::from(2)
}

fn spawn(
    manifest: &std::path::Path,
    entry: &str,
    args: &[String],
    host: Option<&str>,
    timeout: Duration,
) -> ExitCode {
    let runtime = match Runtime::load(manifest) {
        Ok(runtime) => runtime,
        Err(e) => return refused(&e),
    };
    let host = match host {
        Some(host) => host.to_string(),
        None => match runtime.default_host() {
            Ok(id) => id.to_string(),
            Err(e) => return refused(&e),
        },
    };
    let args: Vec<_> = args.iter().map(|a| args::parse(a)).collect();
    let mut mailbox = Mailbox::new();
    let pid = match runtime.spawn_monitored(entry, &host, &args, &mailbox) {
        Ok(pid) => pid,
        Err(e) => return refused(&e),
    };
    let waiter = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(waiter) => waiter,
        Err(e) => {
            eprintln!("wasmproc: error[host_failure]: cannot start a timer: {e}");
            return ExitCode::from(2);
        }
    };
    match waiter.block_on(mailbox.receive(timeout)) {
        Some(Event::Exit(exit)) => {
            println!(
                "{}",
                serde_json::to_string(&exit).expect("an EXIT always serializes")
            );
            if exit.outcome.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        None => {
            eprintln!(
                "wasmproc: no EXIT from {pid} within {}",
                humantime::format_duration(timeout)
            );
            ExitCode::FAILURE
        }
    }
}
