//! The seed's `http_worker`: reads `API_URL` from its environment and GETs it through
//! `wasi:http/outgoing-handler`, returning the status and the body. Blocking on the response
//! hands control back to the host's scheduler.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, IncomingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

wit_bindgen::generate!({ world: "http-worker", path: "../wit" });

struct HttpWorker;

impl Guest for HttpWorker {
    fn run() -> Result<Response, String> {
        // wasi:cli/environment directly: std::env would pull the preview1 adapter's filesystem
        // imports into a guest the seed grants only wasi:io, wasi:cli and wasi:http.
        let url = wasip2::cli::environment::get_environment()
            .into_iter()
            .find(|(k, _)| k == "API_URL")
            .map(|(_, v)| v)
            .ok_or("API_URL is not set")?;
        let (scheme, rest) = match url.split_once("://") {
            Some(("http", rest)) => (Scheme::Http, rest),
            Some(("https", rest)) => (Scheme::Https, rest),
            _ => return Err(format!("API_URL `{url}` is not an http(s) URL")),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let request = OutgoingRequest::new(Fields::new());
        request.set_scheme(Some(&scheme)).map_err(|()| "invalid scheme")?;
        request
            .set_authority(Some(authority))
            .map_err(|()| format!("invalid authority `{authority}`"))?;
        request
            .set_path_with_query(Some(path))
            .map_err(|()| format!("invalid path `{path}`"))?;
        let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
        pending.subscribe().block();
        let response = pending
            .get()
            .ok_or("the response never arrived")?
            .map_err(|()| "the response was already taken")?
            .map_err(|e| format!("request failed: {e:?}"))?;
        let status = response.status();
        let body = response.consume().map_err(|()| "no body")?;
        let stream = body.stream().map_err(|()| "no body stream")?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(format!("reading the body failed: {}", e.to_debug_string()))
                }
            }
        }
        drop(stream);
        IncomingBody::finish(body);
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

export!(HttpWorker);
