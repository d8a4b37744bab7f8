//! WASI 0.3 file operations, each in a turn of its process ([`super`]): the `descriptor`
//! methods wasmproc does not otherwise replace are wasmtime-wasi's own, called in a turn, and
//! `read-via-stream` is read by wasmproc's own producer ([`Reads`]), which takes a turn for
//! each chunk. The replaced ones take their turns where they are (`special_files`'s `open-at`,
//! `write_quota::p3`'s writes, `directory_listing`'s batches).
//!
//! [`Reads`] reads 8 KiB ahead of a smaller read (wasmtime-wasi's producer always did, and kept
//! what did not fit until the guest read it) only in one of the process's stream buffers
//! ([`super::MAX_STREAM_BUFFERS`]); without one, it reads what the guest's read has room for.
//! So a guest with thousands of streams keeps at most that many chunks in the host, and one
//! reading a byte at a time still reads a chunk per blocking operation.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSemaphore;
use wasmtime::component::{
    Accessor, Destination, FutureReader, Linker, Resource, StreamProducer, StreamReader,
    StreamResult,
};
use wasmtime::StoreContextMut;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p3::bindings::filesystem::types::{
    Advice, ErrorCode, HostDescriptorWithStore as _, NewTimestamp, PathFlags,
};
use wasmtime_wasi::p3::filesystem::FilesystemResult;

use super::{Buffer, FileOperations, Turn};
use crate::special_files::P3_TYPES;
use crate::store_data::ComponentData;

/// Bytes one blocking read takes from a file at most: wasmtime-wasi's own.
const CHUNK: usize = 8192;

/// Waits for one of the calling process's turns.
pub(crate) async fn turn(accessor: &Accessor<ComponentData>) -> Turn {
    let operations = accessor.with(|mut access| access.get().file_operations());
    operations.turn().await
}

/// A call's result for the guest: an error code goes to it, a trap stays a trap.
fn for_guest<T>(result: FilesystemResult<T>) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// Shadows `$name` with wasmtime-wasi's `$method`, called in a turn.
macro_rules! in_turn {
    ($types:ident, $name:literal, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        $types.func_wrap_concurrent(
            $name,
            |accessor: &Accessor<ComponentData>, ($($arg,)*): ($($ty,)*)| {
                Box::pin(async move {
                    let _turn = turn(accessor).await;
                    let fs = accessor.with_getter::<WasiFilesystem>(ComponentData::filesystem);
                    for_guest(WasiFilesystem::$method(&fs, $($arg),*).await)
                })
            },
        )?;
    };
}

/// Replaces the linker's WASI 0.3 `descriptor` methods that go to a blocking thread with ones
/// that take a turn first (those `special_files`, `write_quota::p3` and `directory_listing`
/// replace take their own).
pub(crate) fn take_turns(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    type Fd = Resource<Descriptor>;
    linker.allow_shadowing(true);
    let mut types = linker.instance(P3_TYPES)?;
    types.func_wrap(
        "[method]descriptor.read-via-stream",
        |store: StoreContextMut<'_, ComponentData>, (fd, offset): (Fd, u64)| {
            read_via_stream(store, fd, offset)
        },
    )?;
    in_turn!(types, "[method]descriptor.advise", advise,
        (fd: Fd, offset: u64, length: u64, advice: Advice));
    in_turn!(types, "[method]descriptor.sync-data", sync_data, (fd: Fd));
    in_turn!(types, "[method]descriptor.get-flags", get_flags, (fd: Fd));
    in_turn!(types, "[method]descriptor.get-type", get_type, (fd: Fd));
    in_turn!(types, "[method]descriptor.set-times", set_times,
        (fd: Fd, accessed: NewTimestamp, modified: NewTimestamp));
    in_turn!(types, "[method]descriptor.sync", sync, (fd: Fd));
    in_turn!(types, "[method]descriptor.stat", stat, (fd: Fd));
    in_turn!(types, "[method]descriptor.stat-at", stat_at,
        (fd: Fd, flags: PathFlags, path: String));
    in_turn!(types, "[method]descriptor.set-times-at", set_times_at,
        (fd: Fd, flags: PathFlags, path: String, accessed: NewTimestamp, modified: NewTimestamp));
    in_turn!(types, "[method]descriptor.readlink-at", readlink_at, (fd: Fd, path: String));
    in_turn!(types, "[method]descriptor.remove-directory-at", remove_directory_at,
        (fd: Fd, path: String));
    in_turn!(types, "[method]descriptor.rename-at", rename_at,
        (fd: Fd, old: String, new_fd: Fd, new: String));
    in_turn!(types, "[method]descriptor.unlink-file-at", unlink_file_at, (fd: Fd, path: String));
    in_turn!(types, "[method]descriptor.metadata-hash", metadata_hash, (fd: Fd));
    in_turn!(types, "[method]descriptor.metadata-hash-at", metadata_hash_at,
        (fd: Fd, flags: PathFlags, path: String));
    types.func_wrap_concurrent(
        "[method]descriptor.is-same-object",
        |accessor: &Accessor<ComponentData>, (fd, other): (Fd, Fd)| {
            Box::pin(async move {
                let _turn = turn(accessor).await;
                let fs = accessor.with_getter::<WasiFilesystem>(ComponentData::filesystem);
                Ok((WasiFilesystem::is_same_object(&fs, fd, other).await?,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What `read-via-stream` returns: the bytes, and how the reading ended.
type ReadStream = (StreamReader<u8>, FutureReader<Result<(), ErrorCode>>);

/// `read-via-stream`: the file from `offset`, read as the guest reads the stream; the future
/// says how the reading ended.
fn read_via_stream(
    mut store: StoreContextMut<'_, ComponentData>,
    fd: Resource<Descriptor>,
    offset: u64,
) -> wasmtime::Result<(ReadStream,)> {
    let (result, outcome) = oneshot::channel();
    let stream = match store.data().table.get(&fd)? {
        Descriptor::File(file) => {
            let file = file.file.clone();
            let operations = store.data_mut().file_operations();
            let reads = Reads {
                file,
                offset,
                turns: operations.poller(),
                operations,
                reading: None,
                ahead: None,
                result: StreamEnd::new(result),
            };
            StreamReader::new(&mut store, reads)?
        }
        Descriptor::Dir(_) => {
            let _ = result.send(Err(ErrorCode::IsDirectory));
            StreamReader::new(&mut store, std::iter::empty())?
        }
    };
    Ok(((stream, FutureReader::new(&mut store, outcome)?),))
}

/// A file read from an offset, a chunk at a time, each chunk in a turn of the process. A chunk
/// larger than the guest's read has room for is read only with one of the process's stream
/// buffers to keep the rest in until the guest takes it; without one, the chunk is what the
/// read has room for.
struct Reads {
    file: Arc<std::fs::File>,
    /// Where the next chunk is read from (past what was read ahead).
    offset: u64,
    operations: FileOperations,
    turns: PollSemaphore,
    /// The chunk being read, and the buffer for what of it will not fit.
    reading: Option<(Chunk, Option<Buffer>)>,
    /// Read and not taken yet.
    ahead: Option<Ahead>,
    result: StreamEnd,
}

/// A chunk being read from the file.
type Chunk = JoinHandle<std::io::Result<Vec<u8>>>;

/// Bytes read ahead of the guest: those from `taken` on, kept in a buffer of the process.
struct Ahead {
    bytes: Vec<u8>,
    taken: usize,
    _buffer: Buffer,
}

impl StreamProducer<ComponentData> for Reads {
    type Item = u8;
    type Buffer = Option<u8>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, ComponentData>,
        dst: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let me = &mut *self;
        if me.reading.is_none() {
            if let Some(ahead) = &mut me.ahead {
                let rest = &ahead.bytes[ahead.taken..];
                ahead.taken += deliver(dst, store, rest);
                if ahead.taken == ahead.bytes.len() {
                    me.ahead = None;
                }
                return Poll::Ready(Ok(StreamResult::Completed));
            }
            // Cancelled, nothing in flight: read nothing more.
            if finish {
                return Poll::Ready(Ok(StreamResult::Cancelled));
            }
            let room = match dst.remaining(&mut store) {
                // A read of nothing: ready for one (as wasmtime-wasi answers it).
                Some(0) => return Poll::Ready(Ok(StreamResult::Completed)),
                Some(room) => room,
                // The host reads (wasmproc does not, so far): a chunk.
                None => CHUNK,
            };
            let turn = ready!(me.turns.poll_acquire(cx));
            let (len, buffer) = match room {
                room if room >= CHUNK => (CHUNK, None),
                room => match me.operations.try_buffer() {
                    Some(buffer) => (CHUNK, Some(buffer)),
                    None => (room, None),
                },
            };
            let (file, offset) = (me.file.clone(), me.offset);
            let task = super::in_turn(turn, move || super::read_at(&file, offset, len));
            me.reading = Some((task, buffer));
        }
        let (reading, _) = me.reading.as_mut().expect("a chunk is being read");
        let read = ready!(until_done(reading, cx, finish));
        let buffer = me.reading.take().and_then(|(_, buffer)| buffer);
        Poll::Ready(Ok(match read {
            Ok(Ok(bytes)) if bytes.is_empty() => me.result.close(Ok(())),
            Ok(Ok(bytes)) => {
                let n = deliver(dst, store, &bytes);
                // What did not fit is kept if a buffer was taken for it, else read again.
                let kept = match buffer {
                    Some(buffer) if n < bytes.len() => {
                        let read = bytes.len();
                        me.ahead = Some(Ahead {
                            bytes,
                            taken: n,
                            _buffer: buffer,
                        });
                        read
                    }
                    _ => n,
                };
                match me.offset.checked_add(kept as u64) {
                    Some(next) => {
                        me.offset = next;
                        StreamResult::Completed
                    }
                    None => me.result.close(Err(ErrorCode::Overflow)),
                }
            }
            Ok(Err(e)) => me.result.close(Err(e.into())),
            Err(e) if e.is_cancelled() => StreamResult::Cancelled,
            Err(e) => me.result.close(Err(ErrorCode::Other(Some(format!(
                "the read stopped: {e}"
            ))))),
        }))
    }
}

/// Copies what of `bytes` fits into the read `dst`; returns how many bytes that was.
fn deliver(
    dst: Destination<'_, u8, Option<u8>>,
    store: StoreContextMut<'_, ComponentData>,
    bytes: &[u8],
) -> usize {
    let mut dst = dst.as_direct(store, bytes.len());
    let room = dst.remaining();
    let n = room.len().min(bytes.len());
    room[..n].copy_from_slice(&bytes[..n]);
    dst.mark_written(n);
    n
}

/// The outcome of a stream's blocking `task`, polled with the stream's `finish`: when the guest
/// cancelled, a task that has not started is aborted, and one that started still ends before
/// the stream does (its bytes were read or written).
pub(crate) fn until_done<T>(
    task: &mut JoinHandle<T>,
    cx: &mut Context<'_>,
    finish: bool,
) -> Poll<Result<T, tokio::task::JoinError>> {
    match Pin::new(&mut *task).poll(cx) {
        Poll::Pending if finish => {
            task.abort();
            Pin::new(task).poll(cx)
        }
        other => other,
    }
}

/// How a WASI 0.3 stream ended, told once to the future the guest got beside it: the error
/// that ended it, else success (the guest dropped the stream, or ended it).
pub(crate) struct StreamEnd(Option<oneshot::Sender<Result<(), ErrorCode>>>);

impl StreamEnd {
    pub(crate) fn new(result: oneshot::Sender<Result<(), ErrorCode>>) -> StreamEnd {
        StreamEnd(Some(result))
    }

    /// Tells the guest `outcome` (unless it was told already) and ends the stream.
    pub(crate) fn close(&mut self, outcome: Result<(), ErrorCode>) -> StreamResult {
        if let Some(result) = self.0.take() {
            let _ = result.send(outcome);
        }
        StreamResult::Dropped
    }
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        self.close(Ok(()));
    }
}
