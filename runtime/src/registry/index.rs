//! Every process by PID, in a fixed array of slots with an overflow map: a spawn writes one
//! slot, and whoever names a PID reads one.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::Proc;
use crate::event::Pid;

/// Every process by PID: written by spawns, read by whoever names a PID.
pub(super) struct Index {
    /// The process of the PID with these low bits, until a later spawn takes the slot.
    pub(super) slots: Box<[Option<Arc<Proc>>]>,
    /// Processes still running when a later spawn took their slot.
    pub(super) overflow: PidMap<Arc<Proc>>,
}

/// Slots of the index. A process and its task stay allocated until a later spawn takes its
/// slot (so that the spawning thread, which allocated them, frees them): at most this many
/// ended ones, about 0.5 MB.
pub(super) const SLOTS: usize = 256;

impl Default for Index {
    fn default() -> Self {
        Index {
            slots: (0..SLOTS).map(|_| None).collect(),
            overflow: PidMap::default(),
        }
    }
}

impl Index {
    pub(super) fn slot(pid: Pid) -> usize {
        pid.0 as usize % SLOTS
    }

    pub(super) fn get(&self, pid: Pid) -> Option<&Arc<Proc>> {
        match &self.slots[Index::slot(pid)] {
            Some(proc) if proc.pid == pid => Some(proc),
            _ => self.overflow.get(&pid),
        }
    }
}

pub(super) type PidMap<V> = HashMap<Pid, V, BuildHasherDefault<PidHasher>>;

/// A set of PIDs (a process's links: a supervisor may link thousands, each added and removed
/// in constant time).
pub(super) type PidSet = HashSet<Pid, BuildHasherDefault<PidHasher>>;

/// PIDs are sequential integers handed out by the runtime, so nobody can pick colliding keys:
/// a multiply spreads them well.
#[derive(Default)]
pub(super) struct PidHasher(u64);

impl Hasher for PidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
