//! The outgoing network policy, end to end, against listeners on 127.0.0.1 that the tests
//! start: what a policy allows gets through, what it does not is refused before a packet
//! leaves (the listeners see nothing). Addresses other than loopback are never contacted:
//! their refusal is the policy's decision, tested in `network::policy`.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::receive;
use serde_json::{json, Value};
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{Mailbox, Runtime};

/// A manifest over the committed guests: `entries` are `(name, file, method, fields)`.
fn runtime(entries: &[(&str, &str, &str, &str)]) -> Runtime {
    let dist = crate::common::dist();
    let mut yaml = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n  - {{ name: env, kind: env.storage.memory }}\n  - {{ name: url, kind: env.variable, variable: API_URL, storage: env }}\n",
        dist.display()
    );
    for (name, file, method, fields) in entries {
        let digest = Digest::of(&std::fs::read(dist.join(file)).unwrap());
        yaml.push_str(&format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: {file}, hash: \"{digest}\", method: {method}{fields} }}\n"
        ));
    }
    let manifest = wasmproc_runtime::Manifest::parse(&yaml, Path::new("inline.yaml")).unwrap();
    let loader = wasmproc_runtime::engine::loader_with(Default::default()).unwrap();
    Runtime::new(manifest, Arc::new(loader))
}

/// Spawns `entry` with `args` and returns its outcome (the guest's `result` as JSON).
fn run(rt: &Runtime, entry: &str, args: &[Value]) -> Value {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, "t:host", args, &mailbox).unwrap();
    let exit = receive(&mut mailbox).expect("an EXIT");
    exit.outcome.expect("the guest returns a result")
}

/// A listener on 127.0.0.1 that counts the connections it accepts and answers each with
/// `answer`: its address and the count.
fn counting_listener(
    answer: fn(&mut std::net::TcpStream),
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            answer(&mut stream);
        }
    });
    (address, accepted)
}

/// A TCP listener that answers each connection's first read with `pong`.
fn tcp_listener() -> (String, Arc<AtomicUsize>) {
    let (address, accepted) = counting_listener(|stream| {
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"pong");
    });
    (address.to_string(), accepted)
}

const SOCKETS: &str = ", imports: [wasi:sockets]";

#[test]
fn a_tcp_connection_to_loopback_goes_through_only_where_the_policy_allows_it() {
    let (address, accepted) = tcp_listener();
    let rt = runtime(&[
        (
            "open",
            "net_probe.wasm",
            "tcp-exchange",
            &format!("{SOCKETS}, network: {{ allow: [\"tcp://127.0.0.1:*\"] }}"),
        ),
        ("default", "net_probe.wasm", "tcp-exchange", SOCKETS),
        (
            "elsewhere",
            "net_probe.wasm",
            "tcp-exchange",
            &format!("{SOCKETS}, network: {{ allow: [\"tcp://127.0.0.1:1\", \"tcp://*:*\"] }}"),
        ),
    ]);
    let args = [json!(address), json!("ping")];
    assert_eq!(run(&rt, "t:open", &args), json!({ "ok": "pong" }));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // No policy: loopback is refused; a policy that does not name this port: refused too.
    for entry in ["t:default", "t:elsewhere"] {
        assert_eq!(
            run(&rt, entry, &args),
            json!({ "err": "access-denied" }),
            "{entry}"
        );
    }
    // IPv4-mapped IPv6 is the same loopback (wasmtime itself refuses it on an IPv6 socket,
    // as `invalid-argument`; the policy would too).
    let port = address.rsplit(':').next().unwrap();
    let mapped = [json!(format!("[::ffff:127.0.0.1]:{port}")), json!("ping")];
    let outcome = run(&rt, "t:default", &mapped);
    assert!(outcome.get("err").is_some(), "{outcome}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "nothing refused reached the listener"
    );
}

#[test]
fn a_udp_datagram_to_loopback_is_sent_only_where_the_policy_allows_it() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let address = socket.local_addr().unwrap().to_string();
    let rt = runtime(&[
        (
            "open",
            "net_probe.wasm",
            "udp-send",
            &format!("{SOCKETS}, network: {{ allow: [\"udp://127.0.0.0/8:*\"] }}"),
        ),
        ("default", "net_probe.wasm", "udp-send", SOCKETS),
    ]);
    let args = [json!(address), json!("datagram")];
    assert_eq!(
        run(&rt, "t:default", &args),
        json!({ "err": "access-denied" })
    );
    let mut buf = [0u8; 64];
    assert!(
        socket.recv(&mut buf).is_err(),
        "the refused datagram never left"
    );
    assert_eq!(run(&rt, "t:open", &args), json!({ "ok": "sent 1" }));
    let n = socket.recv(&mut buf).expect("the allowed datagram arrives");
    assert_eq!(&buf[..n], b"datagram");
}

/// An HTTP server that answers every request with `hi`: its port.
fn http_server() -> (String, Arc<AtomicUsize>) {
    let (address, accepted) = counting_listener(|stream| {
        crate::loopback::read_head(stream);
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi");
    });
    (address.port().to_string(), accepted)
}

#[test]
fn an_http_request_to_a_name_is_checked_at_every_address_the_name_resolves_to() {
    let (port, accepted) = http_server();
    let worker = ", imports: [wasi:cli, wasi:http], wasi: { env: [{ id: url, name: API_URL, required: true }] }";
    let rt = runtime(&[
        ("default", "http_worker.wasm", "run", worker),
        (
            "wildcard",
            "http_worker.wasm",
            "run",
            &format!("{worker}, network: {{ allow: [\"http://*:*\"] }}"),
        ),
        (
            "named",
            "http_worker.wasm",
            "run",
            &format!("{worker}, network: {{ allow: [\"http://localhost:{port}\"] }}"),
        ),
    ]);
    rt.set_env("t:url", format!("http://localhost:{port}/"))
        .unwrap();
    // `localhost` matches `*`, but resolves to loopback, which `*` does not reach.
    for entry in ["t:default", "t:wildcard"] {
        let outcome = run(&rt, entry, &[]);
        let error = outcome["err"].as_str().unwrap_or_default();
        assert!(error.contains("HttpRequestDenied"), "{entry}: {outcome}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "nothing refused was sent"
    );
    // Named exactly, it is trusted wherever it resolves.
    assert_eq!(
        run(&rt, "t:named", &[]),
        json!({ "ok": { "status": 200, "body": "hi" } })
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
