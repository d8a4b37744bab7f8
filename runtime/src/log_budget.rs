//! Warnings that something outside the host decides the rate of: at most
//! [`LINES_PER_WINDOW`] per [`WINDOW`] from one source, then one line saying the rest are not
//! logged, and their count with the next line after the window.
//!
//! Why: a guest decides how often it is refused (a loop of connects to an address its policy
//! does not name), an HTTP client how often a handler fails; one line each let them write the
//! host's log as fast as they could call (found attacking the warn line of NET-8).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock::lock;

/// The window lines are counted in.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Lines a source may log per window.
pub const LINES_PER_WINDOW: u32 = 20;

/// One source's count of lines in the current window.
#[derive(Debug, Default)]
pub(crate) struct LogBudget(Mutex<Window>);

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    muted: u64,
}

/// What to log for one more line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The line, after the previous window's count of lines not logged (0: none).
    Log { muted_before: u64 },
    /// The line, and that this window's lines are spent (once a window).
    LogAndMute,
    /// Counted, not logged.
    Mute,
}

impl LogBudget {
    /// A budget with nothing counted yet, for a `static`.
    pub(crate) const fn new() -> Self {
        LogBudget(Mutex::new(Window {
            started: None,
            logged: 0,
            muted: 0,
        }))
    }

    /// Counts a line at `now` and says what to log.
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
}

/// `tracing::warn!(target: T, ...)` within `budget` ([`LogBudget`]); `subject` names what the
/// budget counts in the lines about it (`entry \`t:web\`: request failures`).
macro_rules! warn_within {
    ($budget:expr, target: $target:literal, $subject:expr, $($line:tt)+) => {
        match $budget.admit(std::time::Instant::now()) {
            $crate::log_budget::Admit::Log { muted_before } => {
                if muted_before > 0 {
                    tracing::warn!(target: $target, "{}: {} more were not logged", $subject, muted_before);
                }
                tracing::warn!(target: $target, $($line)+);
            }
            $crate::log_budget::Admit::LogAndMute => {
                tracing::warn!(target: $target, $($line)+);
                tracing::warn!(
                    target: $target,
                    "{}: more than {} within {:?}; the rest are counted, not logged, until then",
                    $subject,
                    $crate::log_budget::LINES_PER_WINDOW,
                    $crate::log_budget::WINDOW
                );
            }
            $crate::log_budget::Admit::Mute => {}
        }
    };
}
pub(crate) use warn_within;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_a_window_of_lines_then_the_count_of_the_rest() {
        let log = LogBudget::default();
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
        let quiet = LogBudget::default();
        for n in 0..3 {
            assert_eq!(
                quiet.admit(start + WINDOW * 2 * n),
                Admit::Log { muted_before: 0 }
            );
        }
    }
}
