//! HTTP serving benchmark: requests per second of `wasmproc serve`'s core and, in the same run,
//! of a bare wasmtime-wasi-http server, with the same guest and the same client, so that the
//! ratio means something on a shared, noisy machine.
//!
//! - `serve/hello`: `GET /` of the committed WASI 0.3 handler (`guests/dist/http_service.wasm`
//!   answers 200 `hello from wasi 0.3\n`), [`CLIENTS`] keep-alive HTTP/1.1 connections with one
//!   request in flight each, every response checked. Both servers give each request a fresh
//!   instance in its own store, and run on the same 2-worker tokio runtime.
//!   `wasmproc` is `Runtime::http_service` + `serve::serve`: the entry's hash-checked program on
//!   the concurrent engine, a WASI context per request (stdout and stderr the server's, as
//!   `wasmproc serve` has them), its limits (a place in the pool, epochs, the request's timer;
//!   no fuel, which its manifest does not limit), the header timeout and the connection cap.
//!   `bare` is what `wasmtime serve` does with the least around it: wasmtime-wasi-http's
//!   `ProxyHandler` over hyper's `serve_connection`, a store with an empty WASI context, no
//!   metering, no timers, on wasmproc's concurrent engine configuration (its pool, slots reset
//!   in place) without fuel and epochs: the fastest bare configuration measured (see
//!   [`bare_engine`]). Then interleaved rounds give the ratio.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http_body_util::{BodyExt, Empty, Full};
use wasmproc_benches::{cpu_ns, criterion_home, only_side, selected};
use wasmproc_runtime::engine::{self, Pool};
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::serve::{ServeOptions, Served};
use wasmproc_runtime::{Runtime, Stdio};
use wasmtime::component::{Component, GuestTaskId, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, Proxy, ProxyHandler, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Client connections, each with one request in flight: enough to keep both server workers
/// busy while a request's instance is made or torn down.
const CLIENTS: usize = 16;

/// Requests per criterion iteration (spread over the connections).
const BATCH: u64 = 64;

/// What `GET /` answers.
const BODY: &[u8] = b"hello from wasi 0.3\n";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn guest() -> std::path::PathBuf {
    root().join("../guests/dist/http_service.wasm")
}

/// A server running on the servers' runtime, and how to stop it.
struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    fn stopping(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(stop);
        async {
            let _ = stopped.await;
        }
    }
}

/// `wasmproc serve`'s core over a manifest with the one entry the CLI would be given.
fn wasmproc_server(
    servers: &tokio::runtime::Runtime,
) -> (
    Runtime,
    Server,
    tokio::task::JoinHandle<std::io::Result<Served>>,
) {
    let guest = guest();
    let digest = Digest::of(&std::fs::read(&guest).unwrap());
    let yaml = format!(
        "namespace: bench\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: hello, kind: process.wasm, fs: bins, path: http_service.wasm, hash: \"{digest}\", method: handle, imports: [wasi:cli, wasi:http] }}\n",
        guest.parent().unwrap().display()
    );
    let manifest = wasmproc_runtime::Manifest::parse(&yaml, Path::new("serve.yaml")).unwrap();
    // As `wasmproc serve` loads it: fuel counted only if the manifest limits it (it does not).
    let fuel = engine::Fuel::for_manifest(&manifest);
    let loader = engine::loader_counting(Pool::from_env().unwrap(), fuel).unwrap();
    let rt = Runtime::new(manifest, Arc::new(loader));
    let service = rt
        .http_service("bench:hello", Stdio::InheritOutput)
        .unwrap();
    let listener = servers
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let mut server = Server {
        address: listener.local_addr().unwrap(),
        stop: None,
    };
    let stopping = server.stopping();
    let served = servers.spawn(wasmproc_runtime::serve::serve(
        service,
        listener,
        ServeOptions::default(),
        stopping,
    ));
    (rt, server, served)
}

/// The bare server's store: an empty WASI context, and wasi:http's.
struct BareData {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
}

impl WasiView for BareData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for BareData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// The smallest `HandlerState`: a store and an instance per worker, nothing else.
struct Bare {
    engine: Engine,
    pre: ServicePre<BareData>,
    /// Instances that ended in an error (a trap, say): none expected.
    failed: Arc<AtomicU64>,
}

impl HandlerState for Bare {
    type StoreData = BareData;
    type WorkerExpiration = NeverExpires;
    type WorkerState = OneRequest;

    async fn instantiate(&self) -> wasmtime::Result<Instance<BareData, NeverExpires, OneRequest>> {
        let data = BareData {
            table: ResourceTable::new(),
            wasi: WasiCtxBuilder::new().build(),
            http: WasiHttpCtx::new(),
        };
        let mut store = Store::new(&self.engine, data);
        let proxy = Proxy::P3(self.pre.instantiate_async(&mut store).await?);
        Ok(Instance {
            store,
            proxy,
            view: <BareData as WasiHttpView>::http,
            expiration: NeverExpires,
            state: OneRequest {
                failed: self.failed.clone(),
            },
        })
    }
}

/// No timeout: a worker that answered its one request ends by itself (see `OneRequest`).
struct NeverExpires;

impl WorkerExpiration for NeverExpires {
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>, _: WorkerStatus, _: Instant) -> Poll<()> {
        Poll::Pending
    }
}

/// One request per instance, as wasmproc does it, so that both sides do the same work.
struct OneRequest {
    failed: Arc<AtomicU64>,
}

impl WorkerState for OneRequest {
    type StoreData = BareData;
    type RequestData = ();

    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        if total == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::Never
        }
    }

    fn on_request_start(
        &self,
        _: StoreContextMut<'_, BareData>,
        _: (),
        _: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        Box::pin(std::future::pending())
    }

    fn drop(&self, store: Store<BareData>, result: wasmtime::Result<()>) {
        drop(store);
        if let Err(e) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            eprintln!("serve/hello/bare: an instance failed: {e:#}");
        }
    }
}

/// wasmproc's concurrent engine configuration without its metering: the fastest measured here
/// (2026-12-06, requests per second against this one's in back-to-back runs: wasmtime's
/// on-demand allocator 0.3-0.5x, its pooling allocator with wasmtime's defaults 0.5-0.8x; the
/// slot reset in place is what makes the difference, as for spawns).
fn bare_engine() -> Engine {
    let mut config = engine::concurrent_config(
        engine::concurrent_pool(Pool::from_env().unwrap()),
        engine::Fuel::NotCounted,
    );
    config.consume_fuel(false).epoch_interruption(false);
    Engine::new(&config).unwrap()
}

/// wasmtime-wasi-http's `ProxyHandler` over hyper, as `wasmtime serve` serves it.
fn bare_server(
    servers: &tokio::runtime::Runtime,
) -> (Server, tokio::task::JoinHandle<()>, Arc<AtomicU64>) {
    let engine = bare_engine();
    let component = Component::new(&engine, std::fs::read(guest()).unwrap()).unwrap();
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p3::add_to_linker(&mut linker).unwrap();
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).unwrap();
    let pre = ServicePre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let failed = Arc::new(AtomicU64::new(0));
    let handler = ProxyHandler::new(Bare {
        engine,
        pre,
        failed: failed.clone(),
    });
    let listener = servers
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let mut server = Server {
        address: listener.local_addr().unwrap(),
        stop: None,
    };
    let stopping = server.stopping();
    let accepting = servers.spawn(async move {
        let mut stopping = std::pin::pin!(stopping);
        loop {
            let stream = tokio::select! {
                () = &mut stopping => break,
                accepted = listener.accept() => accepted.unwrap().0,
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let answer = hyper::service::service_fn(move |request: http::Request<_>| {
                    let handler = handler.clone();
                    async move {
                        let request = request.map(|body: hyper::body::Incoming| {
                            body.map_err(Into::into).boxed_unsync()
                        });
                        Ok::<_, Infallible>(match handler.handle((), request).await {
                            Ok(response) => response,
                            Err(e) => {
                                eprintln!("serve/hello/bare: a request failed: {e:#}");
                                let mut response = http::Response::new(
                                    Full::new(Bytes::from_static(b"failed\n"))
                                        .map_err(|never| match never {})
                                        .boxed_unsync(),
                                );
                                *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                                response
                            }
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), answer)
                    .await;
            });
        }
    });
    (server, accepting, failed)
}

/// The client both servers get: its own thread (the benchmark's), `CLIENTS` connections.
struct Client {
    runtime: tokio::runtime::Runtime,
    /// Requests sent so far, to each server.
    sent: u64,
}

impl Client {
    fn new() -> Client {
        Client {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            sent: 0,
        }
    }

    /// `n` requests to `address`: the time they took. Connections are opened and each sends
    /// one request before the clock starts, so that what is timed is requests on kept-alive
    /// connections (a connection left idle between criterion's measurements would meet the
    /// server's header timeout).
    fn requests(&mut self, address: SocketAddr, n: u64) -> Duration {
        let (elapsed, wrong) = self.runtime.block_on(async {
            let (mut senders, mut connections) = (Vec::new(), Vec::new());
            let mut wrong = 0;
            for _ in 0..CLIENTS {
                let stream = tokio::net::TcpStream::connect(address).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                        .await
                        .unwrap();
                connections.push(tokio::spawn(connection));
                wrong += get(&mut sender, address).await;
                senders.push(sender);
            }
            let start = Instant::now();
            let tasks: Vec<_> = senders
                .into_iter()
                .enumerate()
                .map(|(i, mut sender)| {
                    let count = n / CLIENTS as u64 + u64::from((i as u64) < n % CLIENTS as u64);
                    tokio::spawn(async move {
                        let mut wrong = 0;
                        for _ in 0..count {
                            wrong += get(&mut sender, address).await;
                        }
                        wrong
                    })
                })
                .collect();
            for task in tasks {
                wrong += task.await.unwrap();
            }
            let elapsed = start.elapsed();
            // Each connection ends once its sender has gone: closed now, not left open until
            // this thread's next measurement.
            for connection in connections {
                connection
                    .await
                    .unwrap()
                    .expect("the connection ends cleanly");
            }
            (elapsed, wrong)
        });
        self.sent += n + CLIENTS as u64;
        // A broken server must not look fast.
        assert_eq!(wrong, 0, "{wrong} of {n} responses were not 200 `hello`");
        elapsed
    }
}

/// `GET /` on `sender`: 0 when the answer is 200 `hello from wasi 0.3`, else 1.
async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    address: SocketAddr,
) -> u64 {
    sender.ready().await.expect("the connection stays open");
    let request = http::Request::get("/")
        .header(http::header::HOST, address.to_string())
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    u64::from(status != http::StatusCode::OK || body != BODY)
}

fn serve_hello(c: &mut Criterion) {
    // Its engines and servers are made before criterion filters: not at all when it is not
    // selected.
    if !selected("serve/hello") {
        return;
    }
    // Both servers on one runtime, as `wasmproc serve` runs on 2 cores; the client on its own
    // thread beside them.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (rt, mut ours, ours_served) = wasmproc_server(&servers);
    let (mut bare, bare_accepting, bare_failed) = bare_server(&servers);
    // Counted under callgrind (`benches/instructions.sh serve`): `wasmproc:N` or `bare:N`.
    if let Some((side, n)) = only_side() {
        let address = if side == "wasmproc" {
            ours.address
        } else {
            bare.address
        };
        Client::new().requests(address, n);
        return;
    }
    let mut ours_client = Client::new();
    let mut bare_client = Client::new();

    let mut group = c.benchmark_group("serve/hello");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("wasmproc", |b| {
        b.iter_custom(|iters| ours_client.requests(ours.address, iters * BATCH))
    });
    group.bench_function("bare", |b| {
        b.iter_custom(|iters| bare_client.requests(bare.address, iters * BATCH))
    });
    group.finish();
    // Under `--profile-time` only the chosen benchmark should show in a profiler.
    if !std::env::args().any(|a| a == "--profile-time") {
        ratio(
            &mut ours_client,
            ours.address,
            &mut bare_client,
            bare.address,
        );
    }

    // Every request was answered by the guest, on both sides.
    let _ = ours.stop.take().unwrap().send(());
    let served = servers.block_on(ours_served).unwrap().unwrap();
    assert_eq!(
        served,
        Served {
            answered: ours_client.sent,
            failed: 0
        }
    );
    let _ = bare.stop.take().unwrap().send(());
    servers.block_on(bare_accepting).unwrap();
    assert_eq!(bare_failed.load(Ordering::Relaxed), 0);
    drop(rt);
    eprintln!(
        "serve/hello: criterion's report in {}",
        criterion_home()
            .join("serve/hello/report/index.html")
            .display()
    );
}

/// The ratio, from interleaved rounds: on a shared machine the load changes between
/// criterion's separate measurements, less within a pair of rounds.
fn ratio(ours: &mut Client, ours_at: SocketAddr, bare: &mut Client, bare_at: SocketAddr) {
    const ROUNDS: usize = 9;
    const N: u64 = 5_000;
    let per_second = |d: Duration| N as f64 / d.as_secs_f64();
    // CPU time (all threads, the client's included) per request: what a round costs,
    // whatever else the machine runs.
    let measured = |run: &mut dyn FnMut() -> Duration| {
        let before = cpu_ns(None);
        let elapsed = run();
        let cpu_us = (cpu_ns(None) - before) as f64 / N as f64 / 1000.0;
        (per_second(elapsed), cpu_us)
    };
    let mut rounds: Vec<[f64; 5]> = (0..ROUNDS)
        .map(|round| {
            // Every other round the other one first: whichever runs second would otherwise
            // always inherit what the first left behind (warm caches, a busy neighbour).
            let mut run_ours = || measured(&mut || ours.requests(ours_at, N));
            let mut run_bare = || measured(&mut || bare.requests(bare_at, N));
            let ((ours, ours_cpu), (bare, bare_cpu)) = if round % 2 == 0 {
                let o = run_ours();
                (o, run_bare())
            } else {
                let b = run_bare();
                (run_ours(), b)
            };
            [ours / bare, ours, bare, ours_cpu, bare_cpu]
        })
        .collect();
    let median = |i: usize| {
        let mut v: Vec<f64> = rounds.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        v[ROUNDS / 2]
    };
    let (ours_cpu, bare_cpu) = (median(3), median(4));
    rounds.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let [ratio, ours, bare, ..] = rounds[ROUNDS / 2];
    let (low, high) = (rounds[ROUNDS / 4][0], rounds[ROUNDS - 1 - ROUNDS / 4][0]);
    eprintln!(
        "serve/hello: wasmproc / bare = {ratio:.2} (median of {ROUNDS} interleaved rounds of \
         {N} requests, middle half {low:.2}-{high:.2}; wasmproc {:.1}k/s, bare {:.1}k/s in that \
         round); CPU per request, all threads (client included): wasmproc {ours_cpu:.1} us, \
         bare {bare_cpu:.1} us (ratio {:.2})",
        ours / 1000.0,
        bare / 1000.0,
        bare_cpu / ours_cpu
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = serve_hello
}
criterion_main!(benches);
