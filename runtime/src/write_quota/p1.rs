//! Core modules' writes (preview 1), charged: `fd_write` and `fd_pwrite` to regular files (not
//! stdio), `fd_filestat_set_size`'s growth, and the names `path_create_directory`,
//! `path_symlink` and `path_link` create (`path_open`'s, in [`crate::special_files`]).
//! Preview 1 writes go straight to the file, not through WASI 0.2's streams.

use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types::{Ciovec, Errno, Fd, Filetype};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1 as _};
use wiggle::{GuestMemory, GuestPtr};

use super::{Charge, NEW_NAME_BYTES};
use crate::p1_call::P1Call;
use crate::store_data::ModuleData;

const MODULE: &str = "wasi_snapshot_preview1";

/// What a refused call returns: the disk is full, as far as the guest can tell.
const FULL: i32 = Errno::Nospc as i32;

/// Replaces the core linker's writing functions with charged ones.
pub(crate) fn charge_writes(linker: &mut Linker<ModuleData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, ModuleData>,
         (fd, iovs, iovs_len, written): (i32, i32, i32, i32)| {
            Box::new(async move {
                let mut call = P1Call::of(&mut caller, "fd_write")?;
                let Ok(charge) = charge_write(&mut call, fd, iovs, iovs_len).await else {
                    return Ok(FULL);
                };
                let (memory, ctx) = call.parts();
                let errno = p1::fd_write(ctx, memory, fd, iovs, iovs_len, written).await?;
                kept_if_done(charge, errno)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_pwrite",
        |mut caller: Caller<'_, ModuleData>,
         (fd, iovs, iovs_len, offset, written): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                let mut call = P1Call::of(&mut caller, "fd_pwrite")?;
                let Ok(charge) = charge_write(&mut call, fd, iovs, iovs_len).await else {
                    return Ok(FULL);
                };
                let (memory, ctx) = call.parts();
                let errno = p1::fd_pwrite(ctx, memory, fd, iovs, iovs_len, offset, written).await?;
                kept_if_done(charge, errno)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "fd_filestat_set_size",
        |mut caller: Caller<'_, ModuleData>, (fd, size): (i32, i64)| {
            Box::new(async move {
                let mut call = P1Call::of(&mut caller, "fd_filestat_set_size")?;
                let charge = match &call.quota {
                    None => Charge::none(),
                    Some(quota) => {
                        let quota = quota.clone();
                        let (memory, ctx) = call.parts();
                        match ctx.fd_filestat_get(memory, Fd::from(fd as u32)).await {
                            Ok(stat) => {
                                let growth = (size as u64).saturating_sub(stat.size);
                                match Charge::take(Some(&quota), growth) {
                                    Ok(charge) => charge,
                                    Err(_) => return Ok(FULL),
                                }
                            }
                            // Left to the call itself to report.
                            Err(_) => Charge::none(),
                        }
                    }
                };
                let (memory, ctx) = call.parts();
                let errno = p1::fd_filestat_set_size(ctx, memory, fd, size).await?;
                kept_if_done(charge, errno)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "path_create_directory",
        |mut caller: Caller<'_, ModuleData>, (fd, path, path_len): (i32, i32, i32)| {
            Box::new(async move {
                let mut call = P1Call::of(&mut caller, "path_create_directory")?;
                let Ok(charge) = Charge::take(call.quota.as_ref(), NEW_NAME_BYTES) else {
                    return Ok(FULL);
                };
                let (memory, ctx) = call.parts();
                let errno = p1::path_create_directory(ctx, memory, fd, path, path_len).await?;
                kept_if_done(charge, errno)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "path_symlink",
        |mut caller: Caller<'_, ModuleData>,
         (old, old_len, fd, new, new_len): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let mut call = P1Call::of(&mut caller, "path_symlink")?;
                let Ok(charge) = Charge::take(call.quota.as_ref(), NEW_NAME_BYTES) else {
                    return Ok(FULL);
                };
                let (memory, ctx) = call.parts();
                let errno = p1::path_symlink(ctx, memory, old, old_len, fd, new, new_len).await?;
                kept_if_done(charge, errno)
            })
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        "path_link",
        |mut caller: Caller<'_, ModuleData>,
         (old_fd, flags, old, old_len, new_fd, new, new_len): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let mut call = P1Call::of(&mut caller, "path_link")?;
                let Ok(charge) = Charge::take(call.quota.as_ref(), NEW_NAME_BYTES) else {
                    return Ok(FULL);
                };
                let (memory, ctx) = call.parts();
                let errno = p1::path_link(
                    ctx, memory, old_fd, flags, old, old_len, new_fd, new, new_len,
                )
                .await?;
                kept_if_done(charge, errno)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The call's errno, its charge kept when it succeeded.
fn kept_if_done(charge: Charge, errno: i32) -> wasmtime::Result<i32> {
    if errno == Errno::Success as i32 {
        charge.keep();
    }
    Ok(errno)
}

/// What an `fd_write` or `fd_pwrite` of `iovs` to `fd` will write, taken from the quota: the
/// first buffer that is not empty (preview 1 writes no more in one call), when `fd` is a regular
/// file. Nothing is taken where the call will fail anyway (a bad descriptor or buffer: the call
/// reports it) or writes to stdio.
async fn charge_write(
    call: &mut P1Call<'_>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
) -> Result<Charge, super::Exceeded> {
    let Some(quota) = call.quota.clone() else {
        return Ok(Charge::none());
    };
    // First what the descriptor is (stdio needs no system call), then the buffers.
    let (memory, ctx) = call.parts();
    let file = ctx
        .fd_fdstat_get(memory, Fd::from(fd as u32))
        .await
        .is_ok_and(|stat| stat.fs_filetype == Filetype::RegularFile);
    if !file {
        return Ok(Charge::none());
    }
    let Some(bytes) = first_buffer(&call.memory, iovs, iovs_len, call.fuel()) else {
        return Ok(Charge::none());
    };
    Charge::take(Some(&quota), bytes)
}

/// The length of the first non-empty buffer of `iovs`, as wasmtime-wasi picks it; `None` when
/// the array does not fit the memory, or is larger than the call may copy (`fuel` bytes:
/// wasmtime-wasi refuses it before it reads one).
fn first_buffer(memory: &GuestMemory<'_>, iovs: i32, iovs_len: i32, fuel: usize) -> Option<u64> {
    let len = iovs_len as u32;
    if (len as usize).checked_mul(std::mem::size_of::<Ciovec>())? > fuel {
        return None;
    }
    for iov in GuestPtr::<[Ciovec]>::new((iovs as u32, len)).iter() {
        let iov = memory.read(iov.ok()?).ok()?;
        if iov.buf_len > 0 {
            return Some(u64::from(iov.buf_len));
        }
    }
    Some(0)
}
