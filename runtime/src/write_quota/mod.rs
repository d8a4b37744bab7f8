//! `limits.max_written`: the bytes a process may write to files in its mounts. Without it a
//! guest could fill the file system of a writable mount, or its inodes with empty files, and
//! every other program on that file system would fail with it.
//!
//! What counts: each write's bytes (overwrites too: the quota counts what a process writes,
//! not the disk it ends up using, and removing a file gives nothing back), the growth of a file
//! whose size a guest sets, and [`NEW_NAME_BYTES`] for each file, directory or link it
//! creates. A call that would pass the quota does nothing and fails as it would on a full
//! disk (`ENOSPC`: preview 1's `nospc`, `insufficient-space` in WASI 0.2 and 0.3, also
//! through a stream's `filesystem-error-code`), and the process goes on: like a denied
//! `memory.grow`, the guest decides what a refusal means.
//!
//! Every way a guest writes goes through here, shadowing wasmtime-wasi's functions in the
//! linker as [`crate::special_files`] does: preview 1 ([`p1`]), WASI 0.2 ([`p2`], its
//! `write-via-stream` and `append-via-stream` streams wrapped) and WASI 0.3 ([`p3`], whose
//! streams move bytes without a host call: their consumer is wasmproc's own); creating files
//! through an open is charged by the open's guard in [`crate::special_files`]. What is left
//! writes nothing a guest chooses the size of: `rename`/`rename-at` (moves a name),
//! `unlink`/`remove-directory`, `set-times`, `advise`, `sync`, `fd_allocate` (`notsup` in
//! wasmtime-wasi), reads and stats. A wasmtime upgrade that adds a writing function to
//! `wasi:filesystem` must add it here (the interfaces' WIT lists them: wasmtime-wasi's
//! `src/p2/wit/deps/filesystem.wit` and `src/p3/wit/deps/filesystem.wit`).

pub(crate) mod p1;
pub(crate) mod p2;
pub(crate) mod p3;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What creating a file, a directory or a link counts against `limits.max_written`: a block,
/// about what each costs a file system (an inode and a directory entry), so that a guest
/// cannot fill a file system's inodes with empty files either.
pub const NEW_NAME_BYTES: u64 = 4096;

/// A process's `limits.max_written`: what it may still write, shared by its store and the
/// streams it holds.
#[derive(Debug)]
pub(crate) struct WriteQuota {
    max: u64,
    used: AtomicU64,
    /// The size of the last call refused; 0 when none was.
    refused: AtomicU64,
}

impl WriteQuota {
    /// The quota of `limits.max_written`, when it is set.
    pub(crate) fn of(max_written: Option<u64>) -> Option<Arc<WriteQuota>> {
        max_written.map(|max| {
            Arc::new(WriteQuota {
                max,
                used: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            })
        })
    }

    /// Bytes counted so far.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The size of the last call the quota refused, if one was.
    pub(crate) fn refused(&self) -> Option<u64> {
        Some(self.refused.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }
}

/// A quota passed: the call it refused writes nothing.
#[derive(Debug)]
pub(crate) struct Exceeded;

impl Exceeded {
    /// What a full disk says: the guest sees a refused write as it would see one there.
    pub(crate) fn io_error() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOSPC)
    }
}

/// Bytes taken from a quota for one call: given back when dropped, unless the call wrote and
/// the charge was [kept](Charge::keep) (a call that fails writes nothing, or not much).
#[must_use = "a charge is given back when dropped: keep it once the call wrote"]
pub(crate) struct Charge {
    quota: Option<Arc<WriteQuota>>,
    bytes: u64,
}

impl Charge {
    /// Takes `bytes` from `quota` (nothing where there is none), or none of them when they
    /// would pass it.
    pub(crate) fn take(quota: Option<&Arc<WriteQuota>>, bytes: u64) -> Result<Charge, Exceeded> {
        let Some(quota) = quota else {
            return Ok(Charge::none());
        };
        let passed = quota
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&total| total <= quota.max)
            })
            .is_err();
        if passed {
            quota.refused.store(bytes.max(1), Ordering::Relaxed);
            return Err(Exceeded);
        }
        Ok(Charge {
            quota: Some(quota.clone()),
            bytes,
        })
    }

    /// What an open that `creates` a file takes: a new name's worth ([`NEW_NAME_BYTES`]), given
    /// back if the open fails; nothing for an open of a file that exists.
    pub(crate) fn for_creation(
        quota: Option<&Arc<WriteQuota>>,
        creates: bool,
    ) -> Result<Charge, Exceeded> {
        if creates {
            Charge::take(quota, NEW_NAME_BYTES)
        } else {
            Ok(Charge::none())
        }
    }

    /// Nothing taken: a process without a quota, or a call that writes nothing.
    pub(crate) fn none() -> Charge {
        Charge {
            quota: None,
            bytes: 0,
        }
    }

    /// The call wrote: the bytes stay counted.
    pub(crate) fn keep(mut self) {
        self.bytes = 0;
    }

    /// The call wrote `bytes` of what it was charged: those stay counted, the rest is given
    /// back.
    pub(crate) fn keep_only(mut self, bytes: u64) {
        self.bytes -= bytes.min(self.bytes);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(quota) = &self.quota {
            quota.used.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_past_the_quota_takes_nothing_and_one_given_back_frees_its_bytes() {
        let quota = WriteQuota::of(Some(10)).unwrap();
        Charge::take(Some(&quota), 6).unwrap().keep();
        assert_eq!(quota.used(), 6);
        assert!(Charge::take(Some(&quota), 5).is_err());
        assert_eq!(quota.refused(), Some(5));
        assert_eq!(quota.used(), 6);
        // A call that failed gives its bytes back.
        drop(Charge::take(Some(&quota), 4).unwrap());
        assert_eq!(quota.used(), 6);
        Charge::take(Some(&quota), 4).unwrap().keep();
        assert_eq!(quota.used(), 10);
        assert!(Charge::take(Some(&quota), 1).is_err());
        // A short write keeps what it wrote.
        let quota = WriteQuota::of(Some(10)).unwrap();
        Charge::take(Some(&quota), 8).unwrap().keep_only(3);
        assert_eq!(quota.used(), 3);
        Charge::take(Some(&quota), 7).unwrap().keep();
        // Nothing written is always within it; a huge charge does not wrap around.
        Charge::take(Some(&quota), 0).unwrap().keep();
        assert!(Charge::take(Some(&quota), u64::MAX).is_err());
        assert_eq!(quota.used(), 10);
        // Without a quota, everything may be written.
        Charge::take(None, u64::MAX).unwrap().keep();
    }
}
