//! From an entry to something that can be spawned: read the binary from its `fs.directory`,
//! check its sha256 *before* compiling, compile it (once per digest; with a
//! [`crate::code_cache`], once per digest and engine configuration across runs), refuse imports
//! the entry does not grant, and find the export its `method` names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, Linker};
use wasmtime::Engine;

use crate::code_cache::{ArtifactKind, CodeCache};
use crate::id::EntryId;
use crate::imports::{self, Grants};
use crate::inspect::BinaryKind;
use crate::manifest::{Digest, Family, Method, WasmSpec};
use crate::store_data::{ComponentData, ModuleData};
use crate::value::Signature;

mod error;
mod program;

pub use error::LoadError;
pub use program::{FileCheck, FileStamp, Program, Target, RECHECK};

/// The largest binary a `process.wasm` entry may name: far above any real component (ours are
/// 15-100 KB), far below what would strain the host's memory.
pub const MAX_BINARY_BYTES: u64 = 256 << 20;

/// Compiles binaries once per digest: entries that share a binary share its machine code.
pub struct Loader {
    engine: Engine,
    pool: crate::engine::Pool,
    /// One permit per process the engine holds at once (a pool slot, or without a pool what the
    /// map limit allows): a process waits for one before it is instantiated, so a full engine
    /// queues processes instead of failing them.
    admission: Arc<tokio::sync::Semaphore>,
    /// Memories come from the arena (`crate::arena`), not wasmtime's pool: wasmtime does not
    /// check a binary against it, the loader does ([`Loader::fits_the_arena`]).
    arena: bool,
    /// Its clock tells programs when to look at their files again.
    ticker: crate::engine::EpochTicker,
    compiled: Mutex<HashMap<Digest, Component>>,
    /// Compiled code on disk, kept between runs (none: every run compiles).
    disk: Option<CodeCache>,
    /// One linker per distinct set of grants: entries granted the same families share it.
    linkers: Mutex<HashMap<Grants, Arc<Linker<ComponentData>>>>,
}

impl Loader {
    /// Fails when the engine's epoch thread cannot start.
    pub fn new(engine: Engine, pool: crate::engine::Pool) -> Result<Self, crate::error::Error> {
        let capacity = crate::capacity::Capacity::of(pool.processes);
        Ok(Loader {
            pool,
            // Without a pool too: past what the kernel's map limit leaves room for, instances
            // fail with ENOMEM (see `capacity`).
            admission: Arc::new(tokio::sync::Semaphore::new(capacity.processes as usize)),
            arena: capacity.allocation == crate::capacity::Allocation::Arena,
            ticker: crate::engine::EpochTicker::start(&engine)?,
            engine,
            compiled: Mutex::new(HashMap::new()),
            disk: None,
            linkers: Mutex::new(HashMap::new()),
        })
    }

    /// This loader, reading compiled code from `disk` before compiling and writing there what
    /// it compiles. A cache opened for another engine is not used (said as a warning): its
    /// code would belong to that engine.
    pub fn with_code_cache(mut self, disk: Option<CodeCache>) -> Self {
        self.disk = disk.filter(|disk| {
            let same = Engine::same(disk.engine(), &self.engine);
            if !same {
                tracing::warn!(dir = %disk.dir().display(), "a compiled-code cache opened for another engine is not used");
            }
            same
        });
        self
    }

    /// The engine every program this loader compiles runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The on-disk cache this loader uses, if any (its counters tell hits from compiles).
    pub fn code_cache(&self) -> Option<&CodeCache> {
        self.disk.as_ref()
    }

    /// Loads `entry` from the directory of its `fs` entry.
    pub fn load(
        &self,
        entry: &EntryId,
        wasm: &WasmSpec,
        directory: &Path,
    ) -> Result<Arc<Program>, LoadError> {
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
        self.prepare(entry, wasm, path, stamp, digest, &bytes)
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
        // Before compiling, and for both kinds: a memory the pool cannot hold would fail at
        // the pool, not at the limit.
        if let Some(max) = wasm
            .limits
            .max_memory
            .filter(|&m| self.pool.processes > 0 && m > self.pool.memory)
        {
            return Err(LoadError::LimitTooLarge {
                entry: entry.clone(),
                reason: format!(
                    "limits.max_memory ({max} bytes) is larger than a pool slot ({} bytes): raise its host's pool.memory (or WASMPROC_POOL_MEMORY)",
                    self.pool.memory
                ),
            });
        }
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            let (target, signature) = self.load_module(entry, wasm, &path, actual, bytes)?;
            return Ok(Arc::new(Program {
                digest: actual,
                target,
                signature,
                file: FileCheck::new(path, stamp, self.ticker.clock().clone()),
                // A core module always gets its preview 1 context.
                imports_nothing: false,
                http_policy: None,
                max_value: wasm.limits.max_value(),
                // Its result is numbers; the fuel bounds what one preview 1 call copies from
                // the guest (wasmtime's default: 128 MiB).
                lift_fuel: usize::try_from(wasm.limits.max_value()).unwrap_or(usize::MAX),
                admission: self.admission.clone(),
            }));
        }
        let component = self.compile(entry, &path, actual, bytes)?;
        let grants = Grants::new(&wasm.imports);
        check_imports(entry, wasm, &grants, &component, &self.engine)?;
        let (export, signature) = find_export(entry, &wasm.method, &component, &self.engine)?;
        let pre = self
            .linker(&grants)
            .and_then(|linker| linker.instantiate_pre(&component))
            .map_err(|e| LoadError::UnsupportedImport {
                entry: entry.clone(),
                reason: format!("{e:#}"),
            })?;
        tracing::debug!(%entry, digest = %actual, "loaded");
        let imports_nothing = component
            .component_type()
            .imports(&self.engine)
            .next()
            .is_none();
        let max_value = wasm.limits.max_value();
        Ok(Arc::new(Program {
            digest: actual,
            target: Target::Component { pre, export },
            lift_fuel: crate::value::lift_fuel(&signature.results, max_value),
            signature,
            file: FileCheck::new(path, stamp, self.ticker.clock().clone()),
            imports_nothing,
            http_policy: grants
                .has(crate::manifest::Family::Http)
                .then(|| wasm.network.clone()),
            max_value,
            admission: self.admission.clone(),
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
        let module = self.cached_or_compiled(
            &digest,
            ArtifactKind::Module,
            CodeCache::module,
            || {
                wasmtime::Module::new(&self.engine, bytes)
                    .map_err(|e| self.not_compiled(entry, path, BinaryKind::CoreModule, e))
            },
            wasmtime::Module::serialize,
        )?;
        self.fits_the_arena(
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
        let mut linker = wasmtime::Linker::<ModuleData>::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut ModuleData| &mut *s.p1)
            .and_then(|_| crate::special_files::guard_path_open(&mut linker))
            .and_then(|_| linker.instantiate_pre(&module))
            .map(|pre| (Target::Module { pre, func }, Signature { params, results }))
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
        // Compiled outside the lock: compiling takes milliseconds, and other binaries should not
        // wait for it. Two threads may compile the same digest once each; either result is fine.
        let component = self.cached_or_compiled(
            &digest,
            ArtifactKind::Component,
            CodeCache::component,
            || {
                Component::new(&self.engine, bytes)
                    .map_err(|e| self.not_compiled(entry, path, BinaryKind::Component, e))
            },
            Component::serialize,
        )?;
        self.fits_the_arena(
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
        digest: &Digest,
        kind: ArtifactKind,
        cached: fn(&CodeCache, &Digest) -> Option<T>,
        compile: impl FnOnce() -> Result<T, LoadError>,
        serialize: fn(&T) -> wasmtime::Result<Vec<u8>>,
    ) -> Result<T, LoadError> {
        if let Some(found) = self.disk.as_ref().and_then(|disk| cached(disk, digest)) {
            return Ok(found);
        }
        let compiled = compile()?;
        if let Some(disk) = &self.disk {
            disk.store(kind, digest, || serialize(&compiled));
        }
        Ok(compiled)
    }

    /// Refuses, as wasmtime's pool does when it compiles, a binary whose memories start larger
    /// than the arena's blocks (a pool slot's size): it would fail every spawn.
    fn fits_the_arena(
        &self,
        entry: &EntryId,
        path: &Path,
        what: BinaryKind,
        required: Option<wasmtime::ResourcesRequired>,
    ) -> Result<(), LoadError> {
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
        if self.pool.processes > 0 && reason.contains("pooling allocator") {
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

    fn linker(&self, grants: &Grants) -> wasmtime::Result<Arc<Linker<ComponentData>>> {
        let mut linkers = crate::lock::lock(&self.linkers);
        if let Some(linker) = linkers.get(grants) {
            return Ok(linker.clone());
        }
        let linker = Arc::new(imports::linker(&self.engine, grants)?);
        linkers.insert(grants.clone(), linker.clone());
        Ok(linker)
    }
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
    match found {
        Some((ComponentItem::ComponentFunc(func), index)) => Ok((index, Signature::of(&func))),
        _ => Err(LoadError::MissingExport {
            entry: entry.clone(),
            method: method.clone(),
            available: exported_functions(component, engine),
        }),
    }
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
