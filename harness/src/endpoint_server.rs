//! The servers a wasi-testsuite spec declares (`servers`) for guests' outgoing requests, as its
//! runner stands them up (`test_suite_runner.py`, `_EndpointServer`): HTTP/1.1 on 127.0.0.1,
//! one connection per request, routes by method and path; a `static` endpoint answers its
//! response (a body, or chunks with trailers), `echo-body` the request's body, `echo-headers`
//! the request's method, path, headers (`x-echo-NAME`) and trailers (`x-trailer-NAME`); other
//! routes get a 404. A `closed` server is an address nothing listens on.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

/// A `servers` item.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub name: String,
    #[serde(default)]
    pub kind: ServerKind,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    #[default]
    Listening,
    Closed,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default = "get")]
    pub method: String,
    #[serde(default = "root")]
    pub path: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub response: Option<Reply>,
}

fn get() -> String {
    "GET".into()
}

fn root() -> String {
    "/".into()
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Static,
    EchoBody,
    EchoHeaders,
}

/// A static endpoint's response: a string is `{ status: 200, body: <it> }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Body(String),
    Full(FullReply),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullReply {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub chunks: Option<Vec<String>>,
    #[serde(default)]
    pub trailers: BTreeMap<String, String>,
}

fn ok() -> u16 {
    200
}

impl ServerSpec {
    /// The variable the guest finds the server's `host:port` in.
    pub fn env_var(&self) -> String {
        format!("HTTP_SERVER_{}", self.name.to_uppercase())
    }

    /// What the runner refuses: a name unfit for a variable, endpoints on a closed server,
    /// a response on an echo endpoint, both a body and chunks.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "server name `{name}` should be alphanumeric or '_'"
            ));
        }
        if self.kind == ServerKind::Closed && !self.endpoints.is_empty() {
            return Err(format!(
                "server `{name}`: a closed server takes no endpoints"
            ));
        }
        for endpoint in &self.endpoints {
            match (&endpoint.mode, &endpoint.response) {
                (Mode::Static, None) => {
                    return Err(format!(
                        "server `{name}`: static endpoint {} {} needs a response",
                        endpoint.method, endpoint.path
                    ))
                }
                (Mode::EchoBody | Mode::EchoHeaders, Some(_)) => {
                    return Err(format!(
                        "server `{name}`: echo endpoint {} {} takes no response",
                        endpoint.method, endpoint.path
                    ))
                }
                (_, Some(Reply::Full(reply)))
                    if reply.chunks.is_some() && !reply.body.is_empty() =>
                {
                    return Err(format!(
                        "server `{name}`: a response takes `body` or `chunks`, not both"
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A running server (or a reserved address, for a closed one); stopped when dropped.
pub struct EndpointServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Connections being answered now, each on a thread of its own (the tests read it).
    #[cfg_attr(not(test), allow(dead_code))]
    live: Arc<AtomicUsize>,
}

/// Connections answered at once: a guest opening connections without end must not start a
/// thread for each (past it, a connection is closed at once, unanswered).
pub const MAX_CONNECTIONS: usize = 64;

impl EndpointServer {
    pub fn start(spec: &ServerSpec) -> std::io::Result<EndpointServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(AtomicUsize::new(0));
        if spec.kind == ServerKind::Closed {
            // The port was free a moment ago and nothing listens on it now.
            return Ok(EndpointServer {
                address,
                stop,
                thread: None,
                live,
            });
        }
        // Polled, so that dropping the server stops the thread promptly.
        listener.set_nonblocking(true)?;
        let endpoints = Arc::new(spec.endpoints.clone());
        let thread = {
            let (stop, live) = (stop.clone(), live.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) if live.load(Ordering::SeqCst) >= MAX_CONNECTIONS => {
                            drop(stream)
                        }
                        Ok((stream, _)) => {
                            let (endpoints, live) = (endpoints.clone(), live.clone());
                            live.fetch_add(1, Ordering::SeqCst);
                            std::thread::spawn(move || {
                                answer(stream, &endpoints);
                                live.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        Ok(EndpointServer {
            address,
            stop,
            thread: Some(thread),
            live,
        })
    }

    /// Connections being answered now.
    #[cfg(test)]
    fn live_connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// `127.0.0.1:<port>`, as the guest gets it.
    pub fn address(&self) -> String {
        self.address.to_string()
    }
}

impl Drop for EndpointServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The most a request's head or body may hold: the guests' requests are small.
const MAX_REQUEST: u64 = 1 << 20;

/// One request on `stream`, answered; the connection then closes.
fn answer(stream: TcpStream, endpoints: &[Endpoint]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream.take(MAX_REQUEST));
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let route = endpoints
        .iter()
        .find(|e| e.method == request.method && e.path == request.path);
    let reply = match route {
        None => Outgoing::plain(404, Vec::new(), String::new()),
        Some(endpoint) => match (&endpoint.mode, &endpoint.response) {
            (Mode::EchoBody, _) => Outgoing::plain(200, Vec::new(), request.body_text()),
            (Mode::EchoHeaders, _) => Outgoing::plain(200, request.echoed(), String::new()),
            (Mode::Static, Some(Reply::Body(body))) => {
                Outgoing::plain(200, Vec::new(), body.clone())
            }
            (Mode::Static, Some(Reply::Full(reply))) => Outgoing {
                status: reply.status,
                headers: reply.headers.clone().into_iter().collect(),
                body: match &reply.chunks {
                    Some(chunks) => Body::Chunks(chunks.clone(), reply.trailers.clone()),
                    None => Body::Whole(reply.body.clone()),
                },
            },
            (Mode::Static, None) => Outgoing::plain(500, Vec::new(), String::new()),
        },
    };
    let _ = writer.write_all(&reply.bytes(request.method == "HEAD"));
}

struct Incoming {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Incoming {
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// What an `echo-headers` endpoint answers with.
    fn echoed(&self) -> Vec<(String, String)> {
        let mut echoed = vec![
            ("x-request-method".to_string(), self.method.clone()),
            ("x-request-path".to_string(), self.path.clone()),
        ];
        for (name, value) in &self.headers {
            echoed.push((format!("x-echo-{name}"), value.clone()));
        }
        for (name, value) in &self.trailers {
            echoed.push((format!("x-trailer-{name}"), value.clone()));
        }
        echoed
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Incoming> {
    let line = read_line(reader)?;
    let mut words = line.split(' ');
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let headers = read_fields(reader)?;
    let field = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked = field("transfer-encoding").is_some_and(|v| v.to_lowercase().contains("chunked"));
    let (body, trailers) = if chunked {
        read_chunked(reader)?
    } else {
        let length: usize = field("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        (body, Vec::new())
    };
    Some(Incoming {
        method,
        path,
        headers,
        body,
        trailers,
    })
}

fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
    }
}

/// Header (or trailer) lines up to the blank one; names lowercased, in order.
fn read_fields(reader: &mut impl BufRead) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Some(fields);
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_lowercase(), value.trim().to_string()));
        }
    }
}

#[allow(clippy::type_complexity)]
fn read_chunked(reader: &mut impl BufRead) -> Option<(Vec<u8>, Vec<(String, String)>)> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some((body, read_fields(reader)?));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        read_line(reader)?;
    }
}

struct Outgoing {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

enum Body {
    Whole(String),
    Chunks(Vec<String>, BTreeMap<String, String>),
}

impl Outgoing {
    fn plain(status: u16, headers: Vec<(String, String)>, body: String) -> Outgoing {
        Outgoing {
            status,
            headers,
            body: Body::Whole(body),
        }
    }

    fn bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            out += &format!("{name}: {value}\r\n");
        }
        match &self.body {
            Body::Whole(body) => {
                out += &format!(
                    "content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                if !head_only {
                    out += body;
                }
            }
            Body::Chunks(chunks, trailers) => {
                out += "transfer-encoding: chunked\r\n";
                if !trailers.is_empty() {
                    let names: Vec<&str> = trailers.keys().map(String::as_str).collect();
                    out += &format!("trailer: {}\r\n", names.join(", "));
                }
                out += "connection: close\r\n\r\n";
                if !head_only {
                    for chunk in chunks {
                        out += &format!("{:x}\r\n{chunk}\r\n", chunk.len());
                    }
                    out += "0\r\n";
                    for (name, value) in trailers {
                        out += &format!("{name}: {value}\r\n");
                    }
                    out += "\r\n";
                }
            }
        }
        out.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(json: &str) -> EndpointServer {
        let spec: ServerSpec = serde_json::from_str(json).unwrap();
        spec.check().unwrap();
        EndpointServer::start(&spec).unwrap()
    }

    fn send(server: &EndpointServer, raw: &str) -> String {
        let mut stream = TcpStream::connect(server.address()).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn endpoints_answer_as_the_suites_runner_does() {
        let s = server(
            r#"{ "name": "main", "endpoints": [
                { "method": "POST", "path": "/echo", "mode": "echo-body" },
                { "path": "/headers", "mode": "echo-headers" },
                { "path": "/chunked", "response": { "chunks": ["one", "two"], "trailers": { "x-sum": "1" } } },
                { "path": "/short", "response": "hi" } ] }"#,
        );
        let echo = send(&s, "POST /echo HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 9\r\n\r\n");
        assert!(
            echo.starts_with("HTTP/1.1 200") && echo.ends_with("\r\n\r\nabc"),
            "{echo}"
        );
        let headers = send(&s, "GET /headers HTTP/1.1\r\nX-One: 1\r\n\r\n");
        assert!(
            headers.contains("x-request-method: GET\r\n")
                && headers.contains("x-echo-x-one: 1\r\n"),
            "{headers}"
        );
        let chunked = send(&s, "GET /chunked HTTP/1.1\r\n\r\n");
        assert!(
            chunked.contains("trailer: x-sum\r\n")
                && chunked.ends_with("3\r\none\r\n3\r\ntwo\r\n0\r\nx-sum: 1\r\n\r\n"),
            "{chunked}"
        );
        assert!(send(&s, "GET /short HTTP/1.1\r\n\r\n")
            .ends_with("content-length: 2\r\nconnection: close\r\n\r\nhi"));
        assert!(send(&s, "GET /none HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    }

    /// Attack: a guest opening connections and sending nothing gets at most `MAX_CONNECTIONS`
    /// answered at once (a thread each), the rest closed; once they go, requests are answered.
    #[test]
    fn idle_connections_cannot_start_a_thread_each() {
        let s = server(r#"{ "name": "main", "endpoints": [{ "path": "/", "response": "hi" }] }"#);
        let idle: Vec<TcpStream> = (0..200)
            .map(|_| TcpStream::connect(s.address()).unwrap())
            .collect();
        // Until the listener has seen them all.
        for _ in 0..500 {
            if s.live_connections() >= MAX_CONNECTIONS {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            s.live_connections() <= MAX_CONNECTIONS,
            "{} connections answered at once",
            s.live_connections()
        );
        drop(idle);
        // Until the idle ones are gone, a connection past the bound is closed or reset.
        let try_send = || -> std::io::Result<String> {
            let mut stream = TcpStream::connect(s.address())?;
            stream.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
            let mut out = String::new();
            stream.read_to_string(&mut out)?;
            Ok(out)
        };
        let mut answered = String::new();
        for _ in 0..100 {
            answered = try_send().unwrap_or_default();
            if !answered.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(answered.ends_with("\r\n\r\nhi"), "{answered}");
    }

    #[test]
    fn specs_the_runner_refuses_are_refused() {
        for json in [
            r#"{ "name": "a-b" }"#,
            r#"{ "name": "c", "kind": "closed", "endpoints": [{ "mode": "echo-body" }] }"#,
            r#"{ "name": "c", "endpoints": [{ "mode": "echo-body", "response": "x" }] }"#,
            r#"{ "name": "c", "endpoints": [{ "path": "/" }] }"#,
        ] {
            let spec: ServerSpec = serde_json::from_str(json).unwrap();
            assert!(spec.check().is_err(), "{json}");
        }
        let closed: ServerSpec =
            serde_json::from_str(r#"{ "name": "dead", "kind": "closed" }"#).unwrap();
        let dead = EndpointServer::start(&closed).unwrap();
        assert_eq!(closed.env_var(), "HTTP_SERVER_DEAD");
        assert!(
            TcpStream::connect(dead.address()).is_err(),
            "nothing listens"
        );
    }
}
