//! Components' writes through WASI 0.2 (and preview 1 guests' through their adapter), charged:
//! `descriptor.write`, `set-size`'s growth, every write to the streams `write-via-stream` and
//! `append-via-stream` hand out (wrapped as they are made, in [`crate::file_operations`]), and
//! the names `create-directory-at`, `symlink-at` and `link-at` create (`open-at`'s, in
//! [`crate::special_files`]).

use std::sync::Arc;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, ErrorCode, Host, HostDescriptor, PathFlags,
};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi_io::bytes::Bytes;

use super::{Charge, Exceeded, WriteQuota, NEW_NAME_BYTES};
use crate::store_data::ComponentData;

use crate::special_files::TYPES;

/// Replaces the linker's writing `descriptor` methods with charged ones.
pub(crate) fn charge_writes(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store, (fd, bytes, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let quota = store.data().written.clone();
                let Ok(charge) = Charge::take(quota.as_ref(), bytes.len() as u64) else {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                };
                let mut view = store.data_mut().filesystem();
                match HostDescriptor::write(&mut view, fd, bytes, offset).await {
                    Ok(written) => {
                        charge.keep();
                        Ok((Ok(written),))
                    }
                    Err(e) => Ok((Err(Host::convert_error_code(&mut view, e)?),)),
                }
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store, (fd, size): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let quota = store.data().written.clone();
                let mut view = store.data_mut().filesystem();
                let charge = match &quota {
                    None => Charge::none(),
                    Some(quota) => {
                        let stat =
                            HostDescriptor::stat(&mut view, Resource::new_borrow(fd.rep())).await;
                        match stat {
                            Ok(stat) => {
                                let growth = size.saturating_sub(stat.size);
                                match Charge::take(Some(quota), growth) {
                                    Ok(charge) => charge,
                                    Err(Exceeded) => {
                                        return Ok((Err(ErrorCode::InsufficientSpace),))
                                    }
                                }
                            }
                            // Left to the call itself to report.
                            Err(_) => Charge::none(),
                        }
                    }
                };
                match HostDescriptor::set_size(&mut view, fd, size).await {
                    Ok(()) => {
                        charge.keep();
                        Ok((Ok(()),))
                    }
                    Err(e) => Ok((Err(Host::convert_error_code(&mut view, e)?),)),
                }
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let Ok(charge) = Charge::take(store.data().written.as_ref(), NEW_NAME_BYTES) else {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                };
                let mut view = store.data_mut().filesystem();
                let made = HostDescriptor::create_directory_at(&mut view, fd, path).await;
                kept_if_done(charge, made, &mut view)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store, (fd, old, new): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                let Ok(charge) = Charge::take(store.data().written.as_ref(), NEW_NAME_BYTES) else {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                };
                let mut view = store.data_mut().filesystem();
                let made = HostDescriptor::symlink_at(&mut view, fd, old, new).await;
                kept_if_done(charge, made, &mut view)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store,
         (fd, flags, old, new_fd, new): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                let Ok(charge) = Charge::take(store.data().written.as_ref(), NEW_NAME_BYTES) else {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                };
                let mut view = store.data_mut().filesystem();
                let made = HostDescriptor::link_at(&mut view, fd, flags, old, new_fd, new).await;
                kept_if_done(charge, made, &mut view)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A call's result for the guest, its charge kept when it succeeded.
fn kept_if_done(
    charge: Charge,
    result: wasmtime_wasi::p2::FsResult<()>,
    view: &mut wasmtime_wasi::filesystem::WasiFilesystemCtxView<'_>,
) -> wasmtime::Result<(Result<(), ErrorCode>,)> {
    match result {
        Ok(()) => {
            charge.keep();
            Ok((Ok(()),))
        }
        Err(e) => Ok((Err(Host::convert_error_code(view, e)?),)),
    }
}

/// `stream`, a file's output stream (`write-via-stream`'s or `append-via-stream`'s), wrapped
/// so that each write to it is charged, when the process has a quota.
pub(crate) fn charged(quota: Option<Arc<WriteQuota>>, stream: DynOutputStream) -> DynOutputStream {
    match quota {
        Some(quota) => Box::new(ChargedStream {
            inner: stream,
            quota,
        }),
        None => stream,
    }
}

/// A file's output stream whose writes are charged to the process's quota first.
struct ChargedStream {
    inner: DynOutputStream,
    quota: Arc<WriteQuota>,
}

impl ChargedStream {
    fn charge(&self, bytes: usize) -> StreamResult<Charge> {
        Charge::take(Some(&self.quota), bytes as u64).map_err(|Exceeded| {
            // What the guest's `filesystem-error-code` reads back: `insufficient-space`.
            StreamError::LastOperationFailed(wasmtime::Error::new(Exceeded::io_error()))
        })
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for ChargedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let charge = self.charge(bytes.len())?;
        self.inner.write(bytes)?;
        charge.keep();
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    // The file stream's own, which writes without a task of its own.
    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        let charge = self.charge(bytes.len())?;
        self.inner.blocking_write_and_flush(bytes).await?;
        charge.keep();
        Ok(())
    }

    fn write_zeroes(&mut self, zeroes: usize) -> StreamResult<()> {
        let charge = self.charge(zeroes)?;
        self.inner.write_zeroes(zeroes)?;
        charge.keep();
        Ok(())
    }

    async fn write_ready(&mut self) -> StreamResult<usize> {
        self.inner.write_ready().await
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ChargedStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}
