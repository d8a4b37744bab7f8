//! `wasmproc serve`: a `process.wasm` entry whose binary exports a `wasi:http` handler (WASI
//! 0.3's `wasi:http/handler`, or WASI 0.2's `wasi:http/incoming-handler`) answers HTTP
//! requests. Each request gets a fresh instance in its own store, under the entry's limits like
//! a process: a place in the engine's pool (requests past it wait for one), `max_memory`,
//! `fuel`, preemption every slice, and `max_execution_ms` for the response and again for its
//! body. Nothing a request leaves in its instance reaches the next one.
//!
//! wasmtime-wasi-http's `ProxyHandler` drives the calls (it is what `wasmtime serve` uses); this
//! module gives it the entry's stores, and `listener` the HTTP/1 connections.

mod body;
mod listener;
mod timer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::WasiHttpView;

use crate::error::ErrorKind;
use crate::event::ExitError;
use crate::id::EntryId;
use crate::limits::MemoryLimiter;
use crate::loader::HandlerProgram;
use crate::manifest::{Family, WasmSpec};
use crate::store_data::ComponentData;
use crate::wasi::{self, ResolvedMount, Stdio};

pub use listener::{serve, ServeOptions, Served, MAX_HEAD};

/// A request's time when its entry sets no `max_execution_ms`: a handler that never answers
/// must not hold its place in the pool (and its client) for ever.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An entry ready to answer requests: see the module's documentation.
#[derive(Clone)]
pub struct HttpService {
    handler: ProxyHandler<Requests>,
}

/// What every request's store is made from.
struct Requests {
    entry: EntryId,
    program: Arc<HandlerProgram>,
    wasm: Arc<WasmSpec>,
    env: Vec<(String, String)>,
    mounts: Vec<ResolvedMount>,
    stdio: Stdio,
    timeout: Duration,
}

impl HttpService {
    pub(crate) fn new(
        entry: EntryId,
        program: Arc<HandlerProgram>,
        wasm: Arc<WasmSpec>,
        env: Vec<(String, String)>,
        mounts: Vec<ResolvedMount>,
        stdio: Stdio,
    ) -> Self {
        let timeout = wasm.limits.max_execution.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        HttpService {
            handler: ProxyHandler::new(Requests {
                entry,
                program,
                wasm,
                env,
                mounts,
                stdio,
                timeout,
            }),
        }
    }

    /// The entry served.
    pub fn entry(&self) -> &EntryId {
        &self.handler.state().entry
    }

    /// Which handler interface the binary exports.
    pub fn world(&self) -> &'static str {
        self.handler.state().program.world
    }

    /// How long a request may take to answer (and then to send its body).
    pub fn timeout(&self) -> Duration {
        self.handler.state().timeout
    }

    /// The guest's answer to `request`, or why there is none, as a process's EXIT would say it
    /// (a trap, a limit, a host failure), which `listener` turns into a 500. A response whose
    /// instance is stopped before its body ended has that body end with an error, not as if
    /// it were complete.
    pub async fn handle(
        &self,
        request: wasmtime_wasi_http::handler::Request,
    ) -> Result<wasmtime_wasi_http::handler::Response, ExitError> {
        let end = Arc::new(RequestEnd::default());
        let error = match self.handler.handle(end.clone(), request).await {
            Ok(response) => return Ok(response.map(|body| body::Cut::wrap(body, end))),
            Err(error) => error,
        };
        // The instance's end says best why (`OneRequest::drop`); it comes as the worker ends,
        // just after the request learns it has no response.
        match tokio::time::timeout(REPORT_WAIT, end.wait()).await {
            Ok(Some(ended)) => Err(ended),
            _ => Err(self.failure(error)),
        }
    }

    /// Why a request got no response, from what `ProxyHandler` says alone.
    fn failure(&self, error: wasmtime::Error) -> ExitError {
        use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError};
        if error.downcast_ref::<ExpirationError>().is_some() {
            return timed_out(self.timeout());
        }
        if error.is::<InstantiationError<Report>>() {
            return ExitError::new(
                ErrorKind::HostFailure,
                format!("the handler could not be instantiated: {error:#}"),
            );
        }
        crate::process::guest_error(error, &self.handler.state().wasm.limits)
    }
}

/// A request (or its body) past `timeout`.
fn timed_out(timeout: Duration) -> ExitError {
    ExitError::new(
        ErrorKind::LimitExceeded,
        format!(
            "max_execution_ms ({} ms) exceeded: the handler did not answer, or send its body, in time",
            timeout.as_millis()
        ),
    )
}

/// How long a failed request waits for its instance's own account of the failure.
const REPORT_WAIT: Duration = Duration::from_secs(1);

/// How a request's instance ended, as it reports it.
#[derive(Default)]
struct RequestEnd {
    /// Set when the instance goes: `Some` when a trap or a limit ended it.
    ended: std::sync::OnceLock<Option<ExitError>>,
    notify: tokio::sync::Notify,
}

impl RequestEnd {
    fn end(&self, how: Option<ExitError>) {
        let _ = self.ended.set(how);
        self.notify.notify_waiters();
    }

    /// Whether the instance was stopped (a trap, a limit), once it has gone.
    fn failed(&self) -> bool {
        matches!(self.ended.get(), Some(Some(_)))
    }

    /// How the instance ended, once it has.
    async fn wait(&self) -> Option<ExitError> {
        loop {
            let notified = self.notify.notified();
            if let Some(how) = self.ended.get() {
                return how.clone();
            }
            notified.await;
        }
    }
}

type Report = Arc<RequestEnd>;

impl HandlerState for Requests {
    type StoreData = ComponentData;
    type WorkerExpiration = Expiration;
    type WorkerState = OneRequest;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<ComponentData, Expiration, OneRequest>> {
        // A place in the pool first, as a process waits for one: past the pool's size,
        // requests queue instead of failing.
        let place = self.program.admission.clone().acquire_owned().await?;
        let (mut builder, _) = wasi::context(
            &self.entry,
            &self.wasm.wasi,
            &[],
            &self.env,
            &self.mounts,
            &self.stdio,
            self.wasm
                .imports
                .contains(&Family::Sockets)
                .then_some(&self.wasm.network),
        )?;
        let limits = &self.wasm.limits;
        let data = ComponentData::new(
            Some(Box::new(builder.build())),
            MemoryLimiter::new(limits.max_memory),
            crate::write_quota::WriteQuota::of(limits.max_written),
            self.program.http_policy.clone(),
            self.program.name_lookup,
        );
        let mut store = crate::process::new_store(&self.program.engine, data);
        crate::process::meter(
            &mut store,
            crate::process::starting_fuel(self.program.counts_fuel, limits),
        )
        .map_err(|e| wasmtime::Error::msg(e.message))?;
        store.set_hostcall_fuel(self.program.lift_fuel);
        store.set_max_component_handles(crate::limits::MAX_HANDLES);
        let proxy = self.program.proxy.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy,
            view: <ComponentData as WasiHttpView>::http,
            expiration: Expiration {
                timeout: self.timeout,
                timer: None,
            },
            state: OneRequest {
                timeout: self.timeout,
                limits: self.wasm.limits.clone(),
                report: std::sync::Mutex::new(None),
                _place: place,
            },
        })
    }
}

/// A worker's instance serves one request, then goes with its store and its pool place.
struct OneRequest {
    timeout: Duration,
    limits: crate::limits::Limits,
    /// Where the request learns how the instance ended.
    report: std::sync::Mutex<Option<Report>>,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl WorkerState for OneRequest {
    type StoreData = ComponentData;
    type RequestData = Report;

    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        if total == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::Never
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, ComponentData>,
        report: Report,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        *crate::lock::lock(&self.report) = Some(report);
        Box::pin(tokio::time::sleep(self.timeout))
    }

    fn drop(&self, store: Store<ComponentData>, result: wasmtime::Result<()>) {
        let report = crate::lock::lock(&self.report).take();
        let Err(error) = result else {
            if let Some(report) = report {
                report.end(None);
            }
            return;
        };
        // wasmtime-wasi-http's words for an instance its `Expiration` ended.
        let ended = if format!("{error}") == "guest timed out" {
            timed_out(self.timeout)
        } else {
            crate::process::guest_error(error, &self.limits)
        };
        tracing::debug!(target: "wasmproc::serve", kind = %ended.kind.as_str(), "a request's instance ended: {}", ended.message);
        // Said before the store goes: its streams end with it, and a body cut short must
        // know it was (`body::Cut`).
        if let Some(report) = report {
            report.end(Some(ended));
        }
        drop(store);
    }
}

/// Ends an instance whose request (or the body after it) outlived the timeout, checked from
/// outside the store's event loop: a guest spinning in a loop keeps that loop from running
/// anything else, the request's own timer included.
struct Expiration {
    timeout: Duration,
    /// The deadline it was set for, and the timer.
    timer: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        // An idle instance takes no request after its one (see `OneRequest`): it ends on its
        // own once its tasks have.
        if status == WorkerStatus::Idle {
            return Poll::Pending;
        }
        let this = self.get_mut();
        let deadline = start + this.timeout;
        if this.timer.as_ref().is_none_or(|(at, _)| *at != deadline) {
            this.timer = Some((
                deadline,
                Box::pin(tokio::time::sleep_until(deadline.into())),
            ));
        }
        match &mut this.timer {
            Some((_, timer)) => timer.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}
