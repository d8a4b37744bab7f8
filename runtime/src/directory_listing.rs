//! Directory listings, bounded. WASI 0.3's `read-directory` is listed a batch at a time.
//! wasmtime-wasi's own lists a directory on a blocking thread that hands each entry over a
//! channel of one and waits there for the guest to read it: a stream the guest never reads
//! holds one of the host's blocking threads (shared by every process on it) until the guest
//! ends. One guest starting 100 such streams took all 64, and every other guest's file
//! operations waited behind them (found attacking, 2026-12-07). Here a blocking thread reads at
//! most [`BATCH`] entries and returns them; the next batch is read when the guest has taken
//! those, so an unread stream holds no thread and at most a batch of entries.
//!
//! WASI 0.2's `read-directory` reads the whole directory into host memory, held until the
//! guest drops the stream (its stream type is wasmtime-wasi's, which only wasmtime-wasi can
//! make): a process holds at most [`MAX_DIRECTORY_LISTINGS`] at once, past which
//! `read-directory` fails with `insufficient-memory`. Before, a guest could hold one per
//! handle, 10,000 copies of a directory's listing outside `max_memory`.

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSemaphore;
use wasmtime::component::{
    Destination, FutureReader, Linker, Resource, StreamProducer, StreamReader, StreamResult,
};
use wasmtime::StoreContextMut;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p3::bindings::filesystem::types::{DescriptorType, DirectoryEntry, ErrorCode};

use crate::file_operations::p3::StreamEnd;
use crate::file_operations::Turn;
use crate::special_files::P3_TYPES;
use crate::store_data::ComponentData;

/// Entries one blocking read takes from a directory at most.
const BATCH: usize = 64;

/// WASI 0.2 directory listings a process holds at once (each a whole directory's entries in
/// host memory): a walk as deep as 64 directories holds one per level.
pub const MAX_DIRECTORY_LISTINGS: usize = 64;

/// Replaces the linker's WASI 0.2 `[method]descriptor.read-directory` with one that refuses a
/// listing past [`MAX_DIRECTORY_LISTINGS`] held.
pub(crate) fn bound_p2_listings(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    use wasmtime_wasi::filesystem::WasiFilesystemView as _;
    use wasmtime_wasi::p2::bindings::filesystem::types::{self as p2, Host, HostDescriptor};
    linker.allow_shadowing(true);
    let mut types = linker.instance(crate::special_files::TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.read-directory",
        |mut store, (fd,): (Resource<p2::Descriptor>,)| {
            Box::new(async move {
                // A walk of the table: cheap beside the listing, which reads the whole directory.
                let held = crate::store_data::held(&mut store.data_mut().table, |entry| {
                    entry.is::<wasmtime_wasi::p2::ReaddirIterator>()
                });
                if held >= MAX_DIRECTORY_LISTINGS {
                    return Ok((Err(p2::ErrorCode::InsufficientMemory),));
                }
                let mut view = store.data_mut().filesystem();
                match HostDescriptor::read_directory(&mut view, fd).await {
                    Ok(listing) => Ok((Ok(listing),)),
                    Err(e) => Ok((Err(Host::convert_error_code(&mut view, e)?),)),
                }
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Replaces the linker's WASI 0.3 `[method]descriptor.read-directory`.
pub(crate) fn list_in_batches(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(P3_TYPES)?;
    types.func_wrap(
        "[method]descriptor.read-directory",
        |mut store: StoreContextMut<'_, ComponentData>, (fd,): (Resource<Descriptor>,)| {
            let (result, outcome) = oneshot::channel();
            let stream = match store.data().table.get(&fd)? {
                Descriptor::Dir(dir) => {
                    let dir = dir.dir.clone();
                    let turns = store.data_mut().file_operations().poller();
                    let listing = Listing::new(dir, turns, result);
                    StreamReader::new(&mut store, listing)?
                }
                Descriptor::File(_) => {
                    let _ = result.send(Err(ErrorCode::NotDirectory));
                    StreamReader::new(&mut store, std::iter::empty())?
                }
            };
            Ok(((stream, FutureReader::new(&mut store, outcome)?),))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A directory's entries, read a batch at a time.
struct Listing {
    /// Where the listing is, between batches: `None` until the first batch is read, while a
    /// batch is being read, and once it ended.
    entries: Option<cap_primitives::fs::ReadDir>,
    /// The directory, until the first batch opens its listing.
    dir: Option<Arc<std::fs::File>>,
    /// Read and not yet taken by the guest.
    ready: VecDeque<DirectoryEntry>,
    /// The process's turns at the blocking threads: a batch is read in one.
    turns: PollSemaphore,
    reading: Option<JoinHandle<Batch>>,
    /// How the listing ended, once it did.
    ended: Option<Result<(), ErrorCode>>,
    result: StreamEnd,
}

/// What one blocking read returns: the entries, and where to go on from (`None`: the listing
/// ended, with the outcome).
struct Batch {
    entries: Vec<DirectoryEntry>,
    next: Result<Option<cap_primitives::fs::ReadDir>, ErrorCode>,
}

impl Listing {
    fn new(
        dir: Arc<std::fs::File>,
        turns: PollSemaphore,
        result: oneshot::Sender<Result<(), ErrorCode>>,
    ) -> Listing {
        Listing {
            entries: None,
            dir: Some(dir),
            ready: VecDeque::new(),
            turns,
            reading: None,
            ended: None,
            result: StreamEnd::new(result),
        }
    }

    /// Starts reading the next batch on a blocking thread, in `turn`.
    fn read_next(&mut self, turn: Turn) {
        let (dir, entries) = (self.dir.take(), self.entries.take());
        self.reading = Some(crate::file_operations::in_turn(turn, move || {
            let entries = match (entries, dir) {
                (Some(entries), _) => Ok(entries),
                (None, Some(dir)) => cap_primitives::fs::read_base_dir(&dir),
                (None, None) => Err(std::io::Error::other("the listing already ended")),
            };
            match entries {
                Ok(entries) => batch(entries),
                Err(e) => Batch {
                    entries: Vec::new(),
                    next: Err(e.into()),
                },
            }
        }));
    }
}

/// Up to [`BATCH`] entries of `entries`, typed as WASI 0.3 says (the type of the entry itself:
/// a symbolic link is one), and where the listing goes on from.
fn batch(mut entries: cap_primitives::fs::ReadDir) -> Batch {
    let mut taken = Vec::new();
    for _ in 0..BATCH {
        let entry = match entries.next() {
            None => {
                return Batch {
                    entries: taken,
                    next: Ok(None),
                }
            }
            Some(entry) => entry.and_then(|entry| {
                let ty = entry.metadata()?.file_type();
                Ok((entry.file_name(), descriptor_type(&ty)))
            }),
        };
        match entry {
            Ok((name, type_)) => match name.into_string() {
                Ok(name) => taken.push(DirectoryEntry { type_, name }),
                Err(_) => {
                    return Batch {
                        entries: taken,
                        next: Err(ErrorCode::IllegalByteSequence),
                    }
                }
            },
            Err(e) => {
                return Batch {
                    entries: taken,
                    next: Err(e.into()),
                }
            }
        }
    }
    Batch {
        entries: taken,
        next: Ok(Some(entries)),
    }
}

fn descriptor_type(ty: &cap_primitives::fs::FileType) -> DescriptorType {
    use cap_primitives::fs::FileTypeExt as _;
    if ty.is_dir() {
        DescriptorType::Directory
    } else if ty.is_file() {
        DescriptorType::RegularFile
    } else if ty.is_symlink() {
        DescriptorType::SymbolicLink
    } else if ty.is_block_device() {
        DescriptorType::BlockDevice
    } else if ty.is_char_device() {
        DescriptorType::CharacterDevice
    } else if ty.is_fifo() {
        DescriptorType::Fifo
    } else if ty.is_socket() {
        DescriptorType::Socket
    } else {
        DescriptorType::Other(None)
    }
}

impl StreamProducer<ComponentData> for Listing {
    type Item = DirectoryEntry;
    type Buffer = Option<DirectoryEntry>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, ComponentData>,
        mut dst: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        // A read of nothing: ready for one (as wasmtime-wasi answers it).
        if dst.remaining(&mut store) == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        let me = &mut *self;
        loop {
            if let Some(entry) = me.ready.pop_front() {
                dst.set_buffer(Some(entry));
                return Poll::Ready(Ok(StreamResult::Completed));
            }
            if let Some(outcome) = me.ended.take() {
                return Poll::Ready(Ok(me.result.close(outcome)));
            }
            if me.reading.is_none() {
                if finish {
                    return Poll::Ready(Ok(StreamResult::Cancelled));
                }
                let turn = ready!(me.turns.poll_acquire(cx));
                me.read_next(turn);
            }
            let reading = me.reading.as_mut().expect("a batch is being read");
            // A read that started ends (a batch is short); a cancelled read waits for it.
            let read = ready!(Pin::new(reading).poll(cx));
            me.reading = None;
            let batch = read.map_err(|e| wasmtime::format_err!("listing a directory: {e}"))?;
            me.ready.extend(batch.entries);
            match batch.next {
                Ok(Some(entries)) => me.entries = Some(entries),
                Ok(None) => me.ended = Some(Ok(())),
                Err(code) => me.ended = Some(Err(code)),
            }
        }
    }
}
