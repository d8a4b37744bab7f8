//! `wasmproc lua`: run a Lua script against a manifest with Wippy's `process` and `time`
//! modules.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use wasmproc_runtime::Runtime;

use crate::{manifest_path, refused};

#[derive(clap::Args)]
pub struct LuaArgs {
    /// The script.
    script: PathBuf,
    /// The manifest (default: wasmproc.yaml here or in a parent).
    #[arg(long, short)]
    manifest: Option<PathBuf>,
}

pub fn lua(args: LuaArgs) -> ExitCode {
    let manifest = match manifest_path::resolve_or_refuse(args.manifest.as_deref()) {
        Ok(path) => path,
        Err(code) => return code,
    };
    let source = match std::fs::read_to_string(&args.script) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("wasmproc: cannot read {}: {e}", args.script.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match Runtime::load(&manifest) {
        Ok(runtime) => Arc::new(runtime),
        Err(e) => return refused(&e),
    };
    match wasmproc_runtime::lua::run_script(runtime, &source, &args.script.display().to_string()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmproc: script failed: {e}");
            ExitCode::FAILURE
        }
    }
}
