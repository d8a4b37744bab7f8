//! `wasi:http` outgoing requests under the entry's network policy.
//!
//! wasmtime-wasi-http's default sender connects to the request's authority by name, resolving
//! it itself: a check made before it could be undone by the name resolving differently the
//! second time (DNS rebinding). So this sender resolves the name once, checks every address,
//! and connects to a checked address only; TLS still verifies the certificate against the name.
//! The rest follows wasmtime-wasi-http 48's `default_send_request` (timeouts, TLS roots, HTTP/1).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::lookup::Lookups;
use super::policy::{NameReach, NetworkPolicy, Refusal, Scheme};

/// What wasi:http asks of one process's store, with the policy in between.
pub(crate) struct PolicyHooks {
    /// `None` refuses every request (a process whose entry does not grant `wasi:http` never
    /// gets this far).
    policy: Option<Arc<NetworkPolicy>>,
    /// Present whenever the policy is.
    lookups: Option<Lookups>,
    /// Made at the first request (no allocation for a process that makes none).
    connections: Option<Connections>,
}

impl PolicyHooks {
    /// `lookups`: the process's, shared with its `wasi:sockets` lookups.
    pub(crate) fn new(policy: Option<Arc<NetworkPolicy>>, lookups: Option<Lookups>) -> PolicyHooks {
        PolicyHooks {
            policy,
            lookups,
            connections: None,
        }
    }
}

/// The connections one process's wasi:http requests may hold open at once, WASI 0.2's and
/// 0.3's together. A WASI 0.3 request in flight is a subtask, not an entry of the resource
/// table, so the bound on wasi:http parts never saw it: one process held 2,400 connections open
/// at once (found attacking, 2026-12-07; only its handles bounded them, a request taking four),
/// each with its buffers (up to `MAX_RESPONSE_HEAD` for the head) outside `max_memory`.
pub const MAX_HTTP_CONNECTIONS: usize = 512;

/// A process's open connections, counted by their [`Connection`]s.
#[derive(Clone, Default)]
struct Connections(Arc<AtomicUsize>);

impl Connections {
    /// One more connection, unless the process holds `MAX_HTTP_CONNECTIONS` already.
    fn open(&self) -> Option<Connection> {
        if self.0.fetch_add(1, Ordering::AcqRel) >= MAX_HTTP_CONNECTIONS {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Connection(self.0.clone()))
    }
}

/// One open connection of a process: counted until the connection is done or dropped.
struct Connection(Arc<AtomicUsize>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// What a WASI 0.2 guest may write into an outgoing body in one call. The body keeps two such
/// chunks until its request is sent and read (1 MiB each by default): see `super::http_parts`.
pub(crate) const BODY_CHUNK: usize = 64 << 10;

impl WasiHttpHooks for PolicyHooks {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send> {
        let (policy, lookups) = (self.policy.clone(), self.lookups.clone());
        let connections = self
            .connections
            .get_or_insert_with(Connections::default)
            .clone();
        Box::new(async move {
            let (Some(policy), Some(lookups)) = (policy, lookups) else {
                return Err(Error::HttpRequestDenied);
            };
            send(&policy, &lookups, &connections, request, options).await
        })
    }
}

/// The default timeouts of wasmtime-wasi-http.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

async fn send(
    policy: &NetworkPolicy,
    lookups: &Lookups,
    connections: &Connections,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let uri = request.uri();
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let scheme = if https { Scheme::Https } else { Scheme::Http };
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let between_bytes_timeout = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);

    let addresses = tokio::time::timeout(
        connect_timeout,
        checked_addresses(policy, lookups, scheme, &host, port),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // Held for as long as the connection is: it ends with the `io` future returned.
    let connection = connections.open().ok_or(Error::ConnectionLimitReached)?;
    // The connection takes one of the host's descriptors (see `crate::descriptors`).
    if !crate::descriptors::guest_may_open() {
        return Err(Error::ConnectionLimitReached);
    }
    let stream = tokio::time::timeout(connect_timeout, connect(&addresses))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let stream: Box<dyn Stream> = if https {
        Box::new(tls(&host, stream).await?)
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = handshake(stream, connect_timeout).await?;

    // The request line carries the path only (the authority is in the Host header).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|e| Error::InternalError(Some(e.to_string())))?;

    // Taken once it has ended: a finished future must not be polled again.
    let mut conn = Some(Box::pin(conn));
    let response = {
        let send = tokio::time::timeout(first_byte_timeout, sender.send_request(request));
        let mut send = std::pin::pin!(send);
        // The connection is driven while the response head is awaited.
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = send.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            if let Some(running) = conn.as_mut() {
                if let Poll::Ready(ended) = running.as_mut().poll(cx) {
                    conn = None;
                    match ended {
                        Err(e) => return Poll::Ready(Ok(Err(e))),
                        // Ended cleanly: the response may be there now.
                        Ok(()) => return send.as_mut().poll(cx),
                    }
                }
            }
            Poll::Pending
        })
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??
    };
    let between_bytes = between_bytes_timeout.max(Duration::from_nanos(1));
    let response = response.map(|incoming| {
        let mut timeout = tokio::time::interval(between_bytes);
        timeout.reset();
        TimedBody { incoming, timeout }.boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        let _connection = connection;
        match conn {
            Some(conn) => conn.await.map_err(Error::from),
            None => Ok(()),
        }
    });
    Ok((response, io))
}

/// The addresses of `host` the policy lets this request reach, in resolution order; a
/// refusal when there are none.
async fn checked_addresses(
    policy: &NetworkPolicy,
    lookups: &Lookups,
    scheme: Scheme,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Error> {
    let refused = |refusal: Box<Refusal>| {
        policy.log_refusal(&refusal);
        Error::HttpRequestDenied
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        policy.check_addr(scheme, ip, port).map_err(refused)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let reach: NameReach = policy.check_name(scheme, host, port).map_err(refused)?;
    let resolved: Vec<SocketAddr> =
        lookups
            .resolve(host, port)
            .await
            .map_err(|e| Error::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            })?;
    let mut first_refusal = None;
    let mut allowed = Vec::with_capacity(resolved.len());
    for addr in resolved {
        match policy.check_resolved(reach, scheme, host, addr.ip(), port) {
            Ok(()) => allowed.push(addr),
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    match (allowed.is_empty(), first_refusal) {
        (false, _) => Ok(allowed),
        (true, Some(refusal)) => Err(refused(refusal)),
        (true, None) => Err(Error::DnsError {
            rcode: Some(format!("`{host}` resolved to no address")),
            info_code: None,
        }),
    }
}

/// The first of `addresses` that accepts a connection.
async fn connect(addresses: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in addresses {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
}

/// TLS to `host` (a name, or an IP literal) over `stream`, with webpki's roots.
async fn tls(
    host: &str,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    use tokio_rustls::rustls::{self, pki_types::ServerName};
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let name = match literal.parse::<IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(host.to_string()).map_err(|_| Error::DnsError {
            rcode: Some("invalid dns name".into()),
            info_code: None,
        })?,
    };
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(Error::Tls)
}

/// A connection, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

type Handshake<S> = (
    hyper::client::conn::http1::SendRequest<WasiBody>,
    hyper::client::conn::http1::Connection<wasmtime_wasi_http::io::TokioIo<S>, WasiBody>,
);

/// The largest response head a guest's request reads, which is also the most its connection
/// buffers: past it, the request fails. hyper's default, ~408 KiB, let a server the policy
/// allows make each of a process's 512 requests in flight buffer that much (~200 MB).
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 << 10;

async fn handshake<S: Stream>(stream: S, timeout: Duration) -> Result<Handshake<S>, Error> {
    tokio::time::timeout(
        timeout,
        hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_RESPONSE_HEAD)
            .handshake(wasmtime_wasi_http::io::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)?
    .map_err(Error::from)
}

/// The response body, failing when `between_bytes_timeout` passes without a frame.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl http_body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            // (hyper's own timeouts are never set on this client, so no error of its is one:
            // the time between frames is this body's `timeout`.)
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.timeout.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The body of the response a loopback server writes as `response`.
    async fn body_of(response: &'static str, between_bytes: Duration) -> TimedBody {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = peer.read(&mut head).await.unwrap();
            peer.write_all(response.as_bytes()).await.unwrap();
            // Held open until the client is done: the body ends by its length, not by a close.
            let _ = peer.read(&mut head).await;
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, String>(
            wasmtime_wasi_http::io::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let request = http::Request::get("/").body(String::new()).unwrap();
        let incoming = sender.send_request(request).await.unwrap().into_body();
        let mut timeout = tokio::time::interval(between_bytes);
        timeout.reset();
        TimedBody { incoming, timeout }
    }

    #[tokio::test]
    async fn a_response_body_passes_on_its_length_and_its_end() {
        let body = body_of(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");

        let empty = body_of(
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Duration::from_secs(60),
        )
        .await;
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn a_body_that_stalls_past_the_between_bytes_timeout_fails() {
        let stalls = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhe";
        let body = body_of(stalls, Duration::from_millis(50)).await;
        let error = body.collect().await.expect_err("a stalled body fails");
        assert!(matches!(error, Error::ConnectionReadTimeout), "{error:?}");
    }
}
