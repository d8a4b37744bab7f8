//! Name lookups, bounded per process: `wasi:http` requests' and `wasi:sockets`'
//! (`super::name_lookup`).
//!
//! A lookup (`getaddrinfo`) blocks a thread for as long as the resolver takes: seconds for a
//! name whose servers do not answer. Those threads are the host's blocking pool
//! ([`crate::BLOCKING_THREADS`]), which every process of the host shares for its file
//! operations too, in the order asked. tokio's own `lookup_host` lets one process queue a
//! lookup per request it starts, and a queued lookup still runs after its request, or its whole
//! process, is gone; so a guest starting thousands of requests to slow names kept the other
//! processes' file operations waiting long after its EXIT. Here each process has at most
//! [`LOOKUPS_PER_PROCESS`] lookups running or queued, and a lookup whose request was dropped
//! before a thread took it up never runs.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Lookups one process has running or queued on its host's blocking threads at once; its
/// further requests wait for one of them to end.
pub(crate) const LOOKUPS_PER_PROCESS: usize = 4;

/// One process's lookups.
#[derive(Clone)]
pub(crate) struct Lookups(Arc<Semaphore>);

impl Lookups {
    pub(crate) fn new() -> Lookups {
        Lookups(Arc::new(Semaphore::new(LOOKUPS_PER_PROCESS)))
    }

    /// The addresses of `host`, resolved on a blocking thread.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let name = (host.to_string(), port);
        self.run(move || Ok(name.to_socket_addrs()?.collect()))
            .await
    }

    /// Runs `lookup` on a blocking thread once this process has a lookup's place. The place is
    /// held by the thread's work, not by the caller, so a dropped request frees it only when
    /// its lookup ends (or is cancelled before it started).
    async fn run<T: Send + 'static>(
        &self,
        lookup: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        // The semaphore is never closed.
        let place = self
            .0
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let mut task = AbortOnDrop(tokio::task::spawn_blocking(move || {
            let _place = place;
            lookup()
        }));
        match (&mut task.0).await {
            Ok(found) => found,
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

/// A blocking task that is cancelled when its handle is dropped before a thread took it up
/// (a task already running goes on to its end).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A runtime of one blocking thread, so that a second lookup waits in its queue.
    fn one_blocking_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_lookup_dropped_before_a_thread_took_it_never_runs() {
        one_blocking_thread().block_on(async {
            let lookups = Lookups::new();
            let (release, held) = std::sync::mpsc::channel::<()>();
            // Takes the only blocking thread until released.
            let first = tokio::spawn({
                let lookups = lookups.clone();
                async move { lookups.run(move || Ok(held.recv().is_ok())).await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let ran = Arc::new(AtomicUsize::new(0));
            let queued = tokio::spawn({
                let (lookups, ran) = (lookups.clone(), ran.clone());
                async move {
                    lookups
                        .run(move || Ok(ran.fetch_add(1, Ordering::SeqCst)))
                        .await
                }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            queued.abort();
            let _ = queued.await;
            release.send(()).unwrap();
            assert!(first.await.unwrap().unwrap());
            // Had it stayed queued, the freed thread would have run it by now.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(ran.load(Ordering::SeqCst), 0, "the dropped lookup ran");
            // And its place went back: all of them are free again.
            assert_eq!(lookups.0.available_permits(), LOOKUPS_PER_PROCESS);
        });
    }

    #[test]
    fn a_process_runs_a_few_lookups_at_once_even_when_it_drops_its_requests() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let lookups = Lookups::new();
            let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            // Each request given up once its lookup runs, as a guest dropping it would: the
            // lookup goes on running on its thread, and holds its place until it ends.
            for _ in 0..4 * LOOKUPS_PER_PROCESS {
                let (lookups, running, most) = (lookups.clone(), running.clone(), most.clone());
                let request = tokio::spawn(async move {
                    lookups
                        .run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(50));
                            running.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .await
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
                request.abort();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                most.load(Ordering::SeqCst) <= LOOKUPS_PER_PROCESS,
                "{} lookups of one process ran at once",
                most.load(Ordering::SeqCst)
            );
        });
    }

    #[test]
    fn localhost_resolves() {
        let runtime = one_blocking_thread();
        let found = runtime
            .block_on(Lookups::new().resolve("localhost", 80))
            .unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        assert!(!found.is_empty());
    }
}
