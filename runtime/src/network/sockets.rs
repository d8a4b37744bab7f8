//! `wasi:sockets` under the entry's network policy: TCP and UDP are enabled for an entry that
//! grants `wasi:sockets`, and every address a socket uses passes the policy first (wasmtime
//! asks before any system call: connect, bind, listen, send, receive, accept).

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::WasiCtxBuilder;

use super::policy::{NetworkPolicy, Scheme};

/// Enables sockets in `builder`, checked by `policy`.
pub(crate) fn install(builder: &mut WasiCtxBuilder, policy: &Arc<NetworkPolicy>) {
    // Name lookups are wasmproc's own (`super::name_lookup`), allowed by the loader's
    // `Program::name_lookup`; wasmtime-wasi's, which this builder would configure, is not linked.
    builder.allow_tcp(true).allow_udp(true);
    let policy = policy.clone();
    builder.socket_addr_check(move |addr, used| {
        Box::pin(std::future::ready(decide(&policy, addr, used)))
    });
}

/// Whether `policy` lets a socket use `addr` for `used`; a refusal is logged with its reason
/// (the guest sees `access-denied`).
pub fn decide(policy: &NetworkPolicy, addr: SocketAddr, used: SocketAddrUse) -> bool {
    let decision = match used {
        SocketAddrUse::TcpConnect => policy.check_addr(Scheme::Tcp, addr.ip(), addr.port()),
        SocketAddrUse::UdpSend => policy.check_addr(Scheme::Udp, addr.ip(), addr.port()),
        SocketAddrUse::TcpBind => policy.check_bind(Scheme::Tcp, addr),
        SocketAddrUse::UdpBind => policy.check_bind(Scheme::Udp, addr),
        SocketAddrUse::TcpListen => policy.check_listen(Scheme::Tcp, addr),
        // A client of a listener the policy allowed.
        SocketAddrUse::TcpAccept => Ok(()),
        // Dropped silently by wasmtime when refused: not worth a log line per datagram.
        SocketAddrUse::UdpReceive => return policy.check_receive(addr),
    };
    match decision {
        Ok(()) => true,
        Err(refusal) => {
            policy.log_refusal(&refusal);
            false
        }
    }
}
