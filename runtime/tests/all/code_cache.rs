//! The compiled-code cache: a second engine loads what the first compiled; a file altered,
//! truncated, swapped for another binary's or written for another engine configuration is
//! refused and compiled again, and the guest still runs. Every cache here is in a scratch
//! directory, never the user's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use wasmproc_runtime::code_cache::{self, ArtifactKind, CacheConfig, CacheStats};
use wasmproc_runtime::engine::{self, Pool};
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::{EntryId, Mailbox, Manifest, Runtime};

fn dist(file: &str) -> PathBuf {
    crate::common::dist().join(file)
}

/// A core module exporting `mul`: the cache keeps modules too (`wasi-testsuite` runs them).
const MODULE: &str = r#"(module (func (export "mul") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.mul))"#;

/// Writes a manifest over compute.wasm (a component) and a core module into `dir`; returns
/// their digests.
fn write_manifest(dir: &Path) -> (Digest, Digest) {
    let compute = std::fs::read(dist("compute.wasm")).unwrap();
    let module = wat::parse_str(MODULE).unwrap();
    std::fs::write(dir.join("compute.wasm"), &compute).unwrap();
    std::fs::write(dir.join("mul.wasm"), &module).unwrap();
    let (compute, module) = (Digest::of(&compute), Digest::of(&module));
    let yaml = format!(
        "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: . }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: compute, kind: process.wasm, fs: bins, path: compute.wasm, hash: \"{compute}\", method: compute }}\n  - {{ name: mul, kind: process.wasm, fs: bins, path: mul.wasm, hash: \"{module}\", method: mul }}\n"
    );
    let file = dir.join("manifest.yaml");
    std::fs::write(&file, yaml).unwrap();
    (compute, module)
}

/// Loads both entries with a fresh engine on `cache`, checks that both still compute, and
/// returns what the cache did.
fn run_both(dir: &Path, pool: Pool, cache: &CacheConfig) -> CacheStats {
    let manifest = Manifest::load(&dir.join("manifest.yaml")).unwrap();
    let loader = Arc::new(engine::loader_caching(pool, engine::Fuel::Counted, cache).unwrap());
    let rt = Runtime::new(manifest, loader.clone());
    for entry in ["t:compute", "t:mul"] {
        let mut mailbox = Mailbox::new();
        rt.spawn_monitored(entry, "t:host", &[json!(6), json!(7)], &mailbox)
            .unwrap();
        let exit = crate::common::receive(&mut mailbox).expect("an EXIT");
        assert_eq!(exit.outcome, Ok(json!(42)), "{entry}");
    }
    loader.code_cache().map(|c| c.stats()).unwrap_or_default()
}

fn small_pool() -> Pool {
    Pool {
        processes: 4,
        ..Pool::default()
    }
}

struct Fixture {
    compute: Digest,
    module: Digest,
    _bins: tempfile::TempDir,
    bins: PathBuf,
    _cache: tempfile::TempDir,
    cache: CacheConfig,
    dir: PathBuf,
}

fn fixture() -> Fixture {
    let bins = tempfile::tempdir().unwrap();
    let cache_root = tempfile::tempdir().unwrap();
    let dir = cache_root.path().join("compiled");
    let (compute, module) = write_manifest(bins.path());
    Fixture {
        compute,
        module,
        bins: bins.path().to_path_buf(),
        _bins: bins,
        cache: CacheConfig::in_dir(&dir),
        _cache: cache_root,
        dir,
    }
}

impl Fixture {
    /// The file that holds `digest`'s code for `pool`'s engine.
    fn artifact(&self, pool: Pool, kind: ArtifactKind, digest: &Digest) -> PathBuf {
        let engine = engine::new(pool, engine::Fuel::Counted).unwrap();
        let cache = code_cache::CodeCache::open(&self.cache, &engine)
            .unwrap()
            .unwrap();
        cache.path(kind, digest)
    }

    fn run(&self) -> CacheStats {
        run_both(&self.bins, small_pool(), &self.cache)
    }
}

fn stats(hits: u64, misses: u64, rejected: u64, written: u64) -> CacheStats {
    CacheStats {
        hits,
        misses,
        rejected,
        written,
    }
}

#[test]
fn a_second_engine_loads_what_the_first_compiled() {
    let f = fixture();
    assert_eq!(f.run(), stats(0, 2, 0, 2), "first: both compiled and kept");
    assert_eq!(f.run(), stats(2, 0, 0, 0), "second: both from the cache");
    let usage = code_cache::usage(&f.dir).unwrap();
    assert_eq!((usage.entries, usage.engines), (2, 1));
    // Private to this user: the directory, the key and the artifacts.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.dir), 0o700);
    assert_eq!(mode(&f.dir.join("key")), 0o600);
    let compute = f.compute;
    assert_eq!(
        mode(&f.artifact(small_pool(), ArtifactKind::Component, &compute)),
        0o600
    );
}

#[test]
fn an_altered_or_truncated_artifact_is_refused_compiled_again_and_replaced() {
    let f = fixture();
    f.run();
    let (compute, module) = (f.compute, f.module);
    let component_file = f.artifact(small_pool(), ArtifactKind::Component, &compute);
    let module_file = f.artifact(small_pool(), ArtifactKind::Module, &module);
    // One bit flipped in the middle of the component's machine code; the module cut in half.
    let mut bytes = std::fs::read(&component_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&component_file, &bytes).unwrap();
    let bytes = std::fs::read(&module_file).unwrap();
    std::fs::write(&module_file, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(
        f.run(),
        stats(0, 0, 2, 2),
        "both refused, compiled and rewritten"
    );
    assert_eq!(f.run(), stats(2, 0, 0, 0), "the rewritten files are used");
    // An empty file, and one with only the header's first bytes.
    std::fs::write(&component_file, b"").unwrap();
    std::fs::write(&module_file, b"wasmproc").unwrap();
    assert_eq!(f.run(), stats(0, 0, 2, 2));
}

#[test]
fn another_binarys_valid_artifact_does_not_pass_for_this_one() {
    let f = fixture();
    f.run();
    let (compute, module) = (f.compute, f.module);
    let component_file = f.artifact(small_pool(), ArtifactKind::Component, &compute);
    // greet.wasm's genuine artifact, written by this runtime with this key, put in
    // compute.wasm's place: its MAC names greet's sha256, so it is refused.
    let greet = Digest::of(&std::fs::read(dist("greet.wasm")).unwrap());
    let greet_file = f.artifact(small_pool(), ArtifactKind::Component, &greet);
    let yaml = format!(
        "namespace: g\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: greet, kind: process.wasm, fs: bins, path: greet.wasm, hash: \"{greet}\", method: greet, imports: [wasi:cli] }}\n",
        dist("").display()
    );
    let greet_manifest = f.bins.join("greet.yaml");
    std::fs::write(&greet_manifest, yaml).unwrap();
    let rt = Runtime::new(
        Manifest::load(&greet_manifest).unwrap(),
        Arc::new(engine::loader_caching(small_pool(), engine::Fuel::Counted, &f.cache).unwrap()),
    );
    rt.program(&EntryId::parse("g:greet").unwrap()).unwrap();
    assert!(greet_file.exists());
    std::fs::copy(&greet_file, &component_file).unwrap();
    // And the component's artifact in the module's place: the kind is in the MAC too.
    let module_file = f.artifact(small_pool(), ArtifactKind::Module, &module);
    std::fs::copy(&greet_file, &module_file).unwrap();
    assert_eq!(f.run(), stats(0, 0, 2, 2));
}

#[test]
fn engine_configurations_do_not_share_artifacts() {
    let f = fixture();
    assert_eq!(f.run(), stats(0, 2, 0, 2));
    // Another slot size is another memory reservation: code compiled for one is not the
    // other's, so it gets files of its own.
    let other = Pool {
        memory: 32 << 20,
        ..small_pool()
    };
    assert_eq!(run_both(&f.bins, other, &f.cache), stats(0, 2, 0, 2));
    assert_eq!(run_both(&f.bins, other, &f.cache), stats(2, 0, 0, 0));
    assert_eq!(code_cache::usage(&f.dir).unwrap().engines, 2);
    let compute = f.compute;
    assert_ne!(
        f.artifact(small_pool(), ArtifactKind::Component, &compute),
        f.artifact(other, ArtifactKind::Component, &compute)
    );
    // Without the pool: another configuration again.
    let no_pool = Pool {
        processes: 0,
        ..Pool::default()
    };
    assert_eq!(run_both(&f.bins, no_pool, &f.cache), stats(0, 2, 0, 2));
    // A file copied from one configuration's directory to another's is refused (the engine
    // hash is in the MAC; wasmtime would refuse it too).
    let theirs = f.artifact(other, ArtifactKind::Component, &compute);
    std::fs::copy(
        &theirs,
        f.artifact(small_pool(), ArtifactKind::Component, &compute),
    )
    .unwrap();
    assert_eq!(f.run(), stats(1, 0, 1, 1));
}

#[test]
fn a_cache_opened_for_another_engine_is_not_used() {
    let f = fixture();
    let other = engine::new(small_pool(), engine::Fuel::Counted).unwrap();
    let cache = code_cache::CodeCache::open(&f.cache, &other).unwrap();
    let loader = wasmproc_runtime::Loader::new(
        engine::new(small_pool(), engine::Fuel::Counted).unwrap(),
        small_pool(),
        engine::Fuel::Counted,
    )
    .unwrap();
    let (loader, warnings) = crate::warnings::warnings_of(|| loader.with_code_cache(cache));
    assert!(loader.code_cache().is_none());
    assert!(
        matches!(warnings.as_slice(), [w] if w.contains("opened for another engine")),
        "{warnings:?}"
    );
    // Its own engine's cache is used, and nothing is said.
    let own = code_cache::CodeCache::open(&f.cache, loader.engine()).unwrap();
    let (loader, warnings) = crate::warnings::warnings_of(|| loader.with_code_cache(own));
    assert!(loader.code_cache().is_some());
    assert_eq!(warnings, Vec::<String>::new());
}

#[test]
fn clear_empties_the_cache_and_the_next_run_compiles() {
    let f = fixture();
    f.run();
    let cleared = code_cache::clear(&f.dir).unwrap();
    assert_eq!(cleared.entries, 2);
    assert_eq!(code_cache::usage(&f.dir).unwrap(), Default::default());
    assert!(!f.dir.join("key").exists(), "a new key after a clear");
    assert_eq!(f.run(), stats(0, 2, 0, 2));
}

#[test]
fn files_written_under_another_key_are_refused() {
    let f = fixture();
    f.run();
    // Another cache's artifacts (another key), copied in: as if restored from elsewhere.
    let g = fixture();
    g.run();
    let compute = f.compute;
    std::fs::copy(
        g.artifact(small_pool(), ArtifactKind::Component, &compute),
        f.artifact(small_pool(), ArtifactKind::Component, &compute),
    )
    .unwrap();
    assert_eq!(f.run(), stats(1, 0, 1, 1));
}

#[test]
fn a_disabled_cache_writes_nothing() {
    let f = fixture();
    assert_eq!(
        run_both(&f.bins, small_pool(), &CacheConfig::off()),
        CacheStats::default()
    );
    assert!(!f.dir.exists());
    // The library's default loader keeps nothing on disk either.
    let loader = engine::loader_with(small_pool()).unwrap();
    assert!(loader.code_cache().is_none());
}

#[test]
fn an_unusable_cache_directory_is_skipped_and_the_guest_still_runs() {
    let f = fixture();
    // A regular file where the directory should be (root ignores modes, so an unwritable
    // directory cannot be made here; this is what one looks like to the cache).
    let blocked = f.bins.join("not-a-dir");
    std::fs::write(&blocked, b"").unwrap();
    for dir in [blocked.clone(), blocked.join("compiled")] {
        assert_eq!(
            run_both(&f.bins, small_pool(), &CacheConfig::in_dir(&dir)),
            CacheStats::default(),
            "{}",
            dir.display()
        );
    }
}

#[test]
fn a_symbolic_link_for_the_directory_is_refused() {
    let f = fixture();
    let real = f.bins.join("real");
    std::fs::create_dir(&real).unwrap();
    let link = f.bins.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(
        run_both(&f.bins, small_pool(), &CacheConfig::in_dir(&link)),
        CacheStats::default()
    );
    assert_eq!(
        std::fs::read_dir(&real).unwrap().count(),
        0,
        "nothing written"
    );
    assert!(
        code_cache::clear(&link).is_err(),
        "clear does not follow it"
    );
}

#[test]
fn a_key_others_can_read_or_replace_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    f.run();
    let key = f.dir.join("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(f.run(), CacheStats::default(), "the cache is not used");
    // A symbolic link in the key's place is not followed either.
    std::fs::remove_file(&key).unwrap();
    let elsewhere = f.bins.join("their-key");
    std::fs::write(&elsewhere, [0u8; 32]).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &key).unwrap();
    assert_eq!(f.run(), CacheStats::default());
    // `clear` makes it usable again, with a new key (removing the link, not its target).
    code_cache::clear(&f.dir).unwrap();
    assert!(elsewhere.exists());
    assert_eq!(f.run(), stats(0, 2, 0, 2));
}

#[test]
fn a_fifo_or_a_directory_in_an_artifacts_place_is_refused_not_waited_on() {
    let f = fixture();
    f.run();
    let component_file = f.artifact(small_pool(), ArtifactKind::Component, &f.compute);
    let module_file = f.artifact(small_pool(), ArtifactKind::Module, &f.module);
    std::fs::remove_file(&component_file).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(&component_file)
        .status()
        .unwrap()
        .success());
    std::fs::remove_file(&module_file).unwrap();
    std::fs::create_dir(&module_file).unwrap();
    // The FIFO is refused (and replaced); the directory is refused, and cannot be replaced.
    let stats = f.run();
    assert_eq!((stats.hits, stats.rejected), (0, 2), "{stats:?}");
    assert!(component_file.is_file());
}

#[test]
fn a_directory_other_users_can_write_into_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    f.run();
    std::fs::set_permissions(&f.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(f.run(), CacheStats::default());
}

#[test]
fn concurrent_loaders_share_one_cache() {
    let f = fixture();
    // Several engines at once, each compiling and writing the same binaries: every one runs
    // its guests, and the files left are whole (the next run uses them all).
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| run_both(&f.bins, small_pool(), &f.cache));
        }
    });
    assert_eq!(f.run(), stats(2, 0, 0, 0));
    let leftovers = std::fs::read_dir(&f.dir)
        .unwrap()
        .flatten()
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(leftovers, 0, "no temporary file left behind");
}
