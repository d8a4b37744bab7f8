//! Guests share the host's file descriptors but never take the host's part: a guest opening
//! files or creating sockets in a loop is refused once guests hold their share of
//! `RLIMIT_NOFILE`, and the host can still open files meanwhile. (Before, one preview 1 guest
//! held 19,985 of this machine's 20,000 and the host could open nothing, not even a spawn's
//! mount.)
//!
//! A binary of its own: it lowers the process's soft limit, which every test of a shared
//! binary would feel.

#[path = "all/common.rs"]
mod common;
#[path = "all/loopback.rs"]
mod loopback;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::receive;
use serde_json::json;
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{Mailbox, Runtime};

/// The soft limit the test runs under: guests' share is 3/4 of it.
const LIMIT: u64 = 600;

/// The tests share the process's descriptors: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// WASI preview 1's `nfile`: too many files open in the system.
const NFILE: i64 = 41;

fn lower_the_soft_limit_to(limit: u64) {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls read or write the struct they are given, which outlives them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut current), 0);
        current.rlim_cur = limit.min(current.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &current), 0);
    }
}

/// The hoarder (`t:hoarder`) and the probe's `try-fs` (`t:probe`), both with `mount` at
/// `/data`, and the net probe's `hoard` (`t:sockets`); binaries and manifest in `bins`.
fn runtime(mount: &std::path::Path, bins: &std::path::Path) -> Runtime {
    let probe = std::fs::read(common::dist().join("probe.wasm")).unwrap();
    let hoarder = wat::parse_str(common::P1_HOARDER).unwrap();
    let sockets = std::fs::read(common::dist().join("net_probe.wasm")).unwrap();
    std::fs::write(bins.join("sockets.wasm"), &sockets).unwrap();
    std::fs::write(bins.join("probe.wasm"), &probe).unwrap();
    std::fs::write(bins.join("hoarder.wasm"), &hoarder).unwrap();
    let entry = |name: &str, hash: Digest, method: &str| {
        format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: {name}.wasm, hash: \"{hash}\", method: {method}, imports: [wasi:cli, wasi:clocks, wasi:filesystem], limits: {{ max_execution_ms: 20000 }}, wasi: {{ mounts: [{{ fs: data, guest: /data }}] }} }}\n"
        )
    };
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: data, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n{}{}  - {{ name: sockets, kind: process.wasm, fs: bins, path: sockets.wasm, hash: \"{}\", method: hoard, imports: [wasi:io, wasi:clocks, wasi:sockets] }}\n",
        bins.display(),
        mount.display(),
        entry("probe", Digest::of(&probe), "try-fs"),
        entry("hoarder", Digest::of(&hoarder), "main"),
        Digest::of(&sockets),
    );
    let manifest = bins.join("wasmproc.yaml");
    std::fs::write(&manifest, text).unwrap();
    Runtime::load(&manifest).unwrap()
}

fn read_plain(rt: &Runtime) -> serde_json::Value {
    let mut mailbox = Mailbox::new();
    let args = [json!("read"), json!("/data/plain.txt"), json!("")];
    rt.spawn_monitored("t:probe", "t:host", &args, &mailbox)
        .unwrap();
    receive(&mut mailbox)
        .expect("an EXIT")
        .outcome
        .expect("an open's failure is the guest's to report, not the process's end")
}

#[test]
fn a_guest_opening_files_without_end_leaves_the_host_its_descriptors() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    lower_the_soft_limit_to(LIMIT);
    let (mount, bins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(mount.path().join("plain.txt"), "plain").unwrap();
    let rt = runtime(mount.path(), bins.path());
    assert_eq!(read_plain(&rt), json!({ "ok": "plain" }));

    let mut hoarder = Mailbox::new();
    rt.spawn_monitored("t:hoarder", "t:host", &[json!(2000)], &hoarder)
        .unwrap();
    // While the hoarder holds its files: another guest's open is refused, and it goes on...
    std::thread::sleep(Duration::from_millis(500));
    let refused = read_plain(&rt);
    assert!(refused.get("err").is_some(), "{refused}");
    // ...and the host still has a quarter of its descriptors to open files with.
    the_host_opens_files(mount.path());

    let held = receive(&mut hoarder).expect("the hoarder's EXIT");
    let held = held.outcome.unwrap().as_i64().unwrap();
    let (errno, opened) = (held >> 24, held & 0xff_ffff);
    assert_eq!(errno, NFILE, "opened {opened}");
    assert!(
        opened > 100 && opened < (LIMIT * 3 / 4) as i64,
        "opened {opened} of a share of {}",
        LIMIT * 3 / 4
    );

    guests_open_files_again(&rt);
}

#[test]
fn a_guest_creating_sockets_without_end_leaves_the_host_its_descriptors() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    lower_the_soft_limit_to(LIMIT);
    let (mount, bins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(mount.path().join("plain.txt"), "plain").unwrap();
    let rt = runtime(mount.path(), bins.path());
    let hoard = |tcp: bool, hold_ms: u32| {
        let mailbox = Mailbox::new();
        rt.spawn_monitored(
            "t:sockets",
            "t:host",
            &[json!(tcp), json!(hold_ms)],
            &mailbox,
        )
        .unwrap();
        mailbox
    };
    let mut tcp = hoard(true, 2000);
    std::thread::sleep(Duration::from_millis(500));
    // While it holds its sockets: no UDP socket either, and no file for another guest...
    let udp = receive(&mut hoard(false, 0)).expect("an EXIT").outcome;
    assert_eq!(udp, Ok(json!([0, "new-socket-limit"])));
    let refused = read_plain(&rt);
    assert!(refused.get("err").is_some(), "{refused}");
    // ...nor a WASI 0.3 socket, nor an HTTP request's connection...
    let server = loopback::http_server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    let [echo, fetch] = p3_probe(&format!("http://{server}/"));
    let echo = echo.outcome.unwrap();
    let echo = echo["err"].as_str().unwrap_or_default();
    assert!(echo.contains("file descriptors"), "{echo}");
    let fetch = fetch.outcome.unwrap();
    let fetch = fetch["err"].as_str().unwrap_or_default();
    assert!(fetch.contains("ConnectionLimitReached"), "{fetch}");
    // ...while the host opens files.
    the_host_opens_files(mount.path());

    let held = receive(&mut tcp)
        .expect("the hoarder's EXIT")
        .outcome
        .unwrap();
    assert_eq!(held[1], json!("new-socket-limit"), "{held}");
    let created = held[0].as_u64().unwrap();
    assert!(
        created > 100 && created < LIMIT * 3 / 4,
        "created {created} of a share of {}",
        LIMIT * 3 / 4
    );
    guests_open_files_again(&rt);
}

/// The WASI 0.3 probe's `echo-once` (it listens on loopback, first creating a socket) and its
/// `fetch` of `url`: their EXITs.
fn p3_probe(url: &str) -> [wasmproc_runtime::Exit; 2] {
    let rt = p3_runtime();
    let run = |entry: &str, arg: serde_json::Value| {
        let mut mailbox = Mailbox::new();
        rt.spawn_monitored(entry, "t:host", &[arg], &mailbox)
            .unwrap();
        receive(&mut mailbox).expect("an EXIT")
    };
    [run("t:echo-once", json!(0)), run("t:fetch", json!(url))]
}

/// The WASI 0.3 probe as `t:echo-once` and `t:fetch`, allowed loopback.
fn p3_runtime() -> Runtime {
    let dist = common::dist();
    let digest = Digest::of(&std::fs::read(dist.join("p3_probe.wasm")).unwrap());
    let entry = |name: &str| {
        format!("  - {{ name: {name}, kind: process.wasm, fs: bins, path: p3_probe.wasm, hash: \"{digest}\", method: {name}, imports: [wasi:clocks, wasi:cli, wasi:http, wasi:sockets], network: {{ allow: [\"tcp://127.0.0.1:*\", \"http://127.0.0.1:*\"], listen: [\"tcp://127.0.0.1:*\"] }} }}\n")
    };
    let yaml = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n{}{}",
        dist.display(),
        entry("echo-once"),
        entry("fetch"),
    );
    let manifest =
        wasmproc_runtime::Manifest::parse(&yaml, std::path::Path::new("p3.yaml")).unwrap();
    let loader = wasmproc_runtime::engine::loader_with(Default::default()).unwrap();
    Runtime::new(manifest, std::sync::Arc::new(loader))
}

#[test]
fn a_listening_guest_accepts_no_connection_while_guests_hold_their_share() {
    use std::io::{Read as _, Write as _};
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    lower_the_soft_limit_to(LIMIT);
    let (mount, bins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(mount.path().join("plain.txt"), "plain").unwrap();
    let rt = runtime(mount.path(), bins.path());
    let p3 = p3_runtime();
    // The echo guest listens, and prints where.
    let (streams, [_stdin, stdout, _stderr]) = wasmproc_runtime::StdioStreams::pipes(64 << 10);
    let options = wasmproc_runtime::SpawnOptions {
        stdio: wasmproc_runtime::Stdio::Streams(std::sync::Arc::new(streams)),
        ..Default::default()
    };
    let mut echo = Mailbox::new();
    p3.spawn_with("t:echo-once", "t:host", &[json!(0)], &options, Some(&echo))
        .unwrap();
    let address = common::first_line(stdout).trim().to_string();
    let exchange = |message: &[u8]| {
        let mut client = std::net::TcpStream::connect(&address).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = client.write_all(message);
        let _ = client.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer);
        answer
    };
    // While guests hold their share, its accept is refused: the client is cut off unanswered...
    let mut hoarder = Mailbox::new();
    rt.spawn_monitored("t:hoarder", "t:host", &[json!(2000)], &hoarder)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(exchange(b"lost"), b"");
    receive(&mut hoarder).expect("the hoarder's EXIT");
    guests_open_files_again(&rt);
    // ...and once they hold fewer, the next client is accepted and answered.
    assert_eq!(exchange(b"echo me"), b"echo me");
    let exit = receive(&mut echo).expect("the echo's EXIT");
    assert_eq!(exit.outcome, Ok(json!({ "ok": "echo me" })));
}

/// The host opens an eighth of the soft limit's worth of files (its part is a quarter).
fn the_host_opens_files(dir: &std::path::Path) {
    let host_files: Vec<_> = (0..LIMIT / 8)
        .map(|i| {
            std::fs::File::open(dir.join("plain.txt"))
                .unwrap_or_else(|e| panic!("the host's open {i} failed: {e}"))
        })
        .collect();
    drop(host_files);
}

/// A hoarder's descriptors are given back once it has ended: guests open files again.
fn guests_open_files_again(rt: &Runtime) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = read_plain(rt);
        if value == json!({ "ok": "plain" }) {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {value}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
