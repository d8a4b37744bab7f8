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

/// `in_flight(port)` sends `GET http://127.0.0.1:<port>/` again and again, keeping every
/// response's future (the server never answers): it returns only when a request fails at once,
/// with 1000 + the error's case.
const IN_FLIGHT: &str = r#"
(component $C
  (import "wasi:http/types@0.2.0" (instance $types
    (export "fields" (type $f (sub resource)))
    (export "outgoing-request" (type $r (sub resource)))
    (export "request-options" (type $o (sub resource)))
    (export "future-incoming-response" (type $fr (sub resource)))
    (type $dns (record (field "rcode" (option string)) (field "info-code" (option u16))))
    (export "DNS-error-payload" (type $dns' (eq $dns)))
    (type $tls (record (field "alert-id" (option u8)) (field "alert-message" (option string))))
    (export "TLS-alert-received-payload" (type $tls' (eq $tls)))
    (type $fs (record (field "field-name" (option string)) (field "field-size" (option u32))))
    (export "field-size-payload" (type $fs' (eq $fs)))
    (type $ec (variant
      (case "DNS-timeout") (case "DNS-error" $dns') (case "destination-not-found")
      (case "destination-unavailable") (case "destination-IP-prohibited")
      (case "destination-IP-unroutable") (case "connection-refused")
      (case "connection-terminated") (case "connection-timeout")
      (case "connection-read-timeout") (case "connection-write-timeout")
      (case "connection-limit-reached") (case "TLS-protocol-error")
      (case "TLS-certificate-error") (case "TLS-alert-received" $tls')
      (case "HTTP-request-denied") (case "HTTP-request-length-required")
      (case "HTTP-request-body-size" (option u64)) (case "HTTP-request-method-invalid")
      (case "HTTP-request-URI-invalid") (case "HTTP-request-URI-too-long")
      (case "HTTP-request-header-section-size" (option u32))
      (case "HTTP-request-header-size" (option $fs'))
      (case "HTTP-request-trailer-section-size" (option u32))
      (case "HTTP-request-trailer-size" $fs') (case "HTTP-response-incomplete")
      (case "HTTP-response-header-section-size" (option u32))
      (case "HTTP-response-header-size" $fs') (case "HTTP-response-body-size" (option u64))
      (case "HTTP-response-trailer-section-size" (option u32))
      (case "HTTP-response-trailer-size" $fs')
      (case "HTTP-response-transfer-coding" (option string))
      (case "HTTP-response-content-coding" (option string)) (case "HTTP-response-timeout")
      (case "HTTP-upgrade-failed") (case "HTTP-protocol-error") (case "loop-detected")
      (case "configuration-error") (case "internal-error" (option string))))
    (export "error-code" (type $ec' (eq $ec)))
    (export "[constructor]fields" (func (result (own $f))))
    (export "[constructor]outgoing-request"
      (func (param "headers" (own $f)) (result (own $r))))
    (type $sc (variant (case "HTTP") (case "HTTPS") (case "other" string)))
    (export "scheme" (type $sc' (eq $sc)))
    (export "[method]outgoing-request.set-scheme"
      (func (param "self" (borrow $r)) (param "scheme" (option $sc')) (result (result))))
    (export "[method]outgoing-request.set-authority"
      (func (param "self" (borrow $r)) (param "authority" (option string)) (result (result))))
    (export "[method]outgoing-request.set-path-with-query"
      (func (param "self" (borrow $r)) (param "path-with-query" (option string))
        (result (result))))))
  (alias export $types "outgoing-request" (type $request))
  (alias export $types "request-options" (type $options))
  (alias export $types "future-incoming-response" (type $future))
  (alias export $types "error-code" (type $error-code))
  (import "wasi:http/outgoing-handler@0.2.0" (instance $handler
    (alias outer $C $request (type $r))
    (export "outgoing-request" (type $r' (eq $r)))
    (alias outer $C $options (type $o))
    (export "request-options" (type $o' (eq $o)))
    (alias outer $C $future (type $fr))
    (export "future-incoming-response" (type $fr' (eq $fr)))
    (alias outer $C $error-code (type $ec))
    (export "error-code" (type $ec' (eq $ec)))
    (export "handle" (func (param "request" (own $r')) (param "options" (option (own $o')))
      (result (result (own $fr') (error $ec')))))))
  (core module $libc
    (memory (export "memory") 1)
    ;; A bump allocator above 1024, for the error's strings (never reached here).
    (global $next (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (global.set $next (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
      (global.get $next)
      (global.set $next (i32.add (global.get $next) (local.get 3)))))
  (core instance $libc (instantiate $libc))
  (core func $fields (canon lower (func $types "[constructor]fields")))
  (core func $request (canon lower (func $types "[constructor]outgoing-request")))
  (core func $set-scheme (canon lower (func $types "[method]outgoing-request.set-scheme")
    (memory (core memory $libc "memory")) string-encoding=utf8))
  (core func $set-path (canon lower (func $types "[method]outgoing-request.set-path-with-query")
    (memory (core memory $libc "memory")) string-encoding=utf8))
  (core func $set-authority (canon lower (func $types "[method]outgoing-request.set-authority")
    (memory (core memory $libc "memory")) string-encoding=utf8))
  (core func $handle (canon lower (func $handler "handle")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc")) string-encoding=utf8))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "host" "fields" (func $fields (result i32)))
    (import "host" "request" (func $request (param i32) (result i32)))
    (import "host" "set-scheme" (func $set-scheme (param i32 i32 i32 i32 i32) (result i32)))
    (import "host" "set-authority" (func $set-authority (param i32 i32 i32 i32) (result i32)))
    (import "host" "set-path" (func $set-path (param i32 i32 i32 i32) (result i32)))
    (import "host" "handle" (func $handle (param i32 i32 i32 i32)))
    ;; The authority `127.0.0.1:` and five digits of the port, at 16; the path at 40.
    (data (i32.const 16) "127.0.0.1:")
    (data (i32.const 40) "/")
    (func (export "in-flight") (param $port i32) (result i32)
      (local $i i32) (local $request i32) (local $n i32)
      (local.set $n (local.get $port))
      (local.set $i (i32.const 31))
      (loop $digit
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (i32.store8 (local.get $i)
          (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
        (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
        (br_if $digit (i32.gt_u (local.get $i) (i32.const 26))))
      (loop $more
        (local.set $request (call $request (call $fields)))
        (drop (call $set-scheme (local.get $request) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
        (drop (call $set-path (local.get $request) (i32.const 1) (i32.const 40) (i32.const 1)))
        (drop (call $set-authority (local.get $request) (i32.const 1) (i32.const 16) (i32.const 15)))
        ;; result<own<future-incoming-response>, error-code> at 64: its case at 64
        (call $handle (local.get $request) (i32.const 0) (i32.const 0) (i32.const 64))
        (if (i32.load8_u (i32.const 64))
          (then (return (i32.add (i32.const 1000) (i32.load8_u (i32.const 72))))))
        (br $more))
      (i32.const 0)))
  (core instance $host
    (export "fields" (func $fields))
    (export "request" (func $request))
    (export "set-scheme" (func $set-scheme))
    (export "set-authority" (func $set-authority))
    (export "set-path" (func $set-path))
    (export "handle" (func $handle)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "host" (instance $host))))
  (func (export "in-flight") (param "port" u32) (result u32)
    (canon lift (core func $i "in-flight"))))
"#;

fn runtime(dir: &std::path::Path) -> Runtime {
    let hash = crate::common::write_wat(dir, "parts.wasm", PARTS);
    let p3_hash = crate::common::write_wat(dir, "p3_fields.wasm", P3_FIELDS);
    let in_flight_hash = crate::common::write_wat(dir, "in_flight.wasm", IN_FLIGHT);
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
        "  - {{ name: p3_fields, kind: process.wasm, fs: bins, path: /p3_fields.wasm, hash: \"{p3_hash}\", method: fields, imports: [wasi:http] }}\n  - {{ name: in_flight, kind: process.wasm, fs: bins, path: /in_flight.wasm, hash: \"{in_flight_hash}\", method: in-flight, imports: [wasi:http], network: {{ allow: [\"http://127.0.0.1:*\"] }}, limits: {{ max_execution_ms: 20000 }} }}\n"
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

/// Requests in flight count too (each holds a connection): a guest sending requests a server
/// never answers ends at the bound, not at its 10,000 handles.
#[test]
fn requests_in_flight_count_toward_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    // Accepts connections and keeps them, answering nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let error = run(&rt, "t:in_flight", &[json!(port)]).outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error:?}");
    assert!(error.message.contains("wasi:http parts"), "{error:?}");
}
