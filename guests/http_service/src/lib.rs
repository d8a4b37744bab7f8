//! A WASI 0.3 HTTP service: exports `wasi:http/handler@0.3.0` and routes by method and path.
//!
//! - `GET /` → 200 `hello from wasi 0.3\n` (text/plain)
//! - `POST /echo` → 200 with the request body (application/octet-stream)
//! - `GET /headers` → 200 with `x-echoed` set to the request's `x-echo`
//! - `GET /fetch` → GETs `http://$UPSTREAM/` (else `$HTTP_SERVER_MAIN`, as the WASI test
//!   suite's runner names its server) through `wasi:http/client` and answers `upstream
//!   <status>`, or 502 with the send error
//! - `GET /spin` → computes forever (for the host's time limit)
//! - `GET /hang` → waits for ever without computing (for the host's time limit)
//! - `GET /stream` → 200 with a body that never ends (for the host's time limit on bodies)
//! - `GET /alloc` → allocates 1 MiB blocks until allocation fails (for the memory limit)
//! - anything else → 404

use std::hint::black_box;

use wasi::cli::environment;
use wasi::http::client;
use wasi::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme, StatusCode};

wit_bindgen::generate!({ world: "http-service", path: "../wit/p3", generate_all });

struct HttpService;

impl exports::wasi::http::handler::Guest for HttpService {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let method = request.get_method();
        let path = request.get_path_with_query();
        let headers = Fields::new();
        let (status, body): (StatusCode, Option<Vec<u8>>) = match (method, path.as_deref()) {
            (Method::Get, Some("/")) => {
                headers.append("content-type", b"text/plain").unwrap();
                (200, Some(b"hello from wasi 0.3\n".to_vec()))
            }
            (Method::Post, Some("/echo")) => {
                headers.append("content-type", b"application/octet-stream").unwrap();
                (200, Some(read_body(request).await))
            }
            (Method::Get, Some("/headers")) => {
                if let Some(value) = request.get_headers().get("x-echo").first() {
                    headers.append("x-echoed", value).unwrap();
                }
                (200, None)
            }
            (Method::Get, Some("/fetch")) => match fetch_upstream().await {
                Ok(status) => (200, Some(format!("upstream {status}").into_bytes())),
                Err(error) => (502, Some(error.into_bytes())),
            },
            (Method::Get, Some("/spin")) => spin(),
            (Method::Get, Some("/hang")) => std::future::pending().await,
            (Method::Get, Some("/stream")) => return Ok(endless(headers)),
            (Method::Get, Some("/alloc")) => alloc(),
            _ => (404, None),
        };
        Ok(respond(status, headers, body))
    }
}

/// Reads the whole request body (and its trailers).
async fn read_body(request: Request) -> Vec<u8> {
    let (_, result_rx) = wit_future::new(|| Ok(()));
    let (body_rx, trailers) = Request::consume_body(request, result_rx);
    let body = body_rx.collect().await;
    let _ = trailers.await;
    body
}

/// A response with `status`, `headers` and, when given, `body` (with its content-length),
/// written by a spawned task once the host reads it.
fn respond(status: StatusCode, headers: Fields, body: Option<Vec<u8>>) -> Response {
    let contents = body.map(|bytes| {
        headers
            .append("content-length", bytes.len().to_string().as_bytes())
            .unwrap();
        let (mut body_tx, body_rx) = wit_stream::new();
        wit_bindgen::spawn_local(async move {
            body_tx.write_all(bytes).await;
        });
        body_rx
    });
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (response, _sent) = Response::new(headers, contents, trailers_rx);
    response.set_status_code(status).unwrap();
    response
}

/// A 200 whose body never ends: 64 KiB chunks, written as fast as the host reads them.
fn endless(headers: Fields) -> Response {
    let (mut body_tx, body_rx) = wit_stream::new();
    wit_bindgen::spawn_local(async move {
        loop {
            let unwritten = body_tx.write_all(vec![b'x'; 64 << 10]).await;
            if !unwritten.is_empty() {
                return;
            }
        }
    });
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    response
}

/// GETs `http://$UPSTREAM/` and returns the upstream's status code.
async fn fetch_upstream() -> Result<StatusCode, String> {
    // UPSTREAM, or the server a wasi-testsuite spec names `main`.
    let environment = environment::get_environment();
    let authority = ["UPSTREAM", "HTTP_SERVER_MAIN"]
        .iter()
        .find_map(|name| environment.iter().find(|(key, _)| key == name))
        .map(|(_, value)| value.clone())
        .ok_or("neither UPSTREAM nor HTTP_SERVER_MAIN is set")?;
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (request, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
    request.set_method(&Method::Get).map_err(|()| "invalid method")?;
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "invalid scheme")?;
    request
        .set_authority(Some(&authority))
        .map_err(|()| format!("invalid authority `{authority}`"))?;
    request.set_path_with_query(Some("/")).map_err(|()| "invalid path")?;
    let response = client::send(request).await.map_err(|e| format!("{e:?}"))?;
    let status = response.get_status_code();
    // Drain the upstream's body so that its connection ends cleanly.
    let (_, result_rx) = wit_future::new(|| Ok(()));
    let (body_rx, trailers) = Response::consume_body(response, result_rx);
    let _ = body_rx.collect().await;
    let _ = trailers.await;
    Ok(status)
}

/// Computes forever without calling the host.
fn spin() -> ! {
    let mut x: u64 = 1;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks until allocation fails, which traps.
fn alloc() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(black_box(vec![1u8; 1 << 20]));
    }
}

export!(HttpService);
