//! A `wasi:http/service` test: the binary is served as `wasmproc serve` serves it, the spec's
//! requests are sent to it one by one and their responses compared as the suite's runner
//! compares them (`do_request`), then the server is stopped as by the spec's `kill` (SIGINT or
//! SIGTERM: a graceful stop, exit status 0).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use wasmproc_runtime::{Runtime, Stdio};

use crate::http_client;

/// A `request` operation: sent to the served handler, its response compared with `response`
/// as the suite's runner does (status, each header given, the whole body as text).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpRequest {
    #[serde(default = "crate::scenario::get")]
    pub(super) method: String,
    #[serde(default = "crate::scenario::root")]
    pub(super) path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    response: ExpectedResponse,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpectedResponse {
    #[serde(default = "crate::scenario::ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
}

impl Default for ExpectedResponse {
    fn default() -> Self {
        ExpectedResponse {
            status: crate::scenario::ok(),
            headers: BTreeMap::new(),
            body: String::new(),
        }
    }
}

/// How long the runner waits for each response (its `requests.request(..., timeout=5)`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `entry`, sends `requests`, stops the server and compares its exit status (0 after a
/// graceful stop) with `exit_code`. Every mismatch is reported, not only the first.
pub(super) fn run(
    runtime: &Runtime,
    entry: &str,
    requests: &[HttpRequest],
    exit_code: i32,
) -> Result<(), String> {
    let service = runtime
        .http_service(entry, Stdio::Capture)
        .map_err(|e| e.kinded().to_string())?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server's threads: {e}"))?;
    let listener = tokio
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio.spawn(wasmproc_runtime::serve::serve(
        service,
        listener,
        wasmproc_runtime::serve::ServeOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut problems: Vec<String> = requests
        .iter()
        .filter_map(|request| check(address, request).err())
        .collect();
    let _ = stop.send(());
    let code = match tokio.block_on(server) {
        Ok(Ok(_)) => 0,
        Ok(Err(e)) => {
            problems.push(format!("the server failed: {e}"));
            1
        }
        Err(e) => {
            problems.push(format!("the server panicked: {e}"));
            1
        }
    };
    if code != exit_code {
        problems.push(format!("exit code {code}, expected {exit_code}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// One request, and why its response is not the one expected.
fn check(address: std::net::SocketAddr, request: &HttpRequest) -> Result<(), String> {
    let what = format!("{} {}", request.method, request.path);
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let path = if request.path.starts_with('/') {
        request.path.clone()
    } else {
        format!("/{}", request.path)
    };
    let response = http_client::request(
        address,
        &request.method,
        &path,
        &headers,
        request.body.as_bytes(),
        REQUEST_TIMEOUT,
    )
    .map_err(|e| format!("{what}: {e}"))?;
    let expected = &request.response;
    if response.status != expected.status {
        return Err(format!(
            "{what}: status {}, expected {} (body {:?})",
            response.status,
            expected.status,
            response.text()
        ));
    }
    for (name, want) in &expected.headers {
        match response.header(name) {
            None => return Err(format!("{what}: response has no header {name}")),
            Some(got) if got != *want => {
                return Err(format!("{what}: header {name}: {got:?}, expected {want:?}"))
            }
            Some(_) => {}
        }
    }
    if response.text() != expected.body {
        return Err(format!(
            "{what}: body {:?}, expected {:?}",
            response.text(),
            expected.body
        ));
    }
    Ok(())
}
