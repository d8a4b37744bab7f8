//! HTTP/1 connections to an [`HttpService`]: accept, hand each request to the guest, and on
//! shutdown stop accepting and let the requests in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::WasiBody;

use super::HttpService;

/// The largest request head (request line and headers) a client may send, which is also the
/// most a connection buffers: past it, 431. hyper's default, ~408 KiB, let 1,024 connections
/// that each sent a large head hold ~418 MB; 64 KiB is twice what nginx allows by default.
pub const MAX_HEAD: usize = 64 << 10;

/// How a server treats its clients.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// Connections open at once: past it, accepting waits (each costs a task and its buffers,
    /// and a client opening connections without end must not exhaust the host).
    pub max_connections: usize,
    /// How long a client may take to send a request's head (and, on a kept-alive connection,
    /// to start the next one): a client trickling bytes must not hold a connection for ever.
    pub header_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// What a server did, once it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests the guest answered.
    pub answered: u64,
    /// Requests answered with a 500 because the guest trapped, hit a limit or failed.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    answered: AtomicU64,
    failed: AtomicU64,
    /// The lines failed requests write to the log (clients decide how many fail).
    failures_logged: crate::log_budget::LogBudget,
}

/// Answers requests on `listener` with `service` until `shutdown` resolves; then stops
/// accepting, tells open connections to close after their current request, and waits for
/// those (at most twice the service's request timeout).
pub async fn serve(
    service: HttpService,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<Served> {
    let local = listener.local_addr()?;
    let counters = Arc::new(Counters::default());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let places = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let place = tokio::select! {
            () = &mut shutdown => break,
            place = places.clone().acquire_owned() => place.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: wait a little instead of spinning on the error.
                    tracing::warn!(target: "wasmproc::serve", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tracing::debug!(target: "wasmproc::serve", %peer, "connection");
        let (service, counters, mut stopping) =
            (service.clone(), counters.clone(), stopping.clone());
        connections.spawn(async move {
            let _place = place;
            let answer = hyper::service::service_fn(move |request| {
                let (service, counters) = (service.clone(), counters.clone());
                async move { Ok::<_, Infallible>(answer(&service, request, local, &counters).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(super::timer::TokioTimer)
                .header_read_timeout(options.header_timeout)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), answer);
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(target: "wasmproc::serve", %peer, "connection ended: {e}");
            }
        });
        // Reap the connections that ended, so the set does not grow with every one.
        while connections.try_join_next().is_some() {}
    }
    let _ = stop.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(service.timeout() * 2, drain)
        .await
        .is_err()
    {
        tracing::warn!(target: "wasmproc::serve", "requests still in flight at shutdown were dropped");
    }
    Ok(Served {
        answered: counters.answered.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
    })
}

/// The guest's response to `request`, or a 500 with the kind of failure (`trap`,
/// `limit_exceeded`, `host_failure`).
async fn answer(
    service: &HttpService,
    request: http::Request<Incoming>,
    local: SocketAddr,
    counters: &Counters,
) -> http::Response<WasiBody> {
    let request = with_full_uri(request, local).map(|body| body.map_err(Into::into).boxed_unsync());
    match service.handle(request).await {
        Ok(response) => {
            counters.answered.fetch_add(1, Ordering::Relaxed);
            response
        }
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            crate::log_budget::warn_within!(
                counters.failures_logged,
                target: "wasmproc::serve",
                format_args!("entry `{}`: failed requests", service.entry()),
                entry = %service.entry(),
                kind = e.kind.as_str(),
                "request failed: {}",
                e.message
            );
            // The kind, not the message: a backtrace of the guest is for the server's log.
            let mut response = http::Response::new(
                Full::new(Bytes::from(format!("{}\n", e.kind.as_str())))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

/// An incoming request's target is a path (`/a?b`); the guest is owed its scheme and authority
/// too (WASI's `request.scheme` / `authority`): `http`, and the `Host` header or else the
/// address the request came in on.
fn with_full_uri(request: http::Request<Incoming>, local: SocketAddr) -> http::Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.scheme().is_none() {
        let authority = parts
            .headers
            .get(http::header::HOST)
            .and_then(|host| host.to_str().ok())
            .and_then(|host| host.parse::<http::uri::Authority>().ok())
            .unwrap_or_else(|| {
                local
                    .to_string()
                    .parse()
                    .expect("a socket address is an authority")
            });
        let mut uri = parts.uri.clone().into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(full) = http::Uri::from_parts(uri) {
            parts.uri = full;
        }
    }
    http::Request::from_parts(parts, body)
}
