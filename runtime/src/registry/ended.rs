//! The EXITs of the last [`REMEMBERED_EXITS`] processes to end, for monitors and links that
//! come after the end.
//!
//! Every spawn writes one record here, and a late monitor reads one now and then: the writes
//! are what counts. They were the largest cost a spawn had over bare wasmtime (measured: with
//! 500 records instead of 10,000, 0.5 us less CPU per spawn out of ~9.5): the records and a
//! hash index (2 MB) pushed the pool's page tables and the scheduler's data out of the
//! caches, and each end missed on a record and two index buckets last touched thousands of
//! ends ago. So a record is one cache line (the usual outcome, a number or nothing, inline;
//! anything else boxed), the ring is written in order, and the index is an array addressed
//! by the PID's low bits, also written in order since PIDs are handed out in order.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::PidMap;
use crate::process::{Accounting, Exit, ExitError, Output, Pid};

/// How many ended processes are remembered for late monitors: the last 10,000 to end.
pub const REMEMBERED_EXITS: usize = 10_000;

/// Slots of the index: a power of two above [`REMEMBERED_EXITS`], so that the PIDs remembered
/// at once (mostly a run of consecutive ones) rarely share a slot.
const INDEX_SLOTS: usize = 16_384;
const NOWHERE: u32 = u32::MAX;

pub(super) struct Ended {
    /// Instants are kept as nanoseconds from this one.
    base: Instant,
    /// In end order; once full, each end writes over the oldest record (at `oldest`).
    ring: Vec<Record>,
    oldest: usize,
    /// Where in the ring the record of a PID with these low bits is, or [`NOWHERE`].
    index: Box<[u32]>,
    /// Records whose index slot was taken by another remembered PID (a process that ran
    /// through more than [`INDEX_SLOTS`] spawns): usually empty.
    overflow: PidMap<u32>,
}

impl Default for Ended {
    fn default() -> Self {
        Ended {
            base: Instant::now(),
            ring: Vec::new(),
            oldest: 0,
            index: vec![NOWHERE; INDEX_SLOTS].into_boxed_slice(),
            overflow: PidMap::default(),
        }
    }
}

fn prefetch<T>(data: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it reads nothing the program sees.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (data as *const T).cast(),
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

fn slot(pid: Pid) -> usize {
    (pid.0 as usize) & (INDEX_SLOTS - 1)
}

impl Ended {
    fn position(&self, pid: Pid) -> Option<usize> {
        let at = self.index[slot(pid)];
        if at != NOWHERE && self.ring[at as usize].from == pid {
            return Some(at as usize);
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(&pid).map(|&at| at as usize)
    }

    /// The recorded EXIT of `pid`, if it is remembered.
    pub(super) fn get(&self, pid: Pid) -> Option<Exit> {
        self.position(pid)
            .map(|at| self.ring[at].to_exit(pid, self.base))
    }

    pub(super) fn contains(&self, pid: Pid) -> bool {
        self.position(pid).is_some()
    }

    /// Remembers `exit`, forgetting the oldest record once [`REMEMBERED_EXITS`] are kept.
    pub(super) fn insert(&mut self, exit: &Exit) {
        let pid = exit.from;
        let record = Record::of(exit, self.base);
        let at = if self.ring.len() < REMEMBERED_EXITS {
            self.ring.push(record);
            self.ring.len() - 1
        } else {
            let at = self.oldest;
            self.oldest = (at + 1) % REMEMBERED_EXITS;
            let forgotten = std::mem::replace(&mut self.ring[at], record).from;
            let s = slot(forgotten);
            if self.index[s] == at as u32 {
                self.index[s] = NOWHERE;
            } else {
                self.overflow.remove(&forgotten);
            }
            at
        };
        let s = slot(pid);
        if self.index[s] == NOWHERE {
            self.index[s] = at as u32;
        } else {
            self.overflow.insert(pid, at as u32);
        }
        // The next end writes over the oldest record, untouched since thousands of ends:
        // fetched now, it is in the cache by then instead of stalling that end.
        if let Some(next) = self
            .ring
            .get(self.oldest)
            .filter(|_| self.ring.len() == REMEMBERED_EXITS)
        {
            prefetch(next);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ring.len()
    }
}

/// An EXIT in one cache line: instants as nanoseconds, `None`s as sentinels.
#[repr(align(64))]
struct Record {
    from: Pid,
    /// Nanoseconds from the base to Init (negative: before the base).
    started: i64,
    wall_time: u64,
    steps: u32,
    yields: u32,
    /// `u64::MAX` for none (no process burns that much fuel).
    fuel_used: u64,
    peak_memory: u64,
    outcome: Outcome,
}

/// The outcome, inline when it is a plain value (a compute result, `exit(0)`) and the
/// process wrote nothing to its captured output (or it was not captured). `captured`: the
/// output was captured (and is empty), `Some` rather than `None`. Flat, so that the tag and
/// the flag share a word.
enum Outcome {
    Null {
        captured: bool,
    },
    Bool {
        value: bool,
        captured: bool,
    },
    Unsigned {
        value: u64,
        captured: bool,
    },
    Signed {
        value: i64,
        captured: bool,
    },
    Float {
        value: f64,
        captured: bool,
    },
    /// An error, a string or structure, or output.
    Other(Box<(Result<Value, ExitError>, Option<Output>)>),
}

impl Outcome {
    fn of(exit: &Exit) -> Outcome {
        let captured = match &exit.output {
            None => Some(false),
            Some(output) if output.stdout.is_empty() && output.stderr.is_empty() => Some(true),
            Some(_) => None,
        };
        let plain = captured.and_then(|captured| match &exit.outcome {
            Ok(Value::Null) => Some(Outcome::Null { captured }),
            Ok(Value::Bool(value)) => Some(Outcome::Bool {
                value: *value,
                captured,
            }),
            Ok(Value::Number(n)) => n
                .as_u64()
                .map(|value| Outcome::Unsigned { value, captured })
                .or_else(|| n.as_i64().map(|value| Outcome::Signed { value, captured }))
                .or_else(|| n.as_f64().map(|value| Outcome::Float { value, captured })),
            _ => None,
        });
        plain.unwrap_or_else(|| {
            Outcome::Other(Box::new((exit.outcome.clone(), exit.output.clone())))
        })
    }

    fn to_exit_parts(&self) -> (Result<Value, ExitError>, Option<Output>) {
        let (value, captured) = match *self {
            Outcome::Null { captured } => (Value::Null, captured),
            Outcome::Bool { value, captured } => (Value::Bool(value), captured),
            Outcome::Unsigned { value, captured } => (Value::from(value), captured),
            Outcome::Signed { value, captured } => (Value::from(value), captured),
            Outcome::Float { value, captured } => (Value::from(value), captured),
            Outcome::Other(ref other) => return (other.0.clone(), other.1.clone()),
        };
        (Ok(value), captured.then(Output::default))
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Record {
    fn of(exit: &Exit, base: Instant) -> Record {
        let a = &exit.accounting;
        let started = match a.started.checked_duration_since(base) {
            Some(after) => nanos(after),
            None => -nanos(base - a.started),
        };
        Record {
            from: exit.from,
            started,
            wall_time: nanos(a.ended - a.started) as u64,
            steps: a.steps,
            yields: a.yields,
            fuel_used: a.fuel_used.unwrap_or(u64::MAX),
            peak_memory: a.peak_memory,
            outcome: Outcome::of(exit),
        }
    }

    fn to_exit(&self, from: Pid, base: Instant) -> Exit {
        let offset = Duration::from_nanos(self.started.unsigned_abs());
        let started = if self.started >= 0 {
            base + offset
        } else {
            base - offset
        };
        let wall_time = Duration::from_nanos(self.wall_time);
        let (outcome, output) = self.outcome.to_exit_parts();
        Exit {
            from,
            outcome,
            accounting: Accounting {
                wall_time,
                started,
                ended: started + wall_time,
                steps: self.steps,
                yields: self.yields,
                fuel_used: (self.fuel_used != u64::MAX).then_some(self.fuel_used),
                peak_memory: self.peak_memory,
            },
            output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::registry::tests::exit;

    #[test]
    fn a_record_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Record>(), 64);
    }

    #[test]
    fn exactly_the_last_remembered_exits_are_kept() {
        let cap = REMEMBERED_EXITS as u64;
        let mut ended = Ended::default();
        for n in 1..=2 * cap + 5 {
            ended.insert(&exit(n));
            let oldest_kept = n.saturating_sub(cap - 1).max(1);
            assert!(ended.contains(Pid(oldest_kept)), "{oldest_kept} after {n}");
            assert_eq!(ended.get(Pid(n)).map(|e| e.from), Some(Pid(n)));
            if n > cap {
                assert!(!ended.contains(Pid(n - cap)), "{} after {n}", n - cap);
            }
            assert_eq!(ended.len() as u64, n.min(cap));
        }
        assert!(ended.overflow.is_empty());
    }

    #[test]
    fn pids_that_share_an_index_slot_are_all_found_and_forgotten() {
        let mut ended = Ended::default();
        let slots = INDEX_SLOTS as u64;
        // Processes that ran through more than INDEX_SLOTS spawns end next to later ones
        // with the same low bits.
        let sharing = [1 + slots, 1, 1 + 2 * slots];
        for pid in sharing {
            ended.insert(&exit(pid));
        }
        assert_eq!(ended.overflow.len(), 2);
        let mut others = (3 * slots..).filter(|&p| slot(Pid(p)) != slot(Pid(1)));
        for _ in 0..REMEMBERED_EXITS - sharing.len() {
            ended.insert(&exit(others.next().unwrap()));
        }
        for (n, gone) in sharing.into_iter().enumerate() {
            for kept in &sharing[n..] {
                assert_eq!(ended.get(Pid(*kept)).map(|e| e.from), Some(Pid(*kept)));
            }
            // The next end pushes the oldest record out.
            ended.insert(&exit(others.next().unwrap()));
            assert!(!ended.contains(Pid(gone)), "{gone}");
        }
        assert!(ended.overflow.is_empty());
    }

    #[test]
    fn a_recorded_exit_reads_back_as_it_was() {
        let mut ended = Ended::default();
        let mut outcomes: Vec<(Result<Value, ExitError>, Option<Output>)> = [
            Value::Null,
            Value::Bool(true),
            Value::from(42u64),
            Value::from(-7i64),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::from(2.5f64),
            Value::from("a string"),
            serde_json::json!({ "list": [1, 2] }),
        ]
        .into_iter()
        .map(|v| (Ok(v), None))
        .collect();
        outcomes.push((
            Err(ExitError {
                kind: ErrorKind::ExitCode,
                message: "the guest exited with code 3".into(),
                code: Some(3),
            }),
            None,
        ));
        outcomes.push((Ok(Value::from(1u64)), Some(Output::default())));
        outcomes.push((
            Ok(Value::from(1u64)),
            Some(Output {
                stdout: "out".into(),
                stderr: String::new(),
            }),
        ));
        for (n, (outcome, output)) in outcomes.into_iter().enumerate() {
            let mut original = exit(n as u64 + 1);
            // Before the base too: a record keeps instants on both sides of it.
            original.accounting.started -= Duration::from_millis(3 * n as u64 % 7);
            original.accounting.wall_time = original.accounting.ended - original.accounting.started;
            original.accounting.steps = n as u32 + 1;
            original.accounting.yields = n as u32;
            original.accounting.fuel_used = (n % 2 == 0).then_some(n as u64 * 1000);
            original.accounting.peak_memory = n as u64 * 65_536;
            original.outcome = outcome;
            original.output = output;
            ended.insert(&original);
            assert_eq!(ended.get(original.from).as_ref(), Some(&original));
        }
    }
}
