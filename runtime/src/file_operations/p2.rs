//! WASI 0.2 file streams, wasmproc's own: `read-via-stream`, `write-via-stream` and
//! `append-via-stream` hand out [`FileReads`] and [`FileWrites`], written after wasmtime-wasi's,
//! whose reads and writes take turns ([`super`]) and stream buffers.
//!
//! wasmtime-wasi's read a file in the background as soon as the guest asked (a non-blocking
//! `read` of up to 64 KiB, or a poll), and kept what it read until the guest took it; its
//! writes went to the background likewise. A process may open as many streams on one file as
//! it has handles, so it could put thousands of reads or writes on the host's blocking threads
//! at once and keep 64 KiB for each: 3,000 streams of one guest took the host 206 MB more
//! resident memory, outside `max_memory` (19 MB with the bound; found attacking, 2026-12-08).
//! Here each stream holds a buffer ([`super::MAX_STREAM_BUFFERS`] a process) from the moment it
//! reads ahead or may write until the guest has taken what it read or the write has ended, and
//! an operation goes to a blocking thread only in a turn. `blocking-read` and
//! `blocking-write-and-flush` (what toolchains' file I/O uses) hold no buffer: the bytes go
//! straight to or from the guest. A write's buffer is given back once its bytes are written,
//! and neither a poll nor a `blocking-flush` takes one. A guest that keeps every buffer (16
//! streams with bytes it does not take, or writes `check-write` permitted and it does not
//! make) and then polls a seventeenth stream waits for itself.

use std::io;
use std::sync::Arc;

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types as p2;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};
use wasmtime_wasi_io::bytes::{Buf as _, Bytes};

use super::{Buffer, FileOperations, Operation};
use crate::special_files::TYPES;
use crate::store_data::ComponentData;

/// Up to `len` bytes of `file` from `offset` (none: its end).
fn read(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Bytes> {
    super::read_at(file, offset, len).map(Bytes::from)
}

/// Bytes a read takes at most: wasmtime-wasi's bound.
const MAX_READ: usize = 64 * 1024;

/// Bytes a read started by a poll takes: wasmtime-wasi's.
const POLLED_READ: usize = 4096;

/// Bytes `check-write` permits: wasmtime-wasi's.
const WRITE_CAPACITY: usize = 64 * 1024;

/// Replaces the linker's WASI 0.2 `read-via-stream`, `write-via-stream` and
/// `append-via-stream` with ones that hand out wasmproc's streams (writes charged to the
/// process's quota, [`crate::write_quota`]).
pub(crate) fn take_turns(linker: &mut Linker<ComponentData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap(
        "[method]descriptor.read-via-stream",
        |mut store, (fd, offset): (Resource<p2::Descriptor>, u64)| {
            let data = store.data_mut();
            let file = match data.table.get(&fd)? {
                Descriptor::File(file) => file.file.clone(),
                Descriptor::Dir(_) => return Ok((Err(p2::ErrorCode::IsDirectory),)),
            };
            let reads = FileReads::new(file, offset, data.file_operations());
            let stream: DynInputStream = Box::new(reads);
            Ok((Ok(data.table.push(stream)?),))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store, (fd, offset): (Resource<p2::Descriptor>, u64)| {
            write_via_stream(store.data_mut(), fd, Some(offset))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store, (fd,): (Resource<p2::Descriptor>,)| {
            write_via_stream(store.data_mut(), fd, None)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// `write-via-stream` (at an offset) and `append-via-stream` (at the end), with wasmtime-wasi's
/// errors: a directory is a bad descriptor, a file opened without write `not-permitted`.
fn write_via_stream(
    data: &mut ComponentData,
    fd: Resource<p2::Descriptor>,
    at: Option<u64>,
) -> wasmtime::Result<(Result<Resource<DynOutputStream>, p2::ErrorCode>,)> {
    let file = match data.table.get(&fd)? {
        Descriptor::File(file) if file.perms.write_not_permitted() => {
            return Ok((Err(p2::ErrorCode::NotPermitted),))
        }
        Descriptor::File(file) => file.file.clone(),
        Descriptor::Dir(_) => return Ok((Err(p2::ErrorCode::BadDescriptor),)),
    };
    let writes = FileWrites::new(file, at, data.file_operations());
    let stream = crate::write_quota::p2::charged(data.written.clone(), Box::new(writes));
    Ok((Ok(data.table.push(stream)?),))
}

/// A file's bytes from an offset, read as the guest asks.
struct FileReads {
    file: Arc<std::fs::File>,
    /// Where the next read starts.
    position: u64,
    operations: FileOperations,
    state: ReadState,
}

enum ReadState {
    Idle,
    /// Asked for this many bytes while every buffer was held: read when one is free.
    Asked(usize),
    Reading {
        task: Operation<Bytes>,
        buffer: Buffer,
    },
    /// Read and not all taken: the buffer is held until it is.
    Ready {
        bytes: Bytes,
        _buffer: Buffer,
    },
    Failed(io::Error),
    Closed,
}

impl FileReads {
    fn new(file: Arc<std::fs::File>, position: u64, operations: FileOperations) -> Self {
        FileReads {
            file,
            position,
            operations,
            state: ReadState::Idle,
        }
    }

    /// Starts reading `size` bytes in `buffer`.
    fn start(&mut self, size: usize, buffer: Buffer) {
        let (file, at, size) = (self.file.clone(), self.position, size.min(MAX_READ));
        let task = self.operations.on_a_thread(move || read(&file, at, size));
        self.state = ReadState::Reading { task, buffer };
    }

    /// Starts reading `size` bytes if a buffer is free, else asks for one.
    fn ask(&mut self, size: usize) {
        match self.operations.try_buffer() {
            Some(buffer) => self.start(size, buffer),
            None => self.state = ReadState::Asked(size),
        }
    }

    /// Waits for the read under way, or the one asked for (else one of `size` bytes), to end.
    /// Cancel-safe: dropped while waiting, the stream is as it was, or reading.
    async fn wait(&mut self, size: usize) {
        loop {
            let size = match &mut self.state {
                ReadState::Idle => size,
                ReadState::Asked(asked) => *asked,
                ReadState::Reading { task, .. } => {
                    let result = task.await;
                    let state = std::mem::replace(&mut self.state, ReadState::Closed);
                    let ReadState::Reading { buffer, .. } = state else {
                        return;
                    };
                    self.state = match result {
                        // The end of the file: the stream is closed, and the buffer given back.
                        Ok(bytes) if bytes.is_empty() => ReadState::Closed,
                        Ok(bytes) => ReadState::Ready {
                            bytes,
                            _buffer: buffer,
                        },
                        Err(e) => ReadState::Failed(e),
                    };
                    return;
                }
                ReadState::Ready { .. } | ReadState::Failed(_) | ReadState::Closed => return,
            };
            let buffer = self.operations.buffer().await;
            self.start(size, buffer);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl InputStream for FileReads {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        match &mut self.state {
            ReadState::Idle => {
                if size > 0 {
                    self.ask(size);
                }
                Ok(Bytes::new())
            }
            ReadState::Asked(asked) => {
                let asked = *asked;
                self.ask(asked);
                Ok(Bytes::new())
            }
            ReadState::Reading { .. } => Ok(Bytes::new()),
            ReadState::Ready { bytes, .. } => {
                let chunk = bytes.split_to(bytes.len().min(size));
                if bytes.is_empty() {
                    self.state = ReadState::Idle;
                }
                self.position = self.position.saturating_add(chunk.len() as u64);
                Ok(chunk)
            }
            // A failure is reported once; the stream is closed after it.
            ReadState::Failed(_) | ReadState::Closed => {
                match std::mem::replace(&mut self.state, ReadState::Closed) {
                    ReadState::Failed(e) => Err(StreamError::LastOperationFailed(e.into())),
                    _ => Err(StreamError::Closed),
                }
            }
        }
    }

    async fn blocking_read(&mut self, size: usize) -> StreamResult<Bytes> {
        if size == 0 {
            return self.read(0);
        }
        // Nothing read yet (or asked for and waiting for a buffer): read and handed over at
        // once, so no buffer is needed.
        if let ReadState::Idle | ReadState::Asked(_) = self.state {
            let (file, at, len) = (self.file.clone(), self.position, size.min(MAX_READ));
            return match self.operations.run(move || read(&file, at, len)).await {
                Ok(bytes) if bytes.is_empty() => {
                    self.state = ReadState::Closed;
                    Err(StreamError::Closed)
                }
                Ok(bytes) => {
                    self.position = self.position.saturating_add(bytes.len() as u64);
                    self.state = ReadState::Idle;
                    Ok(bytes)
                }
                Err(e) => {
                    self.state = ReadState::Closed;
                    Err(StreamError::LastOperationFailed(e.into()))
                }
            };
        }
        self.wait(size).await;
        self.read(size)
    }

    async fn cancel(&mut self) {
        if let ReadState::Reading { task, .. } =
            std::mem::replace(&mut self.state, ReadState::Closed)
        {
            // A read that started ends first (a blocking thread cannot be stopped).
            task.cancel().await;
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileReads {
    async fn ready(&mut self) {
        // Polled with nothing asked, a read starts, as wasmtime-wasi's does.
        self.wait(POLLED_READ).await
    }
}

/// Writes to a file, as the guest makes them.
struct FileWrites {
    file: Arc<std::fs::File>,
    /// Where the next write goes; `None`: at the end of the file.
    at: Option<u64>,
    operations: FileOperations,
    state: WriteState,
    /// `flush` was the last call: the `write-ready` of a `blocking-flush` waits for the write
    /// under way and takes no buffer for a write that may never come.
    flushed: bool,
}

enum WriteState {
    Idle,
    /// `check-write` permitted a write: its buffer is held until it comes.
    Permitted(Buffer),
    /// The write's buffer goes with it, given back when the bytes are written (not when the
    /// guest next looks): a guest writing once to each of many streams never waits for itself.
    Writing(Operation<usize>),
    Failed(io::Error),
    Closed,
}

impl FileWrites {
    fn new(file: Arc<std::fs::File>, at: Option<u64>, operations: FileOperations) -> Self {
        FileWrites {
            file,
            at,
            operations,
            state: WriteState::Idle,
            flushed: false,
        }
    }

    /// Waits for the write under way to end. Cancel-safe, as [`FileReads::wait`].
    async fn finish_writing(&mut self) {
        let WriteState::Writing(task) = &mut self.state else {
            return;
        };
        let written = task.await;
        self.state = match written {
            Ok(n) => {
                if let Some(at) = &mut self.at {
                    *at = at.saturating_add(n as u64);
                }
                WriteState::Idle
            }
            Err(e) => WriteState::Failed(e),
        };
    }

    /// The error a failed stream reports once, after which it is closed.
    fn failure(&mut self) -> StreamError {
        match std::mem::replace(&mut self.state, WriteState::Closed) {
            WriteState::Failed(e) => StreamError::LastOperationFailed(e.into()),
            _ => StreamError::Closed,
        }
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for FileWrites {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.flushed = false;
        // What a buffer holds; wasmtime-wasi took any length, up to `max_value` a call.
        if bytes.len() > WRITE_CAPACITY {
            return Err(broken_rule(format!(
                "a write of {} bytes is more than the {WRITE_CAPACITY} check-write permits",
                bytes.len()
            )));
        }
        let buffer = match std::mem::replace(&mut self.state, WriteState::Closed) {
            WriteState::Permitted(buffer) => buffer,
            // Not asked with `check-write` first: it may still have a buffer.
            WriteState::Idle => match self.operations.try_buffer() {
                Some(buffer) => buffer,
                None => {
                    self.state = WriteState::Idle;
                    return Err(broken_rule(
                        "write not permitted: check-write not called first",
                    ));
                }
            },
            WriteState::Closed => return Err(StreamError::Closed),
            state => {
                self.state = state;
                return Err(broken_rule(
                    "write not permitted: check-write not called first",
                ));
            }
        };
        let (file, at) = (self.file.clone(), self.at);
        let task = self.operations.on_a_thread(move || {
            let _buffer = buffer;
            write_all(&file, bytes, at)
        });
        self.state = WriteState::Writing(task);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Nothing is buffered but the write under way.
        match self.state {
            WriteState::Failed(_) | WriteState::Closed => Err(self.failure()),
            _ => {
                self.flushed = true;
                Ok(())
            }
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.flushed = false;
        match self.state {
            WriteState::Idle => match self.operations.try_buffer() {
                Some(buffer) => {
                    self.state = WriteState::Permitted(buffer);
                    Ok(WRITE_CAPACITY)
                }
                None => Ok(0),
            },
            WriteState::Permitted(_) => Ok(WRITE_CAPACITY),
            WriteState::Writing(_) => Ok(0),
            WriteState::Failed(_) | WriteState::Closed => Err(self.failure()),
        }
    }

    // Written in a turn, waited for here: no buffer is held but the guest's.
    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.flushed = false;
        self.finish_writing().await;
        if let WriteState::Failed(_) | WriteState::Closed = self.state {
            return Err(self.failure());
        }
        let (file, at) = (self.file.clone(), self.at);
        match self
            .operations
            .run(move || write_all(&file, bytes, at))
            .await
        {
            Ok(n) => {
                if let Some(at) = &mut self.at {
                    *at = at.saturating_add(n as u64);
                }
                Ok(())
            }
            Err(e) => {
                self.state = WriteState::Closed;
                Err(StreamError::LastOperationFailed(e.into()))
            }
        }
    }

    async fn write_ready(&mut self) -> StreamResult<usize> {
        if std::mem::take(&mut self.flushed) {
            self.finish_writing().await;
            return match self.state {
                WriteState::Failed(_) | WriteState::Closed => Err(self.failure()),
                WriteState::Permitted(_) => Ok(WRITE_CAPACITY),
                _ => Ok(0),
            };
        }
        // Ready means a buffer is free, and `check-write` takes it: nothing else of the
        // process runs in between, and work in the background only gives buffers back.
        loop {
            self.ready().await;
            let permitted = self.check_write()?;
            if permitted > 0 {
                return Ok(permitted);
            }
        }
    }

    async fn cancel(&mut self) {
        // Dropped with a write under way: the guest handed its bytes over, so the write is
        // made (also one still waiting for a turn), and the drop waits for it, as a flush would.
        if let WriteState::Writing(task) = std::mem::replace(&mut self.state, WriteState::Closed) {
            let _ = task.await;
        }
    }
}

impl Drop for FileWrites {
    fn drop(&mut self) {
        // Dropped with its process (no `cancel`): a write under way is still made.
        if let WriteState::Writing(task) = std::mem::replace(&mut self.state, WriteState::Closed) {
            task.detach();
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileWrites {
    async fn ready(&mut self) {
        self.finish_writing().await;
        // Ready to write once a buffer is free; `check-write` takes it. A poll takes none, so
        // a stream polled and never written holds nothing.
        if let WriteState::Idle = self.state {
            drop(self.operations.buffer().await);
        }
    }
}

/// The guest broke the stream's rules: its process ends with a trap.
fn broken_rule(rule: impl Into<String>) -> StreamError {
    StreamError::Trap(wasmtime::Error::new(crate::error::GuestBrokeARule(
        rule.into(),
    )))
}

/// Writes all of `bytes` to `file` at `at`, or at its end (`None`); returns how many.
fn write_all(file: &std::fs::File, mut bytes: Bytes, at: Option<u64>) -> io::Result<usize> {
    let mut total = 0;
    while !bytes.is_empty() {
        let next = match at {
            Some(at) => Some(
                at.checked_add(total as u64)
                    .ok_or(io::ErrorKind::InvalidInput)?,
            ),
            None => None,
        };
        let n = match super::write_once(file, &bytes, next) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            n => n?,
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes.advance(n);
        total += n;
    }
    Ok(total)
}
