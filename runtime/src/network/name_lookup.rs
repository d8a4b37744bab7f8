//! `wasi:sockets/ip-name-lookup` (WASI 0.2 and 0.3), served by wasmproc instead of
//! wasmtime-wasi so that a process's lookups share its bound ([`Lookups`]): at most a few
//! running or queued on the host's blocking threads, and none left to run after its request
//! (its stream) or its process is gone. wasmtime-wasi's own queued a lookup per call on those
//! threads, each still run after the process ended, as long as the resolver takes.
//!
//! Otherwise it behaves as wasmtime-wasi 48's: a lookup is allowed only when the entry's policy
//! lets a socket reach public addresses (else `permanent-resolver-failure`), a name must be a
//! valid domain or address (else `invalid-argument`), an address resolves to itself, and
//! IPv4-mapped IPv6 answers are given as IPv4.

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddress, Network};
use wasmtime_wasi::p3::bindings::sockets::ip_name_lookup as p3;
use wasmtime_wasi::p3::bindings::sockets::types::IpAddress as IpAddressP3;
use wasmtime_wasi::runtime::AbortOnDropJoinHandle;
use wasmtime_wasi_io::poll::{subscribe, DynPollable, Pollable};

use super::lookup::Lookups;
use crate::store_data::ComponentData;

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/name-lookup",
        world: "name-lookup",
        imports: { default: trappable },
        with: {
            "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
            "wasi:sockets/network": wasmtime_wasi::p2::bindings::sockets::network,
            "wasi:sockets/ip-name-lookup.resolve-address-stream": super::ResolveAddressStream,
        },
        require_store_data_send: true,
    });
}

use generated::wasi::sockets::ip_name_lookup;

/// One `resolve-addresses` call: its lookup under way, then its answer, read address by
/// address.
pub struct ResolveAddressStream(State);

enum State {
    Waiting(AbortOnDropJoinHandle<Result<Vec<IpAddr>, ErrorCode>>),
    Done(Result<std::vec::IntoIter<IpAddr>, ErrorCode>),
}

impl ResolveAddressStream {
    /// The answer, once there is one (without waiting).
    fn poll_done(&mut self) -> Option<&mut Result<std::vec::IntoIter<IpAddr>, ErrorCode>> {
        if let State::Waiting(task) = &mut self.0 {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            match std::pin::Pin::new(task).poll(&mut cx) {
                std::task::Poll::Ready(found) => self.0 = State::Done(found.map(Vec::into_iter)),
                std::task::Poll::Pending => return None,
            }
        }
        match &mut self.0 {
            State::Done(done) => Some(done),
            State::Waiting(_) => None,
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ResolveAddressStream {
    async fn ready(&mut self) {
        if let State::Waiting(task) = &mut self.0 {
            let found = task.await;
            self.0 = State::Done(found.map(Vec::into_iter));
        }
    }
}

/// What the lookup functions see of a process's store.
pub(crate) struct View<'a> {
    table: &'a mut ResourceTable,
    /// `None` when the process may not look names up.
    lookups: Option<&'a Lookups>,
}

/// Both WASI versions' lookups see the store through it.
struct HasView;

impl HasData for HasView {
    type Data<'a> = View<'a>;
}

fn view(data: &mut ComponentData) -> View<'_> {
    View {
        table: &mut data.table,
        lookups: data.lookups.as_ref().filter(|_| data.name_lookup),
    }
}

/// Links `wasi:sockets/ip-name-lookup` (WASI 0.2) to the process's own lookups.
pub(crate) fn add_to_linker(l: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    ip_name_lookup::add_to_linker::<ComponentData, HasView>(l, view)
}

/// The longest name looked at: a DNS name has at most 253 bytes once IDNA-encoded, which a
/// name of this many UTF-8 bytes cannot exceed by much. Past it the name is refused unparsed:
/// parsing runs on the process's worker, and a guest may pass up to `max_value` bytes.
const MAX_NAME: usize = 1024;

/// Links `wasi:sockets/ip-name-lookup` (WASI 0.3: one async function that returns the whole
/// answer) to the process's own lookups.
pub(crate) fn add_to_linker_p3(l: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    p3::add_to_linker::<ComponentData, HasView>(l, view)
}

impl p3::Host for View<'_> {}

impl<U> p3::HostWithStore<U> for HasView {
    async fn resolve_addresses(
        store: &wasmtime::component::Accessor<U, Self>,
        name: String,
    ) -> wasmtime::Result<Result<Vec<IpAddressP3>, p3::ErrorCode>> {
        let lookups = store.with(|mut view| view.get().lookups.cloned());
        let Some(lookups) = lookups else {
            return Ok(Err(p3::ErrorCode::PermanentResolverFailure));
        };
        let found = match parse(&name) {
            Err(_) => return Ok(Err(p3::ErrorCode::InvalidArgument)),
            Ok(Err(addresses)) => addresses,
            Ok(Ok(domain)) => match addresses_of(&lookups, domain).await {
                Some(found) => found,
                None => return Ok(Err(p3::ErrorCode::NameUnresolvable)),
            },
        };
        Ok(Ok(found.into_iter().map(Into::into).collect()))
    }
}

/// The addresses `domain` resolves to (IPv4-mapped ones as IPv4); `None` when the lookup
/// failed (logged at debug: the guest sees only `name-unresolvable`).
async fn addresses_of(lookups: &Lookups, domain: String) -> Option<Vec<IpAddr>> {
    match lookups.resolve(&domain, 0).await {
        Ok(found) => Some(found.iter().map(|a| a.ip().to_canonical()).collect()),
        Err(e) => {
            tracing::debug!(%domain, "name lookup failed: {e}");
            None
        }
    }
}

/// A name the guest may look up: its IP addresses at once when it is an address literal.
fn parse(name: &str) -> Result<Result<String, Vec<IpAddr>>, ErrorCode> {
    if name.len() > MAX_NAME {
        return Err(ErrorCode::InvalidArgument);
    }
    match url::Host::parse(name) {
        Ok(url::Host::Domain(domain)) => Ok(Ok(domain)),
        Ok(url::Host::Ipv4(addr)) => Ok(Err(vec![IpAddr::V4(addr)])),
        Ok(url::Host::Ipv6(addr)) => Ok(Err(vec![IpAddr::V6(addr)])),
        // `url` wants IPv6 addresses in brackets.
        Err(_) => match Ipv6Addr::from_str(name) {
            Ok(addr) => Ok(Err(vec![IpAddr::V6(addr)])),
            Err(_) => Err(ErrorCode::InvalidArgument),
        },
    }
}

impl ip_name_lookup::Host for View<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> wasmtime::Result<Result<Resource<ResolveAddressStream>, ErrorCode>> {
        // The network resource is the capability to look up; it must be a live one.
        self.table.get(&network)?;
        let Some(lookups) = self.lookups else {
            return Ok(Err(ErrorCode::PermanentResolverFailure));
        };
        let state = match parse(&name) {
            Err(code) => return Ok(Err(code)),
            Ok(Err(addresses)) => State::Done(Ok(addresses.into_iter())),
            Ok(Ok(domain)) => {
                let lookups = lookups.clone();
                State::Waiting(wasmtime_wasi::runtime::spawn(async move {
                    addresses_of(&lookups, domain)
                        .await
                        .ok_or(ErrorCode::NameUnresolvable)
                }))
            }
        };
        Ok(Ok(self.table.push(ResolveAddressStream(state))?))
    }
}

impl ip_name_lookup::HostResolveAddressStream for View<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Result<Option<IpAddress>, ErrorCode>> {
        let stream = self.table.get_mut(&stream)?;
        Ok(match stream.poll_done() {
            None => Err(ErrorCode::WouldBlock),
            Some(Ok(addresses)) => Ok(addresses.next().map(IpAddress::from)),
            Some(Err(code)) => Err(*code),
        })
    }

    fn subscribe(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(self.table, stream)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        // Its lookup, if still waiting for a thread, is cancelled with it.
        self.table.delete(stream)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ip_name_lookup::HostResolveAddressStream as _;

    #[test]
    fn a_dropped_stream_leaves_the_table() {
        // Otherwise a guest resolving and dropping in a loop would grow the host's table
        // without bound (its own handle table is freed either way).
        let mut table = ResourceTable::new();
        let stream = table
            .push(ResolveAddressStream(State::Done(
                Ok(Vec::new().into_iter()),
            )))
            .unwrap();
        let rep = stream.rep();
        let mut view = View {
            table: &mut table,
            lookups: None,
        };
        view.drop(stream).unwrap();
        let gone: Resource<ResolveAddressStream> = Resource::new_own(rep);
        assert!(
            table.get(&gone).is_err(),
            "the stream is still in the table"
        );
    }

    #[test]
    fn names_are_domains_or_addresses_and_long_ones_are_refused_unparsed() {
        assert!(matches!(parse("localhost"), Ok(Ok(d)) if d == "localhost"));
        // IDNA: a Unicode name is looked up in its ASCII form.
        assert!(matches!(parse("bücher.example"), Ok(Ok(d)) if d == "xn--bcher-kva.example"));
        assert!(matches!(parse("10.1.2.3"), Ok(Err(a)) if a == [IpAddr::from([10, 1, 2, 3])]));
        assert!(matches!(parse("::1"), Ok(Err(a)) if a == [IpAddr::from(Ipv6Addr::LOCALHOST)]));
        assert!(matches!(
            parse("no spaces"),
            Err(ErrorCode::InvalidArgument)
        ));
        // At the bound a name is still parsed; one byte past it, it is not.
        let at_bound = "a.".repeat(MAX_NAME / 2 - 1) + "aa";
        assert_eq!(at_bound.len(), MAX_NAME);
        assert!(matches!(parse(&at_bound), Ok(Ok(_))));
        let past = at_bound + "a";
        assert!(matches!(parse(&past), Err(ErrorCode::InvalidArgument)));
    }
}
