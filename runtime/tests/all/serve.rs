//! `wasmproc serve`'s core: the committed WASI 0.3 handler (`guests/http_service`) answers
//! requests on 127.0.0.1, each in a fresh instance under the entry's limits, and a server
//! stops when told, reporting what it served. Requests are written by hand (HTTP/1.1 with
//! `connection: close`), so what the client sees is exactly what the server sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmproc_harness::http_client::{self, Response};
use wasmproc_runtime::engine::Pool;
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::serve::{serve, ServeOptions, Served, MAX_HEAD};
use wasmproc_runtime::{ErrorKind, Runtime, Stdio};

/// A manifest over the committed guests, on an engine with `pool`: `entries` are
/// `(name, file, fields)`.
fn runtime(pool: Pool, entries: &[(&str, &str, &str)]) -> Runtime {
    let dist = crate::common::dist();
    let mut yaml = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: env, kind: env.storage.memory }}\n  - {{ name: upstream, kind: env.variable, variable: UPSTREAM, storage: env }}\n",
        dist.display()
    );
    for (name, file, fields) in entries {
        let digest = Digest::of(&std::fs::read(dist.join(file)).unwrap());
        yaml.push_str(&format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: {file}, hash: \"{digest}\", method: handle{fields} }}\n"
        ));
    }
    let manifest = wasmproc_runtime::Manifest::parse(&yaml, Path::new("inline.yaml")).unwrap();
    let loader = wasmproc_runtime::engine::loader_with(pool).unwrap();
    Runtime::new(manifest, Arc::new(loader))
}

/// The handler's grants, and its UPSTREAM variable.
const SERVICE: &str = ", imports: [wasi:cli, wasi:http], wasi: { env: [{ id: upstream, name: UPSTREAM, required: false }] }";

/// Serves `entry` while `client` runs (on this thread, against the server's address), then
/// stops the server: what `client` returned, and what the server says it served.
fn serving<R>(rt: &Runtime, entry: &str, client: impl FnOnce(SocketAddr) -> R) -> (R, Served) {
    serving_with(rt, entry, ServeOptions::default(), client)
}

fn serving_with<R>(
    rt: &Runtime,
    entry: &str,
    options: ServeOptions,
    client: impl FnOnce(SocketAddr) -> R,
) -> (R, Served) {
    let service = rt.http_service(entry, Stdio::Capture).unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = tokio
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio.spawn(serve(service, listener, options, async {
        let _ = stopped.await;
    }));
    let result = client(address);
    stop.send(()).unwrap();
    let served = tokio
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), server).await })
        .expect("the server stops when told")
        .unwrap()
        .unwrap();
    (result, served)
}

/// `method path` sent to `address` (harness's hand-written HTTP/1.1 client: what the test
/// sees is exactly what the server sent).
fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    http_client::request(
        address,
        method,
        path,
        headers,
        body,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

#[test]
fn a_wasi_p3_handler_answers_requests_each_in_a_fresh_instance() {
    let rt = runtime(Pool::default(), &[("web", "http_service.wasm", SERVICE)]);
    let (responses, served) = serving(&rt, "t:web", |address| {
        vec![
            request(address, "GET", "/", &[], b""),
            request(address, "POST", "/echo", &[], b"hello, echo"),
            request(address, "POST", "/echo", &[], b""),
            request(address, "GET", "/headers", &[("x-echo", "ping")], b""),
            request(address, "GET", "/nothing-here", &[], b""),
        ]
    });
    let [root, echo, empty, headers, missing] = responses.try_into().unwrap();
    assert_eq!(
        (root.status, root.text()),
        (200, "hello from wasi 0.3\n".into())
    );
    assert_eq!(root.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!((echo.status, echo.text()), (200, "hello, echo".into()));
    assert_eq!(
        echo.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!((empty.status, empty.text()), (200, String::new()));
    assert_eq!(headers.status, 200);
    assert_eq!(headers.header("x-echoed").as_deref(), Some("ping"));
    assert_eq!(missing.status, 404);
    assert_eq!(
        served,
        Served {
            answered: 5,
            failed: 0
        }
    );
}

/// WASI 0.2's proxy world is served the same way (its handler gets a response outparam).
#[test]
fn a_wasi_p2_incoming_handler_is_served_too() {
    let rt = runtime(
        Pool::default(),
        &[(
            "web",
            "http_handler.wasm",
            ", imports: [wasi:io, wasi:http]",
        )],
    );
    let service = rt.http_service("t:web", Stdio::Capture).unwrap();
    assert_eq!(service.world(), "wasi:http/incoming-handler@0.2");
    let (responses, served) = serving(&rt, "t:web", |address| {
        vec![
            request(address, "GET", "/", &[], b""),
            request(address, "POST", "/echo", &[], b"hello, echo"),
            request(address, "GET", "/nothing-here", &[], b""),
        ]
    });
    let [root, echo, missing] = responses.try_into().unwrap();
    assert_eq!(
        (root.status, root.text()),
        (200, "hello from wasi 0.2\n".into())
    );
    assert_eq!((echo.status, echo.text()), (200, "hello, echo".into()));
    assert_eq!(missing.status, 404);
    assert_eq!(served.answered, 3);
}

/// Attacks through a handler: one spinning past `max_execution_ms`, one waiting for ever, one
/// allocating past `max_memory`. Each request ends with a 500 naming its kind, and the next request is answered
/// as before (the failed instances took nothing with them).
#[test]
fn a_handler_past_its_time_or_memory_gets_a_500_and_the_server_goes_on() {
    let limited = format!("{SERVICE}, limits: {{ max_execution_ms: 300, max_memory: 4MiB }}");
    let rt = runtime(Pool::default(), &[("web", "http_service.wasm", &limited)]);
    let ((spin, spun_for, hang, alloc, after), served) = serving(&rt, "t:web", |address| {
        let started = Instant::now();
        let spin = request(address, "GET", "/spin", &[], b"");
        let spun_for = started.elapsed();
        let hang = request(address, "GET", "/hang", &[], b"");
        let alloc = request(address, "GET", "/alloc", &[], b"");
        let after = request(address, "GET", "/", &[], b"");
        (spin, spun_for, hang, alloc, after)
    });
    assert_eq!((spin.status, spin.text()), (500, "limit_exceeded\n".into()));
    assert!(
        spun_for < Duration::from_secs(10),
        "a spinning handler is stopped at its limit, not left running ({spun_for:?})"
    );
    // Waiting on nothing that can ever wake it: wasmtime finds the deadlock at once.
    assert_eq!((hang.status, hang.text()), (500, "trap\n".into()));
    // The guest aborts when an allocation fails: a trap, caught before any host memory grew.
    assert_eq!((alloc.status, alloc.text()), (500, "trap\n".into()));
    assert_eq!(
        (after.status, after.text()),
        (200, "hello from wasi 0.3\n".into())
    );
    assert_eq!(
        served,
        Served {
            answered: 1,
            failed: 3
        }
    );
}

/// More requests at once than the engine has pool places: they wait for a place, and each is
/// answered.
#[test]
fn requests_past_the_pools_places_wait_for_one() {
    let pool = Pool {
        processes: 2,
        ..Pool::default()
    };
    let rt = runtime(pool, &[("web", "http_service.wasm", SERVICE)]);
    let (bodies, served) = serving(&rt, "t:web", |address| {
        let clients: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    let body = format!("request {i}");
                    request(address, "POST", "/echo", &[], body.as_bytes()).text()
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    let expected: Vec<String> = (0..8).map(|i| format!("request {i}")).collect();
    assert_eq!(bodies, expected);
    assert_eq!(served.answered, 8);
}

/// A handler's outgoing request (WASI 0.3's `wasi:http/client`) follows its entry's network
/// policy: refused by default (loopback is not public), sent where the policy allows it.
#[test]
fn a_handlers_outgoing_requests_follow_its_network_policy() {
    let allowed = format!("{SERVICE}, network: {{ allow: [\"http://127.0.0.1:*\"] }}");
    let rt = runtime(
        Pool::default(),
        &[
            ("closed", "http_service.wasm", SERVICE),
            ("open", "http_service.wasm", &allowed),
        ],
    );
    rt.set_env(
        "t:upstream",
        crate::loopback::http_server(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"),
    )
    .unwrap();
    let (refused, _) = serving(&rt, "t:closed", |address| {
        request(address, "GET", "/fetch", &[], b"")
    });
    assert_eq!(refused.status, 502, "{}", refused.text());
    assert!(
        refused.text().contains("HttpRequestDenied"),
        "{}",
        refused.text()
    );
    let (sent, _) = serving(&rt, "t:open", |address| {
        request(address, "GET", "/fetch", &[], b"")
    });
    assert_eq!((sent.status, sent.text()), (200, "upstream 204".into()));
}

/// A request's time is the entry's `max_execution_ms`, else 30 s (a handler that never
/// answers must not hold its place for ever).
#[test]
fn a_requests_time_is_the_entrys_max_execution_else_30_seconds() {
    let limited = format!("{SERVICE}, limits: {{ max_execution_ms: 1500 }}");
    let rt = runtime(
        Pool::default(),
        &[
            ("web", "http_service.wasm", SERVICE),
            ("limited", "http_service.wasm", &limited),
        ],
    );
    let default = rt.http_service("t:web", Stdio::Capture).unwrap();
    assert_eq!(default.timeout(), Duration::from_secs(30));
    assert_eq!(
        default.timeout(),
        wasmproc_runtime::serve::DEFAULT_REQUEST_TIMEOUT
    );
    let limited = rt.http_service("t:limited", Stdio::Capture).unwrap();
    assert_eq!(limited.timeout(), Duration::from_millis(1500));
}

/// Only a binary exporting a `wasi:http` handler can be served; the refusal names the entry
/// and lists what the binary exports.
#[test]
fn a_binary_without_a_handler_is_refused_by_name() {
    let rt = runtime(Pool::default(), &[("compute", "compute.wasm", "")]);
    let error = rt
        .http_service("t:compute", Stdio::Capture)
        .err()
        .expect("not a handler");
    assert_eq!(error.kind(), ErrorKind::MissingExport, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("t:compute") && text.contains("wasi:http"),
        "{text}"
    );
    assert!(text.contains("compute"), "lists the exports: {text}");
}

/// Attack: a client that sends part of a request head and then nothing (slowloris) loses its
/// connection at the header timeout, and the server answers others meanwhile.
#[test]
fn a_client_trickling_its_request_head_is_cut_off() {
    let rt = runtime(Pool::default(), &[("web", "http_service.wasm", SERVICE)]);
    let options = ServeOptions {
        header_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let ((closed_after, other), _) = serving_with(&rt, "t:web", options, |address| {
        let mut slow = TcpStream::connect(address).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").unwrap();
        let started = Instant::now();
        let other = request(address, "GET", "/", &[], b"");
        let mut rest = Vec::new();
        // The server closes it (after a 408, or without a word).
        let _ = slow.read_to_end(&mut rest);
        (started.elapsed(), other)
    });
    assert_eq!(other.status, 200);
    assert!(
        closed_after < Duration::from_secs(5),
        "a stalled head is cut off at its timeout, not held ({closed_after:?})"
    );
}

/// Attack: a handler whose response body never ends is cut off `max_execution_ms` after it
/// answered: the connection closes mid-body, and the instance (and its pool place) goes.
#[test]
fn an_endless_response_body_is_cut_off_at_the_limit() {
    let limited = format!("{SERVICE}, limits: {{ max_execution_ms: 300 }}");
    let pool = Pool {
        processes: 1,
        ..Pool::default()
    };
    let rt = runtime(pool, &[("web", "http_service.wasm", &limited)]);
    let ((streamed, took, after), _) = serving(&rt, "t:web", |address| {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let started = Instant::now();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        // The one pool place is free again: this request gets it.
        let after = request(address, "GET", "/", &[], b"");
        (raw, started.elapsed(), after)
    });
    assert!(streamed.starts_with(b"HTTP/1.1 200"), "it answered");
    assert!(streamed.len() > 64 << 10, "the body flowed until the limit");
    assert!(
        !streamed.ends_with(b"0\r\n\r\n"),
        "the body did not end as if complete"
    );
    assert!(
        took < Duration::from_secs(10),
        "cut off at the limit ({took:?})"
    );
    assert_eq!(after.status, 200);
}

/// Attack: a request head larger than `MAX_HEAD` gets a 431, and the connection's buffer stays
/// within it (hyper's default let each of 1,024 connections buffer ~408 KiB); a head within it
/// is served.
#[test]
fn a_request_head_past_its_bound_is_refused() {
    let rt = runtime(Pool::default(), &[("web", "http_service.wasm", SERVICE)]);
    let within = "a".repeat(MAX_HEAD / 2);
    let past = "a".repeat(MAX_HEAD * 2);
    let (statuses, _) = serving(&rt, "t:web", |address| {
        [&within, &past].map(|value| request(address, "GET", "/", &[("x-big", value)], b"").status)
    });
    assert_eq!(statuses, [200, 431]);
}
