//! A WASI 0.3 conformance probe: every export is an async component function (lifted with the
//! async ABI) that checks one thing, importing only what it uses.
//!
//! - `sleep(ms)` → waits with `wasi:clocks/monotonic-clock` `wait-for`; the elapsed milliseconds
//! - `say(text)` → writes `text\n` to stdout and to stderr (`write-via-stream`); the bytes
//!   written to stdout
//! - `env(name)` → that variable from `wasi:cli/environment` `get-environment`
//! - `fetch(url)` → GETs `http://host[:port][/path]` through `wasi:http/client`; (status, body)
//! - `echo-once(port)` → listens on 127.0.0.1:`port` (`wasi:sockets`), prints `127.0.0.1:PORT`,
//!   echoes one connection's bytes back (read until the peer shuts down writing, at most
//!   64 KiB); the text received
//! - `fetch-many(url, count)` → `count` of `fetch`'s requests at once; how many got a
//!   response, and the first error
//!
//! No `std::io` or `std::env`, so the preview1 adapter imports nothing from WASI 0.2.

use core::future::Future;
use core::task::Poll;

use wasi::cli::{environment, stderr, stdout};
use wasi::clocks::monotonic_clock;
use wasi::http::client;
use wasi::http::types::{Fields, Method, Request, Response, Scheme};
use wasi::sockets::types::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, TcpSocket};
use wit_bindgen::StreamResult;

wit_bindgen::generate!({ world: "p3-probe", path: "../wit/p3", generate_all });

/// The most `echo-once` reads from its connection.
const ECHO_LIMIT: usize = 64 << 10;

const NANOS_PER_MILLI: u64 = 1_000_000;

struct P3Probe;

impl Guest for P3Probe {
    async fn sleep(ms: u64) -> u64 {
        let start = monotonic_clock::now();
        monotonic_clock::wait_for(ms.saturating_mul(NANOS_PER_MILLI)).await;
        monotonic_clock::now().saturating_sub(start) / NANOS_PER_MILLI
    }

    async fn say(text: String) -> u32 {
        let mut line = text.into_bytes();
        line.push(b'\n');
        let written = write_stdout(line.clone()).await;
        write_stderr(line).await;
        written as u32
    }

    async fn env(name: String) -> Option<String> {
        environment::get_environment()
            .into_iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    async fn fetch(url: String) -> Result<(u16, String), String> {
        get(url).await
    }

    async fn fetch_many(url: String, count: u32) -> (u32, String) {
        let mut requests: Vec<_> = (0..count).map(|_| Box::pin(get(url.clone()))).collect();
        let (mut answered, mut first_error) = (0, String::new());
        // Polled together until each has ended (no executor crate: a plain join).
        core::future::poll_fn(|cx| {
            requests.retain_mut(|request| match request.as_mut().poll(cx) {
                Poll::Ready(Ok(_)) => {
                    answered += 1;
                    false
                }
                Poll::Ready(Err(e)) => {
                    if first_error.is_empty() {
                        first_error = e;
                    }
                    false
                }
                Poll::Pending => true,
            });
            if requests.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        (answered, first_error)
    }

    async fn echo_once(port: u16) -> Result<String, String> {
        let listener = TcpSocket::create(IpAddressFamily::Ipv4).map_err(debug)?;
        listener
            .bind(IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address: (127, 0, 0, 1) }))
            .map_err(debug)?;
        let mut accept = listener.listen().map_err(debug)?;
        let bound = match listener.get_local_address().map_err(debug)? {
            IpSocketAddress::Ipv4(address) => address.port,
            IpSocketAddress::Ipv6(address) => address.port,
        };
        write_stdout(format!("127.0.0.1:{bound}\n").into_bytes()).await;
        let connection = accept.next().await.ok_or("the listener's stream ended")?;
        // One connection only: stop listening.
        drop(accept);
        drop(listener);

        let (mut received, receive_done) = connection.receive();
        let mut data = Vec::new();
        while data.len() < ECHO_LIMIT {
            let (status, chunk) = received.read(Vec::with_capacity(ECHO_LIMIT - data.len())).await;
            data.extend_from_slice(&chunk);
            match status {
                StreamResult::Complete(_) => {}
                StreamResult::Dropped | StreamResult::Cancelled => break,
            }
        }
        drop(received);
        receive_done.await.map_err(debug)?;

        let (mut send_tx, send_rx) = wit_stream::new();
        let sent = connection.send(send_rx);
        let unsent = send_tx.write_all(data.clone()).await;
        drop(send_tx);
        sent.await.map_err(debug)?;
        if !unsent.is_empty() {
            return Err(format!("{} of {} bytes not sent", unsent.len(), data.len()));
        }
        drop(connection);
        Ok(String::from_utf8_lossy(&data).into_owned())
    }
}

/// `fetch`: GETs `url`; (status, body).
async fn get(url: String) -> Result<(u16, String), String> {
    // `$NAME`: the URL is the value of environment variable NAME (a scenario's server).
    let url = match url.strip_prefix('$') {
        Some(name) => environment::get_environment()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
            .ok_or_else(|| format!("{name} is not set"))?,
        None => url,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: `{url}`"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("no host in `{url}`"));
    }
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (request, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
    request.set_method(&Method::Get).map_err(|()| "invalid method")?;
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "invalid scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("invalid authority `{authority}`"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("invalid path `{path}`"))?;
    let response = client::send(request).await.map_err(|e| format!("{e:?}"))?;
    let status = response.get_status_code();
    let (_, result_rx) = wit_future::new(|| Ok(()));
    let (body_rx, trailers) = Response::consume_body(response, result_rx);
    let body = body_rx.collect().await;
    trailers.await.map_err(|e| format!("{e:?}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn debug(error: impl core::fmt::Debug) -> String {
    format!("{error:?}")
}

/// Writes `bytes` to stdout; returns how many were written.
async fn write_stdout(bytes: Vec<u8>) -> usize {
    let (mut tx, rx) = wit_stream::new();
    let done = stdout::write_via_stream(rx);
    let len = bytes.len();
    let unwritten = tx.write_all(bytes).await;
    drop(tx);
    let _ = done.await;
    len - unwritten.len()
}

/// Writes `bytes` to stderr; returns how many were written.
async fn write_stderr(bytes: Vec<u8>) -> usize {
    let (mut tx, rx) = wit_stream::new();
    let done = stderr::write_via_stream(rx);
    let len = bytes.len();
    let unwritten = tx.write_all(bytes).await;
    drop(tx);
    let _ = done.await;
    len - unwritten.len()
}

export!(P3Probe);
