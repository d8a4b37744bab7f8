//! `wasmproc cache`: where compiled code is kept between runs, what it holds, and emptying it.

use std::process::ExitCode;

use wasmproc_runtime::code_cache::{self, CacheConfig};

#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// Print the cache's directory, how many compiled binaries it holds and their size.
    Info,
    /// Remove every compiled binary and the cache's key: the next run compiles again.
    Clear,
}

pub fn cache(command: CacheCommand) -> ExitCode {
    // The directory even when the cache is off: turning it off is no reason to keep its files.
    let dir = match CacheConfig::dir_from_env() {
        Ok(Some(dir)) => dir,
        Ok(None) => {
            eprintln!("wasmproc cache: no cache directory: set WASMPROC_CACHE_DIR, XDG_CACHE_HOME or HOME");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("wasmproc cache: {e}");
            return ExitCode::from(2);
        }
    };
    let max = CacheConfig::from_env().map_or(code_cache::DEFAULT_MAX_BYTES, |c| c.max_bytes);
    match command {
        CacheCommand::Info => match code_cache::usage(&dir) {
            Ok(usage) => {
                println!("directory: {}", dir.display());
                println!("entries: {}", usage.entries);
                println!("bytes: {}", usage.bytes);
                println!("engine configurations: {}", usage.engines);
                println!("limit: {max} bytes");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wasmproc cache: {e}");
                ExitCode::FAILURE
            }
        },
        CacheCommand::Clear => match code_cache::clear(&dir) {
            Ok(usage) => {
                println!(
                    "removed {} compiled binaries ({} bytes) from {}",
                    usage.entries,
                    usage.bytes,
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wasmproc cache: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
