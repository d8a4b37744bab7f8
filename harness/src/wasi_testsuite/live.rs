//! A command test with live operations: the process's stdio are pipes the test writes and
//! reads while it runs (`read`, `write`), and a socket it listens on is reached through the
//! address it prints (`connect`, `send`, `recv`), as the suite's runner does with a child
//! process (`test_suite_runner.py`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use wasmproc_runtime::{Mailbox, Runtime, SpawnOptions, Stdio, StdioStreams};

/// One live step, as the spec names it.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum LiveOp {
    /// Reads as many bytes as `payload` has from `stdout` or `stderr`; they must be it.
    Read {
        #[serde(default = "stdout")]
        id: String,
        #[serde(default)]
        payload: String,
    },
    /// Writes `payload` to the process's stdin.
    Write {
        #[serde(default)]
        id: String,
        #[serde(default)]
        payload: String,
    },
    /// Reads a `host:port` line from stdout and connects to it (TCP), as socket `id`.
    Connect {
        #[serde(default = "server")]
        id: String,
    },
    Send {
        id: String,
        #[serde(default)]
        payload: String,
    },
    /// Reads as many bytes as `payload` has from socket `id`; they must be it.
    Recv {
        id: String,
        #[serde(default)]
        payload: String,
    },
}

fn stdout() -> String {
    "stdout".into()
}

fn server() -> String {
    "server".into()
}

/// How long one step waits for the process (the runner waits as long as it takes; a test
/// here must end).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The pipes' capacity: a process writing more than this unread waits for the test to read.
const PIPE_BYTES: usize = 64 << 10;

/// Spawns `entry` with piped stdio, runs `ops` against it, closes its stdin and returns its
/// EXIT (or why there is none), with what went wrong on the way.
pub(super) fn run(
    runtime: &Runtime,
    entry: &str,
    ops: &[LiveOp],
) -> Result<(wasmproc_runtime::Exit, Vec<String>), String> {
    let (streams, [stdin, stdout, stderr]) = StdioStreams::pipes(PIPE_BYTES);
    let options = SpawnOptions {
        stdio: Stdio::Streams(Arc::new(streams)),
        ..SpawnOptions::default()
    };
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the test's I/O thread: {e}"))?;
    let mut mailbox = Mailbox::new();
    runtime
        .spawn_with(entry, "wts:host", &[], &options, Some(&mailbox))
        .map_err(|e| e.kinded().to_string())?;
    let mut live = Live {
        stdin: Some(stdin),
        stdout: BufReader::new(stdout),
        stderr: BufReader::new(stderr),
        sockets: HashMap::new(),
    };
    let problems: Vec<String> = ops
        .iter()
        .filter_map(|op| io.block_on(live.step(op)).err())
        .collect();
    // End of input, as when the runner's `communicate` closes the child's stdin; what the
    // process still writes is read and dropped, so that it never waits on a full pipe.
    drop(live.stdin.take());
    let Live { stdout, stderr, .. } = live;
    io.spawn(drain(stdout));
    io.spawn(drain(stderr));
    let exit = mailbox
        .receive_blocking(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?
        .and_then(wasmproc_runtime::Event::into_exit)
        .ok_or("no EXIT within 60 s")?;
    Ok((exit, problems))
}

struct Live {
    stdin: Option<DuplexStream>,
    stdout: BufReader<DuplexStream>,
    stderr: BufReader<DuplexStream>,
    sockets: HashMap<String, TcpStream>,
}

impl Live {
    async fn step(&mut self, op: &LiveOp) -> Result<(), String> {
        let timed_out = |_| format!("{op:?}: nothing within {STEP_TIMEOUT:?}");
        match op {
            LiveOp::Read { id, payload } => {
                let stream = match id.as_str() {
                    "stdout" => &mut self.stdout,
                    "stderr" => &mut self.stderr,
                    other => return Err(format!("read: no stream `{other}` (stdout, stderr)")),
                };
                let mut got = vec![0; payload.len()];
                tokio::time::timeout(STEP_TIMEOUT, stream.read_exact(&mut got))
                    .await
                    .map_err(timed_out)?
                    .map_err(|e| format!("read {id}: {e}"))?;
                if got != payload.as_bytes() {
                    return Err(format!(
                        "read {id}: {:?}, expected {payload:?}",
                        String::from_utf8_lossy(&got)
                    ));
                }
                Ok(())
            }
            LiveOp::Write { id, payload } => {
                if !matches!(id.as_str(), "" | "stdin") {
                    return Err(format!("write: no stream `{id}` (stdin)"));
                }
                let stdin = self.stdin.as_mut().ok_or("write: stdin is closed")?;
                tokio::time::timeout(STEP_TIMEOUT, async {
                    stdin.write_all(payload.as_bytes()).await?;
                    stdin.flush().await
                })
                .await
                .map_err(timed_out)?
                .map_err(|e| format!("write stdin: {e}"))
            }
            LiveOp::Connect { id } => {
                let mut line = String::new();
                tokio::time::timeout(STEP_TIMEOUT, self.stdout.read_line(&mut line))
                    .await
                    .map_err(timed_out)?
                    .map_err(|e| format!("connect: reading its address: {e}"))?;
                let address: SocketAddr = line.trim().parse().map_err(|_| {
                    format!("connect: expected <host>:<port> on stdout, found {line:?}")
                })?;
                // The process is reached on loopback, whatever it bound.
                let address = if address.ip().is_unspecified() {
                    SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), address.port())
                } else {
                    address
                };
                if !address.ip().is_loopback() {
                    return Err(format!("connect: {address} is not a loopback address"));
                }
                let socket = TcpStream::connect_timeout(&address, STEP_TIMEOUT)
                    .map_err(|e| format!("connect: {address}: {e}"))?;
                socket
                    .set_read_timeout(Some(STEP_TIMEOUT))
                    .map_err(|e| e.to_string())?;
                self.sockets.insert(id.clone(), socket);
                Ok(())
            }
            LiveOp::Send { id, payload } => self
                .socket(id)?
                .write_all(payload.as_bytes())
                .map_err(|e| format!("send {id}: {e}")),
            LiveOp::Recv { id, payload } => {
                let mut got = vec![0; payload.len()];
                self.socket(id)?
                    .read_exact(&mut got)
                    .map_err(|e| format!("recv {id}: {e}"))?;
                if got != payload.as_bytes() {
                    return Err(format!(
                        "recv {id}: {:?}, expected {payload:?}",
                        String::from_utf8_lossy(&got)
                    ));
                }
                Ok(())
            }
        }
    }

    fn socket(&mut self, id: &str) -> Result<&mut TcpStream, String> {
        self.sockets
            .get_mut(id)
            .ok_or_else(|| format!("no socket `{id}` (a `connect` names it)"))
    }
}

async fn drain(mut stream: BufReader<DuplexStream>) {
    let mut sink = tokio::io::sink();
    let _ = tokio::io::copy(&mut stream, &mut sink).await;
}
