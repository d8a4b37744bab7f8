//! The wasi:http parts a process holds (header fields, outgoing requests and bodies; WASI 0.2
//! and 0.3) are bounded, and an outgoing body buffers little: each kept host memory outside `max_memory`,
//! and only the handle limit bounded their number (1,000 full fields took 139 MiB, 300 filled
//! bodies of unsent requests 604 MiB).

use serde_json::json;
use wasmproc_runtime::MAX_HTTP_PARTS;
use wasmproc_runtime::{ErrorKind, Mailbox, Runtime};

/// `fields(n)` makes `n` empty `fields` and keeps them; `bodies(n)` makes `n` outgoing
/// requests, each with its body, and keeps them; `budget()` is what an outgoing body's stream
/// lets a guest write at once (`check-write`).
const PARTS: &str = r#"
(component $C
  (import "wasi:io/error@0.2.0" (instance $error
    (export "error" (type (sub resource)))))
  (alias export $error "error" (type $error-type))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (alias outer $C $error-type (type $e))
    (export "error" (type $e' (eq $e)))
    (export "output-stream" (type $o (sub resource)))
    (type $se (variant (case "last-operation-failed" (own $e')) (case "closed")))
    (export "stream-error" (type $se' (eq $se)))
    (export "[method]output-stream.check-write"
      (func (param "self" (borrow $o)) (result (result u64 (error $se')))))))
  (alias export $streams "output-stream" (type $output-stream))
  (import "wasi:http/types@0.2.0" (instance $types
    (export "fields" (type $f (sub resource)))
    (export "outgoing-request" (type $r (sub resource)))
    (export "outgoing-body" (type $b (sub resource)))
    (alias outer $C $output-stream (type $o))
    (export "output-stream" (type $o' (eq $o)))
    (export "[constructor]fields" (func (result (own $f))))
    (export "[constructor]outgoing-request"
      (func (param "headers" (own $f)) (result (own $r))))
    (export "[method]outgoing-request.body"
      (func (param "self" (borrow $r)) (result (result (own $b)))))
    (export "[method]outgoing-body.write"
      (func (param "self" (borrow $b)) (result (result (own $o')))))))
  (core module $libc (memory (export "memory") 1))
  (core instance $libc (instantiate $libc))
  (core func $fields (canon lower (func $types "[constructor]fields")))
  (core func $request (canon lower (func $types "[constructor]outgoing-request")))
  (core func $body (canon lower (func $types "[method]outgoing-request.body")
    (memory (core memory $libc "memory"))))
  (core func $write (canon lower (func $types "[method]outgoing-body.write")
    (memory (core memory $libc "memory"))))
  (core func $check-write (canon lower (func $streams "[method]output-stream.check-write")
    (memory (core memory $libc "memory"))))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "host" "fields" (func $fields (result i32)))
    (import "host" "request" (func $request (param i32) (result i32)))
    (import "host" "body" (func $body (param i32 i32)))
    (import "host" "write" (func $write (param i32 i32)))
    (import "host" "check-write" (func $check-write (param i32 i32)))
    (func (export "fields") (param $n i32) (result i32)
      (local $i i32)
      (block $done
        (loop $more
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (drop (call $fields))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more)))
      (local.get $i))
    ;; An outgoing request with its body: result<own<outgoing-body>> at 64 (case at 64,
    ;; handle at 68); the request's handle is kept at 72.
    (func $request-with-body
      (i32.store (i32.const 72) (call $request (call $fields)))
      (call $body (i32.load (i32.const 72)) (i32.const 64)))
    (func (export "bodies") (param $n i32) (result i32)
      (local $i i32)
      (block $done
        (loop $more
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (call $request-with-body)
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more)))
      (local.get $i))
    (func (export "budget") (result i64)
      (call $request-with-body)
      ;; result<own<output-stream>> at 96, then result<u64, stream-error> at 128 (its u64 at 136)
      (call $write (i32.load (i32.const 68)) (i32.const 96))
      (call $check-write (i32.load (i32.const 100)) (i32.const 128))
      (i64.load (i32.const 136))))
  (core instance $host
    (export "fields" (func $fields))
    (export "request" (func $request))
    (export "body" (func $body))
    (export "write" (func $write))
    (export "check-write" (func $check-write)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "host" (instance $host))))
  (func (export "fields") (param "n" u32) (result u32) (canon lift (core func $i "fields")))
  (func (export "bodies") (param "n" u32) (result u32) (canon lift (core func $i "bodies")))
  (func (export "budget") (result u64) (canon lift (core func $i "budget"))))
"#;

/// `fields(n)` through WASI 0.3's `fields`.
const P3_FIELDS: &str = r#"
(component
  (import "wasi:http/types@0.3.0" (instance $types
    (export "fields" (type $f (sub resource)))
    (export "[constructor]fields" (func (result (own $f))))))
  (core func $fields (canon lower (func $types "[constructor]fields")))
  (core module $m
    (import "host" "fields" (func $fields (result i32)))
    (func (export "fields") (param $n i32) (result i32)
      (local $i i32)
      (block $done
        (loop $more
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (drop (call $fields))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more)))
      (local.get $i)))
  (core instance $host (export "fields" (func $fields)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func (export "fields") (param "n" u32) (result u32) (canon lift (core func $i "fields"))))
"#;

fn runtime(dir: &std::path::Path) -> Runtime {
    let hash = crate::common::write_wat(dir, "parts.wasm", PARTS);
    let p3_hash = crate::common::write_wat(dir, "p3_fields.wasm", P3_FIELDS);
    let entry = |method: &str| {
        format!(
            "  - {{ name: {method}, kind: process.wasm, fs: bins, path: /parts.wasm, hash: \"{hash}\", method: {method}, imports: [wasi:http] }}\n"
        )
    };
    let text = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host, host: {{ workers: 1 }} }}\n{}{}{}",
        dir.display(),
        entry("fields"),
        entry("bodies"),
        entry("budget"),
    ) + &format!(
        "  - {{ name: p3_fields, kind: process.wasm, fs: bins, path: /p3_fields.wasm, hash: \"{p3_hash}\", method: fields, imports: [wasi:http] }}\n"
    );
    crate::common::load_written(dir, &text)
}

fn run(rt: &Runtime, entry: &str, args: &[serde_json::Value]) -> wasmproc_runtime::Exit {
    let mut mailbox = Mailbox::new();
    rt.spawn_monitored(entry, "t:host", args, &mailbox).unwrap();
    crate::common::receive(&mut mailbox).expect("an EXIT")
}

#[test]
fn a_process_holds_a_bounded_number_of_wasi_http_parts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    // Up to the bound, as many as it likes.
    let n = MAX_HTTP_PARTS as u32;
    assert_eq!(run(&rt, "t:fields", &[json!(n)]).outcome, Ok(json!(n)));
    // One past it, through fields or through requests with bodies, ends the process.
    assert_eq!(run(&rt, "t:p3_fields", &[json!(n)]).outcome, Ok(json!(n)));
    for (entry, count) in [("t:fields", n + 1), ("t:p3_fields", n + 1), ("t:bodies", n)] {
        let error = run(&rt, entry, &[json!(count)]).outcome.unwrap_err();
        assert_eq!(error.kind, ErrorKind::LimitExceeded, "{entry}: {error:?}");
        assert!(error.message.contains("wasi:http parts"), "{error:?}");
    }
    // Requests with bodies are two parts each.
    assert_eq!(
        run(&rt, "t:bodies", &[json!(n / 2)]).outcome,
        Ok(json!(n / 2))
    );
}

#[test]
fn an_outgoing_body_takes_64_kib_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    assert_eq!(run(&rt, "t:budget", &[]).outcome, Ok(json!(64 << 10)));
}
