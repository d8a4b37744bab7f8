//! What a process's store carries: its WASI context and the table of resources (files,
//! streams) the guest holds.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub struct ProcessState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
}

impl ProcessState {
    pub fn new(wasi: WasiCtx) -> Self {
        ProcessState {
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for ProcessState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
