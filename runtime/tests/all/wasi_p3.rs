//! WASI 0.3 guests: component-model-async binaries that import `@0.3.0` interfaces. Written as
//! component text: the suite's guests (wasi-testsuite's wasm32-wasip3) are not committed.

use std::collections::HashMap;
use std::path::Path;

use crate::common::receive;
use serde_json::json;
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{ErrorKind, Exit, Mailbox, Runtime};

/// `sleep(ms)` awaits `wasi:clocks/monotonic-clock@0.3.0#wait-for` and returns `ms`: it waits
/// in its callback loop, holding no fiber, until the host's timer ends the subtask.
const SLEEPER: &str = r#"
(component
  (import "wasi:clocks/monotonic-clock@0.3.0" (instance $clock
    (export "wait-for" (func async (param "how-long" u64)))))
  (core func $wait-for (canon lower (func $clock "wait-for") async))
  (core func $ws.new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $subtask.drop (canon subtask.drop))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "" "wait-for" (func $wait-for (param i64) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "subtask.drop" (func $subtask.drop (param i32)))
    (import "" "task.return" (func $ret (param i32)))
    (global $ms (mut i32) (i32.const 0))
    (func (export "sleep") (param $ms i32) (result i32)
      (local $status i32) (local $set i32)
      (global.set $ms (local.get $ms))
      (local.set $status
        (call $wait-for (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000))))
      ;; RETURNED (2) at once: nothing to wait for.
      (if (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 2))
        (then (call $ret (local.get $ms)) (return (i32.const 0))))
      (local.set $set (call $ws.new))
      (call $join (i32.shr_u (local.get $status) (i32.const 4)) (local.get $set))
      ;; WAIT (2) on the set.
      (i32.or (i32.const 2) (i32.shl (local.get $set) (i32.const 4))))
    (func (export "callback") (param $event i32) (param $handle i32) (param $state i32) (result i32)
      ;; The only event it can get: its subtask (1) returned (2).
      (if (i32.ne (local.get $event) (i32.const 1)) (then unreachable))
      (if (i32.ne (local.get $state) (i32.const 2)) (then unreachable))
      (call $subtask.drop (local.get $handle))
      (call $ret (global.get $ms))
      (i32.const 0)))
  (core instance $i (instantiate $m (with "" (instance
    (export "wait-for" (func $wait-for))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "subtask.drop" (func $subtask.drop))
    (export "task.return" (func $ret))))))
  (func (export "sleep") async (param "ms" u32) (result u32)
    (canon lift (core func $i "sleep") async (callback (core func $i "callback")))))
"#;

/// `add(a, b) = a + b`, an ordinary export.
const ADDER: &str = r#"
(component
  (core module $m (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32) (canon lift (core func $i "add"))))
"#;

/// A command exporting `run` twice, as WASI 0.3 toolchains build them: the 0.3 one succeeds,
/// the 0.2 one fails, so the EXIT tells which ran.
const COMMAND: &str = r#"
(component
  (core module $m
    (import "" "task.return" (func $ret (param i32)))
    (func (export "run3") (result i32) (call $ret (i32.const 0)) i32.const 0)
    (func (export "run2") (result i32) i32.const 1)
    (func (export "cb") (param i32 i32 i32) (result i32) unreachable))
  (core func $ret (canon task.return (result (result))))
  (core instance $i (instantiate $m (with "" (instance (export "task.return" (func $ret))))))
  (func $run3 async (result (result)) (canon lift (core func $i "run3") async (callback (core func $i "cb"))))
  (func $run2 (result (result)) (canon lift (core func $i "run2")))
  (instance $r2 (export "run" (func $run2)))
  (instance $r3 (export "run" (func $run3)))
  (export "wasi:cli/run@0.2.0" (instance $r2))
  (export "wasi:cli/run@0.3.0" (instance $r3)))
"#;

/// [`with_libc`], and the `(; filesystem types ;)` line of its `wasi:filesystem/types@0.3.0`
/// import replaced by the types its functions use: `error-code` (`$error'`), `path-flags`,
/// `open-flags`, `descriptor-flags`, `descriptor-type` (each `$name'`) and `directory-entry`
/// (`$entry'`); a `(; filesystem types 0.2 ;)` line of a `@0.2.12` import, by WASI 0.2's
/// `error-code` (an enum) and the same flags; a `(; open-at parameters ;)` line in a core
/// module by `$open-at-parameters`, which lays out WASI 0.3 `open-at`'s parameters at 1280;
/// and a `(; wait ;)` line by `$wait`, which joins a waitable to the waitable set in global
/// `$set` (joined with `$join`) and returns the callback's WAIT code for that set.
pub(crate) fn with_libc_and_filesystem_types(wat: &str) -> String {
    const FLAGS: &str = r#"(type $path-flags (flags "symlink-follow"))
    (export "path-flags" (type $path-flags' (eq $path-flags)))
    (type $open-flags (flags "create" "directory" "exclusive" "truncate"))
    (export "open-flags" (type $open-flags' (eq $open-flags)))
    (type $descriptor-flags (flags "read" "write" "file-integrity-sync" "data-integrity-sync"
      "requested-write-sync" "mutate-directory"))
    (export "descriptor-flags" (type $descriptor-flags' (eq $descriptor-flags)))"#;
    const P2_ERROR: &str = r#"(type $error (enum "access" "would-block" "already"
      "bad-descriptor" "busy" "deadlock" "quota" "exist" "file-too-large"
      "illegal-byte-sequence" "in-progress" "interrupted" "invalid" "io" "is-directory" "loop"
      "too-many-links" "message-size" "name-too-long" "no-device" "no-entry" "no-lock"
      "insufficient-memory" "insufficient-space" "not-directory" "not-empty" "not-recoverable"
      "unsupported" "no-tty" "no-such-device" "overflow" "not-permitted" "pipe" "read-only"
      "invalid-seek" "text-file-busy" "cross-device"))
    (export "error-code" (type $error' (eq $error)))"#;
    const P3_ERROR: &str = r#"(type $error (variant
      (case "access") (case "already") (case "bad-descriptor") (case "busy") (case "deadlock")
      (case "quota") (case "exist") (case "file-too-large") (case "illegal-byte-sequence")
      (case "in-progress") (case "interrupted") (case "invalid") (case "io") (case "is-directory")
      (case "loop") (case "too-many-links") (case "message-size") (case "name-too-long")
      (case "no-device") (case "no-entry") (case "no-lock") (case "insufficient-memory")
      (case "insufficient-space") (case "not-directory") (case "not-empty")
      (case "not-recoverable") (case "unsupported") (case "no-tty") (case "no-such-device")
      (case "overflow") (case "not-permitted") (case "pipe") (case "read-only")
      (case "invalid-seek") (case "text-file-busy") (case "cross-device")
      (case "other" (option string))))
    (export "error-code" (type $error' (eq $error)))"#;
    const P3_ENTRIES: &str = r#"(type $descriptor-type (variant (case "block-device")
      (case "character-device") (case "directory") (case "fifo") (case "symbolic-link")
      (case "regular-file") (case "socket") (case "other" (option string))))
    (export "descriptor-type" (type $descriptor-type' (eq $descriptor-type)))
    (type $entry (record (field "type" $descriptor-type') (field "name" string)))
    (export "directory-entry" (type $entry' (eq $entry)))"#;
    // Inside a core module with the libc memory: lays out WASI 0.3 `open-at`'s parameters
    // (more than an async call takes flat) at 1280.
    const OPEN_AT_PARAMETERS: &str = r#"(func $open-at-parameters (param $self i32)
      (param $path-flags i32) (param $path i32) (param $length i32) (param $open-flags i32)
      (param $flags i32)
      (i32.store (i32.const 1280) (local.get $self))
      (i32.store8 (i32.const 1284) (local.get $path-flags))
      (i32.store (i32.const 1288) (local.get $path))
      (i32.store (i32.const 1292) (local.get $length))
      (i32.store8 (i32.const 1296) (local.get $open-flags))
      (i32.store8 (i32.const 1297) (local.get $flags)))"#;
    const WAIT: &str = r#"(func $wait (param $waitable i32) (result i32)
      (call $join (local.get $waitable) (global.get $set))
      (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))"#;
    with_libc(wat)
        .replace("(; open-at parameters ;)", OPEN_AT_PARAMETERS)
        .replace("(; wait ;)", WAIT)
        .replace(
            "(; filesystem types 0.2 ;)",
            &format!("{P2_ERROR}\n    {FLAGS}"),
        )
        .replace(
            "(; filesystem types ;)",
            &format!("{P3_ERROR}\n    {FLAGS}\n    {P3_ENTRIES}"),
        )
}

/// `wat` (its libc and filesystem types filled in by [`with_libc_and_filesystem_types`]) loaded as the only entry `t:{name}`,
/// with `method`, `fields` and a fresh directory mounted at `/data`: the runtime, the mounted
/// directory and the binary's (keep both as long as the runtime).
pub(crate) fn mounted_guest(
    name: &str,
    wat: &str,
    method: &str,
    fields: &str,
) -> (
    wasmproc_runtime::Runtime,
    tempfile::TempDir,
    tempfile::TempDir,
) {
    let (mount, bins) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let binary = format!("{name}.wasm");
    crate::common::write_wat(bins.path(), &binary, &with_libc_and_filesystem_types(wat));
    let rt = crate::common::load_mounted(
        bins.path(),
        mount.path(),
        "/data",
        &[crate::common::Mounted {
            name,
            binary: &binary,
            method,
            fields,
        }],
    );
    (rt, mount, bins)
}

/// `wat` with its `(; libc ;)` line replaced by a core instance `$libc` exporting a memory and
/// a bump `realloc` from 8 KiB up: what component text needs to lower strings and lists.
pub(crate) fn with_libc(wat: &str) -> String {
    wat.replace(
        "(; libc ;)",
        r#"(core module $libc
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 8192))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (local $p i32)
      (local.set $p (global.get $heap))
      (global.set $heap (i32.add (global.get $heap)
        (i32.and (i32.add (local.get 3) (i32.const 7)) (i32.const -8))))
      (local.get $p)))
  (core instance $libc (instantiate $libc))"#,
    )
}

/// A runtime with one entry `name` (its binary `name.wasm`, from `wat`, its method `name`),
/// with `fields` added to it; the directory lives as long as the first value.
fn single(name: &str, wat: &str, fields: &str) -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let file = format!("{name}.wasm");
    let digest = write(dir.path(), &file, wat);
    let rt = runtime(dir.path(), &[(name, &file, digest, name, fields)]);
    (dir, rt)
}

/// Spawns `entry` on the host, monitored, and waits for its EXIT.
fn exit_of(rt: &Runtime, entry: &str, args: &[serde_json::Value]) -> Exit {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, "t:host", args, &mailbox).unwrap();
    receive(&mut mailbox).expect("an EXIT")
}

fn write(dir: &Path, file: &str, wat: &str) -> Digest {
    crate::common::write_wat(dir, file, &with_libc(wat))
}

/// A manifest with a one-worker host and these `process.wasm` entries (name, file, digest,
/// method, extra fields).
fn runtime(dir: &Path, entries: &[(&str, &str, Digest, &str, &str)]) -> Runtime {
    let mut yaml = String::from(
        "namespace: t\nentries:\n  - { name: bins, kind: fs.directory, directory: . }\n  - { name: host, kind: process.host, host: { workers: 1 } }\n",
    );
    for (name, file, digest, method, extra) in entries {
        yaml.push_str(&format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: {file}, hash: \"{digest}\", method: {method}{extra} }}\n"
        ));
    }
    let manifest = dir.join("manifest.yaml");
    std::fs::write(&manifest, yaml).unwrap();
    Runtime::load(&manifest).expect("the manifest loads")
}

/// Twenty WASI 0.3 sleepers of a second each on one worker: an ordinary process spawned after
/// them ends first (they wait without holding the worker), and each sleeper ends with its value
/// after at least its sleep.
#[test]
fn wasi_p3_sleepers_wait_without_holding_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = write(dir.path(), "sleeper.wasm", SLEEPER);
    let adder = write(dir.path(), "adder.wasm", ADDER);
    let rt = runtime(
        dir.path(),
        &[
            (
                "sleep",
                "sleeper.wasm",
                sleeper,
                "sleep",
                ", imports: [wasi:clocks]",
            ),
            ("add", "adder.wasm", adder, "add", ""),
        ],
    );
    let mut mailbox = Mailbox::new();
    let mut sleepers = HashMap::new();
    for i in 0..20 {
        let ms: u32 = 1000 + i;
        let pid = rt
            .spawn_monitored("t:sleep", "t:host", &[json!(ms)], &mailbox)
            .unwrap();
        sleepers.insert(pid, ms);
    }
    let adder = rt
        .spawn_monitored("t:add", "t:host", &[json!(2), json!(3)], &mailbox)
        .unwrap();
    let first = receive(&mut mailbox).expect("an EXIT");
    assert_eq!((first.from, first.outcome), (adder, Ok(json!(5))));
    for _ in 0..20 {
        let exit = receive(&mut mailbox).expect("an EXIT");
        let ms = sleepers.remove(&exit.from).expect("one EXIT per sleeper");
        assert_eq!(exit.outcome, Ok(json!(ms)));
        assert!(
            exit.accounting.wall_time.as_millis() >= u128::from(ms),
            "{exit:?}"
        );
    }
}

/// The imports allowlist holds for WASI 0.3 interfaces: a sleeper not granted `wasi:clocks`
/// is refused at load, naming the import.
#[test]
fn an_ungranted_wasi_p3_import_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = write(dir.path(), "sleeper.wasm", SLEEPER);
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(
        &manifest,
        format!("namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: sleep, kind: process.wasm, fs: bins, path: sleeper.wasm, hash: \"{sleeper}\", method: sleep }}\n"),
    )
    .unwrap();
    let rt = Runtime::load(&manifest).expect("the manifest loads");
    let mailbox = Mailbox::new();
    let error = rt
        .spawn_monitored("t:sleep", "t:host", &[json!(1)], &mailbox)
        .expect_err("clocks are not granted");
    assert_eq!(error.kind(), ErrorKind::UngrantedImport, "{error}");
    assert!(
        error
            .to_string()
            .contains("wasi:clocks/monotonic-clock@0.3.0"),
        "{error}"
    );
}

/// `method: main` on a command runs its newest `wasi:cli/run`: the 0.3 one.
#[test]
fn main_runs_the_newest_cli_run() {
    let dir = tempfile::tempdir().unwrap();
    let command = write(dir.path(), "command.wasm", COMMAND);
    let rt = runtime(
        dir.path(),
        &[
            ("main", "command.wasm", command, "main", ""),
            ("old", "command.wasm", command, "wasi:cli/run@0.2.0#run", ""),
            ("typo", "command.wasm", command, "mian", ""),
        ],
    );
    let exit = exit_of(&rt, "t:main", &[]);
    assert_eq!(exit.outcome, Ok(json!({ "ok": null })));
    let exit = exit_of(&rt, "t:old", &[]);
    assert_eq!(exit.outcome, Ok(json!({ "err": null })));
    // Only `main` means the command's run: any other missing name is refused.
    let error = rt
        .spawn_monitored("t:typo", "t:host", &[], &Mailbox::new())
        .expect_err("no export `mian`");
    assert_eq!(error.kind(), ErrorKind::MissingExport, "{error}");
}

/// `count()` returns how many arguments `wasi:cli/environment@0.3.0#get-arguments` gives: a
/// synchronous export and a synchronous call, so no async ABI, yet a WASI 0.3 import.
const ARG_COUNTER: &str = r#"
(component
  (import "wasi:cli/environment@0.3.0" (instance $env
    (export "get-arguments" (func (result (list string))))))
  (; libc ;)
  (core func $args (canon lower (func $env "get-arguments")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "get-arguments" (func $args (param i32)))
    (func (export "count") (result i32)
      (call $args (i32.const 16))
      (i32.load (i32.const 20))))
  (core instance $i (instantiate $m (with "libc" (instance $libc))
    (with "" (instance (export "get-arguments" (func $args))))))
  (func (export "count") (result u32) (canon lift (core func $i "count"))))
"#;

#[test]
fn a_synchronous_guest_importing_wasi_p3_gets_its_arguments() {
    let (_dir, rt) = single(
        "count",
        ARG_COUNTER,
        ", imports: [wasi:cli], wasi: { args: [a, b] }",
    );
    let exit = exit_of(&rt, "t:count", &[]);
    // The program's name, then `a` and `b`.
    assert_eq!(exit.outcome, Ok(json!(3)));
}

/// `bind(port)`: a WASI 0.3 TCP socket bound to 127.0.0.1:`port` through
/// `wasi:sockets/types@0.3.0`; 0 when bound, 100 + the error-code case when not (100:
/// `access-denied`, what the network policy's refusal looks like to the guest).
const BINDER: &str = r#"
(component
  (import "wasi:sockets/types@0.3.0" (instance $types
    (export "tcp-socket" (type $s (sub resource)))
    (type $error (variant
      (case "access-denied") (case "not-supported") (case "invalid-argument")
      (case "out-of-memory") (case "timeout") (case "invalid-state")
      (case "address-not-bindable") (case "address-in-use") (case "remote-unreachable")
      (case "connection-refused") (case "connection-broken") (case "connection-reset")
      (case "connection-aborted") (case "datagram-too-large") (case "other" (option string))))
    (export "error-code" (type $error' (eq $error)))
    (type $family (enum "ipv4" "ipv6"))
    (export "ip-address-family" (type $family' (eq $family)))
    (type $v4 (record (field "port" u16) (field "address" (tuple u8 u8 u8 u8))))
    (export "ipv4-socket-address" (type $v4' (eq $v4)))
    (type $v6 (record (field "port" u16) (field "flow-info" u32)
      (field "address" (tuple u16 u16 u16 u16 u16 u16 u16 u16)) (field "scope-id" u32)))
    (export "ipv6-socket-address" (type $v6' (eq $v6)))
    (type $address (variant (case "ipv4" $v4') (case "ipv6" $v6')))
    (export "ip-socket-address" (type $address' (eq $address)))
    (export "[static]tcp-socket.create" (func (param "address-family" $family')
      (result (result (own $s) (error $error')))))
    (export "[method]tcp-socket.bind" (func (param "self" (borrow $s))
      (param "local-address" $address') (result (result (error $error')))))))
  (; libc ;)
  (core func $create (canon lower (func $types "[static]tcp-socket.create")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $bind (canon lower (func $types "[method]tcp-socket.bind")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "create" (func $create (param i32 i32)))
    (import "" "bind" (func $bind (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
    ;; A result at 1024: its case at 0, the payload (a handle, or the error's case) at 4.
    (func $failed (result i32)
      (if (result i32) (i32.eqz (i32.load8_u (i32.const 1024)))
        (then (i32.const 0))
        (else (i32.add (i32.const 100) (i32.load8_u (i32.const 1028))))))
    (func (export "bind") (param $port i32) (result i32)
      (local $failed i32)
      (call $create (i32.const 0) (i32.const 1024))
      (local.set $failed (call $failed))
      (if (local.get $failed) (then (return (local.get $failed))))
      ;; self, ipv4 (case 0): port, 127.0.0.1, six unused slots of the ipv6 case; the result.
      (call $bind (i32.load (i32.const 1028)) (i32.const 0) (local.get $port)
        (i32.const 127) (i32.const 0) (i32.const 0) (i32.const 1)
        (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
        (i32.const 1024))
      (call $failed)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "create" (func $create))
    (export "bind" (func $bind))))))
  (func (export "bind") (param "port" u16) (result u32) (canon lift (core func $i "bind"))))
"#;

/// WASI 0.3 sockets are under the entry's network policy: a fixed-port bind its
/// `network.listen` rule covers goes through, one it does not is `access-denied`.
#[test]
fn a_wasi_p3_socket_binds_only_where_the_policy_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let binder = write(dir.path(), "binder.wasm", BINDER);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = runtime(
        dir.path(),
        &[(
            "bind",
            "binder.wasm",
            binder,
            "bind",
            &format!(
                ", imports: [wasi:sockets], network: {{ listen: [\"tcp://127.0.0.1:{port}\"] }}"
            ),
        )],
    );
    let bind = |port: u16| exit_of(&rt, "t:bind", &[json!(port)]).outcome;
    assert_eq!(bind(port), Ok(json!(0)));
    let other = if port == u16::MAX { port - 1 } else { port + 1 };
    assert_eq!(bind(other), Ok(json!(100)));
}

/// `fields()` makes a WASI 0.3 `wasi:http/types` `fields` and drops it: 1 when it got a handle.
const FIELDS: &str = r#"
(component
  (import "wasi:http/types@0.3.0" (instance $types
    (export "fields" (type $f (sub resource)))
    (export "[constructor]fields" (func (result (own $f))))))
  (alias export $types "fields" (type $fields))
  (core func $new (canon lower (func $types "[constructor]fields")))
  (core func $drop (canon resource.drop $fields))
  (core module $m
    (import "" "new" (func $new (result i32)))
    (import "" "drop" (func $drop (param i32)))
    (func (export "fields") (result i32) (local $h i32)
      (local.set $h (call $new))
      (call $drop (local.get $h))
      (i32.ne (local.get $h) (i32.const 0))))
  (core instance $i (instantiate $m (with "" (instance
    (export "new" (func $new)) (export "drop" (func $drop))))))
  (func (export "fields") (result u32) (canon lift (core func $i "fields"))))
"#;

/// Imports WASI 0.3's HTTP client (with a made-up signature: it is refused before linking).
const CLIENT: &str = r#"
(component
  (import "wasi:http/client@0.3.0" (instance $client (export "send" (func))))
  (core func $send (canon lower (func $client "send")))
  (core module $m (import "" "send" (func $send))
    (func (export "run") (result i32) (call $send) i32.const 0))
  (core instance $i (instantiate $m (with "" (instance (export "send" (func $send))))))
  (func (export "run") (result u32) (canon lift (core func $i "run"))))
"#;

/// WASI 0.3's `wasi:http` is linked (its client's requests ask the entry's network policy:
/// `serve::a_handlers_outgoing_requests_follow_its_network_policy`), and only where granted:
/// a guest importing the client without the grant is refused at load, by name.
#[test]
fn wasi_p3_http_is_linked_only_where_granted() {
    let dir = tempfile::tempdir().unwrap();
    let fields = write(dir.path(), "fields.wasm", FIELDS);
    let client = write(dir.path(), "client.wasm", CLIENT);
    let rt = runtime(
        dir.path(),
        &[
            (
                "fields",
                "fields.wasm",
                fields,
                "fields",
                ", imports: [wasi:http]",
            ),
            (
                "client",
                "client.wasm",
                client,
                "run",
                ", imports: [wasi:cli]",
            ),
        ],
    );
    let mailbox = Mailbox::new();
    assert_eq!(exit_of(&rt, "t:fields", &[]).outcome, Ok(json!(1)));
    let error = rt
        .spawn_monitored("t:client", "t:host", &[], &mailbox)
        .expect_err("wasi:http is not granted");
    assert_eq!(error.kind(), ErrorKind::UngrantedImport, "{error}");
    assert!(
        error.to_string().contains("wasi:http/client@0.3.0"),
        "{error}"
    );
}

/// Attacks on WASI 0.3 guests that wait: one asleep far past its `max_execution_ms` ends at
/// the limit (it is waiting on a host timer, not running code an epoch could interrupt), and
/// more async processes than the concurrent engine's 256 slots wait for a slot, each ending
/// with its value, none with a host failure.
#[test]
fn wasi_p3_waiters_end_at_their_limit_and_queue_past_the_engines_slots() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = write(dir.path(), "sleeper.wasm", SLEEPER);
    let rt = runtime(
        dir.path(),
        &[
            (
                "sleep",
                "sleeper.wasm",
                sleeper,
                "sleep",
                ", imports: [wasi:clocks]",
            ),
            (
                "bounded",
                "sleeper.wasm",
                sleeper,
                "sleep",
                ", imports: [wasi:clocks], limits: { max_execution_ms: 200 }",
            ),
        ],
    );
    let mut mailbox = Mailbox::new();
    let exit = exit_of(&rt, "t:bounded", &[json!(60_000)]);
    let error = exit.outcome.expect_err("it sleeps past its limit");
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error:?}");
    let mut sleepers = HashMap::new();
    for i in 0..300u32 {
        let pid = rt
            .spawn_monitored("t:sleep", "t:host", &[json!(100 + i % 7)], &mailbox)
            .unwrap();
        sleepers.insert(pid, 100 + i % 7);
    }
    for _ in 0..300 {
        let exit = receive(&mut mailbox).expect("an EXIT");
        let ms = sleepers.remove(&exit.from).expect("one EXIT per sleeper");
        assert_eq!(exit.outcome, Ok(json!(ms)));
    }
}

/// `flood()` writes 64 KiB chunks to WASI 0.3 stdout (a `stream<u8>` handed to
/// `write-via-stream`) until the host drops the stream, and returns how many bytes went.
const FLOODER: &str = r#"
(component $C
  (import "wasi:cli/types@0.3.0" (instance $types
    (type $ec (enum "io" "illegal-byte-sequence" "pipe"))
    (export "error-code" (type $ec' (eq $ec)))))
  (alias export $types "error-code" (type $error-code))
  (import "wasi:cli/stdout@0.3.0" (instance $stdout
    (alias outer $C $error-code (type $ec))
    (export "error-code" (type $ec' (eq $ec)))
    (export "write-via-stream" (func (param "data" (stream u8))
      (result (future (result (error $ec'))))))))
  (; libc ;)
  (type $bytes (stream u8))
  (core func $stream.new (canon stream.new $bytes))
  (core func $stream.write (canon stream.write $bytes async (memory (core memory $libc "memory"))))
  (core func $write-via-stream (canon lower (func $stdout "write-via-stream")))
  (core func $ws.new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "" "stream.new" (func $stream.new (result i64)))
    (import "" "stream.write" (func $stream.write (param i32 i32 i32) (result i32)))
    (import "" "write-via-stream" (func $write-via-stream (param i32) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "task.return" (func $ret (param i32)))
    (global $writer (mut i32) (i32.const 0))
    (global $set (mut i32) (i32.const 0))
    (global $total (mut i32) (i32.const 0))
    ;; Writes until blocked (WAIT on the set) or dropped (return the total, EXIT).
    (func $pump (param $status i32) (result i32)
      (loop $again
        (if (i32.eq (local.get $status) (i32.const -1))
          (then (return (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))))
        (global.set $total (i32.add (global.get $total) (i32.shr_u (local.get $status) (i32.const 4))))
        (if (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 1))
          (then (call $ret (global.get $total)) (return (i32.const 0))))
        (local.set $status (call $stream.write (global.get $writer) (i32.const 0) (i32.const 65536)))
        (br $again))
      unreachable)
    (func (export "flood") (result i32) (local $pair i64)
      (local.set $pair (call $stream.new))
      (global.set $writer (i32.wrap_i64 (i64.shr_u (local.get $pair) (i64.const 32))))
      (drop (call $write-via-stream (i32.wrap_i64 (local.get $pair))))
      (global.set $set (call $ws.new))
      (call $join (global.get $writer) (global.get $set))
      (call $pump (call $stream.write (global.get $writer) (i32.const 0) (i32.const 65536))))
    (func (export "callback") (param $event i32) (param $handle i32) (param $status i32) (result i32)
      (if (i32.ne (local.get $event) (i32.const 3)) (then unreachable))
      (call $pump (local.get $status))))
  (core instance $i (instantiate $m (with "" (instance
    (export "stream.new" (func $stream.new))
    (export "stream.write" (func $stream.write))
    (export "write-via-stream" (func $write-via-stream))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "task.return" (func $ret))))))
  (func (export "flood") async (result u32)
    (canon lift (core func $i "flood") async (callback (core func $i "callback")))))
"#;

/// An output bomb through WASI 0.3 stdout: the capture takes 1 MiB, then the host drops the
/// stream and the guest's writes see it dropped; the process ends with its value (no host
/// thread spins on a full capture).
#[test]
fn a_wasi_p3_stdout_flood_ends_at_the_capture_limit() {
    let (_dir, rt) = single(
        "flood",
        FLOODER,
        ", imports: [wasi:cli], limits: { max_execution_ms: 5000 }",
    );
    let exit = exit_of(&rt, "t:flood", &[]);
    let written = exit.outcome.clone().expect("the flood ends with a value");
    assert_eq!(written, json!(1 << 20), "{exit:?}");
    let output = exit.output.expect("captured output");
    assert_eq!(output.stdout.len(), 1 << 20);
}

/// `stuck()` waits on an empty waitable set: nothing can ever wake it.
const STUCK: &str = r#"
(component
  (core func $ws.new (canon waitable-set.new))
  (core module $m
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (func (export "stuck") (result i32)
      (i32.or (i32.const 2) (i32.shl (call $ws.new) (i32.const 4))))
    (func (export "callback") (param i32 i32 i32) (result i32) unreachable))
  (core instance $i (instantiate $m (with "" (instance
    (export "waitable-set.new" (func $ws.new))))))
  (func (export "stuck") async (result u32)
    (canon lift (core func $i "stuck") async (callback (core func $i "callback")))))
"#;

/// A guest that waits for what can never come is a deadlock: it ends at once with a trap (not
/// at its time limit, not as a host failure), and its EXIT says so.
#[test]
fn a_wasi_p3_guest_waiting_for_nothing_ends_with_a_trap() {
    let (_dir, rt) = single("stuck", STUCK, ", limits: { max_execution_ms: 60000 }");
    let exit = exit_of(&rt, "t:stuck", &[]);
    let error = exit.outcome.expect_err("it can never return");
    assert_eq!(error.kind, ErrorKind::Trap, "{error:?}");
    assert!(error.message.contains("deadlock"), "{error:?}");
}

/// A Lua script spawns WASI 0.3 sleepers like any entry and collects their EXITs; the script's
/// own value is their sum.
#[cfg(feature = "lua")]
#[test]
fn a_lua_script_spawns_wasi_p3_processes() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = write(dir.path(), "sleeper.wasm", SLEEPER);
    let rt = std::sync::Arc::new(runtime(
        dir.path(),
        &[(
            "sleep",
            "sleeper.wasm",
            sleeper,
            "sleep",
            ", imports: [wasi:clocks]",
        )],
    ));
    let script = r#"
local total = 0
for i = 1, 10 do
    local pid, err = process.spawn_monitored("t:sleep", "t:host", 20 + i)
    assert(pid, err)
end
for _ = 1, 10 do
    local event = process.receive(time.seconds(10))
    assert(event and event.value, "an EXIT is missing or failed")
    total = total + event.value
end
return total
"#;
    let mut mailbox = Mailbox::new();
    rt.spawn_lua(
        script,
        "p3.lua",
        "t:host",
        &[],
        &wasmproc_runtime::SpawnOptions::default(),
        Some(&mailbox),
    )
    .unwrap();
    let exit = receive(&mut mailbox).expect("the script's EXIT");
    // 21 + 22 + ... + 30
    assert_eq!(exit.outcome, Ok(json!(255)));
}

/// `timers(n)` starts `n` WASI 0.3 `wait-for`s of a minute each without waiting for any, then
/// returns how many it started.
const TIMER_BOMB: &str = r#"
(component
  (import "wasi:clocks/monotonic-clock@0.3.0" (instance $clock
    (export "wait-for" (func async (param "how-long" u64)))))
  (core func $wait-for (canon lower (func $clock "wait-for") async))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "" "wait-for" (func $wait-for (param i64) (result i32)))
    (import "" "task.return" (func $ret (param i32)))
    (func (export "timers") (param $n i32) (result i32) (local $i i32)
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (drop (call $wait-for (i64.const 60000000000)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (call $ret (local.get $i))
      (i32.const 0))
    (func (export "callback") (param i32 i32 i32) (result i32) unreachable))
  (core instance $i (instantiate $m (with "" (instance
    (export "wait-for" (func $wait-for)) (export "task.return" (func $ret))))))
  (func (export "timers") async (param "n" u32) (result u32)
    (canon lift (core func $i "timers") async (callback (core func $i "callback")))))
"#;

/// A timer bomb: a guest starting minute-long `wait-for`s in a loop without waiting for any
/// ends with `limit_exceeded` at the bound on live handles (it was a `host_failure` after
/// 100,000 pending timers, ~85 MB of host memory outside `max_memory`), and one starting
/// fewer than the bound is not stopped by it.
#[test]
fn a_wasi_p3_timer_bomb_ends_at_the_handle_limit() {
    let (_dir, rt) = single("timers", TIMER_BOMB, ", imports: [wasi:clocks]");
    let exit = exit_of(&rt, "t:timers", &[json!(1_000_000)]);
    let error = exit.outcome.expect_err("past the handle limit");
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error:?}");
    assert!(error.message.contains("live handles"), "{error:?}");
    let exit = exit_of(&rt, "t:timers", &[json!(1000)]);
    assert_eq!(exit.outcome, Ok(json!(1000)));
}

/// `big(n)` returns `n` bytes of its memory as a `list<u8>` through `task.return`.
const BIG_RETURN: &str = r#"
(component
  (; libc ;)
  (core func $ret (canon task.return (result (list u8)) (memory (core memory $libc "memory"))))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "task.return" (func $ret (param i32 i32)))
    (func (export "big") (param $n i32) (result i32)
      (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))))
      (call $ret (i32.const 0) (local.get $n))
      (i32.const 0))
    (func (export "callback") (param i32 i32 i32) (result i32) unreachable))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "task.return" (func $ret))))))
  (func (export "big") async (param "n" u32) (result (list u8))
    (canon lift (core func $i "big") async (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (callback (core func $i "callback")))))
"#;

/// Values through `task.return` are bounded like any result: within `max_value` it comes back,
/// past it the process ends with `limit_exceeded` before the host copies it.
#[test]
fn an_async_exports_value_is_bounded_by_max_value() {
    let (_dir, rt) = single("big", BIG_RETURN, ", limits: { max_value: 64KiB }");
    let exit = exit_of(&rt, "t:big", &[json!(3)]);
    assert_eq!(exit.outcome, Ok(json!([0, 0, 0])));
    let exit = exit_of(&rt, "t:big", &[json!(8 << 20)]);
    let error = exit.outcome.expect_err("8 MiB is past max_value");
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error:?}");
}

/// A WASI 0.3 guest's `lookup()`: resolves `localhost` through `wasi:sockets/ip-name-lookup`
/// (an async call it waits for in its callback loop) and returns how many addresses it got, or
/// 1000 + the error-code case (4: `permanent-resolver-failure`).
const P3_LOOKUP: &str = r#"
(component $C
  (import "wasi:sockets/ip-name-lookup@0.3.0" (instance $lookup
    (type $ip (variant (case "ipv4" (tuple u8 u8 u8 u8))
                       (case "ipv6" (tuple u16 u16 u16 u16 u16 u16 u16 u16))))
    (export "ip-address" (type $ip' (eq $ip)))
    (type $ec (variant (case "access-denied") (case "invalid-argument")
      (case "name-unresolvable") (case "temporary-resolver-failure")
      (case "permanent-resolver-failure") (case "other" (option string))))
    (export "error-code" (type $ec' (eq $ec)))
    (export "resolve-addresses" (func async (param "name" string)
      (result (result (list $ip') (error $ec')))))))
  (; libc ;)
  (core func $resolve (canon lower (func $lookup "resolve-addresses") async
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $ws.new (canon waitable-set.new))
  (core func $join (canon waitable.join))
  (core func $subtask.drop (canon subtask.drop))
  (core func $ret (canon task.return (result u32)))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "" "resolve" (func $resolve (param i32 i32 i32) (result i32)))
    (import "" "waitable-set.new" (func $ws.new (result i32)))
    (import "" "waitable.join" (func $join (param i32 i32)))
    (import "" "subtask.drop" (func $subtask.drop (param i32)))
    (import "" "task.return" (func $ret (param i32)))
    (data (i32.const 2048) "localhost")
    (global $set (mut i32) (i32.const 0))
    ;; The result<list<ip-address>, error-code> at 1536: its case at 0; the list's length at
    ;; 8, or the error's case at 4.
    (func $outcome (result i32)
      (if (result i32) (i32.eqz (i32.load8_u (i32.const 1536)))
        (then (i32.load (i32.const 1544)))
        (else (i32.add (i32.const 1000) (i32.load8_u (i32.const 1540))))))
    (func (export "lookup") (result i32)
      (local $status i32)
      (local.set $status (call $resolve (i32.const 2048) (i32.const 9) (i32.const 1536)))
      (if (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 2))
        (then (call $ret (call $outcome)) (return (i32.const 0))))
      (global.set $set (call $ws.new))
      (call $join (i32.shr_u (local.get $status) (i32.const 4)) (global.get $set))
      (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))
    (func (export "callback") (param $event i32) (param $handle i32) (param $state i32) (result i32)
      (if (i32.ne (local.get $event) (i32.const 1)) (then unreachable))
      (if (i32.ne (local.get $state) (i32.const 2))
        (then (return (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))))
      (call $subtask.drop (local.get $handle))
      (call $ret (call $outcome))
      (i32.const 0)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "" (instance
    (export "resolve" (func $resolve))
    (export "waitable-set.new" (func $ws.new))
    (export "waitable.join" (func $join))
    (export "subtask.drop" (func $subtask.drop))
    (export "task.return" (func $ret))))))
  (func (export "lookup") async (result u32)
    (canon lift (core func $i "lookup") async (callback (core func $i "callback")))))
"#;

/// WASI 0.3 name lookups are served like WASI 0.2's: only when a socket rule reaches public
/// addresses, through the process's bounded lookups.
#[test]
fn a_wasi_p3_guest_resolves_names_only_where_its_policy_reaches_public_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let digest = write(dir.path(), "lookup.wasm", P3_LOOKUP);
    let rt = runtime(
        dir.path(),
        &[
            (
                "public",
                "lookup.wasm",
                digest,
                "lookup",
                ", imports: [wasi:sockets], network: { allow: [\"tcp://*:*\"] }",
            ),
            (
                "loopback_only",
                "lookup.wasm",
                digest,
                "lookup",
                ", imports: [wasi:sockets], network: { allow: [\"tcp://127.0.0.1:*\"] }",
            ),
        ],
    );
    let found = exit_of(&rt, "t:public", &[]).outcome.unwrap();
    let count = found.as_u64().expect("a count");
    assert!((1..1000).contains(&count), "localhost resolved to {found}");
    assert_eq!(
        exit_of(&rt, "t:loopback_only", &[]).outcome,
        Ok(serde_json::json!(1004))
    );
}
