//! How an entry's network refusals reach the log.
//!
//! Invariant: at most [`LINES_PER_WINDOW`] refusals of an entry are logged per [`WINDOW`], plus
//! one line saying the rest are not; the next refusal after the window says how many were not.
//! A guest decides how often it is refused (a loop of connects to an address its policy does
//! not name): one line per refusal let it write the host's log as fast as it could call
//! `connect` (found attacking the warn line of NET-8).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock::lock;

/// The window refusals are counted in.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Refusals an entry may log per window.
pub const LINES_PER_WINDOW: u32 = 20;

/// One entry's count of refusals in the current window (shared by its processes).
#[derive(Debug, Default)]
pub(crate) struct RefusalLog(Mutex<Window>);

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    muted: u64,
}

/// What to log for one refusal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The refusal, as the previous window's count of refusals not logged (0: none) says first.
    Log { muted_before: u64 },
    /// This window's lines are spent: say so once, with the refusal.
    LogAndMute,
    /// Counted, not logged.
    Mute,
}

impl RefusalLog {
    /// Counts a refusal at `now` and says what to log for it.
    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let mut window = lock(&self.0);
        let mut muted_before = 0;
        if window
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= WINDOW)
        {
            muted_before = window.muted;
            *window = Window {
                started: Some(now),
                logged: 0,
                muted: 0,
            };
        }
        if window.logged < LINES_PER_WINDOW {
            window.logged += 1;
            Admit::Log { muted_before }
        } else {
            window.muted += 1;
            if window.muted == 1 {
                Admit::LogAndMute
            } else {
                Admit::Mute
            }
        }
    }

    /// Logs `refusal` of `entry` at `warn`, within the window's lines.
    pub(crate) fn warn(&self, entry: &dyn fmt::Display, refusal: &dyn fmt::Display) {
        match self.admit(Instant::now()) {
            Admit::Log { muted_before } => {
                if muted_before > 0 {
                    tracing::warn!(target: "wasmproc::network", "entry `{entry}`: {muted_before} more network refusals were not logged");
                }
                tracing::warn!(target: "wasmproc::network", "{refusal}");
            }
            Admit::LogAndMute => tracing::warn!(
                target: "wasmproc::network",
                "{refusal} (entry `{entry}` was refused more than {LINES_PER_WINDOW} times within {WINDOW:?}: the rest are counted, not logged, until then)"
            ),
            Admit::Mute => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_logs_a_window_of_lines_then_the_count_of_the_rest() {
        let log = RefusalLog::default();
        let start = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(log.admit(start), Admit::Log { muted_before: 0 });
        }
        assert_eq!(log.admit(start), Admit::LogAndMute);
        for _ in 0..10_000 {
            assert_eq!(log.admit(start + WINDOW / 2), Admit::Mute);
        }
        // The next window logs again, first saying how many were not.
        assert_eq!(
            log.admit(start + WINDOW),
            Admit::Log {
                muted_before: 10_001
            }
        );
        assert_eq!(log.admit(start + WINDOW), Admit::Log { muted_before: 0 });
        // A quiet entry logs every refusal.
        let quiet = RefusalLog::default();
        for n in 0..3 {
            assert_eq!(
                quiet.admit(start + WINDOW * 2 * n),
                Admit::Log { muted_before: 0 }
            );
        }
    }
}
