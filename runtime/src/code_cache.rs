//! Compiled code kept on disk between runs: a second `wasmproc run` of the same binary
//! deserializes its machine code instead of compiling it again.
//!
//! Invariant: wasmtime deserializes only bytes that this runtime wrote itself, for this binary
//! (its verified sha256) and this engine configuration. Deserializing maps the bytes as
//! executable code without checking them, so each artifact carries an HMAC-SHA256, under a key
//! made once per cache directory (`key`, mode 0600), over the engine's configuration hash, the
//! binary's kind and sha256, and the artifact. A file that was altered, truncated, or written
//! for another binary or another engine configuration fails that check before wasmtime sees it:
//! it is compiled again and overwritten, with a warning. Only someone who can read `key` can
//! forge an artifact: the user who owns the directory (or root), who can run code as that user
//! anyway. The checks on paths (no symbolic link, owned by this user, not writable by others)
//! are a second line; the key is the first.
//!
//! Layout: `<dir>/key` and `<dir>/<engine>/<sha256>.component` (or `.module`), `<engine>` being
//! 16 hex digits of the configuration hash, so configurations never share a file. Files are
//! written whole under a temporary name and renamed into place: concurrent runs each write
//! their own, the last rename wins, and a reader sees one complete file or none. After a write
//! the directory is pruned to its size bound, least recently used first (a hit touches its
//! file's modification time).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::manifest::Digest;

/// The cache's size bound unless `WASMPROC_CACHE_MAX` says otherwise: a compiled guest is a
/// few times its binary (probe.wasm, 108 KB, compiles to about 1 MB), so this keeps hundreds.
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;

/// Opens every artifact file; changing the format changes this, so old files fail the check.
const MAGIC: &[u8; 16] = b"wasmproc-code-1\n";
const MAC_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + MAC_LEN;
const KEY_FILE: &str = "key";
const KEY_LEN: usize = 32;
const TEMP_PREFIX: &str = ".tmp-";
/// A temporary file this old was left by a process that died mid-write.
const STALE_TEMP: Duration = Duration::from_secs(3600);

type HmacSha256 = Hmac<Sha256>;

static WRITE_WARNED: AtomicBool = AtomicBool::new(false);

/// Opening the cache's files for reading: a link is not followed, and a FIFO put in a file's
/// place does not block the open (its type is then refused).
const READ_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// Where compiled code is kept, if anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// `None`: the cache is off, nothing is read or written.
    pub dir: Option<PathBuf>,
    /// The size bound of the whole directory, in bytes.
    pub max_bytes: u64,
}

impl CacheConfig {
    /// No cache: nothing is read or written.
    pub fn off() -> CacheConfig {
        CacheConfig {
            dir: None,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// A cache in `dir`, bounded by [`DEFAULT_MAX_BYTES`].
    pub fn in_dir(dir: impl Into<PathBuf>) -> CacheConfig {
        CacheConfig {
            dir: Some(dir.into()),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// From the environment: `WASMPROC_CACHE=off` (or `0`, `false`, `no`) turns it off;
    /// `WASMPROC_CACHE_DIR` names the directory, else `$XDG_CACHE_HOME/wasmproc/compiled`,
    /// else `~/.cache/wasmproc/compiled` (no home: off); `WASMPROC_CACHE_MAX` bounds its size
    /// (default 512MiB; 0 turns it off).
    pub fn from_env() -> Result<CacheConfig, CacheError> {
        CacheConfig::from_vars(|name| std::env::var_os(name), true)
    }

    /// The directory the environment names, even when it turns the cache off (to clear it).
    pub fn dir_from_env() -> Result<Option<PathBuf>, CacheError> {
        Ok(CacheConfig::from_vars(|name| std::env::var_os(name), false)?.dir)
    }

    fn from_vars(
        var: impl Fn(&str) -> Option<OsString>,
        honour_off: bool,
    ) -> Result<CacheConfig, CacheError> {
        let text = |name: &'static str| {
            var(name)
                .map(|v| {
                    v.into_string().map_err(|_| CacheError::BadSetting {
                        name,
                        reason: "not UTF-8".into(),
                    })
                })
                .transpose()
        };
        let on = match text("WASMPROC_CACHE")?.as_deref().map(str::trim) {
            None | Some("" | "1" | "on" | "true" | "yes") => true,
            Some("0" | "off" | "false" | "no") => false,
            Some(other) => {
                return Err(CacheError::BadSetting {
                    name: "WASMPROC_CACHE",
                    reason: format!(
                        "`{other}` is neither on (1, on, true, yes) nor off (0, off, false, no)"
                    ),
                })
            }
        };
        let max_bytes = match text("WASMPROC_CACHE_MAX")? {
            Some(v) => crate::limits::parse_size(&v).map_err(|reason| CacheError::BadSetting {
                name: "WASMPROC_CACHE_MAX",
                reason,
            })?,
            None => DEFAULT_MAX_BYTES,
        };
        let non_empty = |name| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = match non_empty("WASMPROC_CACHE_DIR") {
            Some(dir) => Some(
                std::path::absolute(&dir).map_err(|e| CacheError::BadSetting {
                    name: "WASMPROC_CACHE_DIR",
                    reason: e.to_string(),
                })?,
            ),
            // The XDG specification ignores a relative XDG_CACHE_HOME.
            None => non_empty("XDG_CACHE_HOME")
                .filter(|p| p.is_absolute())
                .or_else(|| non_empty("HOME").map(|home| home.join(".cache")))
                .map(|cache| cache.join("wasmproc").join("compiled")),
        };
        Ok(CacheConfig {
            dir: dir.filter(|_| !honour_off || (on && max_bytes > 0)),
            max_bytes,
        })
    }
}

/// Why the cache cannot be used (the runtime then compiles, and says so once).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An environment variable that configures the cache has an invalid value.
    #[error("{name}: {reason}")]
    BadSetting {
        /// The variable's name.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The directory or its key cannot be trusted or made (owner, mode, a link, ...).
    #[error("compiled-code cache {}: {reason}", path.display())]
    Unusable {
        /// The file or directory refused.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing the cache failed.
    #[error("compiled-code cache {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a cache did since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Binaries deserialized from the cache instead of compiled.
    pub hits: u64,
    /// Binaries not found in the cache.
    pub misses: u64,
    /// Files found but refused (altered, truncated, another binary's, refused by wasmtime).
    pub rejected: u64,
    /// Artifacts written.
    pub written: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
}

/// What an artifact holds: wasmtime refuses a component's bytes as a module and back, and the
/// kind is in the MAC so that one never stands for the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A compiled component.
    Component,
    /// A compiled core module.
    Module,
}

impl ArtifactKind {
    fn extension(self) -> &'static str {
        match self {
            ArtifactKind::Component => "component",
            ArtifactKind::Module => "module",
        }
    }

    fn tag(self) -> u8 {
        match self {
            ArtifactKind::Component => b'c',
            ArtifactKind::Module => b'm',
        }
    }
}

/// An opened cache directory, for one engine: it deserializes with that engine only, so code
/// is never loaded into an engine of another configuration than the one its MAC names.
pub struct CodeCache {
    dir: PathBuf,
    engine_dir: PathBuf,
    engine: Engine,
    engine_hash: [u8; 32],
    key: [u8; KEY_LEN],
    max_bytes: u64,
    counters: Counters,
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CodeCache")
            .field("engine_dir", &self.engine_dir)
            .finish_non_exhaustive()
    }
}

impl CodeCache {
    /// Opens (creating it, mode 0700) the cache in `config.dir` for `engine`'s configuration;
    /// `Ok(None)` when the cache is off.
    pub fn open(config: &CacheConfig, engine: &Engine) -> Result<Option<CodeCache>, CacheError> {
        let Some(dir) = &config.dir else {
            return Ok(None);
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
        check_dir(dir)?;
        let key = read_or_make_key(dir)?;
        let engine_hash = engine_hash(engine);
        let engine_dir = dir.join(hex::encode(&engine_hash[..8]));
        match fs::DirBuilder::new().mode(0o700).create(&engine_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(&engine_dir)(e)),
        }
        check_dir(&engine_dir)?;
        Ok(Some(CodeCache {
            dir: dir.clone(),
            engine_dir,
            engine: engine.clone(),
            engine_hash,
            key,
            max_bytes: config.max_bytes,
            counters: Counters::default(),
        }))
    }

    /// [`CodeCache::open`]; a cache that cannot be used is reported once per process as a
    /// warning, and the runtime goes on without it.
    pub fn open_or_warn(config: &CacheConfig, engine: &Engine) -> Option<CodeCache> {
        static WARNED: AtomicBool = AtomicBool::new(false);
        match CodeCache::open(config, engine) {
            Ok(cache) => cache,
            Err(e) => {
                if !WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!("{e}; compiling without it (WASMPROC_CACHE=off or --no-cache silences this)");
                } else {
                    tracing::debug!("{e}");
                }
                None
            }
        }
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine this cache loads code into.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The config that opens this cache again (for another engine).
    pub fn config(&self) -> CacheConfig {
        CacheConfig {
            dir: Some(self.dir.clone()),
            max_bytes: self.max_bytes,
        }
    }

    /// What this cache did since it was opened.
    pub fn stats(&self) -> CacheStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: read(&self.counters.hits),
            misses: read(&self.counters.misses),
            rejected: read(&self.counters.rejected),
            written: read(&self.counters.written),
        }
    }

    /// The file that holds (or would hold) a binary's compiled code.
    pub fn path(&self, kind: ArtifactKind, digest: &Digest) -> PathBuf {
        self.engine_dir
            .join(format!("{}.{}", hex::encode(digest.0), kind.extension()))
    }

    /// The binary `digest`'s component, from the cache, if it is there and checks out.
    pub(crate) fn component(&self, digest: &Digest) -> Option<Component> {
        let (path, bytes) = self.fetch(ArtifactKind::Component, digest)?;
        // SAFETY: `fetch` returns only bytes whose MAC under this cache's secret key checks
        // out: bytes that `store` wrote from `Component::serialize` on an engine of this
        // configuration, for this binary, and nothing else (see the module's doc). wasmtime
        // checks its version and configuration in them as well.
        let loaded = unsafe { Component::deserialize(&self.engine, &bytes[HEADER_LEN..]) };
        self.loaded(&path, loaded)
    }

    /// The binary `digest`'s core module, from the cache, if it is there and checks out.
    pub(crate) fn module(&self, digest: &Digest) -> Option<Module> {
        let (path, bytes) = self.fetch(ArtifactKind::Module, digest)?;
        // SAFETY: as in `component`: only bytes this runtime wrote from `Module::serialize`
        // for this binary and this engine configuration pass `fetch`.
        let loaded = unsafe { Module::deserialize(&self.engine, &bytes[HEADER_LEN..]) };
        self.loaded(&path, loaded)
    }

    fn loaded<T>(&self, path: &Path, loaded: wasmtime::Result<T>) -> Option<T> {
        match loaded {
            Ok(t) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = %path.display(), "compiled code from the cache");
                Some(t)
            }
            // Bytes this runtime wrote (their MAC checked out) that this engine cannot use:
            // a pool too small for the binary, which the compile that follows reports. Kept:
            // another configuration of the same compiler settings may use them.
            Err(e) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = %path.display(), "wasmtime refused cached code: {e:#}");
                None
            }
        }
    }

    /// The whole file (header and artifact) when its MAC checks out.
    fn fetch(&self, kind: ArtifactKind, digest: &Digest) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.path(kind, digest);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(READ_FLAGS)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Err(e) => {
                self.reject(&path, &format!("cannot open it: {e}"));
                return None;
            }
        };
        let bytes = match crate::source_file::read_opened(&file, self.max_bytes) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.reject(&path, &format!("it is {e}"));
                return None;
            }
        };
        if let Err(reason) = self.verify(kind, digest, &bytes) {
            self.reject(&path, reason);
            return None;
        }
        // Recently used: pruning removes the least recently used first. (Ours, so allowed.)
        let _ = file.set_modified(SystemTime::now());
        Some((path, bytes))
    }

    fn verify(&self, kind: ArtifactKind, digest: &Digest, bytes: &[u8]) -> Result<(), &str> {
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err("it is truncated or not a wasmproc artifact");
        }
        let (mac, artifact) = bytes[MAGIC.len()..].split_at(MAC_LEN);
        self.mac(kind, digest, artifact)
            .verify_slice(mac)
            .map_err(|_| "its MAC does not match: altered, truncated, or written for another binary, engine or key")
    }

    fn mac(&self, kind: ArtifactKind, digest: &Digest, artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        // Fixed-length fields first, so that no two inputs read the same.
        mac.update(MAGIC);
        mac.update(&self.engine_hash);
        mac.update(&[kind.tag()]);
        mac.update(&digest.0);
        mac.update(artifact);
        mac
    }

    /// A file that failed a check: said, counted and removed (a write replaces it anyway).
    fn reject(&self, path: &Path, reason: &str) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %path.display(), "compiled code in the cache refused ({reason}); compiling the binary again");
        let _ = fs::remove_file(path);
    }

    /// Keeps `digest`'s compiled code, made by `serialize` (only called when the cache is
    /// writable). Failing to write is not an error: the next run compiles again.
    pub(crate) fn store(
        &self,
        kind: ArtifactKind,
        digest: &Digest,
        serialize: impl FnOnce() -> wasmtime::Result<Vec<u8>>,
    ) {
        let artifact = match serialize() {
            Ok(artifact) => artifact,
            Err(e) => {
                tracing::debug!("cannot serialize compiled code: {e:#}");
                return;
            }
        };
        let mac = self.mac(kind, digest, &artifact).finalize().into_bytes();
        let path = self.path(kind, digest);
        let written = write_atomically(&self.engine_dir, &path, &[MAGIC, &mac[..], &artifact]);
        match written {
            Ok(()) => {
                self.counters.written.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = %path.display(), "compiled code kept");
                if let Err(e) = prune(&self.dir, self.max_bytes) {
                    tracing::debug!(dir = %self.dir.display(), "cannot prune the cache: {e}");
                }
            }
            // Said once per process: a read-only cache would otherwise warn on every binary.
            Err(e) if !WRITE_WARNED.swap(true, Ordering::Relaxed) => {
                tracing::warn!(dir = %self.engine_dir.display(), "cannot keep compiled code ({e}); binaries will be compiled on every run");
            }
            Err(e) => tracing::debug!(path = %path.display(), "cannot keep compiled code: {e}"),
        }
    }
}

/// wasmtime's hash of what makes compiled code compatible (target, compiler flags, tunables
/// such as memory reservation, fuel and epochs, wasm features, wasmtime's version), as
/// SHA-256 so that it is stable across processes.
fn engine_hash(engine: &Engine) -> [u8; 32] {
    struct Sha(Sha256);
    impl std::hash::Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only `write` is used: the digest is read whole")
        }
    }
    let mut hasher = Sha(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hasher.0.finalize().into()
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A directory the cache may use: a real directory (not a symbolic link), owned by this
/// user, that no one else can write into.
fn check_dir(dir: &Path) -> Result<(), CacheError> {
    let meta = fs::symlink_metadata(dir).map_err(io_error(dir))?;
    let unusable = |reason: String| {
        Err(CacheError::Unusable {
            path: dir.to_path_buf(),
            reason,
        })
    };
    if meta.file_type().is_symlink() {
        return unusable("is a symbolic link: name the directory it points to instead".into());
    }
    if !meta.is_dir() {
        return unusable("is not a directory".into());
    }
    if meta.uid() != euid() {
        return unusable(format!(
            "is owned by user {}, not by this user ({})",
            meta.uid(),
            euid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return unusable(format!(
            "other users can write into it (mode {:o}): chmod 700 it",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The directory's key, made on first use. A key another user could read or replace would
/// let them forge artifacts, so it must be a regular file of this user's, mode 0600.
fn read_or_make_key(dir: &Path) -> Result<[u8; KEY_LEN], CacheError> {
    let path = dir.join(KEY_FILE);
    match read_key(&path) {
        Err(CacheError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        found => return found,
    }
    let mut key = [0; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| CacheError::Unusable {
        path: path.clone(),
        reason: format!("no random bytes for a key: {e}"),
    })?;
    let (temp, mut file) = create_temp(dir).map_err(io_error(dir))?;
    // Synced before it is linked: a key lost to a crash and read back as zeros would be known.
    let written = file.write_all(&key).and_then(|()| file.sync_all());
    // Linked, not renamed: when two processes make a key at once, the first link wins and
    // both use that key.
    let linked = written.and_then(|()| fs::hard_link(&temp, &path));
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(&path),
        Err(e) => Err(io_error(&path)(e)),
    }
}

fn read_key(path: &Path) -> Result<[u8; KEY_LEN], CacheError> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(READ_FLAGS)
        .open(path)
        .map_err(io_error(path))?;
    let meta = file.metadata().map_err(io_error(path))?;
    let unusable = |reason: String| CacheError::Unusable {
        path: path.to_path_buf(),
        reason: format!("{reason}: `wasmproc cache clear` makes a new key"),
    };
    if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return Err(unusable(format!(
            "the key must be a regular file of this user's that only they can read (mode {:o}, user {})",
            meta.mode() & 0o7777,
            meta.uid()
        )));
    }
    let mut key = [0; KEY_LEN];
    let mut rest = Vec::new();
    file.read_exact(&mut key)
        .and_then(|()| file.read_to_end(&mut rest))
        .map_err(io_error(path))?;
    if !rest.is_empty() {
        return Err(unusable(format!("the key is longer than {KEY_LEN} bytes")));
    }
    Ok(key)
}

/// A new file of this user's only, under a name no other process uses.
fn create_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut random = [0u8; 4];
        let _ = getrandom::fill(&mut random);
        let name = format!(
            "{TEMP_PREFIX}{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            hex::encode(random)
        );
        let path = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes `parts` to `path` whole or not at all. Not synced: a file torn by a crash fails its
/// MAC and is compiled again.
fn write_atomically(dir: &Path, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let (temp, mut file) = create_temp(dir)?;
    let written = parts
        .iter()
        .try_for_each(|part| file.write_all(part))
        .and_then(|()| {
            drop(file);
            fs::rename(&temp, path)
        });
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// What a cache directory holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Compiled binaries, over every engine configuration.
    pub entries: u64,
    /// Their size, and the key's.
    pub bytes: u64,
    /// Engine configurations with a directory.
    pub engines: u64,
}

/// One file the cache owns.
struct Owned {
    path: PathBuf,
    len: u64,
    modified: SystemTime,
    kind: OwnedKind,
}

#[derive(PartialEq, Eq)]
enum OwnedKind {
    Key,
    Artifact,
    Temp,
    EngineDir,
}

/// The files and directories in `dir` that the cache made: its key, engine directories named
/// by 16 hex digits, artifacts named by a sha256, temporary files. Anything else (a cache
/// directory pointed at the wrong place) is left alone. Directories come after their files.
fn owned(dir: &Path) -> io::Result<Vec<Owned>> {
    let mut found = Vec::new();
    let describe = |path: PathBuf, meta: &fs::Metadata, kind| Owned {
        path,
        len: meta.len(),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        kind,
    };
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // A link in a name of the cache's is removed too (the link, never what it points to).
        let file = meta.is_file() || meta.file_type().is_symlink();
        // A key is KEY_LEN bytes: a `key` of any other size is the user's, not ours.
        let key = meta.file_type().is_symlink() || meta.len() == KEY_LEN as u64;
        if file && name == KEY_FILE && key {
            found.push(describe(entry.path(), &meta, OwnedKind::Key));
        } else if file && name.starts_with(TEMP_PREFIX) {
            found.push(describe(entry.path(), &meta, OwnedKind::Temp));
        } else if meta.is_dir() && is_hex(&name, 16) {
            for inner in fs::read_dir(entry.path())? {
                let inner = inner?;
                let inner_meta = inner.metadata()?;
                let inner_name = inner.file_name();
                let inner_name = inner_name.to_string_lossy();
                let kind = if inner_name.starts_with(TEMP_PREFIX) {
                    OwnedKind::Temp
                } else if inner_name.split_once('.').is_some_and(|(hash, ext)| {
                    is_hex(hash, 64) && matches!(ext, "component" | "module")
                }) {
                    OwnedKind::Artifact
                } else {
                    continue;
                };
                if inner_meta.is_file() || inner_meta.file_type().is_symlink() {
                    found.push(describe(inner.path(), &inner_meta, kind));
                }
            }
            found.push(describe(entry.path(), &meta, OwnedKind::EngineDir));
        }
    }
    Ok(found)
}

fn is_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn count(files: &[Owned]) -> Usage {
    let mut usage = Usage::default();
    for file in files {
        match file.kind {
            OwnedKind::Artifact => {
                usage.entries += 1;
                usage.bytes += file.len;
            }
            OwnedKind::Key | OwnedKind::Temp => usage.bytes += file.len,
            OwnedKind::EngineDir => usage.engines += 1,
        }
    }
    usage
}

/// What the cache in `dir` holds (nothing when it does not exist).
pub fn usage(dir: &Path) -> Result<Usage, CacheError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Usage::default()),
        _ => check_dir(dir)?,
    }
    Ok(count(&owned(dir).map_err(io_error(dir))?))
}

/// Removes everything the cache in `dir` made, the key included (the next run makes a new
/// one, so files written under the old key, wherever they were copied, are refused from then
/// on); returns what it removed. Files it did not make are left, and so is the directory.
pub fn clear(dir: &Path) -> Result<Usage, CacheError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Usage::default()),
        // A link is not followed: clearing must not remove files somewhere else.
        _ => check_dir(dir)?,
    }
    let files = owned(dir).map_err(io_error(dir))?;
    for file in &files {
        let removed = match file.kind {
            // One holding files it did not make stays.
            OwnedKind::EngineDir => match fs::remove_dir(&file.path) {
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(()),
                other => other,
            },
            _ => fs::remove_file(&file.path),
        };
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(&file.path)(e));
            }
            _ => {}
        }
    }
    Ok(count(&files))
}

/// Removes stale temporary files, then the least recently used artifacts until the cache is
/// within `max_bytes`.
fn prune(dir: &Path, max_bytes: u64) -> io::Result<()> {
    let mut files = owned(dir)?;
    let now = SystemTime::now();
    files.retain(|file| {
        let stale = file.kind == OwnedKind::Temp
            && now.duration_since(file.modified).unwrap_or_default() > STALE_TEMP;
        if stale {
            let _ = fs::remove_file(&file.path);
        }
        !stale
    });
    let mut total = count(&files).bytes;
    if total <= max_bytes {
        return Ok(());
    }
    let mut artifacts: Vec<_> = files
        .iter()
        .filter(|f| f.kind == OwnedKind::Artifact)
        .collect();
    artifacts.sort_by_key(|f| f.modified);
    for file in artifacts {
        if total <= max_bytes {
            break;
        }
        if fs::remove_file(&file.path).is_ok() {
            total = total.saturating_sub(file.len);
            tracing::debug!(path = %file.path.display(), "pruned from the cache");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<CacheConfig, CacheError> {
        CacheConfig::from_vars(
            |name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| OsString::from(v))
            },
            true,
        )
    }

    #[test]
    fn the_environment_names_the_directory_or_turns_the_cache_off() {
        let dir = |vars: &[(&str, &str)]| config(vars).unwrap().dir;
        assert_eq!(
            dir(&[("HOME", "/home/u")]),
            Some("/home/u/.cache/wasmproc/compiled".into())
        );
        assert_eq!(
            dir(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]),
            Some("/xdg/wasmproc/compiled".into())
        );
        // A relative XDG_CACHE_HOME is ignored, as the specification says.
        assert_eq!(
            dir(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "rel")]),
            Some("/home/u/.cache/wasmproc/compiled".into())
        );
        assert_eq!(
            dir(&[("HOME", "/home/u"), ("WASMPROC_CACHE_DIR", "/c")]),
            Some("/c".into())
        );
        assert_eq!(dir(&[]), None);
        for off in ["0", "off", "false", "no"] {
            assert_eq!(
                dir(&[("WASMPROC_CACHE_DIR", "/c"), ("WASMPROC_CACHE", off)]),
                None
            );
        }
        assert_eq!(
            dir(&[("WASMPROC_CACHE_DIR", "/c"), ("WASMPROC_CACHE_MAX", "0")]),
            None
        );
        let max = config(&[("WASMPROC_CACHE_MAX", "64MiB")])
            .unwrap()
            .max_bytes;
        assert_eq!(max, 64 << 20);
        let err = config(&[("WASMPROC_CACHE", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("WASMPROC_CACHE"), "{err}");
        let err = config(&[("WASMPROC_CACHE_MAX", "lots")]).unwrap_err();
        assert!(err.to_string().contains("WASMPROC_CACHE_MAX"), "{err}");
    }

    #[test]
    fn clear_removes_only_what_the_cache_made() {
        let dir = tempfile::tempdir().unwrap();
        let engine = dir.path().join("0123456789abcdef");
        fs::create_dir(&engine).unwrap();
        fs::write(dir.path().join(KEY_FILE), [0; KEY_LEN]).unwrap();
        fs::write(engine.join(format!("{}.component", "ab".repeat(32))), b"x").unwrap();
        fs::write(engine.join(".tmp-1-2-3"), b"y").unwrap();
        fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let other = dir.path().join("fedcba9876543210");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("photo.jpg"), b"mine").unwrap();
        let cleared = clear(dir.path()).unwrap();
        assert_eq!(cleared.entries, 1);
        assert_eq!(cleared.engines, 2);
        assert!(!engine.exists());
        assert!(!dir.path().join(KEY_FILE).exists());
        assert!(dir.path().join("notes.txt").exists());
        assert!(other.join("photo.jpg").exists());
        assert_eq!(usage(dir.path()).unwrap().entries, 0);
    }

    #[test]
    fn clear_leaves_a_file_named_key_that_is_not_a_key() {
        // WASMPROC_CACHE_DIR pointed at a directory of the user's own: `cache clear` removed
        // their file named `key` (found attacking `clear`).
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"my ssh passphrase hint").unwrap();
        clear(dir.path()).unwrap();
        assert!(dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn pruning_removes_the_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let engine = dir.path().join("0123456789abcdef");
        fs::create_dir(&engine).unwrap();
        let old = engine.join(format!("{}.module", "aa".repeat(32)));
        let new = engine.join(format!("{}.module", "bb".repeat(32)));
        fs::write(&old, [0; 100]).unwrap();
        fs::write(&new, [0; 100]).unwrap();
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        prune(dir.path(), 150).unwrap();
        assert!(!old.exists());
        assert!(new.exists());
    }

    #[test]
    fn usage_of_a_missing_directory_is_nothing_and_of_an_unreachable_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            usage(&dir.path().join("never-made")).unwrap(),
            Usage::default()
        );
        // Not "not found" but "not a directory": the user's mistake, reported.
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        assert!(usage(&file.join("below")).is_err());
        assert!(usage(&file).is_err());
    }
}
