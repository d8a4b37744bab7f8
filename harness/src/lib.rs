//! wasmproc-harness turns YAML scenarios into tests: each scenario file becomes one
//! libtest-mimic trial, named by its path, that loads a manifest, spawns processes through the
//! real runtime and checks their EXIT events.
//!
//! It does not build guests or start the CLI; it drives `wasmproc-runtime` directly. The format
//! is documented for users in `conformance/README.md`.
//!
//! A scenario is loaded and checked (`scenario`), set up and run step by step (`run`), what
//! came is compared with what it expects (`expect`), and the first mismatch becomes a
//! [`Failure`] naming the file, the step and both sides (`failure`).

mod confined;
mod endpoint_server;
mod expect;
mod failure;
pub mod http_client;
mod http_server;
pub mod requirements;
mod run;
mod scenario;
mod scratch;
pub mod suite_report;
pub mod wasi_testsuite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Failed, Trial};
use wasmproc_runtime::code_cache::CacheConfig;
use wasmproc_runtime::printable::printable_lines;
use wasmproc_runtime::Loader;

pub use failure::{Failure, StepError};
pub use scenario::{Scenario, ScenarioError};
use suite_report::{Outcome, SuiteReport};

/// A scenario file is a YAML file with a top-level `scenario:` key; other YAML files (manifests)
/// are left alone. Returned in path order; symlinks are followed, each directory once.
pub fn discover(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    wasmproc_runtime::file_tree::files_below(root, &mut |path| {
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            return Ok(false);
        }
        // One that cannot be read (a FIFO, a dangling link, too large) is kept: its trial
        // fails saying why, rather than the whole run.
        Ok(
            match wasmproc_runtime::source_file::read_text(
                path,
                wasmproc_runtime::yaml_bounds::MAX_BYTES,
            ) {
                Ok(text) => is_scenario(&text),
                Err(_) => true,
            },
        )
    })
}

/// Textual, so that a scenario whose YAML is broken is still found (and fails with its
/// location) instead of being skipped.
fn is_scenario(text: &str) -> bool {
    text.lines().any(|line| line.starts_with("scenario:"))
}

/// One trial per scenario below `root`, named by its path relative to `root` without the
/// extension (`compute/product`), sharing one engine and compile cache (in memory only).
pub fn trials(root: &Path) -> Result<Vec<Trial>, String> {
    let files = discover(root).map_err(|e| format!("{}: {e}", root.display()))?;
    make_trials(
        files
            .into_iter()
            .map(|file| (trial_name(file.strip_prefix(root).unwrap_or(&file)), file))
            .collect(),
        &CacheConfig::off(),
        &SuiteReport::default(),
    )
}

/// The suite name scenarios are reported under.
pub const SCENARIO_SUITE: &str = "wasmproc test";

/// One trial per scenario file given, or found below a directory given; named by the path as
/// given plus the path below it, without the extension (`my-tests/http/get`). Compiled code
/// is kept in the cache `cache` names; each trial records how it ended in `report`.
pub fn trials_for(
    paths: &[PathBuf],
    cache: &CacheConfig,
    report: &SuiteReport,
) -> Result<Vec<Trial>, String> {
    let mut named = Vec::new();
    for path in paths {
        if path.is_dir() {
            for file in discover(path).map_err(|e| format!("{}: {e}", path.display()))? {
                named.push((trial_name(&file), file));
            }
        } else if path.is_file() {
            named.push((trial_name(path), path.clone()));
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    make_trials(named, cache, report)
}

/// One engine (pooled as the environment says) for every trial of a run, keeping compiled code
/// in the cache `cache` names. It counts fuel, which any scenario's entries may limit.
fn shared_loader(cache: &CacheConfig) -> Result<Arc<Loader>, String> {
    wasmproc_runtime::engine::Pool::from_env()
        .and_then(|pool| {
            wasmproc_runtime::engine::loader_caching(
                pool,
                wasmproc_runtime::engine::Fuel::Counted,
                cache,
            )
        })
        .map(Arc::new)
        .map_err(|e| format!("cannot start the engine: {e}"))
}

fn trial_name(path: &Path) -> String {
    path.with_extension("").to_string_lossy().replace('\\', "/")
}

fn make_trials(
    named: Vec<(String, PathBuf)>,
    cache: &CacheConfig,
    report: &SuiteReport,
) -> Result<Vec<Trial>, String> {
    let loader = shared_loader(cache)?;
    Ok(named
        .into_iter()
        .map(|(name, file)| {
            let (loader, report) = (loader.clone(), report.clone());
            Trial::test(name.clone(), move || {
                let started = std::time::Instant::now();
                let (outcome, text) = run_file(&file, &loader);
                report.record(
                    SCENARIO_SUITE,
                    &name,
                    outcome,
                    started.elapsed(),
                    text.clone(),
                );
                match outcome {
                    Outcome::Failed | Outcome::Xpassed => {
                        // Shown on a terminal: it may quote a guest.
                        let text = text.unwrap_or_default();
                        Err(Failed::from(printable_lines(&text).to_string()))
                    }
                    _ => Ok(()),
                }
            })
        })
        .collect())
}

/// How a scenario ended, and what to say about it: a failure is expected when the scenario says
/// `expect_failure` (xfail: the trial passes, the report keeps the reason and what failed), and
/// a pass then fails (xpass).
fn run_file(file: &Path, loader: &Arc<Loader>) -> (Outcome, Option<String>) {
    let scenario = match Scenario::load(file) {
        Ok(scenario) => scenario,
        Err(e) => return (Outcome::Failed, Some(e.to_string())),
    };
    let ran = scenario.run(loader).map_err(|f| f.to_string());
    match (&scenario.expect_failure, ran) {
        (None, Ok(())) => (Outcome::Passed, None),
        (None, Err(e)) => (Outcome::Failed, Some(e)),
        (Some(reason), Err(e)) => (Outcome::Xfailed, Some(format!("{reason}: {e}"))),
        (Some(reason), Ok(())) => (
            Outcome::Xpassed,
            Some(format!(
                "{}: passed, but it is marked `expect_failure: {reason}`",
                file.display()
            )),
        ),
    }
}
