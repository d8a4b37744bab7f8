//! A process holds at most `MAX_OPEN_FILES` open files, however it keeps them (as files,
//! preview 1 or WASI 0.2, or as streams whose descriptors it dropped), and `MAX_SOCKETS`
//! sockets. Before, one guest could take the whole share of descriptors guests have (up to its
//! 10,000 handles), and every other guest's opens failed.

use serde_json::json;
use wasmproc_runtime::descriptors::{MAX_OPEN_FILES, MAX_SOCKETS};
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{Mailbox, Runtime};

/// Preview 1's `mfile`: too many open files (the process's own bound).
const MFILE: i64 = 33;

/// The probe's `try-fs` (`t:probe`) and the preview 1 hoarder (`t:hoarder`), each with a mount
/// holding `plain.txt` at `/data`.
fn runtime(mount: &std::path::Path, bins: &std::path::Path) -> Runtime {
    let probe = std::fs::read(crate::common::dist().join("probe.wasm")).unwrap();
    let hoarder = wat::parse_str(crate::common::P1_HOARDER).unwrap();
    std::fs::write(bins.join("probe.wasm"), &probe).unwrap();
    std::fs::write(bins.join("hoarder.wasm"), &hoarder).unwrap();
    let entry = |name: &str, hash: Digest, method: &str| {
        format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: {name}.wasm, hash: \"{hash}\", method: {method}, imports: [wasi:cli, wasi:clocks, wasi:filesystem], wasi: {{ mounts: [{{ fs: data, guest: /data }}] }} }}\n"
        )
    };
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: data, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n{}{}",
        bins.display(),
        mount.display(),
        entry("probe", Digest::of(&probe), "try-fs"),
        entry("hoarder", Digest::of(&hoarder), "main"),
    );
    crate::common::load_written(bins, &text)
}

fn run(rt: &Runtime, entry: &str, args: &[serde_json::Value]) -> serde_json::Value {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, "t:host", args, &mailbox).unwrap();
    crate::common::receive(&mut mailbox)
        .expect("an EXIT")
        .outcome
        .unwrap_or_else(|e| panic!("{entry}: {e:?}"))
}

/// `hoard` or `hoard-streams` through the probe: how many it opened, and the error it stopped at.
fn probe_hoard(rt: &Runtime, op: &str, path: &str, target: &str) -> (usize, String) {
    let value = run(rt, "t:probe", &[json!(op), json!(path), json!(target)]);
    let text = value["ok"].as_str().unwrap_or_else(|| panic!("{value}"));
    let (opened, error) = text.split_once(' ').unwrap();
    (opened.parse().unwrap(), error.to_string())
}

#[test]
fn a_process_holds_at_most_max_open_files_however_it_keeps_them() {
    let (mount, bins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(mount.path().join("plain.txt"), "plain").unwrap();
    let rt = runtime(mount.path(), bins.path());
    // A component keeping files...
    let (opened, error) = probe_hoard(&rt, "hoard", "plain.txt", "/data");
    assert_eq!((opened, error.as_str()), (MAX_OPEN_FILES, "io"));
    // ...or only a stream of each, its descriptor dropped.
    let (opened, error) = probe_hoard(&rt, "hoard-streams", "plain.txt", "/data");
    assert_eq!((opened, error.as_str()), (MAX_OPEN_FILES, "io"));
    // A preview 1 module (its preopen counts as one of its files): `mfile`.
    let held = run(&rt, "t:hoarder", &[json!(0)]).as_i64().unwrap();
    assert_eq!(
        (held >> 24, held & 0xff_ffff),
        (MFILE, MAX_OPEN_FILES as i64 - 1)
    );
    // Each process has its own: the next opens as many, and two at once each hold theirs.
    let mut mailbox = Mailbox::new();
    for _ in 0..2 {
        let args = [json!("hoard"), json!("plain.txt"), json!("/data")];
        rt.spawn_monitored("t:probe", "t:host", &args, &mailbox)
            .unwrap();
    }
    for _ in 0..2 {
        let exit = crate::common::receive(&mut mailbox).expect("an EXIT");
        let value = exit.outcome.unwrap();
        let opened = value["ok"].as_str().unwrap().split(' ').next().unwrap();
        assert_eq!(opened, MAX_OPEN_FILES.to_string());
    }
}

#[test]
fn a_process_holds_at_most_max_sockets() {
    let bins = tempfile::tempdir().unwrap();
    let sockets = std::fs::read(crate::common::dist().join("net_probe.wasm")).unwrap();
    std::fs::write(bins.path().join("sockets.wasm"), &sockets).unwrap();
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 2 }} }}\n  - {{ name: sockets, kind: process.wasm, fs: bins, path: sockets.wasm, hash: \"{}\", method: hoard, imports: [wasi:io, wasi:clocks, wasi:sockets] }}\n",
        bins.path().display(),
        Digest::of(&sockets),
    );
    let rt = crate::common::load_written(bins.path(), &text);
    for tcp in [true, false] {
        assert_eq!(
            run(&rt, "t:sockets", &[json!(tcp), json!(0)]),
            json!([MAX_SOCKETS, "new-socket-limit"]),
            "tcp: {tcp}"
        );
    }
}
