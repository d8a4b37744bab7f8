//! Guests' opens, guarded. While the host's file descriptors are spent (see
//! [`crate::descriptors`]), any open is refused. And special files (FIFOs, sockets, character
//! and block devices) inside mounts are refused when a guest opens them: before the open, the
//! path is looked at with a `stat` (which never blocks on such a file), and anything but a
//! regular file, a directory or a symbolic link is refused with `unsupported`; only then is it
//! opened.
//!
//! Every way in is guarded: components' `wasi:filesystem` `open-at` (WASI 0.2, which preview 1
//! guests reach through their adapter, and WASI 0.3) and core modules' preview 1 `path_open`.
//! What is left: a host process that swaps a regular file for a FIFO between the look and the
//! open. A guest cannot: WASI has no call that makes a special file, and a guest's own calls
//! run one at a time.
//!
//! Why: wasmtime-wasi opens a path on a thread of its blocking pool, and opening a FIFO blocks
//! until its other end is opened, which may be never, even after the guest is gone (an abort
//! does not stop a running blocking call); a device can block the same way, or hand out
//! endless data. Unguarded, 600 killed guests took every pool thread, and every other guest's
//! file operations waited behind them into `max_execution_ms`.

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, ErrorCode, Host, HostDescriptor, OpenFlags,
    PathFlags,
};

use crate::store_data::{ComponentData, ModuleData};
use crate::write_quota::Charge;

/// The `wasi:filesystem/types` version wasmtime-wasi defines (guests' 0.2.x imports match it).
pub(crate) const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Regular files, directories and symbolic links can be opened; nothing else.
fn special(ty: DescriptorType) -> bool {
    !matches!(
        ty,
        DescriptorType::RegularFile | DescriptorType::Directory | DescriptorType::SymbolicLink
    )
}

/// Replaces the linker's `[method]descriptor.open-at` with one that refuses special files (and
/// charges a file it creates to the process's write quota).
pub(crate) fn guard_open_at(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (dir, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                // `io`: what wasmtime-wasi reports for the kernel's own "too many open files".
                if !store.data_mut().open_files.may_open() || !crate::descriptors::guest_may_open()
                {
                    return Ok((Err(ErrorCode::Io),));
                }
                let mut view = store.data_mut().filesystem();
                let looked = HostDescriptor::stat_at(
                    &mut view,
                    Resource::new_borrow(dir.rep()),
                    path_flags,
                    path.clone(),
                )
                .await;
                // A path that does not exist (yet) or cannot be looked at is left to the open
                // to report, as before.
                if looked.as_ref().is_ok_and(|stat| special(stat.type_)) {
                    return Ok((Err(ErrorCode::Unsupported),));
                }
                let creates = looked.is_err() && oflags.contains(OpenFlags::CREATE);
                let Ok(charge) = Charge::for_creation(store.data().written.as_ref(), creates)
                else {
                    return Ok((Err(ErrorCode::InsufficientSpace),));
                };
                let mut view = store.data_mut().filesystem();
                let opened =
                    HostDescriptor::open_at(&mut view, dir, path_flags, path, oflags, flags).await;
                let opened = match opened {
                    Ok(file) => file,
                    Err(e) => return Ok((Err(Host::convert_error_code(&mut view, e)?),)),
                };
                charge.keep();
                let data = store.data_mut();
                let file = crate::descriptors::file_of(data.table.get(&opened)?).clone();
                data.open_files.opened(&file);
                Ok((Ok(opened),))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The WASI 0.3 `wasi:filesystem/types` wasmtime-wasi defines.
pub(crate) const P3_TYPES: &str = "wasi:filesystem/types@0.3.0";

/// Replaces the linker's WASI 0.3 `[method]descriptor.open-at` with one that refuses special
/// files (an `async func`: wrapped as a concurrent host function).
pub(crate) fn guard_open_at_p3(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    use wasmtime::component::Accessor;
    use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystem};
    use wasmtime_wasi::p3::bindings::filesystem::types::{
        self as p3, HostDescriptorWithStore as _,
    };
    linker.allow_shadowing(true);
    let mut types = linker.instance(P3_TYPES)?;
    types.func_wrap_concurrent(
        "[method]descriptor.open-at",
        |accessor: &Accessor<ComponentData>,
         (dir, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            p3::PathFlags,
            String,
            p3::OpenFlags,
            p3::DescriptorFlags,
        )| {
            Box::pin(async move {
                let may = accessor.with(|mut access| access.get().open_files.may_open());
                if !may || !crate::descriptors::guest_may_open() {
                    return Ok((Err(p3::ErrorCode::Io),));
                }
                // One turn for the look and the open.
                let _turn = crate::file_operations::p3::turn(accessor).await;
                let fs = accessor.with_getter::<WasiFilesystem>(ComponentData::filesystem);
                let looked = WasiFilesystem::stat_at(
                    &fs,
                    Resource::new_borrow(dir.rep()),
                    path_flags,
                    path.clone(),
                )
                .await;
                // As for WASI 0.2: what cannot be looked at is left to the open to report.
                if looked.as_ref().is_ok_and(|stat| {
                    !matches!(
                        stat.type_,
                        p3::DescriptorType::RegularFile
                            | p3::DescriptorType::Directory
                            | p3::DescriptorType::SymbolicLink
                    )
                }) {
                    return Ok((Err(p3::ErrorCode::Unsupported),));
                }
                let creates = looked.is_err() && oflags.contains(p3::OpenFlags::CREATE);
                let quota = accessor.with(|mut access| access.get().written.clone());
                let Ok(charge) = Charge::for_creation(quota.as_ref(), creates) else {
                    return Ok((Err(p3::ErrorCode::InsufficientSpace),));
                };
                let opened = match WasiFilesystem::open_at(
                    &fs, dir, path_flags, path, oflags, flags,
                )
                .await
                {
                    Ok(file) => file,
                    // A trap stays a trap; an error code goes to the guest.
                    Err(e) => return Ok((Err(e.downcast()?),)),
                };
                charge.keep();
                accessor.with(|mut access| {
                    let data = access.get();
                    let file = crate::descriptors::file_of(data.table.get(&opened)?).clone();
                    data.open_files.opened(&file);
                    wasmtime::Result::<()>::Ok(())
                })?;
                Ok((Ok(opened),))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Replaces the core linker's preview 1 `path_open` with one that refuses special files (and
/// charges a file it creates to the process's write quota, [`crate::write_quota`]).
pub(crate) fn guard_path_open(linker: &mut wasmtime::Linker<ModuleData>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p1::types::{Errno, Fd, Filetype, Lookupflags, Oflags};
    use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1 as _};
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "path_open",
        |mut caller: wasmtime::Caller<'_, ModuleData>,
         (fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i64,
            i64,
            i32,
            i32,
        )| {
            Box::new(async move {
                // "Too many open files": this process's bound.
                let table = wasmtime_wasi::WasiView::ctx(&mut *caller.data_mut().p1).table;
                if !crate::descriptors::p1_may_open(table) {
                    return Ok(Errno::Mfile as i32);
                }
                // "Too many files open in system": the host's, shared by every guest.
                if !crate::descriptors::guest_may_open() {
                    return Ok(Errno::Nfile as i32);
                }
                let mut call = crate::p1_call::P1Call::of(&mut caller, "path_open")?;
                let (memory, ctx) = call.parts();
                let looked = ctx
                    .path_filestat_get(
                        memory,
                        Fd::from(fd as u32),
                        Lookupflags::from_bits_truncate(dirflags as u32),
                        wiggle::GuestPtr::new((path as u32, path_len as u32)),
                    )
                    .await;
                // Preview 1 calls a FIFO `unknown`.
                let creates = match looked {
                    Ok(stat) => {
                        if !matches!(
                            stat.filetype,
                            Filetype::RegularFile | Filetype::Directory | Filetype::SymbolicLink
                        ) {
                            return Ok(Errno::Notsup as i32);
                        }
                        false
                    }
                    Err(_) => Oflags::from_bits_truncate(oflags as u16).contains(Oflags::CREAT),
                };
                let Ok(charge) = Charge::for_creation(call.quota.as_ref(), creates) else {
                    return Ok(Errno::Nospc as i32);
                };
                let (memory, ctx) = call.parts();
                let errno = p1::path_open(
                    ctx, memory, fd, dirflags, path, path_len, oflags, base, inheriting, fdflags,
                    opened,
                )
                .await?;
                if errno == Errno::Success as i32 {
                    charge.keep();
                }
                Ok(errno)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
