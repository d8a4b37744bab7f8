//! An engine and what the processes compiled for it share: its admission, its linkers and its
//! epoch ticker. A loader has two: the main one, and one with the component model's
//! concurrency support, started the first time a binary needs it.
//!
//! Why two: with concurrency support on, wasmtime gives every store the state of an async
//! event loop and runs every component call through it, which cost each process 7.5 KiB of
//! resident memory whether or not its binary used the async ABI (1,000 sleepers: 44.8 vs
//! 37.0-37.3 KiB each; benches/README.md). Only binaries that need it pay for it here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use crate::capacity::{Allocation, Capacity};
use crate::code_cache::{ArtifactKind, CacheConfig, CodeCache};
use crate::compile_isolation::{self, Recipe};
use crate::engine::{EpochTicker, Pool};
use crate::error::Error;
use crate::imports::{self, Grants};
use crate::store_data::ComponentData;

pub(super) struct Backend {
    pub(super) engine: Engine,
    /// One permit per process the engine holds at once (a pool slot, or without a pool what the
    /// map limit allows): a process waits for one before it is instantiated, so a full engine
    /// queues processes instead of failing them.
    pub(super) admission: Arc<tokio::sync::Semaphore>,
    /// Its clock tells programs when to look at their files again.
    pub(super) ticker: EpochTicker,
    /// One linker per distinct set of grants: entries granted the same families share it.
    linkers: Mutex<HashMap<Grants, Arc<Linker<ComponentData>>>>,
    /// Compiled code on disk for this engine, kept between runs (none: every run compiles).
    pub(super) disk: Option<CodeCache>,
    /// What the engine was configured from: a compiler process rebuilds it. With concurrency
    /// support (`recipe.concurrent`), its linkers get WASI 0.3 too.
    pub(super) recipe: Recipe,
    /// Its processes may be hibernated (see [`crate::hibernation`]): the main engine's, when
    /// its pool takes the arena.
    pub(super) hibernates: bool,
}

impl Backend {
    /// Fails when the engine's epoch thread cannot start.
    /// `engine` is configured from `recipe`.
    pub(super) fn new(engine: Engine, recipe: Recipe) -> Result<Self, Error> {
        // Without a pool too: past what the kernel's map limit leaves room for, instances
        // fail with ENOMEM (see `capacity`).
        let places = Capacity::of(recipe.pool.processes).processes as usize;
        Backend::admitting(
            engine,
            Arc::new(tokio::sync::Semaphore::new(places)),
            recipe,
        )
    }

    /// A backend whose processes hold places of `admission`.
    fn admitting(
        engine: Engine,
        admission: Arc<tokio::sync::Semaphore>,
        recipe: Recipe,
    ) -> Result<Self, Error> {
        // As `engine::configured` decided, from the same figures.
        let allocation = Capacity::within(recipe.pool.processes, recipe.max_map_count).allocation;
        let hibernates = crate::hibernation::in_engine(allocation, recipe.concurrent);
        Ok(Backend {
            admission,
            ticker: EpochTicker::start(&engine)?,
            engine,
            linkers: Mutex::new(HashMap::new()),
            disk: None,
            recipe,
            hibernates,
        })
    }

    /// `bytes` compiled as a component for this engine: in a compiler process when this
    /// process isolates compiles (see `compile_isolation`), else here.
    pub(super) fn compile_component(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        match compile_isolation::isolation() {
            Some(isolation) => {
                let code = isolation.compile(&self.recipe, ArtifactKind::Component, bytes)?;
                // SAFETY: code this executable's compiler just wrote for an engine of this
                // configuration (deserialize checks that), passed through a pipe only the two
                // processes hold: what `Component::new` would have made here.
                unsafe { Component::deserialize(&self.engine, &code) }
            }
            None => Component::new(&self.engine, bytes),
        }
    }

    /// `bytes` compiled as a core module for this engine, as [`Backend::compile_component`].
    pub(super) fn compile_module(&self, bytes: &[u8]) -> wasmtime::Result<wasmtime::Module> {
        match compile_isolation::isolation() {
            Some(isolation) => {
                let code = isolation.compile(&self.recipe, ArtifactKind::Module, bytes)?;
                // SAFETY: as in `compile_component`.
                unsafe { wasmtime::Module::deserialize(&self.engine, &code) }
            }
            None => wasmtime::Module::new(&self.engine, bytes),
        }
    }

    /// The concurrent engine for a loader whose main engine is `main` with `pool`, keeping
    /// compiled code in the cache `cache` opens (its own directory: the key is the engine's
    /// configuration).
    ///
    /// When the pool takes the arena (or there is no pool), the concurrent engine holds as
    /// many processes as the main one, and both take their places from one admission: the
    /// pool's `processes` (or what the map limit allows) stays the most live at once,
    /// whichever engine runs them. Beside a pooled main engine it has its own few places, as
    /// its own few slots.
    pub(super) fn concurrent(
        main: &Backend,
        pool: Pool,
        fuel: crate::engine::Fuel,
        cache: Option<CacheConfig>,
    ) -> Result<Self, Error> {
        let pool = crate::engine::concurrent_pool(pool);
        // Without a pool, both engines' instances take from the one map limit the places
        // were counted from: separate places would admit twice what fits.
        let shared = Capacity::of(pool.processes).allocation != Allocation::Pooled;
        let recipe = Recipe::of(pool, fuel, true);
        let engine = Engine::new(&crate::engine::concurrent_config(pool, fuel)).map_err(|e| {
            Error::EngineStart {
                reason: format!("the engine for component-model-async binaries: {e:#}"),
            }
        })?;
        tracing::info!(
            processes = pool.processes,
            shares_the_main_engines_places = shared,
            "started the engine for component-model-async binaries"
        );
        let mut backend = if shared {
            Backend::admitting(engine, main.admission.clone(), recipe)?
        } else {
            Backend::new(engine, recipe)?
        };
        backend.disk = cache.and_then(|cache| CodeCache::open_or_warn(&cache, &backend.engine));
        Ok(backend)
    }

    pub(super) fn linker(&self, grants: &Grants) -> wasmtime::Result<Arc<Linker<ComponentData>>> {
        let mut linkers = crate::lock::lock(&self.linkers);
        if let Some(linker) = linkers.get(grants) {
            return Ok(linker.clone());
        }
        let linker = Arc::new(if self.recipe.concurrent {
            imports::concurrent_linker(&self.engine, grants)?
        } else {
            imports::linker(&self.engine, grants)?
        });
        linkers.insert(grants.clone(), linker.clone());
        Ok(linker)
    }
}

/// The main engine refused a binary only because it uses the component model's async ABI
/// (`task.return`, `async` lifts, waitables, streams, futures): the concurrent engine can
/// compile it. The validator's message is the only sign of it (wasmparser 0.254: "`task.return`
/// requires the component model async feature", "async component functions require ...";
/// not "... the component model async stackful feature", which neither engine has).
pub(super) fn needs_async_abi(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains("the component model async feature")
}

/// `compiled` (a binary compiled on the main engine, `main`) must run on the concurrent engine
/// instead: the main engine refused it for its async ABI, or it imports WASI 0.3, which only
/// the concurrent engine links (its functions are async ones), even when it calls them
/// synchronously.
pub(super) fn needs_concurrency(compiled: &wasmtime::Result<Component>, main: &Engine) -> bool {
    match compiled {
        Err(e) => needs_async_abi(e),
        Ok(component) => component
            .component_type()
            .imports(main)
            .any(|(name, _)| name.starts_with("wasi:") && name.contains("@0.3.")),
    }
}
