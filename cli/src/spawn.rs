//! `wasmproc spawn`: one process, its EXIT printed as JSON.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use wasmproc_runtime::code_cache::CacheConfig;

use wasmproc_runtime::printable::json_printable;
use wasmproc_runtime::{Mailbox, Runtime};

use crate::{args, refused, wait_for_exit};

pub fn spawn(
    manifest: &Path,
    entry: &str,
    args: &[String],
    host: Option<&str>,
    timeout: Duration,
    cache: &CacheConfig,
) -> ExitCode {
    let runtime = match Runtime::load_caching(manifest, cache) {
        Ok(runtime) => runtime,
        Err(e) => return refused(e.kinded()),
    };
    let host = match runtime.host_or_default(host) {
        Ok(host) => host,
        Err(e) => return refused(e.kinded()),
    };
    let args: Vec<_> = args.iter().map(|a| args::parse(a)).collect();
    let mut mailbox = Mailbox::new();
    let pid = match runtime.spawn_monitored(entry, &host, &args, &mailbox) {
        Ok(pid) => pid,
        Err(e) => return refused(e.kinded()),
    };
    match wait_for_exit(&mut mailbox, Some(timeout)) {
        Err(code) => code,
        Ok(Some(exit)) => {
            match serde_json::to_string(&exit) {
                Ok(json) => println!("{}", json_printable(json)),
                Err(e) => eprintln!("wasmproc: cannot print the EXIT of {pid}: {e}"),
            }
            if exit.outcome.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(None) => {
            eprintln!(
                "wasmproc: no EXIT from {pid} within {}",
                humantime::format_duration(timeout)
            );
            ExitCode::FAILURE
        }
    }
}
