//! An entry loaded to be served over HTTP: its `wasi:http` handler export, pre-instantiated,
//! and what each request's store needs from the entry.

use std::sync::Arc;

use wasmtime::component::InstancePre;
use wasmtime_wasi_http::handler::ProxyPre;

use crate::manifest::Digest;
use crate::network::NetworkPolicy;
use crate::store_data::ComponentData;

/// A verified, compiled and linked handler component, instantiated once per request.
pub struct HandlerProgram {
    /// The binary's sha256, checked against the entry's `hash`.
    pub digest: Digest,
    pub(crate) proxy: ProxyPre<ComponentData>,
    /// The engine it was compiled for, which its stores must use.
    pub(crate) engine: wasmtime::Engine,
    /// Which handler it exports: `wasi:http/handler@0.3` or `wasi:http/incoming-handler@0.2`.
    pub world: &'static str,
    /// The entry's network policy, when it grants `wasi:http` (its outgoing requests ask it).
    pub(crate) http_policy: Option<Arc<NetworkPolicy>>,
    /// As [`crate::loader::Program`]'s.
    pub(crate) name_lookup: bool,
    /// The concurrent engine's admission: a request's instance holds a place like a process.
    pub(crate) admission: Arc<tokio::sync::Semaphore>,
    /// What one host call may copy from the guest (`limits.max_value`).
    pub(crate) lift_fuel: usize,
    /// As [`crate::loader::Program`]'s.
    pub(crate) counts_fuel: bool,
}

/// The handler `pre` exports, WASI 0.3's first; `Err` when it exports neither.
pub(super) fn proxy(
    pre: InstancePre<ComponentData>,
) -> Result<(ProxyPre<ComponentData>, &'static str), ()> {
    if let Ok(service) = wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
        return Ok((ProxyPre::P3(service), "wasi:http/handler@0.3"));
    }
    match wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre) {
        Ok(proxy) => Ok((ProxyPre::P2(proxy), "wasi:http/incoming-handler@0.2")),
        Err(_) => Err(()),
    }
}
