//! `wasmproc test`: run YAML scenarios (the `conformance/` format) against your own guests,
//! with libtest's output and flags.

use std::path::PathBuf;
use std::process::ExitCode;
use wasmproc_runtime::code_cache::CacheConfig;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Scenario files or directories (every YAML file with a top-level `scenario:` below them),
    /// mixed with libtest's arguments: a filter, `--list`, `--exact`, `--skip <filter>`,
    /// `--format pretty|terse|json`, `--test-threads <n>`, `--nocapture`. An argument naming an
    /// existing file or directory is a scenario path; the others are libtest's.
    #[arg(
        value_name = "PATHS AND LIBTEST ARGS",
        required = true,
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    words: Vec<String>,
}

pub fn test(args: TestArgs, cache: &CacheConfig) -> ExitCode {
    let (paths, libtest) = split(args.words);
    if paths.is_empty() {
        eprintln!("wasmproc test: no scenario file or directory among the arguments");
        return ExitCode::from(2);
    }
    run_trials(
        "wasmproc test",
        wasmproc_harness::trials_for(&paths, cache),
        libtest,
    )
}

#[derive(clap::Args)]
pub struct WasiTestsuiteArgs {
    /// Known failures: the suite runner's TOML (`expectations/<runtime>/<os>.toml`: suites of
    /// tests `expected = "fail"` or `action = "skip"`), or a JSON file
    /// `{ "skip": [names], "fail": [names] }` with names `<suite>/<test>`.
    #[arg(long, value_name = "FILE")]
    expectations: Option<PathBuf>,
    /// Also write a report: `json=PATH`, in the shape of the suite runner's JSON reporter
    /// (per suite the counts of each outcome; per test its outcome, duration and failures).
    #[arg(long, value_name = "KIND=PATH", value_parser = parse_report)]
    report: Option<PathBuf>,
    /// Test-suite directories (e.g. `tests/rust/testsuite/wasm32-wasip1` of a checkout),
    /// mixed with libtest's arguments, as for `wasmproc test`.
    #[arg(
        value_name = "DIRS AND LIBTEST ARGS",
        required = true,
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    words: Vec<String>,
}

pub fn wasi_testsuite(args: WasiTestsuiteArgs, cache: &CacheConfig) -> ExitCode {
    let (dirs, libtest) = split(args.words);
    if dirs.is_empty() {
        eprintln!("wasmproc wasi-testsuite: no test-suite directory among the arguments");
        return ExitCode::from(2);
    }
    let expectations = match &args.expectations {
        None => Ok(Default::default()),
        Some(path) => wasmproc_harness::wasi_testsuite::Expectations::load(path),
    };
    let report = wasmproc_harness::suite_report::SuiteReport::default();
    let trials = expectations
        .and_then(|e| wasmproc_harness::wasi_testsuite::trials(&dirs, e, cache, &report));
    let code = run_trials("wasmproc wasi-testsuite", trials, libtest);
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!(
                "wasmproc wasi-testsuite: cannot write the report {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    code
}

/// `json=PATH`: the only kind of report so far.
fn parse_report(text: &str) -> Result<PathBuf, String> {
    match text.split_once('=') {
        Some(("json", path)) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(format!("`{text}`: expected json=PATH")),
    }
}

fn run_trials(
    command: &str,
    trials: Result<Vec<libtest_mimic::Trial>, String>,
    libtest: Vec<String>,
) -> ExitCode {
    let arguments = libtest_mimic::Arguments::from_iter(libtest);
    match trials {
        Ok(trials) if trials.is_empty() => {
            eprintln!("{command}: no test found");
            ExitCode::from(2)
        }
        Ok(trials) => libtest_mimic::run(&arguments, trials).exit_code(),
        Err(e) => {
            eprintln!("{command}: {e}");
            ExitCode::from(2)
        }
    }
}

/// Arguments naming existing files or directories, and the rest (libtest's, with argv[0]).
fn split(words: Vec<String>) -> (Vec<PathBuf>, Vec<String>) {
    let mut paths = Vec::new();
    let mut libtest = vec!["wasmproc".to_string()];
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        // Options that take a value keep it, even when it happens to name a file.
        let takes_value = matches!(
            word.as_str(),
            "--skip" | "--format" | "--test-threads" | "--logfile" | "--color" | "-Z"
        );
        if takes_value {
            libtest.push(word);
            libtest.extend(words.next());
        } else if !word.starts_with('-') && std::path::Path::new(&word).exists() {
            paths.push(PathBuf::from(word));
        } else {
            libtest.push(word);
        }
    }
    (paths, libtest)
}
