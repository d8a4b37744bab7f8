//! The EXITs of the last [`REMEMBERED_EXITS`] processes to end, for monitors and links that
//! come after the end.
//!
//! What a record holds besides its accounting (captured output, a value that is not a plain
//! number, an error's message) is bounded by [`RETAINED_BYTES`] over the whole window. Past
//! the budget the oldest records give theirs up first; the EXIT itself (its PID, ok or error
//! kind, code and accounting) is always kept, marked `trimmed`. (Unbounded, 1,200 ended
//! processes that wrote 1 MiB each kept 1.29 GB resident.)
//!
//! Every spawn writes one record and a late monitor reads one now and then, so the layout
//! serves the writes: a record is one cache line (the usual outcome, a number or nothing,
//! inline; anything else boxed), the ring is written in order, and the index is an array
//! addressed by the PID's low bits, also written in order since PIDs are handed out in order.
//! (These writes were a spawn's largest cost over bare wasmtime: 500 records instead of
//! 10,000 saved 0.5 us of ~9.5, the records and a hash index missing the caches.)

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::index::PidMap;
use crate::event::{Accounting, Exit, ExitError, Output, Pid};

/// How many ended processes are remembered for late monitors: the last 10,000 to end.
pub const REMEMBERED_EXITS: usize = 10_000;

/// How many bytes of output, values and error messages the remembered EXITs hold together
/// (as `Exit::payload_bytes` counts them). Past it, the oldest give theirs up first.
pub const RETAINED_BYTES: usize = 16 << 20;

/// What a trimmed error keeps of its message.
const TRIMMED_MESSAGE: usize = 256;

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
    /// Bytes the records' payloads hold, at most [`RETAINED_BYTES`].
    retained: usize,
    /// The records that hold payload bytes, oldest first: (PID, place in the ring). An entry
    /// whose place was written over since is stale, and skipped.
    holding: VecDeque<(Pid, u32)>,
}

impl Default for Ended {
    fn default() -> Self {
        Ended {
            base: Instant::now(),
            ring: Vec::new(),
            oldest: 0,
            index: vec![NOWHERE; INDEX_SLOTS].into_boxed_slice(),
            overflow: PidMap::default(),
            retained: 0,
            holding: VecDeque::new(),
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

    /// Remembers `exit`, forgetting the oldest record once [`REMEMBERED_EXITS`] are kept, and
    /// the oldest payloads past [`RETAINED_BYTES`]. What it let go of is returned, for the
    /// caller to free outside its lock.
    #[must_use = "what was forgotten is freed where it is dropped"]
    pub(super) fn insert(&mut self, exit: &Exit) -> Forgotten {
        let pid = exit.from;
        let record = Record::of(exit, self.base);
        let mut forgotten = Forgotten::default();
        let at = if self.ring.len() < REMEMBERED_EXITS {
            self.ring.push(record);
            self.ring.len() - 1
        } else {
            let at = self.oldest;
            self.oldest = (at + 1) % REMEMBERED_EXITS;
            let old = std::mem::replace(&mut self.ring[at], record);
            let s = slot(old.from);
            if self.index[s] == at as u32 {
                self.index[s] = NOWHERE;
            } else {
                self.overflow.remove(&old.from);
            }
            if let Outcome::Other(payload) = &old.outcome {
                self.retained -= payload.bytes;
            }
            forgotten.0.push(old.outcome);
            at
        };
        if let Outcome::Other(payload) = &self.ring[at].outcome {
            if payload.bytes > 0 {
                self.retained += payload.bytes;
                self.holding.push_back((pid, at as u32));
            }
        }
        self.keep_within_budget(&mut forgotten);
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
        forgotten
    }

    /// Trims the oldest payloads until the retained bytes are within [`RETAINED_BYTES`].
    fn keep_within_budget(&mut self, forgotten: &mut Forgotten) {
        while let Some(&(pid, at)) = self.holding.front() {
            let record = &mut self.ring[at as usize];
            let current =
                record.from == pid && matches!(&record.outcome, Outcome::Other(p) if p.bytes > 0);
            if current && self.retained <= RETAINED_BYTES {
                return;
            }
            self.holding.pop_front();
            if let (true, Outcome::Other(payload)) = (current, &mut record.outcome) {
                self.retained -= payload.bytes;
                forgotten.0.push(Outcome::Other(Box::new(payload.trim())));
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ring.len()
    }

    #[cfg(test)]
    pub(super) fn retained(&self) -> usize {
        self.retained
    }
}

/// Payloads let go of by an insertion, freed when this is dropped (outside the lock).
#[derive(Default)]
pub(crate) struct Forgotten(smallvec::SmallVec<[Outcome; 1]>);

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
    Other(Box<Payload>),
}

/// What a record holds besides its accounting, and what that costs.
struct Payload {
    outcome: Result<Value, ExitError>,
    output: Option<Output>,
    /// As [`Exit::payload_bytes`] counts them; 0 once trimmed.
    bytes: usize,
    /// Its output and value were dropped to keep the window within its budget.
    trimmed: bool,
}

impl Payload {
    /// Gives up the output, the value (`null` now) and all but the start of an error's
    /// message; the outcome's kind, code and the accounting stay. Returns what it gave up.
    fn trim(&mut self) -> Payload {
        let kept = match &self.outcome {
            Ok(_) => Ok(Value::Null),
            Err(error) => Err(ExitError {
                kind: error.kind,
                message: shortened(&error.message),
                code: error.code,
            }),
        };
        let outcome = std::mem::replace(&mut self.outcome, kept);
        let output = self.output.as_mut().map(std::mem::take);
        self.bytes = 0;
        self.trimmed = true;
        Payload {
            outcome,
            output,
            bytes: 0,
            trimmed: false,
        }
    }
}

/// The start of `message`, marked, when it is longer than [`TRIMMED_MESSAGE`].
fn shortened(message: &str) -> String {
    if message.len() <= TRIMMED_MESSAGE {
        return message.to_string();
    }
    let mut end = TRIMMED_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... (trimmed)", &message[..end])
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
            let mut payload = Payload {
                outcome: Ok(Value::Null),
                output: None,
                bytes: exit.payload_bytes(),
                trimmed: exit.trimmed,
            };
            if payload.bytes > RETAINED_BYTES {
                // More than the whole budget: never copied, kept trimmed from the start.
                payload.outcome = match &exit.outcome {
                    Ok(_) => Ok(Value::Null),
                    Err(error) => Err(error.clone()),
                };
                payload.output = exit.output.as_ref().map(|_| Output::default());
                payload.trim();
            } else {
                payload.outcome = exit.outcome.clone();
                payload.output = exit.output.clone();
            }
            Outcome::Other(Box::new(payload))
        })
    }

    /// The outcome, output and `trimmed` mark.
    fn to_exit_parts(&self) -> (Result<Value, ExitError>, Option<Output>, bool) {
        let (value, captured) = match *self {
            Outcome::Null { captured } => (Value::Null, captured),
            Outcome::Bool { value, captured } => (Value::Bool(value), captured),
            Outcome::Unsigned { value, captured } => (Value::from(value), captured),
            Outcome::Signed { value, captured } => (Value::from(value), captured),
            Outcome::Float { value, captured } => (Value::from(value), captured),
            Outcome::Other(ref other) => {
                return (other.outcome.clone(), other.output.clone(), other.trimmed)
            }
        };
        (Ok(value), captured.then(Output::default), false)
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
            wall_time: nanos(a.wall_time) as u64,
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
        let (outcome, output, trimmed) = self.outcome.to_exit_parts();
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
            trimmed,
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
            drop(ended.insert(&exit(n)));
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
            drop(ended.insert(&exit(pid)));
        }
        assert_eq!(ended.overflow.len(), 2);
        let mut others = (3 * slots..).filter(|&p| slot(Pid(p)) != slot(Pid(1)));
        for _ in 0..REMEMBERED_EXITS - sharing.len() {
            drop(ended.insert(&exit(others.next().unwrap())));
        }
        for (n, gone) in sharing.into_iter().enumerate() {
            for kept in &sharing[n..] {
                assert_eq!(ended.get(Pid(*kept)).map(|e| e.from), Some(Pid(*kept)));
            }
            // The next end pushes the oldest record out.
            drop(ended.insert(&exit(others.next().unwrap())));
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
            drop(ended.insert(&original));
            assert_eq!(ended.get(original.from).as_ref(), Some(&original));
        }
    }

    /// An EXIT of `pid` that wrote `stdout`.
    fn wrote(pid: u64, stdout: &str) -> Exit {
        let mut e = exit(pid);
        e.output = Some(Output {
            stdout: stdout.to_string(),
            stderr: String::new(),
        });
        e
    }

    #[test]
    fn output_past_the_budget_is_dropped_oldest_first_and_every_exit_is_kept() {
        let mut ended = Ended::default();
        let mib = "x".repeat(1 << 20);
        // The case, 1,200 processes that wrote 1 MiB each, kept 1.29 GB.
        for pid in 1..=1_200 {
            drop(ended.insert(&wrote(pid, &mib)));
            assert!(ended.retained() <= RETAINED_BYTES, "{}", ended.retained());
        }
        // Each holds 1 MiB and its value (null, one value): the newest that fit are whole.
        let fit = (RETAINED_BYTES / ((1 << 20) + crate::value::NODE_BYTES)) as u64;
        for pid in 1..=1_200 {
            let exit = ended.get(Pid(pid)).expect("every EXIT is kept");
            assert_eq!(exit.outcome, Ok(Value::Null));
            let whole = pid > 1_200 - fit;
            assert_eq!(exit.trimmed, !whole, "{pid}");
            let stdout = exit.output.expect("captured").stdout;
            assert_eq!(stdout.len(), if whole { 1 << 20 } else { 0 }, "{pid}");
        }
        assert!(ended.holding.len() <= fit as usize + 1);
    }

    #[test]
    fn a_trimmed_error_keeps_its_kind_code_and_the_start_of_its_message() {
        let mut ended = Ended::default();
        let mut failed = wrote(1, "some output");
        failed.outcome = Err(ExitError {
            kind: ErrorKind::ExitCode,
            message: "é".repeat(RETAINED_BYTES / 2 + 1),
            code: Some(3),
        });
        drop(ended.insert(&failed));
        // Bigger than the whole budget on its own: kept trimmed from the start.
        assert_eq!(ended.retained(), 0);
        let exit = ended.get(Pid(1)).unwrap();
        assert!(exit.trimmed);
        assert_eq!(exit.output, Some(Output::default()));
        let error = exit.outcome.unwrap_err();
        assert_eq!((error.kind, error.code), (ErrorKind::ExitCode, Some(3)));
        assert!(error.message.starts_with("éé"));
        assert!(error.message.ends_with("... (trimmed)"));
        assert!(error.message.len() < 2 * TRIMMED_MESSAGE);
        // A large value goes the same way; the serialized EXIT says so.
        let mut valued = exit_with_value(2, Value::from("v".repeat(RETAINED_BYTES)));
        valued.output = None;
        drop(ended.insert(&valued));
        let exit = ended.get(Pid(2)).unwrap();
        assert_eq!(
            (exit.outcome.clone(), exit.trimmed),
            (Ok(Value::Null), true)
        );
        let json = serde_json::to_value(&exit).unwrap();
        assert_eq!(json["trimmed"], Value::Bool(true));
        // Records written over give their bytes back.
        for pid in 3..3 + REMEMBERED_EXITS as u64 {
            drop(ended.insert(&wrote(pid, "abc")));
        }
        assert_eq!(
            ended.retained(),
            REMEMBERED_EXITS * (3 + crate::value::NODE_BYTES)
        );
    }

    #[test]
    fn a_record_written_over_gives_its_bytes_back() {
        let mut ended = Ended::default();
        let each = 3 + crate::value::NODE_BYTES;
        for pid in 1..=REMEMBERED_EXITS as u64 + 100 {
            drop(ended.insert(&wrote(pid, "abc")));
            let live = (pid as usize).min(REMEMBERED_EXITS);
            assert_eq!(ended.retained(), live * each, "after {pid}");
        }
        // Nothing was trimmed to get there: every record kept is whole.
        let oldest = ended.get(Pid(101)).unwrap();
        assert!(!oldest.trimmed);
        assert_eq!(oldest.output.unwrap().stdout, "abc");
    }

    #[test]
    fn past_the_budget_the_oldest_live_payloads_go_not_a_newer_one_in_a_reused_place() {
        let mut ended = Ended::default();
        let cap = REMEMBERED_EXITS as u64;
        for pid in 1..=cap + 1 {
            drop(ended.insert(&wrote(pid, "abc")));
        }
        // Pid 1's place now holds pid cap + 1; what the budget remembered of pid 1 is stale.
        let big = RETAINED_BYTES - 1_000;
        drop(ended.insert(&wrote(cap + 2, &"x".repeat(big))));
        assert!(ended.retained() <= RETAINED_BYTES);
        assert!(
            ended.get(Pid(3)).unwrap().trimmed,
            "the oldest kept go first"
        );
        for newest in [cap + 1, cap + 2] {
            let exit = ended.get(Pid(newest)).unwrap();
            assert!(!exit.trimmed, "{newest} was trimmed");
        }
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        // Three bytes each: byte 256 falls inside the 86th.
        let cut = shortened(&"€".repeat(200));
        assert_eq!(cut, format!("{}... (trimmed)", "€".repeat(85)));
        assert_eq!(shortened("short"), "short");
    }

    #[test]
    fn both_output_streams_count_against_the_budget() {
        let mut ended = Ended::default();
        let mut e = exit(1);
        e.output = Some(Output {
            stdout: "ab".into(),
            stderr: "cdefg".into(),
        });
        drop(ended.insert(&e));
        assert_eq!(ended.retained(), 2 + 5 + crate::value::NODE_BYTES);
    }

    #[test]
    fn plain_outcomes_cost_the_budget_nothing() {
        let mut ended = Ended::default();
        let plain = [
            Value::Null,
            Value::Bool(false),
            Value::from(7u64),
            Value::from(-7i64),
            Value::from(2.5f64),
        ];
        let mut pid = 0;
        for value in plain {
            // Not captured, or captured and empty.
            for output in [None, Some(Output::default())] {
                pid += 1;
                let mut e = exit_with_value(pid, value.clone());
                e.output = output;
                drop(ended.insert(&e));
                assert_eq!(ended.retained(), 0, "{value} {:?}", e.output);
                assert_eq!(ended.get(Pid(pid)).as_ref(), Some(&e));
            }
        }
    }

    #[test]
    fn a_payload_of_the_whole_budget_is_kept_and_a_larger_one_is_trimmed_alone() {
        let node = crate::value::NODE_BYTES;
        let mut ended = Ended::default();
        drop(ended.insert(&wrote(1, "abc")));
        // Larger than the whole budget: trimmed as it arrives; the older payload stays.
        drop(ended.insert(&wrote(2, &"x".repeat(RETAINED_BYTES))));
        assert!(ended.get(Pid(2)).unwrap().trimmed);
        assert!(!ended.get(Pid(1)).unwrap().trimmed);
        assert_eq!(ended.retained(), 3 + node);
        // Exactly the budget: kept whole, and the older payload gives way.
        drop(ended.insert(&wrote(3, &"x".repeat(RETAINED_BYTES - node))));
        assert!(!ended.get(Pid(3)).unwrap().trimmed);
        assert!(ended.get(Pid(1)).unwrap().trimmed);
        assert_eq!(ended.retained(), RETAINED_BYTES);
    }

    fn exit_with_value(pid: u64, value: Value) -> Exit {
        let mut e = exit(pid);
        e.outcome = Ok(value);
        e
    }
}
