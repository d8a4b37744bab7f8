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

/// An HTTP server on 127.0.0.1 that holds every connection it accepts, unanswered, until it
/// holds `enough` or none has come for `quiet`, then answers them all with `response` and
/// closes them: its `host:port`, and the most connections it held at once.
#[allow(dead_code)] // Not every test binary that includes this file uses it.
pub fn holding_server(
    response: &'static [u8],
    enough: usize,
    quiet: std::time::Duration,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let most = std::sync::Arc::new(AtomicUsize::new(0));
    let record = most.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut last = std::time::Instant::now();
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    read_head(&mut stream);
                    held.push(stream);
                    record.fetch_max(held.len(), Ordering::AcqRel);
                    last = std::time::Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if held.len() >= enough || (!held.is_empty() && last.elapsed() >= quiet) {
                        for mut stream in held.drain(..) {
                            let _ = stream.write_all(response);
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
    });
    (address.to_string(), most)
}
