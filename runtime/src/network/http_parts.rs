//! A bound on the wasi:http message parts a process holds at once: header fields, outgoing
//! requests, responses and bodies, and WASI 0.2 requests in flight with their responses and
//! bodies.
//!
//! Each part keeps host memory that `max_memory` does not see: a `fields` up to 128 KiB of
//! headers (wasmtime-wasi-http's limit per fields), a request or response the fields it was
//! made with, a WASI 0.2 outgoing body what the guest wrote into it until the request is sent
//! (two chunks: 1 MiB each by default, 64 KiB here, see `PolicyHooks`), and a request in flight
//! a connection (a host descriptor) and its buffers. Only the handle limit bounded their
//! number. Found attacking (2026-12-07): 1,000 full `fields` took 139 MiB of the host's memory
//! and 300 filled bodies of requests never sent 604 MiB, in about a second; 10,000 handles
//! allowed ~1.2 GiB of fields, ~6.5 GiB of bodies, or ~5,000 connections, per process.
//!
//! With at most [`MAX_HTTP_PARTS`] parts, one process holds at most ~64 MiB of them. Making a
//! part past that ends the process with `limit_exceeded`, as the handle limit does. Parts are
//! counted in the process's resource table (`store_data::Tally`).

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::p2::body::{HostIncomingBody, HostOutgoingBody};
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, HostIncomingResponse, HostOutgoingRequest, HostOutgoingResponse,
};
use wasmtime_wasi_http::{FieldMap, WasiHttpView as _};

use crate::store_data::ComponentData;

/// The wasi:http parts a process may hold at once.
pub const MAX_HTTP_PARTS: usize = 512;

/// A process made a wasi:http part past [`MAX_HTTP_PARTS`]: it ends with `limit_exceeded`.
#[derive(Debug, thiserror::Error)]
#[error(
    "a process holds at most {MAX_HTTP_PARTS} wasi:http parts at once (header fields, requests, responses and bodies, requests in flight included)"
)]
pub struct TooManyHttpParts;

/// Whether a resource table's `entry` is a wasi:http part (WASI 0.2's or 0.3's). A request in
/// flight is one: its future, then its response, then its body.
fn is_part(entry: &dyn std::any::Any) -> bool {
    entry.is::<FieldMap>()
        || entry.is::<HostFutureIncomingResponse>()
        || entry.is::<HostIncomingResponse>()
        || entry.is::<HostIncomingBody>()
        || entry.is::<HostOutgoingRequest>()
        || entry.is::<HostOutgoingResponse>()
        || entry.is::<HostOutgoingBody>()
        || entry.is::<wasmtime_wasi_http::p3::Request>()
        || entry.is::<wasmtime_wasi_http::p3::Response>()
}

/// Admits one more part for the process whose state is `data`.
fn admit(data: &mut ComponentData) -> wasmtime::Result<()> {
    if !data
        .http_parts
        .admit(&mut data.table, MAX_HTTP_PARTS, is_part)
    {
        return Err(TooManyHttpParts.into());
    }
    Ok(())
}

/// The `wasi:http/types` versions wasmtime-wasi-http defines.
const P2_TYPES: &str = "wasi:http/types@0.2.12";
const P3_TYPES: &str = "wasi:http/types@0.3.0";

/// Replaces the WASI 0.2 functions that make a part (a `fields`, by construction, from a list
/// or as a clone; an outgoing body) with ones that first admit it.
pub(crate) fn guard(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    use wasmtime_wasi_http::p2::bindings::http::types::{
        HeaderError, Host as _, HostFields, HostOutgoingRequest as Requests,
        HostOutgoingResponse as Responses,
    };
    linker.allow_shadowing(true);
    let mut types = linker.instance(P2_TYPES)?;
    types.func_wrap("[constructor]fields", |mut store, (): ()| {
        admit(store.data_mut())?;
        Ok((HostFields::new(&mut store.data_mut().http())?,))
    })?;
    types.func_wrap(
        "[static]fields.from-list",
        |mut store, (entries,): (Vec<(String, Vec<u8>)>,)| {
            admit(store.data_mut())?;
            let mut http = store.data_mut().http();
            Ok((match HostFields::from_list(&mut http, entries) {
                Ok(fields) => Ok::<Resource<FieldMap>, HeaderError>(fields),
                Err(e) => Err(http.convert_header_error(e)?),
            },))
        },
    )?;
    types.func_wrap(
        "[method]fields.clone",
        |mut store, (fields,): (Resource<FieldMap>,)| {
            admit(store.data_mut())?;
            Ok((HostFields::clone(&mut store.data_mut().http(), fields)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.body",
        |mut store, (request,): (Resource<HostOutgoingRequest>,)| {
            admit(store.data_mut())?;
            Ok((Requests::body(&mut store.data_mut().http(), request)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-response.body",
        |mut store, (response,): (Resource<HostOutgoingResponse>,)| {
            admit(store.data_mut())?;
            Ok((Responses::body(&mut store.data_mut().http(), response)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// [`guard`] for WASI 0.3's `fields` (its bodies are the guest's own streams).
pub(crate) fn guard_p3(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    use wasmtime_wasi_http::p3::bindings::http::types::{HeaderError, HostFields};
    linker.allow_shadowing(true);
    let mut types = linker.instance(P3_TYPES)?;
    types.func_wrap("[constructor]fields", |mut store, (): ()| {
        admit(store.data_mut())?;
        Ok((HostFields::new(&mut store.data_mut().http())?,))
    })?;
    types.func_wrap(
        "[static]fields.from-list",
        |mut store, (entries,): (Vec<(String, Vec<u8>)>,)| {
            admit(store.data_mut())?;
            Ok((
                match HostFields::from_list(&mut store.data_mut().http(), entries) {
                    Ok(fields) => Ok::<Resource<FieldMap>, HeaderError>(fields),
                    Err(e) => Err(e.downcast()?),
                },
            ))
        },
    )?;
    types.func_wrap(
        "[method]fields.clone",
        |mut store, (fields,): (Resource<FieldMap>,)| {
            admit(store.data_mut())?;
            Ok((HostFields::clone(&mut store.data_mut().http(), fields)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
