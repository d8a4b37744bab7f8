//! A loopback HTTP server for the tests that need something to reach.

/// An HTTP server on 127.0.0.1 that reads each request's head and answers `response` (raw
/// bytes, status line to body): its `host:port`.
pub fn http_server(response: &'static [u8]) -> String {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            read_head(&mut stream);
            let _ = stream.write_all(response);
        }
    });
    address.to_string()
}

/// Reads a request's head (to its blank line) from `stream`, or until it ends.
pub fn read_head(stream: &mut impl std::io::Read) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}
