//! `wasi:sockets/ip-name-lookup` (WASI 0.2) as a guest uses it: resolve, wait on the stream's
//! pollable, read the addresses. Only `localhost` is looked up (answered from the hosts file,
//! nothing sent). The bound on each process's lookups is tested in `network::lookup`.

use crate::common::value_of;
use serde_json::json;
use wasmproc_runtime::Runtime;

/// `lookup()` resolves `localhost` and returns how many addresses it has, or 1000 + the
/// `error-code` (20: `permanent-resolver-failure`).
const LOOKUP: &str = r#"
(component $C
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $p (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow $p))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:sockets/network@0.2.0" (instance $network
    (export "network" (type $n (sub resource)))
    (type $ec (enum "unknown" "access-denied" "not-supported" "invalid-argument"
      "out-of-memory" "timeout" "concurrency-conflict" "not-in-progress" "would-block"
      "invalid-state" "new-socket-limit" "address-not-bindable" "address-in-use"
      "remote-unreachable" "connection-refused" "connection-reset" "connection-aborted"
      "datagram-too-large" "name-unresolvable" "temporary-resolver-failure"
      "permanent-resolver-failure"))
    (export "error-code" (type $ec' (eq $ec)))
    (type $ip (variant (case "ipv4" (tuple u8 u8 u8 u8))
                       (case "ipv6" (tuple u16 u16 u16 u16 u16 u16 u16 u16))))
    (export "ip-address" (type $ip' (eq $ip)))))
  (alias export $network "network" (type $net))
  (alias export $network "error-code" (type $error-code))
  (alias export $network "ip-address" (type $ip-address))
  (import "wasi:sockets/instance-network@0.2.0" (instance $instance-network
    (alias outer $C $net (type $n))
    (export "network" (type $n' (eq $n)))
    (export "instance-network" (func (result (own $n'))))))
  (import "wasi:sockets/ip-name-lookup@0.2.0" (instance $lookup
    (alias outer $C $pollable (type $p))
    (export "pollable" (type $p' (eq $p)))
    (alias outer $C $net (type $n))
    (export "network" (type $n' (eq $n)))
    (alias outer $C $error-code (type $ec))
    (export "error-code" (type $ec' (eq $ec)))
    (alias outer $C $ip-address (type $ip))
    (export "ip-address" (type $ip' (eq $ip)))
    (export "resolve-address-stream" (type $s (sub resource)))
    (export "resolve-addresses" (func (param "network" (borrow $n')) (param "name" string)
      (result (result (own $s) (error $ec')))))
    (export "[method]resolve-address-stream.resolve-next-address"
      (func (param "self" (borrow $s)) (result (result (option $ip') (error $ec')))))
    (export "[method]resolve-address-stream.subscribe"
      (func (param "self" (borrow $s)) (result (own $p'))))))
  (alias export $lookup "resolve-address-stream" (type $stream))
  (core module $libc (memory (export "memory") 1))
  (core instance $libc (instantiate $libc))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $instance-network (canon lower (func $instance-network "instance-network")))
  (core func $resolve (canon lower (func $lookup "resolve-addresses")
    (memory (core memory $libc "memory"))))
  (core func $next (canon lower (func $lookup "[method]resolve-address-stream.resolve-next-address")
    (memory (core memory $libc "memory"))))
  (core func $subscribe (canon lower (func $lookup "[method]resolve-address-stream.subscribe")))
  (core func $drop-pollable (canon resource.drop $pollable))
  (core func $drop-stream (canon resource.drop $stream))
  (core func $drop-network (canon resource.drop $net))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "host" "block" (func $block (param i32)))
    (import "host" "instance-network" (func $instance-network (result i32)))
    (import "host" "resolve" (func $resolve (param i32 i32 i32 i32)))
    (import "host" "next" (func $next (param i32 i32)))
    (import "host" "subscribe" (func $subscribe (param i32) (result i32)))
    (import "host" "drop-pollable" (func $drop-pollable (param i32)))
    (import "host" "drop-stream" (func $drop-stream (param i32)))
    (import "host" "drop-network" (func $drop-network (param i32)))
    (data (i32.const 16) "localhost")
    ;; Starts lookups and keeps every stream, without end: only a bound can stop it.
    (func (export "flood") (result i32)
      (local $net i32)
      (local.set $net (call $instance-network))
      (loop $more
        (call $resolve (local.get $net) (i32.const 16) (i32.const 9) (i32.const 64))
        (br $more))
      (i32.const 0))
    (func (export "lookup") (result i32)
      (local $net i32) (local $stream i32) (local $p i32) (local $count i32)
      (local.set $net (call $instance-network))
      ;; result<own<stream>, error-code> at 64: its case at 64, its payload at 68
      (call $resolve (local.get $net) (i32.const 16) (i32.const 9) (i32.const 64))
      (if (i32.load8_u (i32.const 64))
        (then (return (i32.add (i32.const 1000) (i32.load8_u (i32.const 68))))))
      (local.set $stream (i32.load (i32.const 68)))
      (local.set $p (call $subscribe (local.get $stream)))
      (call $block (local.get $p))
      (call $drop-pollable (local.get $p))
      (block $done
        (loop $more
          ;; result<option<ip-address>, error-code> at 128: its case at 128, its payload
          ;; (the error code, or the option's case) at 130
          (call $next (local.get $stream) (i32.const 128))
          (if (i32.load8_u (i32.const 128))
            (then (return (i32.add (i32.const 1000) (i32.load8_u (i32.const 130))))))
          (br_if $done (i32.eqz (i32.load8_u (i32.const 130))))
          (local.set $count (i32.add (local.get $count) (i32.const 1)))
          (br $more)))
      (call $drop-stream (local.get $stream))
      (call $drop-network (local.get $net))
      (local.get $count)))
  (core instance $host
    (export "block" (func $block))
    (export "instance-network" (func $instance-network))
    (export "resolve" (func $resolve))
    (export "next" (func $next))
    (export "subscribe" (func $subscribe))
    (export "drop-pollable" (func $drop-pollable))
    (export "drop-stream" (func $drop-stream))
    (export "drop-network" (func $drop-network)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "host" (instance $host))))
  (func (export "lookup") (result u32) (canon lift (core func $i "lookup")))
  (func (export "flood") (result u32) (canon lift (core func $i "flood"))))
"#;

/// `t:public` may look names up (its policy lets sockets reach public addresses);
/// `t:loopback_only` may not; `t:flood` may, and floods.
fn runtime(dir: &std::path::Path) -> Runtime {
    let hash = crate::common::write_wat(dir, "lookup.wasm", LOOKUP);
    let entry = |name: &str, method: &str, allow: &str| {
        format!(
            "  - {{ name: {name}, kind: process.wasm, fs: bins, path: /lookup.wasm, hash: \"{hash}\", method: {method}, imports: [wasi:sockets], network: {{ allow: [\"{allow}\"] }} }}\n"
        )
    };
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 1 }} }}\n{}{}{}",
        dir.display(),
        entry("public", "lookup", "tcp://*:*"),
        entry("loopback_only", "lookup", "tcp://127.0.0.1:*"),
        entry("flood", "flood", "tcp://*:*"),
    );
    crate::common::load_written(dir, &text)
}

#[test]
fn a_guest_whose_policy_reaches_public_addresses_resolves_names_and_another_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let found = value_of(&rt, "t:public", "t:host");
    let count = found.as_u64().expect("a count");
    assert!((1..1000).contains(&count), "localhost resolved to {found}");
    // permanent-resolver-failure, before anything is looked up.
    assert_eq!(value_of(&rt, "t:loopback_only", "t:host"), json!(1020));
}

/// A guest that starts lookups without end, keeping every stream, stops at the bound on live
/// handles (each stream is one), with `limit_exceeded`; its queued lookups go with it.
#[test]
fn a_guest_hoarding_lookup_streams_ends_at_the_handle_limit() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let mut mailbox = wasmproc_runtime::Mailbox::new();
    rt.spawn_monitored("t:flood", "t:host", &[], &mailbox)
        .unwrap();
    let exit = crate::common::receive(&mut mailbox).expect("an EXIT");
    let error = exit.outcome.unwrap_err();
    assert_eq!(
        error.kind,
        wasmproc_runtime::ErrorKind::LimitExceeded,
        "{error:?}"
    );
    assert!(error.message.contains("live handles"), "{error:?}");
    // The host goes on: the next lookup is answered.
    let count = value_of(&rt, "t:public", "t:host")
        .as_u64()
        .expect("a count");
    assert!((1..1000).contains(&count));
}
