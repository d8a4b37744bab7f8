//! From an entry to something that can be spawned: read the binary from its `fs.directory`,
//! check its sha256 *before* compiling, compile it (once per digest; with a
//! [`crate::code_cache`], once per digest and engine configuration across runs), refuse imports
//! the entry does not grant, and find the export its `method` names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex};
use wasmtime::Engine;

use crate::code_cache::{ArtifactKind, CodeCache};
use crate::id::EntryId;
use crate::imports::Grants;
use crate::inspect::BinaryKind;
use crate::manifest::{Digest, Family, Method, WasmSpec};
use crate::store_data::ModuleData;
use crate::value::Signature;

mod backend;
mod error;
mod handler;
mod program;

use backend::Backend;

pub use error::LoadError;
pub use handler::HandlerProgram;
pub use program::{FileCheck, FileStamp, Program, Target, RECHECK};

/// The largest binary a `process.wasm` entry may name: far above any real component (ours are
/// 15-100 KB), far below what would strain the host's memory.
pub const MAX_BINARY_BYTES: u64 = 256 << 20;

/// Compiles binaries once per digest: entries that share a binary share its machine code.
pub struct Loader {
    /// The engine most binaries run on.
    main: Backend,
    /// The engine for binaries that use the component model's async ABI, started the first
    /// time one is loaded (see the `backend` module); why it could not start, if it could not.
    concurrent: OnceLock<Result<Backend, String>>,
    pool: crate::engine::Pool,
    /// Whether both engines count fuel: entries that set `limits.fuel` need it.
    fuel: crate::engine::Fuel,
    /// Memories come from the arena (`crate::arena`), not wasmtime's pool: wasmtime does not
    /// check a binary against it, the loader does ([`Loader::fits_a_process`]).
    arena: bool,
    compiled: Mutex<HashMap<Digest, Component>>,
}

impl Loader {
    /// Fails when the engine's epoch thread cannot start.
    /// `engine` must be configured with `pool` and `fuel` (see [`crate::engine::new`]).
    pub fn new(
        engine: Engine,
        pool: crate::engine::Pool,
        fuel: crate::engine::Fuel,
    ) -> Result<Self, crate::error::Error> {
        let capacity = crate::capacity::Capacity::of(pool.processes);
        Ok(Loader {
            main: Backend::new(
                engine,
                crate::compile_isolation::Recipe::of(pool, fuel, false),
            )?,
            concurrent: OnceLock::new(),
            pool,
            fuel,
            arena: capacity.allocation == crate::capacity::Allocation::Arena,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// This loader, reading compiled code from `disk` before compiling and writing there what
    /// it compiles. A cache opened for another engine is not used (said as a warning): its
    /// code would belong to that engine.
    pub fn with_code_cache(mut self, disk: Option<CodeCache>) -> Self {
        self.main.disk = disk.filter(|disk| {
            let same = Engine::same(disk.engine(), &self.main.engine);
            if !same {
                tracing::warn!(dir = %disk.dir().display(), "a compiled-code cache opened for another engine is not used");
            }
            same
        });
        self
    }

    /// The engine most programs this loader compiles run on: all but those of binaries that
    /// use the component model's async ABI.
    pub fn engine(&self) -> &Engine {
        &self.main.engine
    }

    /// Compiles a component on the engine that can run it, without caching it: the main
    /// engine, or when the binary uses the component model's async ABI or imports WASI 0.3,
    /// the concurrent one.
    pub fn compile_component(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        let on_main = self.main.compile_component(bytes);
        self.on_the_right_engine(on_main, |concurrent| concurrent.compile_component(bytes))
            .unwrap_or_else(|reason| Err(wasmtime::Error::msg(reason)))
    }

    /// Compiles a core module on the main engine, without caching it.
    pub fn compile_module(&self, bytes: &[u8]) -> wasmtime::Result<wasmtime::Module> {
        self.main.compile_module(bytes)
    }

    /// The on-disk cache this loader's main engine uses, if any (its counters tell hits from
    /// compiles).
    pub fn code_cache(&self) -> Option<&CodeCache> {
        self.main.disk.as_ref()
    }

    /// Loads `entry` from the directory of its `fs` entry.
    pub fn load(
        &self,
        entry: &EntryId,
        wasm: &WasmSpec,
        directory: &Path,
    ) -> Result<Arc<Program>, LoadError> {
        let (path, stamp, bytes, digest) = read_checked(entry, wasm, directory)?;
        self.prepare(entry, wasm, path, stamp, digest, &bytes)
    }

    /// Loads `entry` to be served over HTTP (`wasmproc serve`): a component exporting a
    /// `wasi:http` handler, compiled on the concurrent engine (wasmtime-wasi-http runs both
    /// handler versions through the component model's concurrent calls). Its `method` is not
    /// used: the handler is the export.
    pub fn load_handler(
        &self,
        entry: &EntryId,
        wasm: &WasmSpec,
        directory: &Path,
    ) -> Result<Arc<HandlerProgram>, LoadError> {
        let (path, _, bytes, digest) = read_checked(entry, wasm, directory)?;
        self.check_limits(entry, wasm)?;
        let backend = self
            .concurrent()
            .map_err(|reason| LoadError::NoConcurrentEngine {
                entry: entry.clone(),
                reason,
            })?;
        let component = self
            .cached_or_compiled(
                backend,
                &digest,
                ArtifactKind::Component,
                CodeCache::component,
                || backend.compile_component(&bytes),
                Component::serialize,
            )
            .map_err(|e| self.not_compiled(entry, &path, BinaryKind::Component, e))?;
        self.fits_a_process(
            entry,
            &path,
            BinaryKind::Component,
            component.resources_required(),
        )?;
        let grants = Grants::new(&wasm.imports);
        check_imports(entry, wasm, &grants, &component, &backend.engine)?;
        let pre = link(entry, backend, &grants, &component)?;
        let (proxy, world) = handler::proxy(pre).map_err(|()| LoadError::NotAHandler {
            entry: entry.clone(),
            path: path.clone(),
            available: exported_functions(&component, &backend.engine),
        })?;
        tracing::debug!(%entry, %digest, world, "loaded a wasi:http handler");
        Ok(Arc::new(HandlerProgram {
            digest,
            proxy,
            engine: backend.engine.clone(),
            world,
            http_policy: grants.has(Family::Http).then(|| wasm.network.clone()),
            name_lookup: name_lookup(&grants, wasm),
            admission: backend.admission.clone(),
            lift_fuel: usize::try_from(wasm.limits.max_value()).unwrap_or(usize::MAX),
            counts_fuel: self.fuel.counted(),
        }))
    }

    /// Limits the engine cannot honour, refused before compiling: a memory the pool cannot
    /// hold (it would fail at the pool, not at the limit), and fuel an engine does not count.
    fn check_limits(&self, entry: &EntryId, wasm: &WasmSpec) -> Result<(), LoadError> {
        if wasm.limits.fuel.is_some() && !self.fuel.counted() {
            return Err(LoadError::LimitNotHonoured {
                entry: entry.clone(),
                reason: "limits.fuel needs an engine that counts fuel, and this one was started without (a runtime counts fuel when its manifest sets limits.fuel on some entry)".into(),
            });
        }
        self.check_pool_memory(entry, wasm)
    }

    fn check_pool_memory(&self, entry: &EntryId, wasm: &WasmSpec) -> Result<(), LoadError> {
        match wasm
            .limits
            .max_memory
            .filter(|&m| self.pool.processes > 0 && m > self.pool.memory)
        {
            Some(max) => Err(LoadError::LimitNotHonoured {
                entry: entry.clone(),
                reason: format!(
                    "limits.max_memory ({max} bytes) is larger than a pool slot ({} bytes): raise its host's pool.memory (or WASMPROC_POOL_MEMORY)",
                    self.pool.memory
                ),
            }),
            None => Ok(()),
        }
    }

    /// Every reason `bytes`, read from `path`, could not run as `entry`, found by the checks a
    /// spawn's load makes: the hash, then compiling, limits, grants, the export and linking
    /// (these stop at the first problem). With the program the bytes make when only the hash
    /// is wrong, or nothing. `validate --entry` reports these.
    pub fn verify(
        &self,
        entry: &EntryId,
        wasm: &WasmSpec,
        path: &Path,
        bytes: &[u8],
    ) -> (Vec<LoadError>, Option<Arc<Program>>) {
        let mut problems = Vec::new();
        // Hashed once: a binary may be hundreds of MiB.
        let digest = Digest::of(bytes);
        if let Err(e) = check_hash(entry, wasm, path, digest) {
            problems.push(e);
        }
        let stamp = match FileStamp::of(path) {
            Ok(stamp) => stamp,
            Err(source) => {
                problems.push(LoadError::Unreadable {
                    entry: entry.clone(),
                    path: path.to_path_buf(),
                    source,
                });
                return (problems, None);
            }
        };
        match self.prepare(entry, wasm, path.to_path_buf(), stamp, digest, bytes) {
            Ok(program) => (problems, Some(program)),
            Err(e) => {
                problems.push(e);
                (problems, None)
            }
        }
    }

    /// Compiles and links `bytes`, whose hash was checked, for `entry`.
    fn prepare(
        &self,
        entry: &EntryId,
        wasm: &WasmSpec,
        path: PathBuf,
        stamp: FileStamp,
        actual: Digest,
        bytes: &[u8],
    ) -> Result<Arc<Program>, LoadError> {
        // Before compiling, and for both kinds.
        self.check_limits(entry, wasm)?;
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            let (target, signature) = self.load_module(entry, wasm, &path, actual, bytes)?;
            return Ok(Arc::new(Program {
                digest: actual,
                target,
                signature,
                file: FileCheck::new(path, stamp, self.main.ticker.clock().clone()),
                // A core module always gets its preview 1 context.
                imports_nothing: false,
                http_policy: None,
                // Preview 1 has no name lookup.
                name_lookup: false,
                max_value: wasm.limits.max_value(),
                // Its result is numbers; the fuel bounds what one preview 1 call copies from
                // the guest (wasmtime's default: 128 MiB).
                lift_fuel: usize::try_from(wasm.limits.max_value()).unwrap_or(usize::MAX),
                admission: self.main.admission.clone(),
                counts_fuel: self.fuel.counted(),
                hibernation: self.main.hibernates.then(Default::default),
            }));
        }
        let component = self.compile(entry, &path, actual, bytes)?;
        let backend = self.backend_of(&component);
        let grants = Grants::new(&wasm.imports);
        check_imports(entry, wasm, &grants, &component, &backend.engine)?;
        let (export, signature) = find_export(entry, &wasm.method, &component, &backend.engine)?;
        let pre = link(entry, backend, &grants, &component)?;
        tracing::debug!(%entry, digest = %actual, "loaded");
        let imports_nothing = component
            .component_type()
            .imports(&backend.engine)
            .next()
            .is_none();
        let max_value = wasm.limits.max_value();
        Ok(Arc::new(Program {
            digest: actual,
            target: Target::Component { pre, export },
            lift_fuel: crate::value::lift_fuel(&signature.results, max_value),
            signature,
            file: FileCheck::new(path, stamp, self.main.ticker.clock().clone()),
            imports_nothing,
            http_policy: grants
                .has(crate::manifest::Family::Http)
                .then(|| wasm.network.clone()),
            name_lookup: name_lookup(&grants, wasm),
            max_value,
            admission: backend.admission.clone(),
            counts_fuel: self.fuel.counted(),
            hibernation: backend.hibernates.then(Default::default),
        }))
    }

    /// A wasip1 core module: preview 1 WASI is linked whole (its filesystem reaches only the
    /// entry's mounts), and its imports are checked against the grants function by function.
    fn load_module(
        &self,
        entry: &EntryId,
        wasm: &WasmSpec,
        path: &Path,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<(Target, Signature), LoadError> {
        let invalid = |reason: String| LoadError::InvalidBinary {
            entry: entry.clone(),
            path: path.to_path_buf(),
            what: BinaryKind::CoreModule,
            reason,
        };
        let module = self
            .cached_or_compiled(
                &self.main,
                &digest,
                ArtifactKind::Module,
                CodeCache::module,
                || self.main.compile_module(bytes),
                wasmtime::Module::serialize,
            )
            .map_err(|e| self.not_compiled(entry, path, BinaryKind::CoreModule, e))?;
        self.fits_a_process(
            entry,
            path,
            BinaryKind::CoreModule,
            Some(module.resources_required()),
        )?;
        let grants = Grants::new(&wasm.imports);
        let ungranted: Vec<String> = module
            .imports()
            .filter(|i| !Family::of_p1_import(i.module(), i.name()).is_some_and(|f| grants.has(f)))
            .map(|i| format!("{}::{}", i.module(), i.name()))
            .collect();
        if !ungranted.is_empty() {
            return Err(LoadError::UngrantedImports {
                entry: entry.clone(),
                imports: ungranted,
                granted: wasm.imports.iter().map(|f| f.to_string()).collect(),
            });
        }
        let func = wasm
            .method
            .core_export(|name| module.get_export(name).is_some());
        let missing = || LoadError::MissingExport {
            entry: entry.clone(),
            method: wasm.method.clone(),
            available: module
                .exports()
                .filter(|e| matches!(e.ty(), wasmtime::ExternType::Func(_)))
                .map(|e| e.name().to_string())
                .collect(),
        };
        let Some(wasmtime::ExternType::Func(ty)) = module.get_export(&func) else {
            return Err(missing());
        };
        let core = |t: wasmtime::ValType| match t {
            wasmtime::ValType::I32 => Some(wasmtime::component::types::Type::S32),
            wasmtime::ValType::I64 => Some(wasmtime::component::types::Type::S64),
            wasmtime::ValType::F32 => Some(wasmtime::component::types::Type::Float32),
            wasmtime::ValType::F64 => Some(wasmtime::component::types::Type::Float64),
            _ => None,
        };
        let params: Option<Vec<_>> = ty
            .params()
            .enumerate()
            .map(|(i, t)| core(t).map(|t| (format!("p{i}"), t)))
            .collect();
        let results: Option<Vec<_>> = ty.results().map(core).collect();
        let (Some(params), Some(results)) = (params, results) else {
            return Err(invalid(format!(
                "export `{func}` has parameter or result types a spawn cannot pass (only i32, i64, f32, f64)"
            )));
        };
        let mut linker = wasmtime::Linker::<ModuleData>::new(&self.main.engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut ModuleData| &mut *s.p1)
            .and_then(|_| crate::special_files::guard_path_open(&mut linker))
            .and_then(|_| crate::write_quota::p1::charge_writes(&mut linker))
            .and_then(|_| linker.instantiate_pre(&module))
            .map(|pre| {
                let signature = Signature {
                    params,
                    results,
                    is_async: false,
                };
                (Target::Module { pre, func }, signature)
            })
            .map_err(|e| LoadError::UnsupportedImport {
                entry: entry.clone(),
                reason: format!("{e:#}"),
            })
    }

    fn compile(
        &self,
        entry: &EntryId,
        path: &Path,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<Component, LoadError> {
        if let Some(component) = self.lock().get(&digest) {
            return Ok(component.clone());
        }
        let invalid = |reason: String| LoadError::InvalidBinary {
            entry: entry.clone(),
            path: path.to_path_buf(),
            what: BinaryKind::Component,
            reason,
        };
        // The parser's messages for these two cases are about bytes; say what the file is.
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => {
                return Err(invalid(
                    "it does not start with the WebAssembly header `\\0asm`".into(),
                ))
            }
        }
        let not_compiled = |e| self.not_compiled(entry, path, BinaryKind::Component, e);
        // Compiled outside the lock: compiling takes milliseconds, and other binaries should not
        // wait for it. Two threads may compile the same digest once each; either result is fine.
        let on_main = self.cached_or_compiled(
            &self.main,
            &digest,
            ArtifactKind::Component,
            CodeCache::component,
            || self.main.compile_component(bytes),
            Component::serialize,
        );
        let component = self
            .on_the_right_engine(on_main, |concurrent| {
                self.cached_or_compiled(
                    concurrent,
                    &digest,
                    ArtifactKind::Component,
                    CodeCache::component,
                    || concurrent.compile_component(bytes),
                    Component::serialize,
                )
            })
            .map_err(|reason| LoadError::NoConcurrentEngine {
                entry: entry.clone(),
                reason,
            })?
            .map_err(not_compiled)?;
        self.fits_a_process(
            entry,
            path,
            BinaryKind::Component,
            component.resources_required(),
        )?;
        self.lock().insert(digest, component.clone());
        Ok(component)
    }

    /// `digest`'s compiled code: from the disk cache when it holds it, else compiled (and
    /// stored there).
    fn cached_or_compiled<T>(
        &self,
        backend: &Backend,
        digest: &Digest,
        kind: ArtifactKind,
        cached: fn(&CodeCache, &Digest) -> Option<T>,
        compile: impl FnOnce() -> wasmtime::Result<T>,
        serialize: fn(&T) -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<T> {
        if let Some(found) = backend.disk.as_ref().and_then(|disk| cached(disk, digest)) {
            return Ok(found);
        }
        let compiled = compile()?;
        if let Some(disk) = &backend.disk {
            disk.store(kind, digest, || serialize(&compiled));
        }
        Ok(compiled)
    }

    /// Refuses, as wasmtime's pool does when it compiles, a binary whose memories start larger
    /// than the arena's blocks (a pool slot's size), or that needs more memories or tables than
    /// a process may hold (`limits::MEMORIES_PER_PROCESS`...): it would fail every spawn. Without
    /// the second check, only a pooled engine refused such a binary at load; the others let
    /// each spawn end with `limit_exceeded` as it was instantiated.
    fn fits_a_process(
        &self,
        entry: &EntryId,
        path: &Path,
        what: BinaryKind,
        required: Option<wasmtime::ResourcesRequired>,
    ) -> Result<(), LoadError> {
        if let Some(beyond) = required.as_ref().and_then(beyond_a_process) {
            return Err(LoadError::PoolTooSmall {
                entry: entry.clone(),
                reason: format!(
                    "{} is a valid WebAssembly {what}, but {beyond}",
                    path.display()
                ),
            });
        }
        const WASM_PAGE: u64 = 64 << 10;
        let initial = required
            .and_then(|r| r.max_initial_memory_size)
            .map_or(0, |pages| pages.saturating_mul(WASM_PAGE));
        if !self.arena || initial <= self.pool.memory {
            return Ok(());
        }
        Err(self.too_large_for_a_slot(
            path,
            what,
            entry,
            format!("a memory starts at {initial} bytes"),
        ))
    }

    /// Why a binary did not compile: invalid, or valid but past the instance pool's limits.
    /// wasmtime checks a binary against the pool when it compiles it, and says so in the
    /// error ("... does not fit in pooling allocator requirements", "... exceeds the
    /// configured maximum of N in the pooling allocator").
    fn not_compiled(
        &self,
        entry: &EntryId,
        path: &Path,
        what: BinaryKind,
        error: wasmtime::Error,
    ) -> LoadError {
        let reason = format!("{error:#}");
        if error
            .downcast_ref::<crate::compile_isolation::CompilerUnavailable>()
            .is_some()
        {
            return LoadError::CompilerUnavailable {
                entry: entry.clone(),
                reason,
            };
        }
        if error
            .downcast_ref::<crate::compile_isolation::CompileRefused>()
            .is_some()
        {
            return LoadError::NotCompiled {
                entry: entry.clone(),
                path: path.to_path_buf(),
                what,
                reason,
            };
        }
        if self.pool.processes > 0 && reason.contains("pooling allocator") {
            // More memories, tables or core instances than one process's share: no setting
            // changes that.
            if reason.contains("transitively contains") {
                return LoadError::PoolTooSmall {
                    entry: entry.clone(),
                    reason: format!(
                        "{} is a valid WebAssembly {what}, but {}",
                        path.display(),
                        crate::limits::per_process_share(&reason)
                    ),
                };
            }
            return self.too_large_for_a_slot(path, what, entry, reason);
        }
        LoadError::InvalidBinary {
            entry: entry.clone(),
            path: path.to_path_buf(),
            what,
            reason,
        }
    }

    fn too_large_for_a_slot(
        &self,
        path: &Path,
        what: BinaryKind,
        entry: &EntryId,
        reason: String,
    ) -> LoadError {
        LoadError::PoolTooSmall {
            entry: entry.clone(),
            reason: format!(
                "{} is a valid WebAssembly {what}, but it does not fit a slot of the instance pool ({reason}); a slot holds {} bytes of linear memory: raise its host's pool.memory (or WASMPROC_POOL_MEMORY), or run without the pool (WASMPROC_POOL=0)",
                path.display(),
                self.pool.memory
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Component>> {
        crate::lock::lock(&self.compiled)
    }

    /// `on_main`, the main engine's compile, unless the binary must run on the concurrent
    /// engine (refused for its async ABI, or importing WASI 0.3): then `on_concurrent`'s; or
    /// why the concurrent engine could not start.
    fn on_the_right_engine(
        &self,
        on_main: wasmtime::Result<Component>,
        on_concurrent: impl FnOnce(&Backend) -> wasmtime::Result<Component>,
    ) -> Result<wasmtime::Result<Component>, String> {
        if !backend::needs_concurrency(&on_main, &self.main.engine) {
            return Ok(on_main);
        }
        self.concurrent().map(on_concurrent)
    }

    /// The concurrent engine, started on first use.
    fn concurrent(&self) -> Result<&Backend, String> {
        self.concurrent
            .get_or_init(|| {
                let cache = self.main.disk.as_ref().map(CodeCache::config);
                Backend::concurrent(&self.main, self.pool, self.fuel, cache)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The backend whose engine compiled `component`.
    fn backend_of(&self, component: &Component) -> &Backend {
        match self.concurrent.get() {
            Some(Ok(concurrent)) if Engine::same(component.engine(), &concurrent.engine) => {
                concurrent
            }
            _ => &self.main,
        }
    }
}

/// Whether a component of `wasm` may look names up through `wasi:sockets`: granted, and its
/// policy lets a socket reach public addresses.
fn name_lookup(grants: &Grants, wasm: &WasmSpec) -> bool {
    grants.has(Family::Sockets) && wasm.network.reaches_public_sockets()
}

/// `component` linked with the `grants`' interfaces on `backend`: refused when wasmproc does
/// not provide an import it names (an interface, or a version).
fn link(
    entry: &EntryId,
    backend: &Backend,
    grants: &Grants,
    component: &Component,
) -> Result<wasmtime::component::InstancePre<crate::store_data::ComponentData>, LoadError> {
    backend
        .linker(grants)
        .and_then(|linker| linker.instantiate_pre(component))
        .map_err(|e| LoadError::UnsupportedImport {
            entry: entry.clone(),
            reason: format!("{e:#}"),
        })
}

/// `entry`'s binary from `directory`: its path, how it looked, its bytes and their sha256,
/// which must be the one the entry pins.
fn read_checked(
    entry: &EntryId,
    wasm: &WasmSpec,
    directory: &Path,
) -> Result<(PathBuf, FileStamp, Vec<u8>, Digest), LoadError> {
    let path = wasm.binary_path(directory);
    let unreadable = |source| LoadError::Unreadable {
        entry: entry.clone(),
        path: path.clone(),
        source,
    };
    let stamp = FileStamp::of(&path).map_err(unreadable)?;
    // A regular file of bounded size: a FIFO or device put where the binary was expected
    // (by a guest that can write into the directory, say) would block or never end.
    let bytes = crate::source_file::read_bytes(&path, MAX_BINARY_BYTES).map_err(unreadable)?;
    let digest = Digest::of(&bytes);
    check_hash(entry, wasm, &path, digest)?;
    Ok((path, stamp, bytes, digest))
}

/// `actual`, the sha256 of the binary read from `path`, is the one `entry` pins.
fn check_hash(
    entry: &EntryId,
    wasm: &WasmSpec,
    path: &Path,
    actual: Digest,
) -> Result<(), LoadError> {
    if actual == wasm.hash {
        return Ok(());
    }
    Err(LoadError::HashMismatch {
        entry: entry.clone(),
        path: path.to_path_buf(),
        expected: Box::new(wasm.hash),
        actual: Box::new(actual),
    })
}

/// Every import must belong to a granted family; the linker then checks that wasmproc provides
/// that exact interface and version.
fn check_imports(
    entry: &EntryId,
    wasm: &WasmSpec,
    grants: &Grants,
    component: &Component,
    engine: &Engine,
) -> Result<(), LoadError> {
    let ungranted: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !grants.allows(name))
        .map(str::to_string)
        .collect();
    if ungranted.is_empty() {
        return Ok(());
    }
    Err(LoadError::UngrantedImports {
        entry: entry.clone(),
        imports: ungranted,
        granted: wasm.imports.iter().map(|f| f.to_string()).collect(),
    })
}

fn find_export(
    entry: &EntryId,
    method: &Method,
    component: &Component,
    engine: &Engine,
) -> Result<(ComponentExportIndex, Signature), LoadError> {
    let parent = match &method.interface {
        Some(interface) => component.get_export_index(None, interface.as_str()),
        None => None,
    };
    let found = match (&method.interface, parent) {
        (Some(_), None) => None,
        (_, parent) => component.get_export(parent.as_ref(), method.func.as_str()),
    };
    let found = match found {
        None if method.interface.is_none() && method.func == "main" => cli_run(component, engine),
        found => found,
    };
    match found {
        Some((ComponentItem::ComponentFunc(func), index)) => Ok((index, Signature::of(&func))),
        _ => Err(LoadError::MissingExport {
            entry: entry.clone(),
            method: method.clone(),
            available: exported_functions(component, engine),
        }),
    }
}

/// A command's `run`, for `method: main` on a component without a `main` export: that of the
/// newest `wasi:cli/run` it exports (WASI 0.3 commands export the 0.2 one too).
fn cli_run(
    component: &Component,
    engine: &Engine,
) -> Option<(ComponentItem, ComponentExportIndex)> {
    let newest = component
        .component_type()
        .exports(engine)
        .filter_map(|(name, _)| {
            let version = name.strip_prefix("wasi:cli/run@")?;
            let parts: Option<Vec<u64>> = version.split('.').map(|p| p.parse().ok()).collect();
            Some((parts?, name.to_string()))
        })
        .max()?;
    let instance = component.get_export_index(None, &newest.1)?;
    component.get_export(Some(&instance), "run")
}

/// Every function the component exports, as `method` would name it.
pub fn exported_functions(component: &Component, engine: &Engine) -> Vec<String> {
    component_functions(component, engine)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// The functions a component exports, top-level (`name`) and in exported instances
/// (`interface#name`), as a method names them.
pub fn component_functions(
    component: &Component,
    engine: &Engine,
) -> Vec<(String, wasmtime::component::types::ComponentFunc)> {
    let mut functions = Vec::new();
    for (name, export) in component.component_type().exports(engine) {
        match export.ty {
            ComponentItem::ComponentFunc(func) => functions.push((name.to_string(), func)),
            ComponentItem::ComponentInstance(instance) => {
                for (func_name, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item.ty {
                        functions.push((format!("{name}#{func_name}"), func));
                    }
                }
            }
            _ => {}
        }
    }
    functions
}

/// Why a binary needing `required` cannot run as one process, if it cannot: more linear
/// memories or tables than a process may hold.
pub(crate) fn beyond_a_process(required: &wasmtime::ResourcesRequired) -> Option<String> {
    use crate::limits::{MEMORIES_PER_PROCESS, TABLES_PER_PROCESS};
    (required.num_memories > MEMORIES_PER_PROCESS || required.num_tables > TABLES_PER_PROCESS).then(
        || {
            crate::limits::per_process_share(&format!(
                "it needs {} linear memories and {} tables",
                required.num_memories, required.num_tables
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loader() -> Loader {
        let pool = crate::engine::Pool {
            processes: 0,
            ..Default::default()
        };
        crate::engine::loader_with(pool).unwrap()
    }

    /// An `async func` export: its binary uses `task.return` and an async lift.
    const ASYNC: &str = r#"(component
      (core module $m
        (import "" "task.return" (func $ret (param i32)))
        (func (export "callback") (param i32 i32 i32) (result i32) unreachable)
        (func (export "f") (param i32) (result i32) (call $ret (local.get 0)) i32.const 0))
      (core func $ret (canon task.return (result u32)))
      (core instance $i (instantiate $m (with "" (instance (export "task.return" (func $ret))))))
      (func (export "f") async (param "n" u32) (result u32)
        (canon lift (core func $i "f") async (callback (core func $i "callback")))))"#;

    const SYNC: &str = r#"(component
      (core module $m (func (export "f") (param i32) (result i32) local.get 0))
      (core instance $i (instantiate $m))
      (func (export "f") (param "n" u32) (result u32) (canon lift (core func $i "f"))))"#;

    #[test]
    fn only_async_abi_binaries_get_the_concurrent_engine_and_only_once_one_is_loaded() {
        let loader = loader();
        let sync = loader
            .compile_component(&wat::parse_str(SYNC).unwrap())
            .unwrap();
        assert!(Engine::same(sync.engine(), loader.engine()));
        assert!(loader.concurrent.get().is_none(), "started for nothing");
        let asynchronous = loader
            .compile_component(&wat::parse_str(ASYNC).unwrap())
            .unwrap();
        assert!(!Engine::same(asynchronous.engine(), loader.engine()));
        assert!(matches!(loader.concurrent.get(), Some(Ok(_))));
        assert!(Engine::same(
            &loader.backend_of(&asynchronous).engine,
            asynchronous.engine()
        ));
        assert!(Engine::same(
            &loader.backend_of(&sync).engine,
            loader.engine()
        ));
    }

    /// In the arena, and without a pool, a pool's places are shared by both engines: a place a
    /// WASI 0.2 process holds is one a WASI 0.3 process cannot take. Beside a pooled engine
    /// the concurrent one has its own share.
    #[test]
    fn both_engines_take_places_from_one_admission_unless_the_pool_reserves_slots() {
        for processes in [0, 100, 20_000] {
            let pool = crate::engine::Pool {
                processes,
                memory: 2 << 20,
                keep_resident: 64 << 10,
            };
            let loader = crate::engine::loader_with(pool).unwrap();
            loader
                .compile_component(&wat::parse_str(ASYNC).unwrap())
                .unwrap();
            let concurrent = loader.concurrent().unwrap();
            let (main, other) = (&loader.main.admission, &concurrent.admission);
            let before = other.available_permits();
            let held = main.clone().try_acquire_many_owned(3).unwrap();
            let capacity = crate::capacity::Capacity::of(processes);
            if capacity.allocation != crate::capacity::Allocation::Pooled {
                assert_eq!(before, capacity.processes as usize);
                assert_eq!(other.available_permits(), before - 3, "{processes}");
            } else {
                assert_eq!(
                    before,
                    crate::engine::CONCURRENT_PROCESSES.min(processes) as usize
                );
                assert_eq!(other.available_permits(), before, "{processes}");
            }
            drop(held);
        }
    }

    /// The concurrent engine keeps compiled code on disk too, in the cache its loader was
    /// given: a second run reads what the first compiled.
    #[test]
    fn async_abi_binaries_are_kept_in_the_code_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::code_cache::CacheConfig::in_dir(dir.path());
        let pool = crate::engine::Pool {
            processes: 0,
            ..Default::default()
        };
        let bytes = wat::parse_str(ASYNC).unwrap();
        let entry = EntryId::new("t", "async");
        let concurrent_stats = |loader: &Loader| {
            let component = loader
                .compile(&entry, Path::new("async.wasm"), Digest::of(&bytes), &bytes)
                .unwrap();
            assert!(!Engine::same(component.engine(), loader.engine()));
            let concurrent = loader.concurrent.get().unwrap().as_ref().unwrap();
            concurrent.disk.as_ref().expect("a cache").stats()
        };
        let first =
            crate::engine::loader_caching(pool, crate::engine::Fuel::Counted, &cache).unwrap();
        let stats = concurrent_stats(&first);
        assert_eq!((stats.hits, stats.written), (0, 1), "{stats:?}");
        let second =
            crate::engine::loader_caching(pool, crate::engine::Fuel::Counted, &cache).unwrap();
        let stats = concurrent_stats(&second);
        assert_eq!((stats.hits, stats.written), (1, 0), "{stats:?}");
    }

    /// Component-model threads are on neither engine: a binary using them is invalid, said
    /// as such, and does not start the concurrent engine.
    #[test]
    fn a_binary_using_component_model_threads_is_invalid() {
        let loader = loader();
        let threads = wat::parse_str(
            r#"(component
              (core func $index (canon thread.index))
              (core module $m (import "" "index" (func (result i32))))
              (core instance (instantiate $m (with "" (instance (export "index" (func $index)))))))"#,
        )
        .unwrap();
        let error = loader.compile_component(&threads).unwrap_err();
        assert!(format!("{error:#}").contains("threading"), "{error:#}");
        assert!(loader.concurrent.get().is_none());
    }

    #[test]
    fn an_invalid_component_is_not_retried_on_the_concurrent_engine() {
        let loader = loader();
        // A component header, then a section id that does not exist.
        let garbage = [0, b'a', b's', b'm', 0x0d, 0, 1, 0, 0x7f, 1, 0];
        let error = loader.compile_component(&garbage).unwrap_err();
        assert!(!backend::needs_async_abi(&error), "{error:#}");
        assert!(loader.concurrent.get().is_none());
    }

    /// `bytes` as the binary of an entry calling `method`, with more `fields`, checked by
    /// `loader` as `validate --entry` does: what it finds wrong.
    fn problems(loader: &Loader, bytes: &[u8], method: &str, fields: &str) -> Vec<LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.wasm");
        std::fs::write(&path, bytes).unwrap();
        let text = format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: f, kind: process.wasm, fs: t:bins, path: f.wasm, method: {method}, hash: \"{}\"{fields} }}\n",
            Digest::of(bytes)
        );
        let manifest = crate::Manifest::parse(&text, Path::new("t.yaml")).unwrap();
        let id = EntryId::new("t", "f");
        let Some(crate::manifest::EntrySpec::Wasm(wasm)) = manifest.get(&id).map(|e| &e.spec)
        else {
            panic!("not a process.wasm entry")
        };
        loader.verify(&id, wasm, &path, bytes).0
    }

    #[test]
    fn a_max_memory_larger_than_a_pool_slot_is_refused_before_compiling() {
        let pooled = crate::engine::loader_with(crate::engine::Pool {
            processes: 4,
            memory: 1 << 20,
            keep_resident: 64 << 10,
        })
        .unwrap();
        let sync = wat::parse_str(SYNC).unwrap();
        let max_memory = |max: &str| format!(", limits: {{ max_memory: {max} }}");
        assert!(problems(&pooled, &sync, "f", &max_memory("1MiB")).is_empty());
        let refused = problems(&pooled, &sync, "f", &max_memory("1088KiB"));
        assert!(
            matches!(refused.as_slice(), [LoadError::LimitNotHonoured { .. }]),
            "{refused:?}"
        );
        // Without the pool no slot bounds a memory.
        assert!(problems(&loader(), &sync, "f", &max_memory("1GiB")).is_empty());
    }

    #[test]
    fn a_core_modules_export_takes_and_returns_every_number_type_and_nothing_else() {
        let module = |params: &str| {
            wat::parse_str(format!(
                "(module (func (export \"f\") (param {params}) (result {params}) unreachable))"
            ))
            .unwrap()
        };
        for ty in ["i32", "i64", "f32", "f64"] {
            let found = problems(&loader(), &module(ty), "f", "");
            assert!(found.is_empty(), "{ty}: {found:?}");
        }
        let refused = problems(&loader(), &module("v128"), "f", "");
        assert!(
            matches!(refused.as_slice(), [LoadError::InvalidBinary { reason, .. }] if reason.contains("only i32, i64, f32, f64")),
            "{refused:?}"
        );
    }
}
