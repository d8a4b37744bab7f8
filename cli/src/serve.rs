//! `wasmproc serve`: a `process.wasm` entry exporting a `wasi:http` handler answers HTTP
//! requests until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use wasmproc_runtime::code_cache::CacheConfig;
use wasmproc_runtime::serve::ServeOptions;
use wasmproc_runtime::{Runtime, Stdio};

use crate::{manifest_path, refused};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The `process.wasm` entry to serve (`namespace:name`).
    entry: String,
    /// The manifest file or directory (default: as for `run`).
    #[arg(long, short)]
    manifest: Option<PathBuf>,
    /// The address to listen on; port 0 picks a free one (the URL printed says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Worker threads answering requests (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = ServeOptions::default().max_connections)]
    max_connections: usize,
    /// How long a client may take to send a request's head (e.g. `10s`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: std::time::Duration,
}

pub fn serve(args: ServeArgs, cache: &CacheConfig) -> ExitCode {
    let manifest = match manifest_path::resolve_or_refuse(args.manifest.as_deref()) {
        Ok(path) => path,
        Err(code) => return code,
    };
    let runtime = match Runtime::load_caching(&manifest, cache) {
        Ok(runtime) => runtime,
        Err(e) => return refused(e.kinded()),
    };
    let service = match runtime.http_service(&args.entry, Stdio::InheritOutput) {
        Ok(service) => service,
        Err(e) => return refused(e.kinded()),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let tokio = match builder.enable_all().build() {
        Ok(tokio) => tokio,
        Err(e) => {
            eprintln!("wasmproc: error[host_failure]: cannot start the server's threads: {e}");
            return ExitCode::from(2);
        }
    };
    tokio.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!(
                    "wasmproc: error[host_failure]: cannot listen on {}: {e}",
                    args.addr
                );
                return ExitCode::from(2);
            }
        };
        let local = listener.local_addr().unwrap_or(args.addr);
        // The first line on stderr, as `wasmtime serve` prints it: tools look for the URL there.
        eprintln!("Serving HTTP on http://{local}/");
        tracing::info!(entry = %service.entry(), world = service.world(), timeout = ?service.timeout(), "serving");
        let options = ServeOptions {
            max_connections: args.max_connections,
            header_timeout: args.header_timeout,
        };
        match wasmproc_runtime::serve::serve(service, listener, options, stop_signal()).await {
            Ok(served) => {
                tracing::info!(
                    answered = served.answered,
                    failed = served.failed,
                    "stopped"
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wasmproc: error[host_failure]: the server failed: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// SIGINT (Ctrl-C) or SIGTERM: the server stops accepting and finishes what it has.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default actions stay: the signals still end the server.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
