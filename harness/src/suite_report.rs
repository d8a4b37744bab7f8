//! A run's report, for CI systems: JSON in the WASI test suite runner's shape (its
//! `reporters/json.py`: per suite the counts of each outcome, per test its outcome, duration and
//! failures), or JUnit XML (per test a `testcase` with its time, and a `failure` or `skipped`
//! element). Trials record themselves here as they end; the report is written once all have
//! run.

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
    /// Failed, as expected (the expectations file, a scenario's `expect_failure`).
    Xfailed,
    /// Passed, though expected to fail: a failure.
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

    /// The report as JUnit XML: a `testsuite` per suite, a `testcase` per test; a failure or an
    /// unexpected pass is a `failure` (its message the first line, its text the whole), a skip
    /// or an expected failure `skipped` (as pytest reports an xfail).
    pub fn to_junit(&self) -> String {
        let records = self.sorted();
        let mut suites: Vec<&str> = records.iter().map(|(s, _)| s.as_str()).collect();
        suites.dedup();
        let failing = |t: &TestRecord| matches!(t.outcome, Outcome::Failed | Outcome::Xpassed);
        let skipping = |t: &TestRecord| matches!(t.outcome, Outcome::Skipped | Outcome::Xfailed);
        let all: Vec<&TestRecord> = records.iter().map(|(_, t)| t).collect();
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        xml += &format!(
            "<testsuites name=\"wasmproc\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">\n",
            all.len(),
            all.iter().filter(|t| failing(t)).count(),
            all.iter().filter(|t| skipping(t)).count(),
            all.iter().map(|t| t.duration_s).sum::<f64>()
        );
        for suite in suites {
            let tests: Vec<&TestRecord> = records
                .iter()
                .filter(|(s, _)| s == suite)
                .map(|(_, t)| t)
                .collect();
            xml += &format!(
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">\n",
                escape(suite),
                tests.len(),
                tests.iter().filter(|t| failing(t)).count(),
                tests.iter().filter(|t| skipping(t)).count(),
                tests.iter().map(|t| t.duration_s).sum::<f64>()
            );
            for test in tests {
                xml += &format!(
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                    escape(suite),
                    escape(&test.name),
                    test.duration_s
                );
                let text = test.failures.join("\n");
                let first = text.lines().next().unwrap_or_default();
                let (element, message) = match test.outcome {
                    Outcome::Passed => {
                        xml += "/>\n";
                        continue;
                    }
                    Outcome::Failed | Outcome::Xpassed => ("failure", first.to_string()),
                    Outcome::Xfailed => ("skipped", format!("expected failure: {first}")),
                    Outcome::Skipped => ("skipped", "skipped by the expectations".to_string()),
                };
                xml += &format!(
                    ">\n      <{element} message=\"{}\">{}</{element}>\n    </testcase>\n",
                    escape(&message),
                    escape(&text)
                );
            }
            xml += "  </testsuite>\n";
        }
        xml += "</testsuites>\n";
        xml
    }

    fn sorted(&self) -> Vec<(String, TestRecord)> {
        let mut records = self.lock().clone();
        records.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
        records
    }

    /// The report as JSON, suites and tests in name order.
    pub fn to_json(&self) -> serde_json::Value {
        let records = self.sorted();
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

/// `text` as XML character data or an attribute value. Characters XML 1.0 cannot carry at all
/// (most control characters) become U+FFFD: a guest's output in a failure must not make the
/// whole report unreadable.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_names_each_outcome_and_escapes_what_xml_cannot_carry() {
        let report = SuiteReport::default();
        let second = Duration::from_millis(1500);
        report.record("s", "ok", Outcome::Passed, second, None);
        report.record(
            "s",
            "bad <1>",
            Outcome::Failed,
            second,
            Some("a.yaml: steps[2] (receive): expected \"x\" & got\u{1}\nmore".into()),
        );
        report.record("s", "known", Outcome::Xfailed, second, Some("why".into()));
        report.record("s", "skip", Outcome::Skipped, Duration::ZERO, None);
        report.record(
            "t",
            "surprise",
            Outcome::Xpassed,
            second,
            Some("passed".into()),
        );
        let xml = report.to_junit();
        assert!(
            xml.contains(
                r#"<testsuites name="wasmproc" tests="5" failures="2" skipped="2" time="6.000">"#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase classname="s" name="ok" time="1.500"/>"#),
            "{xml}"
        );
        assert!(xml.contains(r#"name="bad &lt;1&gt;""#), "{xml}");
        assert!(
            xml.contains("<failure message=\"a.yaml: steps[2] (receive): expected &quot;x&quot; &amp; got\u{FFFD}\">a.yaml: steps[2] (receive): expected &quot;x&quot; &amp; got\u{FFFD}\nmore</failure>"),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<skipped message="expected failure: why">why</skipped>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testsuite name="t" tests="1" failures="1" skipped="0""#),
            "{xml}"
        );
        assert_eq!(xml.matches("<testcase").count(), 5);
    }
}
