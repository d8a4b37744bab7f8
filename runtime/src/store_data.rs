//! What a process's store carries: its WASI and wasi:http contexts and the table of resources
//! (files, streams, requests) the guest holds.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use std::sync::Arc;

use crate::descriptors::OpenFiles;
use crate::file_operations::FileOperations;
use crate::limits::MemoryLimiter;
use crate::network::http::PolicyHooks;
use crate::network::lookup::Lookups;
use crate::network::NetworkPolicy;
use crate::write_quota::WriteQuota;

/// What a component's store carries while it runs (the `T` of its `Store<T>`): its WASI and
/// HTTP contexts, its resource table and its memory limiter.
pub struct ComponentData {
    /// `None` for a guest that imports nothing: building a context costs a tenth of a spawn,
    /// and such a guest never asks for it. Boxed as it was captured at spawn: the store
    /// allocates and moves this state on every spawn, and the context is most of it.
    pub(crate) wasi: Option<Box<WasiCtx>>,
    pub(crate) http: WasiHttpCtx,
    /// wasi:http's requests, sent under the entry's network policy.
    pub(crate) http_hooks: PolicyHooks,
    /// The wasi:http parts (fields, requests, bodies) it holds, bounded.
    pub(crate) http_parts: Tally,
    /// The sockets it holds, bounded.
    pub(crate) sockets: Tally,
    /// The files it opened and holds, bounded.
    pub(crate) open_files: OpenFiles,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// `limits.max_written`, when the entry sets it.
    pub(crate) written: Option<Arc<WriteQuota>>,
    /// The process's name lookups (wasi:http's and wasi:sockets'), bounded together; `None`
    /// for a process that may make neither (most: no allocation for them).
    pub(crate) lookups: Option<Lookups>,
    /// Whether `wasi:sockets` may look names up (see `Program::name_lookup`).
    pub(crate) name_lookup: bool,
    /// Its turns at the host's blocking threads, made at its first file operation.
    file_operations: Option<FileOperations>,
}

impl ComponentData {
    /// `http_policy`: the entry's network policy when it grants `wasi:http` (else requests,
    /// which cannot be made without the grant anyway, are refused); `name_lookup`: whether
    /// `wasi:sockets` may look names up.
    pub(crate) fn new(
        wasi: Option<Box<WasiCtx>>,
        limiter: MemoryLimiter,
        written: Option<Arc<WriteQuota>>,
        http_policy: Option<Arc<NetworkPolicy>>,
        name_lookup: bool,
    ) -> Self {
        let lookups = (http_policy.is_some() || name_lookup).then(Lookups::new);
        ComponentData {
            wasi,
            http: WasiHttpCtx::new(),
            http_hooks: PolicyHooks::new(http_policy, lookups.clone()),
            http_parts: Tally::default(),
            sockets: Tally::default(),
            open_files: OpenFiles::default(),
            table: ResourceTable::new(),
            limiter,
            written,
            lookups,
            name_lookup,
            file_operations: None,
        }
    }

    /// The process's turns at the host's blocking threads for its file operations.
    pub(crate) fn file_operations(&mut self) -> FileOperations {
        self.file_operations
            .get_or_insert_with(FileOperations::new)
            .clone()
    }
}

/// The entries of `table` that `kind` picks (by their type): how many files, sockets or HTTP
/// parts a process holds. A walk of the whole table, for the bounds that are checked rarely.
pub(crate) fn held(table: &mut ResourceTable, kind: impl Fn(&dyn std::any::Any) -> bool) -> usize {
    table
        .iter_mut()
        .filter(|entry| {
            let entry: &dyn std::any::Any = &**entry;
            kind(entry)
        })
        .count()
}

/// A process's count of one kind of entry of its resource table, for a bound on how many it
/// holds: the table is walked only when the entries made since the last walk could have
/// reached the bound, so a process that makes and drops one at a time walks it once every
/// `bound` of them, not at each.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Entries of the kind in the table when it was last walked.
    counted: usize,
    /// Entries made since.
    made_since: usize,
}

impl Tally {
    /// Whether the process may make one more entry of the `kind` it holds at most `bound` of
    /// (counted as made when it may).
    pub(crate) fn admit(
        &mut self,
        table: &mut ResourceTable,
        bound: usize,
        kind: impl Fn(&dyn std::any::Any) -> bool,
    ) -> bool {
        if self.counted + self.made_since >= bound {
            self.counted = held(table, kind);
            self.made_since = 0;
            if self.counted >= bound {
                return false;
            }
        }
        self.made_since += 1;
        true
    }
}

impl WasiHttpView for ComponentData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for ComponentData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            // Only a guest without imports has none, and it cannot call WASI; should one ever
            // ask, it gets an empty context (no args, no env, no files, no stdio).
            ctx: self
                .wasi
                .get_or_insert_with(|| Box::new(wasmtime_wasi::WasiCtxBuilder::new().build())),
            table: &mut self.table,
        }
    }
}

/// What a core module's store carries: its preview 1 WASI context (boxed, as captured at spawn).
pub struct ModuleData {
    pub(crate) p1: Box<wasmtime_wasi::p1::WasiP1Ctx>,
    pub(crate) limiter: MemoryLimiter,
    /// `limits.max_written`, when the entry sets it.
    pub(crate) written: Option<Arc<WriteQuota>>,
}

/// A store's data, which carries the process's memory limiter.
pub(crate) trait Limited: Send + 'static {
    fn limiter(&mut self) -> &mut MemoryLimiter;
}

impl Limited for ComponentData {
    fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }
}

impl Limited for ModuleData {
    fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }
}

/// What a process's store will carry, captured at spawn. The store itself is made when the
/// process starts, on its worker: a store is several allocations, and allocations made on one
/// thread and freed on another cost several times more. Boxed, so that the process's task
/// (allocated and copied on every spawn) stays small.
pub(crate) enum SpawnContext {
    /// A component's WASI context; `None` when it imports nothing.
    Component { wasi: Option<Box<WasiCtx>> },
    /// A core module's preview 1 context.
    Module {
        p1: Box<wasmtime_wasi::p1::WasiP1Ctx>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_tally_walks_the_table_once_per_bound_and_refuses_past_it() {
        let mut table = ResourceTable::new();
        let walked = Cell::new(0);
        let kind = |entry: &dyn std::any::Any| {
            walked.set(walked.get() + 1);
            entry.is::<u32>()
        };
        // One held: made and dropped one at a time, 1,000 more walk the one entry 10 times.
        table.push(7u32).unwrap();
        let mut tally = Tally::default();
        for _ in 0..1_000 {
            assert!(tally.admit(&mut table, 100, kind));
        }
        assert_eq!(walked.get(), 10);
        // Each one made and kept, up to the bound: the next is refused (the table holds 101).
        let mut tally = Tally::default();
        for _ in 0..100 {
            assert!(tally.admit(&mut table, 100, kind));
            table.push(7u32).unwrap();
        }
        table.push("another kind").unwrap();
        assert!(!tally.admit(&mut table, 100, kind));
        assert!(!tally.admit(&mut table, 101, kind));
        assert!(tally.admit(&mut table, 102, kind));
    }
}
