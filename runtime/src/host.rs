//! `process.host`: a scheduler that processes are spawned into. Each host owns a tokio
//! multi-thread runtime with `workers` threads; each process is one task on it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::task::AbortHandle;

use crate::error::Error;
use crate::id::EntryId;
use crate::manifest::HostSpec;

/// Threads a host runs besides its workers, at most, for its processes' blocking work:
/// regular-file operations and name lookups (special files are refused at open, so none of
/// them waits for a writer). More operations than this wait for a thread. Under tokio's
/// default, 512, 400 processes reading files at once on one worker held 103-279 threads
/// (measured); 200 such readers finished as fast with 16, 64 or 512 (0.37-0.48 s on 2 cores).
/// A thread working for a process that has ended is held until its one operation ends.
pub const BLOCKING_THREADS: usize = 64;

pub struct ProcessHost {
    id: EntryId,
    spec: HostSpec,
    /// Processes spawned here that have not reached Init yet (waiting for a worker or a pool
    /// slot); at most `queue_size`.
    queued: Arc<AtomicUsize>,
    /// `None` only while dropping.
    scheduler: Option<tokio::runtime::Runtime>,
}

impl ProcessHost {
    pub fn start(id: EntryId, spec: HostSpec) -> Result<Self, Error> {
        let scheduler = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(spec.workers)
            .thread_name(format!("wasmproc {id}"))
            // Finished processes' stores are dropped when a worker runs out of tasks, and
            // before it stops (see `process::release`).
            .on_thread_start(crate::process::worker_started)
            .on_thread_park(crate::process::release_finished_stores)
            .on_thread_stop(crate::process::release_finished_stores)
            .max_blocking_threads(BLOCKING_THREADS)
            .enable_all()
            .build()
            .map_err(|e| Error::HostStart {
                host: id.clone(),
                reason: e.to_string(),
            })?;
        tracing::debug!(host = %id, workers = spec.workers, "host started");
        Ok(ProcessHost {
            id,
            spec,
            queued: Arc::default(),
            scheduler: Some(scheduler),
        })
    }

    pub fn id(&self) -> &EntryId {
        &self.id
    }

    /// Takes a place in the queue, or refuses when all `queue_size` places are taken.
    pub(crate) fn enqueue(&self) -> Result<QueuePlace, Error> {
        let queued = self.queued.fetch_add(1, Ordering::AcqRel);
        let place = QueuePlace(self.queued.clone());
        if queued >= self.spec.queue_size {
            return Err(Error::QueueFull {
                host: self.id.clone(),
                queue_size: self.spec.queue_size,
            });
        }
        Ok(place)
    }

    /// Starts a process's task (which owns its EXIT guard); the handle stops it.
    pub(crate) fn spawn_task(
        &self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Option<AbortHandle> {
        let scheduler = self.scheduler.as_ref()?;
        Some(scheduler.spawn(task).abort_handle())
    }
}

/// A process's place in its host's queue, given back when it reaches Init (or never starts).
pub(crate) struct QueuePlace(Arc<AtomicUsize>);

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for ProcessHost {
    fn drop(&mut self) {
        // Dropping a runtime blocks on its workers, which panics inside another runtime: let the
        // workers go in the background. Running processes are dropped; their guards send EXIT.
        if let Some(scheduler) = self.scheduler.take() {
            scheduler.shutdown_background();
        }
    }
}

/// Runs `work`, which may take seconds (reading and hashing a binary, compiling it: up to the
/// compile limits), letting the worker's other tasks go on elsewhere when it is called on a
/// worker of a host's runtime. A script's spawn loads its entry's binary on first use, and
/// before, the compile held that worker, so the processes waiting on it (a sleeper's wake-up)
/// waited for the compile too. Called where the runtime loads a program for a spawn, the one
/// path from a worker to the loader.
pub(crate) fn off_the_worker<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
impl ProcessHost {
    /// A host `t:host` of one worker, for unit tests.
    pub(crate) fn one_worker() -> ProcessHost {
        let spec = HostSpec {
            workers: 1,
            queue_size: 4,
            pool: crate::manifest::HostPool::default(),
        };
        ProcessHost::start(EntryId::parse("t:host").unwrap(), spec).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_dropped_inside_async_code_lets_its_workers_go_and_drops_its_tasks() {
        let host = ProcessHost::one_worker();
        let (held, dropped) = tokio::sync::oneshot::channel::<()>();
        host.spawn_task(async move {
            let _held = held;
            std::future::pending::<()>().await
        })
        .unwrap();
        // A runtime dropped where blocking is not allowed panics: the host must not block.
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        outer.block_on(async move {
            drop(host);
            let gone = tokio::time::timeout(std::time::Duration::from_secs(10), dropped).await;
            assert!(matches!(gone, Ok(Err(_))), "the pending task was dropped");
        });
    }
}
