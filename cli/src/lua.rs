//! `wasmproc lua`: run a Lua script as a process, with Wippy's `process`, `time` and `channel`
//! modules, against a manifest.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use wasmproc_runtime::code_cache::CacheConfig;

use wasmproc_runtime::lua::ScriptError;
use wasmproc_runtime::printable::{json_printable, printable_lines};
use wasmproc_runtime::Runtime;

use crate::{args, manifest_path, refused};

#[derive(clap::Args)]
pub struct LuaArgs {
    /// The script.
    script: PathBuf,
    /// The manifest (default: wasmproc.yaml here or in a parent).
    #[arg(long, short)]
    manifest: Option<PathBuf>,
    /// The `process.host` the script runs on (default: the manifest's only one).
    #[arg(long)]
    host: Option<String>,
    /// Terminate the script if it has not ended after this long (e.g. `30s`, `5m`; default:
    /// no limit). Exit status 1 then.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// The script's `...`, each read as YAML (`6` is a number, `hi` a string).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn lua(args: LuaArgs, cache: &CacheConfig) -> ExitCode {
    let manifest = match manifest_path::resolve_or_refuse(args.manifest.as_deref()) {
        Ok(path) => path,
        Err(code) => return code,
    };
    // Only a regular file, bounded: a FIFO named as the script hung the command.
    let source = match wasmproc_runtime::source_file::read_text(
        &args.script,
        wasmproc_runtime::lua::SCRIPT_MAX_BYTES,
    ) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("wasmproc: cannot read {}: {e}", args.script.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match Runtime::load_caching(&manifest, cache) {
        Ok(runtime) => Arc::new(runtime),
        Err(e) => return refused(e.kinded()),
    };
    let values: Vec<_> = args.args.iter().map(|a| args::parse(a)).collect();
    let name = args.script.display().to_string();
    let ran = wasmproc_runtime::lua::run_script(
        &runtime,
        &source,
        &name,
        args.host.as_deref(),
        &values,
        args.timeout,
    );
    match ran {
        Ok(serde_json::Value::Null) => ExitCode::SUCCESS,
        Ok(value) => {
            println!("{}", json_printable(value.to_string()));
            ExitCode::SUCCESS
        }
        Err(ScriptError::Refused(e)) => refused(e.kinded()),
        Err(ScriptError::Failed(e)) => {
            // It may quote a guest (an EXIT's message).
            eprintln!("wasmproc: script failed: {}", printable_lines(&e));
            ExitCode::FAILURE
        }
    }
}
