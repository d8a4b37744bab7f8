//! `wasmproc serve`: a `process.wasm` entry exporting a `wasi:http` handler answers HTTP
//! requests until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use wasmproc_runtime::code_cache::CacheConfig;
use wasmproc_runtime::manifest::{EntrySpec, DEFAULT_HTTP_ADDR};
use wasmproc_runtime::serve::ServeOptions;
use wasmproc_runtime::{EntryId, ErrorKind, Kinded, Runtime, Stdio};

use crate::{manifest_path, refused};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// What to serve (`namespace:name`): an `http.endpoint` entry, or a `process.wasm` entry
    /// whose binary exports a handler. Default: the manifest's only `http.endpoint`.
    entry: Option<String>,
    /// The manifest file or directory (default: as for `run`).
    #[arg(long, short)]
    manifest: Option<PathBuf>,
    /// The address to listen on; port 0 picks a free one (the URL printed says which).
    /// Default: the `http.endpoint`'s `addr`, else 127.0.0.1:8080.
    #[arg(long)]
    addr: Option<SocketAddr>,
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
    let runtime = match manifest_path::load_runtime(args.manifest.as_deref(), cache) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let (handler, declared) = match target(&runtime, args.entry.as_deref()) {
        Ok(target) => target,
        Err(message) => return refused(Kinded::new(ErrorKind::UnknownEntry, &message)),
    };
    let addr = args.addr.or(declared).unwrap_or_else(|| {
        DEFAULT_HTTP_ADDR
            .parse()
            .expect("the default address parses")
    });
    let service = match runtime.http_service(&handler, Stdio::InheritOutput) {
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
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("wasmproc: error[host_failure]: cannot listen on {addr}: {e}");
                return ExitCode::from(2);
            }
        };
        let local = listener.local_addr().unwrap_or(addr);
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

/// The `process.wasm` entry to serve and the address an `http.endpoint` declares: `entry`
/// names either kind; without it, the manifest's only `http.endpoint`.
fn target(runtime: &Runtime, entry: Option<&str>) -> Result<(String, Option<SocketAddr>), String> {
    let endpoint_of = |entry: &wasmproc_runtime::manifest::Entry| match &entry.spec {
        EntrySpec::HttpEndpoint(endpoint) => {
            Some((endpoint.handler.to_string(), Some(endpoint.addr)))
        }
        _ => None,
    };
    if let Some(name) = entry {
        let declared = EntryId::parse(name)
            .ok()
            .and_then(|id| runtime.manifest().get(&id))
            .and_then(endpoint_of);
        // Anything else is the handler's own entry: the runtime says what is wrong with it.
        return Ok(declared.unwrap_or((name.to_string(), None)));
    }
    let endpoints: Vec<_> = runtime
        .manifest()
        .entries()
        .filter(|e| matches!(e.spec, EntrySpec::HttpEndpoint(_)))
        .collect();
    match endpoints.as_slice() {
        [only] => Ok(endpoint_of(only).expect("an http.endpoint")),
        [] => Err("no entry to serve was given, and the manifest declares no http.endpoint: name a process.wasm entry whose binary exports a wasi:http handler".into()),
        many => Err(format!(
            "no entry to serve was given, and the manifest declares {} http.endpoint entries: name one ({})",
            many.len(),
            many.iter().map(|e| e.id.to_string()).collect::<Vec<_>>().join(", ")
        )),
    }
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
