//! Tries `wasi:sockets` from the inside, so that scenarios can check the entry's network
//! policy: a TCP connection (send a line, read the answer) and a UDP datagram. Failures come
//! back as the socket error's WIT name (`access-denied`, `connection-refused`, ...).

use wasip2::io::streams::StreamError;
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasip2::sockets::{tcp_create_socket, udp, udp_create_socket};

wit_bindgen::generate!({ world: "net-probe", path: "../wit" });

struct NetProbe;

impl Guest for NetProbe {
    fn tcp_exchange(address: String, message: String) -> Result<String, String> {
        let (family, remote) = parse(&address)?;
        let network = instance_network();
        let socket = tcp_create_socket::create_tcp_socket(family).map_err(name)?;
        socket.start_connect(&network, remote).map_err(name)?;
        let ready = socket.subscribe();
        let (input, output) = loop {
            match socket.finish_connect() {
                Ok(streams) => break streams,
                Err(ErrorCode::WouldBlock) => ready.block(),
                Err(e) => return Err(name(e)),
            }
        };
        output
            .blocking_write_and_flush(message.as_bytes())
            .map_err(|e| format!("write: {e:?}"))?;
        let mut answer = Vec::new();
        loop {
            match input.blocking_read(4096) {
                Ok(chunk) => answer.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("read: {e:?}")),
            }
        }
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    fn udp_send(address: String, message: String) -> Result<String, String> {
        let (family, remote) = parse(&address)?;
        let network = instance_network();
        let socket = udp_create_socket::create_udp_socket(family).map_err(name)?;
        let local = match family {
            IpAddressFamily::Ipv4 => IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: 0,
                address: (0, 0, 0, 0),
            }),
            IpAddressFamily::Ipv6 => IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: 0,
                flow_info: 0,
                address: (0, 0, 0, 0, 0, 0, 0, 0),
                scope_id: 0,
            }),
        };
        socket.start_bind(&network, local).map_err(name)?;
        let ready = socket.subscribe();
        loop {
            match socket.finish_bind() {
                Ok(()) => break,
                Err(ErrorCode::WouldBlock) => ready.block(),
                Err(e) => return Err(name(e)),
            }
        }
        let (_incoming, outgoing) = socket.stream(None).map_err(name)?;
        outgoing.subscribe().block();
        outgoing.check_send().map_err(name)?;
        let sent = outgoing
            .send(&[udp::OutgoingDatagram {
                data: message.into_bytes(),
                remote_address: Some(remote),
            }])
            .map_err(name)?;
        Ok(format!("sent {sent}"))
    }

    fn hoard(tcp: bool, hold_ms: u32) -> (u32, String) {
        let mut held = (Vec::new(), Vec::new());
        let failure = loop {
            let created = if tcp {
                tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map(|s| held.0.push(s))
            } else {
                udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4).map(|s| held.1.push(s))
            };
            if let Err(e) = created {
                break name(e);
            }
        };
        wasip2::clocks::monotonic_clock::subscribe_duration(u64::from(hold_ms) * 1_000_000).block();
        ((held.0.len() + held.1.len()) as u32, failure)
    }
}

/// The error's WIT name (`access-denied`), without its documentation.
fn name(e: ErrorCode) -> String {
    e.name().to_string()
}

/// `a.b.c.d:port` or `[v6]:port`.
fn parse(address: &str) -> Result<(IpAddressFamily, IpSocketAddress), String> {
    let addr: std::net::SocketAddr = address
        .parse()
        .map_err(|_| format!("`{address}` is not an address with a port"))?;
    Ok(match addr {
        std::net::SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            (
                IpAddressFamily::Ipv4,
                IpSocketAddress::Ipv4(Ipv4SocketAddress {
                    port: v4.port(),
                    address: (a, b, c, d),
                }),
            )
        }
        std::net::SocketAddr::V6(v6) => {
            let s = v6.ip().segments();
            (
                IpAddressFamily::Ipv6,
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port: v6.port(),
                    flow_info: 0,
                    address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                    scope_id: 0,
                }),
            )
        }
    })
}

export!(NetProbe);
