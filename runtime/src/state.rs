//! What a process's store carries: its WASI and wasi:http contexts and the table of resources
//! (files, streams, requests) the guest holds.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::limits::MemoryLimiter;

pub struct ProcessState {
    /// `None` for a guest that imports nothing: building a context costs a tenth of a spawn,
    /// and such a guest never asks for it.
    pub(crate) wasi: Option<WasiCtx>,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
}

impl ProcessState {
    pub fn new(wasi: Option<WasiCtx>, max_memory: Option<u64>) -> Self {
        ProcessState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(max_memory),
        }
    }
}

impl WasiHttpView for ProcessState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

impl WasiView for ProcessState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            // Only a guest without imports has none, and it cannot call WASI; should one ever
            // ask, it gets an empty context (no args, no env, no files, no stdio).
            ctx: self
                .wasi
                .get_or_insert_with(|| wasmtime_wasi::WasiCtxBuilder::new().build()),
            table: &mut self.table,
        }
    }
}

/// What a core module's store carries: its preview 1 WASI context.
pub struct ModuleState {
    pub(crate) p1: wasmtime_wasi::p1::WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
}

/// The store data of a process, by the kind of binary it runs.
pub(crate) enum GuestState {
    Component(ProcessState),
    Module(ModuleState),
}

impl GuestState {
    pub(crate) fn memory_usage(&self) -> std::sync::Arc<crate::limits::MemoryUsage> {
        match self {
            GuestState::Component(state) => state.limiter.usage.clone(),
            GuestState::Module(state) => state.limiter.usage.clone(),
        }
    }
}
