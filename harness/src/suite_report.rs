//! The WASI test suite's JSON report (its runner's `reporters/json.py` shape): per suite, the
//! counts of each outcome, and per test its outcome, duration and failures. Trials record
//! themselves here as they end; the report is written once all have run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// How a test ended, in the suite runner's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    /// Skipped by the expectations file.
    Skipped,
    /// Failed, as the expectations file says it does.
    Xfailed,
    /// Passed, though the expectations file says it fails: a failure.
    Xpassed,
}

#[derive(Clone, Debug, Serialize)]
struct TestRecord {
    name: String,
    executed: bool,
    outcome: Outcome,
    duration_s: f64,
    failures: Vec<String>,
}

/// Where the trials of one run record how they ended.
#[derive(Clone, Debug)]
pub struct SuiteReport {
    started: SystemTime,
    records: Arc<Mutex<Vec<(String, TestRecord)>>>,
}

impl Default for SuiteReport {
    fn default() -> Self {
        SuiteReport {
            started: SystemTime::now(),
            records: Arc::default(),
        }
    }
}

impl SuiteReport {
    /// Records that `test` of `suite` ended with `outcome` after `duration`.
    pub fn record(
        &self,
        suite: &str,
        test: &str,
        outcome: Outcome,
        duration: Duration,
        failure: Option<String>,
    ) {
        let record = TestRecord {
            name: test.to_string(),
            executed: outcome != Outcome::Skipped,
            outcome,
            duration_s: duration.as_secs_f64(),
            failures: failure.into_iter().collect(),
        };
        self.lock().push((suite.to_string(), record));
    }

    /// A trial that panicked leaves the records whole: each push is one step.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, TestRecord)>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The report as JSON, suites and tests in name order.
    pub fn to_json(&self) -> serde_json::Value {
        let mut records = self.lock().clone();
        records.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
        let mut results = Vec::new();
        for suite in records
            .iter()
            .map(|(s, _)| s.clone())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let tests: Vec<&TestRecord> = records
                .iter()
                .filter(|(s, _)| *s == suite)
                .map(|(_, t)| t)
                .collect();
            let count = |o: Outcome| tests.iter().filter(|t| t.outcome == o).count();
            results.push(serde_json::json!({
                "name": suite,
                "runtime": { "name": "wasmproc", "version": env!("CARGO_PKG_VERSION") },
                "duration_s": tests.iter().map(|t| t.duration_s).sum::<f64>(),
                "failed": count(Outcome::Failed),
                "skipped": count(Outcome::Skipped),
                "passed": count(Outcome::Passed),
                "xfailed": count(Outcome::Xfailed),
                "xpassed": count(Outcome::Xpassed),
                "tests": tests,
            }));
        }
        let seconds = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        serde_json::json!({
            "execution": {
                "start_timestamp": seconds(self.started),
                "finish_timestamp": seconds(SystemTime::now()),
            },
            "results": results,
        })
    }
}
