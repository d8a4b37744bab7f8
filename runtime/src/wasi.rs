//! The guest's view of the world, built from its entry when it is spawned: arguments, working
//! directory, the declared environment variables only, mounts (read-only where asked) and
//! stdio, captured or inherited.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use rand::{Rng as _, TryRng};

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::Error;
use crate::id::EntryId;
use crate::manifest::WasiSpec;
use crate::network::NetworkPolicy;

/// Each captured stream keeps at most this much; a guest writing more sees a write error.
pub const CAPTURE_LIMIT: usize = 1 << 20;

/// Where a process's stdout and stderr go.
#[derive(Clone, Debug, Default)]
pub enum Stdio {
    /// Kept in memory and delivered with the EXIT (scenarios, `spawn`).
    #[default]
    Capture,
    /// The host's own stdin, stdout and stderr (`wasmproc run`).
    Inherit,
    /// The host's stdout and stderr, and an empty stdin (`wasmproc serve`: requests run side by
    /// side, and none of them owns the terminal).
    InheritOutput,
    /// Streams whose other ends the caller holds, read and written while the process runs
    /// (`wasi-testsuite`'s live `read`, `write` and `connect` operations).
    Streams(Arc<StdioStreams>),
}

/// A process's stdin, stdout and stderr as streams (see [`Stdio::Streams`]).
pub struct StdioStreams {
    stdin: Arc<wasmtime_wasi::cli::AsyncStdinStream>,
    stdout: Arc<wasmtime_wasi::cli::AsyncStdoutStream>,
    stderr: Arc<wasmtime_wasi::cli::AsyncStdoutStream>,
}

impl StdioStreams {
    /// In-memory pipes of `capacity` bytes each: the process's ends, and the caller's
    /// (the process's stdin to write, its stdout and stderr to read).
    pub fn pipes(capacity: usize) -> (StdioStreams, [tokio::io::DuplexStream; 3]) {
        let (stdin, to_stdin) = tokio::io::duplex(capacity);
        let (stdout, from_stdout) = tokio::io::duplex(capacity);
        let (stderr, from_stderr) = tokio::io::duplex(capacity);
        let streams = StdioStreams {
            stdin: Arc::new(wasmtime_wasi::cli::AsyncStdinStream::new(stdin)),
            stdout: Arc::new(wasmtime_wasi::cli::AsyncStdoutStream::new(capacity, stdout)),
            stderr: Arc::new(wasmtime_wasi::cli::AsyncStdoutStream::new(capacity, stderr)),
        };
        (streams, [to_stdin, from_stdout, from_stderr])
    }
}

impl std::fmt::Debug for StdioStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StdioStreams")
    }
}

/// The captured streams of a process, read when it ends.
#[derive(Clone)]
pub(crate) enum Captured {
    Pipes {
        stdout: MemoryOutputPipe,
        stderr: MemoryOutputPipe,
    },
    /// The guest imports nothing, so it cannot write: both streams stay empty.
    Nothing,
}

impl Captured {
    pub(crate) fn output(&self) -> crate::event::Output {
        match self {
            Captured::Pipes { stdout, stderr } => crate::event::Output {
                stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
                stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
            },
            Captured::Nothing => crate::event::Output::default(),
        }
    }
}

/// A mount, resolved to its host directory.
pub(crate) struct ResolvedMount {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// Prepares the WASI context of one process of `entry`; the caller builds it for a component
/// (preview 2) or a core module (preview 1). `sockets` is the entry's network policy when it
/// grants `wasi:sockets` (without it, every socket operation is denied).
#[allow(clippy::too_many_arguments)]
pub(crate) fn context(
    entry: &EntryId,
    spec: &WasiSpec,
    extra_args: &[String],
    env: &[(String, String)],
    mounts: &[ResolvedMount],
    stdio: &Stdio,
    sockets: Option<&Arc<NetworkPolicy>>,
) -> Result<(WasiCtxBuilder, Option<Captured>), Error> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .secure_random(ThreadRandom)
        .insecure_random(ThreadRandom);
    if let Some(policy) = sockets {
        crate::network::sockets::install(&mut builder, policy);
    }
    // argv[0] is the program's name, as a shell would pass it.
    builder.arg(&entry.name);
    builder.args(&spec.args);
    builder.args(extra_args);
    builder.envs(env);
    if let Some(cwd) = &spec.cwd {
        builder.initial_cwd(cwd);
    }
    for mount in mounts {
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&mount.host, &mount.guest, perms)
            .map_err(|e| Error::MountUnavailable {
                entry: entry.clone(),
                guest: mount.guest.clone(),
                reason: format!("cannot open {}: {e:#}", mount.host.display()),
            })?;
    }
    let captured = match stdio {
        Stdio::Inherit => {
            builder.inherit_stdio();
            None
        }
        Stdio::InheritOutput => {
            builder.inherit_stdout().inherit_stderr();
            None
        }
        Stdio::Streams(streams) => {
            builder
                .stdin(streams.stdin.clone())
                .stdout(streams.stdout.clone())
                .stderr(streams.stderr.clone());
            None
        }
        Stdio::Capture => {
            let (stdout, stderr) = (
                MemoryOutputPipe::new(CAPTURE_LIMIT),
                MemoryOutputPipe::new(CAPTURE_LIMIT),
            );
            builder.stdout(stdout.clone());
            builder.stderr(stderr.clone());
            Some(Captured::Pipes { stdout, stderr })
        }
    };
    Ok((builder, captured))
}

/// `wasi:random` for every process: the generator of the worker thread it runs on
/// (`rand::rng()`: ChaCha12, reseeded from the OS), through a handle that holds nothing.
/// wasmtime-wasi's default gives each process a ChaCha state of its own, seeded from that same
/// thread generator: the same quality, for 0.35 KiB of heap each process holds until it ends
/// (a quarter of what the runtime added to a sleeping process), plus a small generator for
/// `insecure`.
pub(crate) struct ThreadRandom;

impl TryRng for ThreadRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(rand::rng().next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(rand::rng().next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        rand::rng().fill_bytes(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_generator_gives_fresh_bytes_on_every_call() {
        let mut random = ThreadRandom;
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        random.fill_bytes(&mut a);
        random.fill_bytes(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0; 32]);
        assert_ne!(random.next_u64(), random.next_u64());
        assert_ne!(random.next_u32(), random.next_u32());
    }
}
