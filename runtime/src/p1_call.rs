//! A preview 1 host function's view of its caller, set up as wiggle's own wrapper sets it up:
//! the guest's memory, the WASI context with the hostcall fuel the call may spend copying, and
//! the process's write quota. For the functions wasmproc shadows in a core module's linker
//! ([`crate::special_files`], [`crate::write_quota::p1`]), which then call wasmtime-wasi's own.

use std::sync::Arc;

use wasmtime::{AsContextMut as _, Caller, Extern};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
use wasmtime_wasi::p1::WasiP1Ctx;
use wiggle::GuestMemory;

use crate::store_data::ModuleData;
use crate::write_quota::WriteQuota;

pub(crate) struct P1Call<'a> {
    pub(crate) memory: GuestMemory<'a>,
    ctx: &'a mut WasiP1Ctx,
    /// What wasmtime gave the call to copy: set again before each of wasmtime-wasi's functions
    /// it makes, as each spends it.
    fuel: usize,
    pub(crate) quota: Option<Arc<WriteQuota>>,
}

impl<'a> P1Call<'a> {
    /// `function`'s view of `caller` (a module without a `memory` export cannot call WASI).
    pub(crate) fn of(
        caller: &'a mut Caller<'_, ModuleData>,
        function: &str,
    ) -> wasmtime::Result<P1Call<'a>> {
        let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
            wasmtime::bail!("{function}: the module exports no memory");
        };
        let fuel = caller.as_context_mut().hostcall_fuel();
        let (bytes, state) = memory.data_and_store_mut(caller);
        Ok(P1Call {
            memory: GuestMemory::Unshared(bytes),
            ctx: &mut state.p1,
            fuel,
            quota: state.written.clone(),
        })
    }

    /// The bytes the call may copy out of the guest.
    pub(crate) fn fuel(&self) -> usize {
        self.fuel
    }

    /// The memory and the context (as [`ctx`](Self::ctx)), for a call that needs both.
    pub(crate) fn parts(&mut self) -> (&mut GuestMemory<'a>, &mut WasiP1Ctx) {
        self.ctx.set_hostcall_fuel(self.fuel);
        (&mut self.memory, self.ctx)
    }
}
