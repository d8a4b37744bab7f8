//! File operations a process has in flight, bounded. Files block, so every file operation of a
//! component runs on one of the host's blocking threads ([`crate::BLOCKING_THREADS`], shared
//! by every process on the host), and operations past those wait in one first-come queue.
//! A WASI 0.3 guest may start thousands at once (each call a subtask, each stream read or
//! written on its own), and every other process's file operations then waited behind all of
//! them: 4,000 `sync` calls of one guest made another's 1-byte read take 23-36 ms instead of
//! 1.1-1.6 ms (found attacking, 2026-12-07), and slower operations delay everyone longer.
//!
//! So a process takes a turn ([`MAX_FILE_OPERATIONS`] at once) for each operation that goes
//! to a blocking thread, and holds it until the operation ends: what it has queued for the
//! threads is never more than its turns, whatever it starts, and its other operations wait in
//! the process itself. A turn is never held while waiting for the guest (only for the file),
//! so operations cannot wait on each other. One residue: a WASI 0.3 call the guest cancels
//! gives its turn back when wasmtime drops it, while an operation already running on its thread
//! goes on; that holds a thread for one operation, not a place in the queue.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSemaphore;

pub(crate) mod p2;
pub(crate) mod p3;

/// File operations one process may have on the host's blocking threads (running or queued for
/// one) at once. One process's operations then delay another's by at most this many ahead of
/// it in the queue.
pub const MAX_FILE_OPERATIONS: usize = 4;

/// Buffers one process's file streams hold at once: a WASI 0.2 stream's (up to 64 KiB) from a
/// read until the guest has taken its bytes, and from `check-write` until the write ends; a
/// WASI 0.3 read stream's (8 KiB) while it holds bytes read ahead of the guest.
pub const MAX_STREAM_BUFFERS: usize = 16;

/// A process's turns at the host's blocking threads, and its file streams' buffers.
#[derive(Clone, Debug)]
pub(crate) struct FileOperations {
    turns: Arc<Semaphore>,
    buffers: Arc<Semaphore>,
}

/// A turn, held until the operation ends. `None` only if the turns were closed, which they
/// never are (the operation then goes ahead rather than fail).
pub(crate) type Turn = Option<OwnedSemaphorePermit>;

/// One of a process's stream buffers, held while a stream holds bytes (or may).
pub(crate) struct Buffer {
    _held: Option<OwnedSemaphorePermit>,
}

impl FileOperations {
    pub(crate) fn new() -> Self {
        FileOperations {
            turns: Arc::new(Semaphore::new(MAX_FILE_OPERATIONS)),
            buffers: Arc::new(Semaphore::new(MAX_STREAM_BUFFERS)),
        }
    }

    /// Waits for a turn.
    pub(crate) async fn turn(&self) -> Turn {
        self.turns.clone().acquire_owned().await.ok()
    }

    /// The turns, for a stream's producer or consumer to poll.
    pub(crate) fn poller(&self) -> PollSemaphore {
        PollSemaphore::new(self.turns.clone())
    }

    /// A buffer, if one is free.
    pub(crate) fn try_buffer(&self) -> Option<Buffer> {
        let held = self.buffers.clone().try_acquire_owned().ok()?;
        Some(Buffer { _held: Some(held) })
    }

    /// Waits for a buffer.
    pub(crate) async fn buffer(&self) -> Buffer {
        Buffer {
            _held: self.buffers.clone().acquire_owned().await.ok(),
        }
    }

    /// Runs `work` on a blocking thread once the process has a turn, and waits for it.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<R> + Send + 'static,
    ) -> io::Result<R> {
        let turn = self.turn().await;
        in_turn(turn, work)
            .await
            .unwrap_or_else(|e| Err(stopped(e)))
    }

    /// Runs `work` on a blocking thread once the process has a turn, in the background (waiting
    /// for the turn in a task, not on the threads).
    pub(crate) fn on_a_thread<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<R> + Send + 'static,
    ) -> Operation<R> {
        let operations = self.clone();
        Operation(Some(tokio::spawn(
            async move { operations.run(work).await },
        )))
    }
}

/// Runs `work` on a blocking thread in `turn`, held until the work ends (also if whoever
/// started it stopped waiting: a thread cannot be stopped).
pub(crate) fn in_turn<R: Send + 'static>(
    turn: Turn,
    work: impl FnOnce() -> R + Send + 'static,
) -> JoinHandle<R> {
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
}

/// A file operation started by [`FileOperations::on_a_thread`]. Dropped, it is stopped if it
/// has not reached a thread yet (one that has runs to its end: a thread cannot be stopped),
/// unless it was detached.
pub(crate) struct Operation<R>(Option<JoinHandle<io::Result<R>>>);

impl<R> Operation<R> {
    /// Stops the operation if it has not reached a thread, else waits for it to end.
    pub(crate) async fn cancel(mut self) {
        if let Some(task) = &mut self.0 {
            task.abort();
            let _ = task.await;
        }
    }

    /// Lets the operation run to its end with no one waiting for it.
    pub(crate) fn detach(mut self) {
        self.0.take();
    }
}

impl<R> Future for Operation<R> {
    type Output = io::Result<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Some(task) => Pin::new(task)
                .poll(cx)
                .map(|done| done.unwrap_or_else(|e| Err(stopped(e)))),
            None => Poll::Ready(Err(io::Error::other("the file operation was detached"))),
        }
    }
}

impl<R> Drop for Operation<R> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Up to `len` bytes of `file` from `offset` (none: its end).
fn read_at(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mut bytes = vec![0; len];
    loop {
        match file.read_at(&mut bytes, offset) {
            Ok(n) => {
                bytes.truncate(n);
                return Ok(bytes);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes `bytes` (or what of them it can, once) to `file` at `at`, or at its end (`None`).
pub(crate) fn write_once(
    file: &std::fs::File,
    bytes: &[u8],
    at: Option<u64>,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt as _;
    match at {
        Some(at) => file.write_at(bytes, at),
        None => append(file, bytes),
    }
}

/// Writes `bytes` at the end of `file`, whatever its cursor, as wasmtime-wasi does: `pwritev2`
/// with `RWF_APPEND` (Linux 4.16), else the file switched to append mode for the write.
fn append(file: &std::fs::File, bytes: &[u8]) -> std::io::Result<usize> {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    let fd = file.as_raw_fd();
    let iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: one iovec over `bytes`, which outlives the call, on `file`'s open descriptor.
    let n = unsafe { libc::pwritev2(fd, &iov, 1, -1, libc::RWF_APPEND) };
    if n >= 0 {
        return Ok(n as usize);
    }
    let error = std::io::Error::last_os_error();
    if !matches!(error.raw_os_error(), Some(libc::ENOSYS | libc::EOPNOTSUPP)) {
        return Err(error);
    }
    // SAFETY: fcntl's flag calls on `file`'s open descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_APPEND) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let written = (&*file).write(bytes);
    // SAFETY: as above; the flags as they were.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    written
}

/// An operation's task that ended without a result (the host is shutting down).
fn stopped(e: tokio::task::JoinError) -> io::Error {
    io::Error::other(format!("the file operation stopped: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_past_the_bound_waits_until_one_is_given_back() {
        let operations = FileOperations::new();
        let mut turns = Vec::new();
        for _ in 0..MAX_FILE_OPERATIONS {
            turns.push(operations.turn().await.expect("a turn"));
        }
        let waiting = tokio::spawn({
            let operations = operations.clone();
            async move { operations.turn().await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a fifth turn was given");
        turns.pop();
        assert!(waiting.await.unwrap());
    }
}
