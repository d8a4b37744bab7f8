//! `wasmproc run`: CLI commands registered by `meta.command`, run one at a time with the
//! terminal as their stdio (what a `terminal.host` means).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wasmproc_runtime::code_cache::CacheConfig;

use wasmproc_runtime::printable::{json_printable, printable};
use wasmproc_runtime::{Error, ErrorKind, Kinded, Mailbox, Runtime, SpawnOptions, Stdio};

use crate::{args, manifest_path, refused, wait_for_exit};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The command to run (or `list`), then its arguments: WASI arguments, and the export's
    /// parameters if it has any. Everything after the command name is the command's, so
    /// wasmproc's own options go before it.
    #[arg(
        value_name = "COMMAND [ARGS]...",
        required_unless_present = "exec",
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    words: Vec<String>,
    /// Run this `process.wasm` entry (`namespace:name`), which needs no command.
    #[arg(long, value_name = "ENTRY")]
    exec: Option<String>,
    /// The manifest file or directory (default: see above).
    #[arg(long, short)]
    manifest: Option<PathBuf>,
    /// The `process.host` to run on; default: the manifest's only one.
    #[arg(long)]
    host: Option<String>,
    /// Give up after this long (e.g. `30s`); default: wait as long as it runs.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Print the export's return value (as JSON) on stdout when it is not null.
    #[arg(long)]
    print_value: bool,
}

pub fn run(args: RunArgs, cache: &CacheConfig) -> ExitCode {
    let runtime = match manifest_path::load_runtime(args.manifest.as_deref(), cache) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    // With --exec every word is an argument; otherwise the first names the command.
    let (command, rest) = match (&args.exec, args.words.split_first()) {
        (Some(_), _) | (None, None) => (None, args.words.as_slice()),
        (None, Some((name, rest))) => (Some(name.as_str()), rest),
    };
    if command == Some("list") {
        list(&runtime);
        return ExitCode::SUCCESS;
    }
    match start(&runtime, &args, command, rest) {
        Ok(code) => code,
        Err(e) => refused(e.kinded()),
    }
}

/// Why a command could not start: the runtime refused it, or it is not a command at all.
/// The last two are the CLI's own: the runtime has no commands or terminals.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(transparent)]
    Runtime(#[from] Error),
    #[error("no command `{name}` (`wasmproc run list` shows the commands)")]
    UnknownCommand { name: String },
    #[error("no `terminal.host` entry is loaded: CLI commands need a `terminal.host` and a `process.host`")]
    NoTerminal,
}

impl Refusal {
    fn kinded(&self) -> Kinded<'_> {
        let kind = match self {
            Refusal::Runtime(e) => e.kind(),
            Refusal::UnknownCommand { .. } => ErrorKind::UnknownCommand,
            Refusal::NoTerminal => ErrorKind::MissingHost,
        };
        Kinded::new(kind, self)
    }
}

fn list(runtime: &Runtime) {
    let mut commands: Vec<_> = runtime
        .manifest()
        .commands()
        .filter_map(|(_, wasm)| wasm.command.as_ref())
        .map(|c| (c.name.as_str(), c.short.as_deref().unwrap_or("")))
        .collect();
    commands.sort();
    if commands.is_empty() {
        println!("no commands (register one with meta.command on a process.wasm entry)");
        return;
    }
    // A manifest may come from someone else: what it says reaches the terminal escaped.
    let commands: Vec<(String, String)> = commands
        .into_iter()
        .map(|(name, short)| (printable(name).to_string(), printable(short).to_string()))
        .collect();
    let width = commands
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    for (name, short) in commands {
        println!("  {name:width$}  {short}");
    }
}

fn start(
    runtime: &Runtime,
    args: &RunArgs,
    command: Option<&str>,
    words: &[String],
) -> Result<ExitCode, Refusal> {
    let entry = match (&args.exec, command) {
        (Some(entry), _) => entry.clone(),
        (None, Some(name)) => {
            let (entry, _) =
                runtime
                    .manifest()
                    .command(name)
                    .ok_or_else(|| Refusal::UnknownCommand {
                        name: name.to_string(),
                    })?;
            entry.id.to_string()
        }
        // clap requires a command unless --exec is given.
        (None, None) => {
            return Err(Refusal::UnknownCommand {
                name: String::new(),
            })
        }
    };
    if runtime.manifest().terminals().next().is_none() {
        return Err(Refusal::NoTerminal);
    }
    let host = runtime.host_or_default(args.host.as_deref())?;
    // The export's parameters take the arguments only when it has any: a command that reads
    // its argv (WASI arguments) gets them there in every case.
    let program = runtime.program(
        &wasmproc_runtime::EntryId::parse(&entry)
            .map_err(|_| Error::UnknownEntry { id: entry.clone() })?,
    )?;
    let params: Vec<_> = if program.signature.params.is_empty() {
        Vec::new()
    } else {
        words.iter().map(|a| args::parse(a)).collect()
    };
    let options = SpawnOptions {
        stdio: Stdio::Inherit,
        extra_args: words.to_vec(),
        ..SpawnOptions::default()
    };
    let mut mailbox = Mailbox::new();
    let pid = runtime.spawn_with(&entry, &host, &params, &options, Some(&mailbox))?;
    let exit = match wait_for_exit(&mut mailbox, args.timeout) {
        Err(code) => return Ok(code),
        Ok(Some(exit)) => exit,
        Ok(None) => {
            eprintln!("wasmproc: {entry} ({pid}) did not finish within the timeout");
            return Ok(ExitCode::FAILURE);
        }
    };
    Ok(match exit.outcome {
        Ok(value) => {
            if args.print_value && !value.is_null() {
                println!("{}", json_printable(value.to_string()));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("wasmproc: {entry} failed: {}", error.kinded());
            match (error.kind, error.code) {
                (ErrorKind::ExitCode, Some(code)) => ExitCode::from(code.clamp(1, 255) as u8),
                _ => ExitCode::FAILURE,
            }
        }
    })
}
