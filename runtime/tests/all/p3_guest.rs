//! The committed WASI 0.3 guest (`guests/p3_probe`, async exports) against the network policy:
//! an HTTP request to a loopback server the policy allows gets there, and a TCP echo on
//! loopback works where `network.listen` allows it (the test reads the address it prints
//! from its live stdout, as the WASI test suite's runner does).

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wasmproc_runtime::capacity::{Allocation, Capacity};
use wasmproc_runtime::engine::{Pool, CONCURRENT_PROCESSES};
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{
    ErrorKind, Lifecycle, Mailbox, Phase, Runtime, SpawnOptions, Stdio, StdioStreams,
    MAX_HTTP_CONNECTIONS,
};

/// The probe as entry `t:<name>` for each `(name, method, fields)`, granted all it imports.
fn runtime(entries: &[(&str, &str, &str)]) -> Runtime {
    runtime_with(Pool::default(), entries)
}

/// As [`runtime`], on an engine with `pool`.
fn runtime_with(pool: Pool, entries: &[(&str, &str, &str)]) -> Runtime {
    let dist = crate::common::dist();
    let digest = Digest::of(&std::fs::read(dist.join("p3_probe.wasm")).unwrap());
    let mut yaml = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n",
        dist.display()
    );
    for (name, method, fields) in entries {
        yaml.push_str(&format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: p3_probe.wasm, hash: \"{digest}\", method: {method}, imports: [wasi:clocks, wasi:cli, wasi:http, wasi:sockets]{fields} }}\n"
        ));
    }
    let manifest = wasmproc_runtime::Manifest::parse(&yaml, Path::new("inline.yaml")).unwrap();
    let loader = wasmproc_runtime::engine::loader_with(pool).unwrap();
    Runtime::new(manifest, Arc::new(loader))
}

#[test]
fn a_wasi_p3_http_request_reaches_a_loopback_server_its_policy_allows() {
    let rt = runtime(&[(
        "fetch",
        "fetch",
        ", network: { allow: [\"http://127.0.0.1:*\"] }",
    )]);
    let url = format!(
        "http://{}/ping",
        crate::loopback::http_server(
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong"
        )
    );
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored("t:fetch", "t:host", &[json!(url)], &mailbox)
        .unwrap();
    let exit = crate::common::receive(&mut mailbox).expect("an EXIT");
    assert_eq!(exit.outcome, Ok(json!({ "ok": [200, "pong"] })));
}

/// Attack: a server the policy allows cannot make a request buffer a response head past 64
/// KiB (hyper's default let it buffer ~408 KiB for each request in flight): that request fails;
/// a head within the bound is read.
#[test]
fn a_response_head_past_its_bound_fails_the_request() {
    let rt = runtime(&[(
        "fetch",
        "fetch",
        ", network: { allow: [\"http://127.0.0.1:*\"] }",
    )]);
    let fetch = |header_bytes: usize| {
        let response = format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong",
            "a".repeat(header_bytes)
        );
        let server = crate::loopback::http_server(Box::leak(response.into_bytes().into()));
        let mut mailbox = Mailbox::new();
        rt.spawn_monitored(
            "t:fetch",
            "t:host",
            &[json!(format!("http://{server}/"))],
            &mailbox,
        )
        .unwrap();
        crate::common::receive(&mut mailbox)
            .expect("an EXIT")
            .outcome
            .unwrap()
    };
    assert_eq!(fetch(16 << 10), json!({ "ok": [200, "pong"] }));
    let failed = fetch(128 << 10);
    assert!(failed.get("err").is_some(), "{failed}");
}

/// Attack: a WASI 0.3 request in flight is a subtask, not a resource table entry, so the bound
/// on wasi:http parts never counted it, and one process held a connection open for each of as
/// many requests as it started (2,400 measured; its handles bounded them), each with its
/// buffers outside `max_memory`. Now it holds at most `MAX_HTTP_CONNECTIONS`; the requests past them fail with
/// `connection-limit-reached`, and the others are answered.
#[test]
fn a_process_holds_at_most_max_http_connections_open() {
    let rt = runtime(&[(
        "fetch_many",
        "fetch-many",
        ", network: { allow: [\"http://127.0.0.1:*\"] }",
    )]);
    let requests = MAX_HTTP_CONNECTIONS + 88;
    let (server, most) = crate::loopback::holding_server(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        requests,
        Duration::from_secs(3),
    );
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(
        "t:fetch_many",
        "t:host",
        &[json!(format!("http://{server}/")), json!(requests)],
        &mailbox,
    )
    .unwrap();
    let exit = crate::common::receive(&mut mailbox).expect("an EXIT");
    let (answered, first_error) = match exit.outcome {
        Ok(serde_json::Value::Array(pair)) => (pair[0].as_u64().unwrap(), pair[1].clone()),
        other => panic!("{other:?}"),
    };
    let most = most.load(std::sync::atomic::Ordering::Acquire);
    assert!(
        most <= MAX_HTTP_CONNECTIONS,
        "the server held {most} connections of one process"
    );
    assert_eq!(answered as usize, most, "each connection held is answered");
    assert!(
        first_error
            .as_str()
            .unwrap()
            .contains("ConnectionLimitReached"),
        "{first_error}"
    );
}

#[test]
fn a_wasi_p3_tcp_echo_on_loopback_works_where_the_policy_lets_it_listen() {
    let rt = runtime(&[(
        "echo",
        "echo-once",
        ", network: { allow: [\"tcp://127.0.0.1:*\"], listen: [\"tcp://127.0.0.1:*\"] }",
    )]);
    let (streams, [_stdin, stdout, _stderr]) = StdioStreams::pipes(64 << 10);
    let options = SpawnOptions {
        stdio: Stdio::Streams(Arc::new(streams)),
        ..SpawnOptions::default()
    };
    let mut mailbox = Mailbox::new();
    rt.spawn_with("t:echo", "t:host", &[json!(0)], &options, Some(&mailbox))
        .unwrap();
    // The address it listens on, from its stdout as it runs.
    let line = crate::common::first_line(stdout);
    let mut socket = TcpStream::connect(line.trim()).unwrap();
    socket.write_all(b"echo me").unwrap();
    socket.shutdown(Shutdown::Write).unwrap();
    let mut echoed = String::new();
    BufReader::new(&socket).read_line(&mut echoed).unwrap();
    assert_eq!(echoed, "echo me");
    let exit = crate::common::receive(&mut mailbox).expect("an EXIT");
    assert_eq!(exit.outcome, Ok(json!({ "ok": "echo me" })));
}

#[test]
fn wasi_p3_processes_sleep_at_once_as_many_as_the_pool_holds_when_it_takes_the_arena() {
    // Past what wasmtime's pooling allocator holds on the default map limit: the arena.
    let pool = Pool {
        processes: 20_000,
        memory: 2 << 20,
        keep_resident: 64 << 10,
    };
    let rt = runtime_with(pool, &[("sleep", "sleep", "")]);
    const SLEEPERS: usize = CONCURRENT_PROCESSES as usize + 44;
    // On a kernel whose map limit lets 20,000 slots be pooled, the concurrent engine keeps
    // its share of 256; this machine's default limit takes the arena.
    let at_once = if Capacity::of(pool.processes).allocation == Allocation::Arena {
        SLEEPERS
    } else {
        CONCURRENT_PROCESSES as usize
    };
    let (trace, mut events) = tokio::sync::mpsc::unbounded_channel();
    let options = SpawnOptions {
        trace: Some(trace),
        ..SpawnOptions::default()
    };
    let mut mailbox = Mailbox::new();
    let pids: Vec<_> = (0..SLEEPERS)
        .map(|_| {
            rt.spawn_with(
                "t:sleep",
                "t:host",
                &[json!(120_000)],
                &options,
                Some(&mailbox),
            )
            .unwrap()
        })
        .collect();
    // Each sleeps two minutes: those beyond what the engine holds would start only then.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut live = 0;
    while live < at_once && std::time::Instant::now() < deadline {
        match events.try_recv() {
            Ok(Lifecycle {
                phase: Phase::Init, ..
            }) => live += 1,
            Ok(Lifecycle {
                phase: Phase::Close,
                pid,
                ..
            }) => panic!("{pid} ended while {live} slept"),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert_eq!(live, at_once, "sleeping at once, of {SLEEPERS} spawned");
    for pid in pids {
        rt.terminate(pid).unwrap();
    }
    for _ in 0..SLEEPERS {
        let exit = crate::common::receive(&mut mailbox).expect("an EXIT");
        assert!(
            matches!(&exit.outcome, Err(e) if e.kind == ErrorKind::Terminated),
            "{:?}",
            exit.outcome
        );
    }
}
