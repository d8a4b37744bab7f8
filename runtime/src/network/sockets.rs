//! `wasi:sockets` under the entry's network policy: TCP and UDP are enabled for an entry that
//! grants `wasi:sockets`, and every address a socket uses passes the policy first (wasmtime
//! asks before any system call: connect, bind, listen, send, receive, accept).

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView as _};
use wasmtime_wasi::WasiCtxBuilder;

use super::policy::{NetworkPolicy, Scheme};
use crate::store_data::ComponentData;

/// Enables sockets in `builder`, checked by `policy`.
pub(crate) fn install(builder: &mut WasiCtxBuilder, policy: &Arc<NetworkPolicy>) {
    // Name lookups are wasmproc's own (`super::name_lookup`), allowed by the loader's
    // `Program::name_lookup`; wasmtime-wasi's, which this builder would configure, is not linked.
    builder.allow_tcp(true).allow_udp(true);
    let policy = policy.clone();
    builder.socket_addr_check(move |addr, used| {
        // An accepted client also takes one of the host's descriptors (refused, wasmtime-wasi
        // closes the connection at once).
        let may = decide(&policy, addr, used)
            && (!matches!(used, SocketAddrUse::TcpAccept) || crate::descriptors::guest_may_open());
        Box::pin(std::future::ready(may))
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

/// The `wasi:sockets` versions wasmtime-wasi defines (guests' imports match them).
const P2: &str = "@0.2.12";
const P3_TYPES: &str = "wasi:sockets/types@0.3.0";

/// Whether the process whose state is `data` may create a socket: it holds fewer than
/// [`crate::descriptors::MAX_SOCKETS`], and guests may take another of the host's descriptors
/// ([`crate::descriptors`]).
fn may_create(data: &mut ComponentData) -> bool {
    let max = crate::descriptors::MAX_SOCKETS;
    data.sockets
        .admit(&mut data.table, max, crate::descriptors::is_socket)
        && crate::descriptors::guest_may_open()
}

/// Replaces the linker's WASI 0.2 socket constructors with ones that first ask
/// [`may_create`]: `new-socket-limit` when not.
pub(crate) fn guard_creation(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, Host as _, IpAddressFamily};
    use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket::Host as _;
    use wasmtime_wasi::p2::bindings::sockets::udp_create_socket::Host as _;
    use wasmtime_wasi::p2::{TcpSocket, UdpSocket};
    linker.allow_shadowing(true);
    linker
        .instance(&format!("wasi:sockets/tcp-create-socket{P2}"))?
        .func_wrap(
            "create-tcp-socket",
            |mut store, (family,): (IpAddressFamily,)| {
                if !may_create(store.data_mut()) {
                    return Ok((Err(ErrorCode::NewSocketLimit),));
                }
                let mut view = store.data_mut().sockets();
                Ok((match view.create_tcp_socket(family) {
                    Ok(socket) => Ok::<Resource<TcpSocket>, _>(socket),
                    Err(e) => Err(view.convert_error_code(e)?),
                },))
            },
        )?;
    linker
        .instance(&format!("wasi:sockets/udp-create-socket{P2}"))?
        .func_wrap_async(
            "create-udp-socket",
            |mut store, (family,): (IpAddressFamily,)| {
                Box::new(async move {
                    if !may_create(store.data_mut()) {
                        return Ok((Err(ErrorCode::NewSocketLimit),));
                    }
                    let mut view = store.data_mut().sockets();
                    Ok((match view.create_udp_socket(family).await {
                        Ok(socket) => Ok::<Resource<UdpSocket>, _>(socket),
                        Err(e) => Err(view.convert_error_code(e)?),
                    },))
                })
            },
        )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// [`guard_creation`] for WASI 0.3's `tcp-socket.create` and `udp-socket.create`.
pub(crate) fn guard_creation_p3(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p3::bindings::sockets::types::{
        ErrorCode, HostTcpSocket, HostUdpSocket, IpAddressFamily,
    };
    use wasmtime_wasi::sockets::{TcpSocket, UdpSocket};
    // WASI 0.3 has no `new-socket-limit`.
    fn spent() -> ErrorCode {
        ErrorCode::Other(Some(format!(
            "too many sockets: a process may hold {}, and guests together a share of the host's file descriptors",
            crate::descriptors::MAX_SOCKETS
        )))
    }
    linker.allow_shadowing(true);
    let mut types = linker.instance(P3_TYPES)?;
    types.func_wrap(
        "[static]tcp-socket.create",
        |mut store, (family,): (IpAddressFamily,)| {
            if !may_create(store.data_mut()) {
                return Ok((Err(spent()),));
            }
            Ok((
                match HostTcpSocket::create(&mut store.data_mut().sockets(), family) {
                    Ok(socket) => Ok::<Resource<TcpSocket>, _>(socket),
                    Err(e) => Err(e.downcast()?),
                },
            ))
        },
    )?;
    types.func_wrap_async(
        "[static]udp-socket.create",
        |mut store, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                if !may_create(store.data_mut()) {
                    return Ok((Err(spent()),));
                }
                Ok((
                    match HostUdpSocket::create(&mut store.data_mut().sockets(), family).await {
                        Ok(socket) => Ok::<Resource<UdpSocket>, _>(socket),
                        Err(e) => Err(e.downcast()?),
                    },
                ))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
