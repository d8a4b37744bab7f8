//! A WASI 0.2 HTTP handler: exports `wasi:http/incoming-handler` (the proxy world).
//!
//! - `GET /` → 200 `hello from wasi 0.2\n` (text/plain)
//! - `POST /echo` → 200 with the request body
//! - anything else → 404

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};

wasip2::http::proxy::export!(Handler);

struct Handler;

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = match (request.method(), request.path_with_query().as_deref()) {
            (Method::Get, Some("/")) => (200, b"hello from wasi 0.2\n".to_vec()),
            (Method::Post, Some("/echo")) => (200, read_body(request)),
            _ => (404, Vec::new()),
        };
        let headers = Fields::new();
        let _ = headers.append("content-length", body.len().to_string().as_bytes());
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(status);
        let outgoing = response.body().expect("the body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let mut stream = outgoing.write().expect("the stream is taken once");
        let _ = stream.write_all(&body);
        let _ = stream.flush();
        drop(stream);
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

fn read_body(request: IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Ok(body) = request.consume() else {
        return bytes;
    };
    if let Ok(mut stream) = body.stream() {
        let _ = stream.read_to_end(&mut bytes);
    }
    IncomingBody::finish(body);
    bytes
}
