//! What a load makes: a [`Program`], verified, compiled and linked, that spawns instantiate
//! many times, and the [`FileCheck`] that notices when its file changes on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use wasmtime::component::{ComponentExportIndex, InstancePre};

use crate::manifest::Digest;
use crate::store_data::{ComponentData, ModuleData};
use crate::value::Signature;

/// A verified, compiled and linked entry, ready to spawn many times.
pub struct Program {
    /// The binary's sha256, checked against the entry's `hash`.
    pub digest: Digest,
    pub(crate) target: Target,
    /// For a core module, its core types as the matching component types (i32 as s32, ...).
    pub signature: Signature,
    /// The binary's file, and what it looked like when its hash was checked.
    pub file: FileCheck,
    /// The binary imports nothing: its processes need no WASI context.
    pub imports_nothing: bool,
    /// The entry's network policy, for a component granted `wasi:http` (its requests ask it).
    pub(crate) http_policy: Option<Arc<crate::network::NetworkPolicy>>,
    /// Whether `wasi:sockets` may look names up: granted, and the policy lets a socket reach
    /// public addresses.
    pub(crate) name_lookup: bool,
    /// The entry's `limits.max_value`: what a result, or a spawn's arguments, may count.
    pub max_value: u64,
    /// The hostcall fuel its stores get, so that wasmtime's lift of the result, and what one
    /// host call copies from the guest, stay within `max_value` (see
    /// `value::lift_fuel`).
    pub lift_fuel: usize,
    /// The engine's admission (see [`Loader`](super::Loader)), reached through the program
    /// that every process holds anyway. Processes start in the order they were spawned: a
    /// spawn that finds a place free takes it at once as an owned permit (one more reference
    /// count per spawn; no cost showed, 0.86-0.88 vs 0.87-0.90 of bare).
    pub(crate) admission: Arc<tokio::sync::Semaphore>,
    /// Its engine counts fuel: its stores get their `limits.fuel` (or all there is), and its
    /// EXITs report what they used.
    pub(crate) counts_fuel: bool,
    /// What its processes' hibernated stacks and memories are kept against (see
    /// `hibernation`); `None` where its engine does not hibernate processes, which then pay
    /// nothing for it.
    pub(crate) hibernation: Option<crate::hibernation::Templates>,
}

/// How often a spawn looks at a loaded binary's file (one `stat`): a file changed on disk is
/// noticed, and its hash checked again, within this time (and one epoch tick: the time is
/// read from the epoch thread's clock). Looking on every spawn cost a tenth of a spawn.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// A binary's file as it was when its hash was checked, and when it was last looked at.
pub struct FileCheck {
    pub path: PathBuf,
    pub stamp: FileStamp,
    clock: crate::engine::CoarseClock,
    /// The clock's time at the last look.
    looked: std::sync::atomic::AtomicU64,
}

impl FileCheck {
    pub fn new(path: PathBuf, stamp: FileStamp, clock: crate::engine::CoarseClock) -> Self {
        FileCheck {
            path,
            stamp,
            looked: std::sync::atomic::AtomicU64::new(clock.millis()),
            clock,
        }
    }

    /// False when the file looks different from when its hash was checked. Looks at most
    /// once per [`RECHECK`] (one spawn looks; the others trust the last look).
    pub fn unchanged(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.clock.millis();
        let looked = self.looked.load(Relaxed);
        if now.saturating_sub(looked) < RECHECK.as_millis() as u64
            || self
                .looked
                .compare_exchange(looked, now, Relaxed, Relaxed)
                .is_err()
        {
            return true;
        }
        FileStamp::of(&self.path).ok() == Some(self.stamp)
    }
}

/// What a spawn instantiates and calls.
pub enum Target {
    Component {
        pre: InstancePre<ComponentData>,
        export: ComponentExportIndex,
    },
    /// A wasip1 core module: `func` is `_start` for a command, or another export.
    Module {
        pre: wasmtime::InstancePre<ModuleData>,
        func: String,
    },
}

/// Size and modification time: cheap to read on every spawn, changes when the file does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CoarseClock;

    const RECHECK_MS: u64 = RECHECK.as_millis() as u64;

    /// A loaded binary's file, stamped when the clock read `at`.
    fn checked(at: u64) -> (tempfile::TempDir, PathBuf, CoarseClock, FileCheck) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.wasm");
        std::fs::write(&path, b"checked").unwrap();
        let clock = CoarseClock::default();
        clock.set(at);
        let check = FileCheck::new(path.clone(), FileStamp::of(&path).unwrap(), clock.clone());
        (dir, path, clock, check)
    }

    #[test]
    fn a_changed_file_is_noticed_once_recheck_has_passed_and_not_before() {
        let (_dir, path, clock, check) = checked(5_000);
        assert!(check.unchanged(), "untouched");
        std::fs::write(&path, b"changed since").unwrap();
        // Within RECHECK of the last look, spawns trust it (one stat a second, not one each).
        clock.set(5_000 + RECHECK_MS - 1);
        assert!(check.unchanged(), "looked at less than RECHECK ago");
        clock.set(5_000 + RECHECK_MS);
        assert!(!check.unchanged(), "RECHECK has passed: the change is seen");
    }

    #[test]
    fn an_untouched_file_stays_unchanged_when_looked_at_again() {
        let (_dir, _path, clock, check) = checked(5_000);
        for later in [RECHECK_MS, 2 * RECHECK_MS, 10 * RECHECK_MS] {
            clock.set(5_000 + later);
            assert!(check.unchanged(), "{later} ms later");
        }
    }
}
