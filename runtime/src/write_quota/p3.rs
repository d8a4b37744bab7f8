//! Components' writes through WASI 0.3, charged: `set-size`'s growth, the names
//! `create-directory-at`, `symlink-at` and `link-at` create (`open-at`'s, in
//! [`crate::special_files`]), and the bytes of `write-via-stream` and `append-via-stream`.
//!
//! Those two take a stream the guest writes into, and the bytes move from the guest to the
//! stream's consumer with no host call between them: wasmtime-wasi's consumer is private, so
//! wasmproc's own ([`ChargedWrites`], written after it) consumes such streams, charging each
//! chunk before it is written.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSemaphore;
use wasmtime::component::{
    Accessor, FutureReader, Linker, Resource, Source, StreamConsumer, StreamReader, StreamResult,
};
use wasmtime::StoreContextMut;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p3::bindings::filesystem::types::{
    ErrorCode, HostDescriptorWithStore as _, PathFlags,
};

use super::{Charge, WriteQuota, NEW_NAME_BYTES};
use crate::file_operations::p3::{turn, until_done, StreamEnd};
use crate::store_data::ComponentData;

use crate::special_files::P3_TYPES as TYPES;

/// Bytes one write to a file takes from a stream at most: wasmtime-wasi's own.
const CHUNK: usize = 8192;

/// A guest's error, or the host's failure (a trap).
type Outcome<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

/// Replaces the linker's writing WASI 0.3 `descriptor` methods with charged ones.
pub(crate) fn charge_writes(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |store: StoreContextMut<'_, ComponentData>,
         (fd, data, offset): (Resource<Descriptor>, StreamReader<u8>, u64)| {
            write_via_stream(store, fd, data, Some(offset))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |store: StoreContextMut<'_, ComponentData>,
         (fd, data): (Resource<Descriptor>, StreamReader<u8>)| {
            write_via_stream(store, fd, data, None)
        },
    )?;
    types.func_wrap_concurrent(
        "[method]descriptor.set-size",
        |accessor: &Accessor<ComponentData>, (fd, size): (Resource<Descriptor>, u64)| {
            Box::pin(async move {
                // One turn for the look at its size and the change.
                let _turn = turn(accessor).await;
                let fs = accessor.with_getter::<WasiFilesystem>(ComponentData::filesystem);
                let quota = accessor.with(|mut access| access.get().written.clone());
                let charge = match &quota {
                    None => Charge::none(),
                    Some(quota) => {
                        match WasiFilesystem::stat(&fs, Resource::new_borrow(fd.rep())).await {
                            Ok(stat) => {
                                let growth = size.saturating_sub(stat.size);
                                let Ok(charge) = Charge::take(Some(quota), growth) else {
                                    return Ok((Err(ErrorCode::InsufficientSpace),));
                                };
                                charge
                            }
                            // Left to the call itself to report.
                            Err(_) => Charge::none(),
                        }
                    }
                };
                kept_if_done(charge, WasiFilesystem::set_size(&fs, fd, size).await)
            })
        },
    )?;
    types.func_wrap_concurrent(
        "[method]descriptor.create-directory-at",
        |accessor: &Accessor<ComponentData>, (fd, path): (Resource<Descriptor>, String)| {
            Box::pin(async move {
                let Ok(charge) = charge_a_name(accessor) else {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                };
                let _turn = turn(accessor).await;
                let fs = accessor.with_getter::<WasiFilesystem>(ComponentData::filesystem);
                kept_if_done(
                    charge,
                    WasiFilesystem::create_directory_at(&fs, fd, path).await,
                )
            })
        },
    )?;
    types.func_wrap_concurrent(
        "[method]descriptor.symlink-at",
        |accessor: &Accessor<ComponentData>,
         (fd, old, new): (Resource<Descriptor>, String, String)| {
            Box::pin(async move {
                let Ok(charge) = charge_a_name(accessor) else {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                };
                let _turn = turn(accessor).await;
                let fs = accessor.with_getter::<WasiFilesystem>(ComponentData::filesystem);
                kept_if_done(charge, WasiFilesystem::symlink_at(&fs, fd, old, new).await)
            })
        },
    )?;
    types.func_wrap_concurrent(
        "[method]descriptor.link-at",
        |accessor: &Accessor<ComponentData>,
         (fd, flags, old, new_fd, new): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::pin(async move {
                let Ok(charge) = charge_a_name(accessor) else {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                };
                let _turn = turn(accessor).await;
                let fs = accessor.with_getter::<WasiFilesystem>(ComponentData::filesystem);
                let made = WasiFilesystem::link_at(&fs, fd, flags, old, new_fd, new).await;
                kept_if_done(charge, made)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A new name's charge, from the process's quota.
fn charge_a_name(accessor: &Accessor<ComponentData>) -> Result<Charge, super::Exceeded> {
    let quota = accessor.with(|mut access| access.get().written.clone());
    Charge::take(quota.as_ref(), NEW_NAME_BYTES)
}

/// A call's result for the guest, its charge kept when it succeeded.
fn kept_if_done(
    charge: Charge,
    result: wasmtime_wasi::p3::filesystem::FilesystemResult<()>,
) -> Outcome<()> {
    match result {
        Ok(()) => {
            charge.keep();
            Ok((Ok(()),))
        }
        // A trap stays a trap; an error code goes to the guest.
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// `write-via-stream` (`at` an offset) and `append-via-stream` (`at` none): `data` is
/// consumed into the file, charged, and the future returned says how that ended.
fn write_via_stream(
    mut store: StoreContextMut<'_, ComponentData>,
    fd: Resource<Descriptor>,
    mut data: StreamReader<u8>,
    at: Option<u64>,
) -> wasmtime::Result<(FutureReader<Result<(), ErrorCode>>,)> {
    let (result, outcome) = oneshot::channel();
    let file = match store.data().table.get(&fd)? {
        Descriptor::File(file) if !file.perms.write_not_permitted() => Ok(file.file.clone()),
        Descriptor::File(_) => Err(ErrorCode::NotPermitted),
        Descriptor::Dir(_) => Err(ErrorCode::BadDescriptor),
    };
    match file {
        Ok(file) => {
            let quota = store.data().written.clone();
            let turns = store.data_mut().file_operations().poller();
            data.pipe(
                &mut store,
                ChargedWrites::new(file, at, quota, turns, result),
            )?;
        }
        Err(code) => {
            data.close(&mut store)?;
            let _ = result.send(Err(code));
        }
    }
    Ok((FutureReader::new(&mut store, outcome)?,))
}

/// Consumes a guest's stream into a file, each chunk charged to the process's quota before it
/// is written (on a blocking thread, in a turn of the process: files block). The first
/// failure, the quota's included, ends the stream and is what its future reports.
struct ChargedWrites {
    file: Arc<std::fs::File>,
    /// Where the next chunk goes; `None`: at the end of the file.
    at: Option<u64>,
    quota: Option<Arc<WriteQuota>>,
    turns: PollSemaphore,
    result: StreamEnd,
    /// The chunk being written, and its charge.
    writing: Option<(JoinHandle<std::io::Result<usize>>, Charge)>,
}

impl ChargedWrites {
    fn new(
        file: Arc<std::fs::File>,
        at: Option<u64>,
        quota: Option<Arc<WriteQuota>>,
        turns: PollSemaphore,
        result: oneshot::Sender<Result<(), ErrorCode>>,
    ) -> Self {
        ChargedWrites {
            file,
            at,
            quota,
            turns,
            result: StreamEnd::new(result),
            writing: None,
        }
    }
}

impl StreamConsumer<ComponentData> for ChargedWrites {
    type Item = u8;

    fn poll_consume(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<ComponentData>,
        src: Source<Self::Item>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let mut src = src.as_direct(store);
        let me = &mut *self;
        if me.writing.is_none() {
            // Cancelled, nothing in flight: take nothing more (a write takes a blocking thread).
            if finish {
                return Poll::Ready(Ok(StreamResult::Cancelled));
            }
            let remaining = src.remaining();
            if remaining.is_empty() {
                return Poll::Ready(Ok(StreamResult::Completed));
            }
            // Nothing is copied from the guest until the write can go to a thread.
            let turn = ready!(me.turns.poll_acquire(cx));
            let chunk = remaining[..remaining.len().min(CHUNK)].to_vec();
            let Ok(charge) = Charge::take(me.quota.as_ref(), chunk.len() as u64) else {
                return Poll::Ready(Ok(me.result.close(Err(ErrorCode::InsufficientSpace))));
            };
            let (file, at) = (me.file.clone(), me.at);
            let task = crate::file_operations::in_turn(turn, move || {
                crate::file_operations::write_once(&file, &chunk, at)
            });
            me.writing = Some((task, charge));
        }
        let (task, _) = me.writing.as_mut().expect("a chunk is being written");
        let written = ready!(until_done(task, cx, finish));
        let (_, charge) = me.writing.take().expect("a chunk was being written");
        Poll::Ready(Ok(match written {
            Ok(Ok(n)) => {
                src.mark_read(n);
                charge.keep_only(n as u64);
                match me.at.map(|at| at.checked_add(n as u64)) {
                    Some(None) => me.result.close(Err(ErrorCode::Overflow)),
                    Some(Some(next)) => {
                        me.at = Some(next);
                        StreamResult::Completed
                    }
                    None => StreamResult::Completed,
                }
            }
            Ok(Err(e)) => me.result.close(Err(e.into())),
            Err(e) if e.is_cancelled() => StreamResult::Cancelled,
            Err(e) => me.result.close(Err(ErrorCode::Other(Some(format!(
                "the write stopped: {e}"
            ))))),
        }))
    }
}
