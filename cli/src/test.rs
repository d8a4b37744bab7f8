//! `wasmproc test`: run YAML scenarios (the `conformance/` format) against your own guests,
//! with libtest's output and flags.

use std::path::PathBuf;
use std::process::ExitCode;
use wasmproc_harness::suite_report::SuiteReport;
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
    /// Also write a report, once every scenario has run: `junit=PATH` (JUnit XML) or
    /// `json=PATH` (the WASI test suite runner's JSON shape); per scenario its name, outcome,
    /// duration, and the failure naming the file and step. May be given more than once.
    #[arg(long, value_name = "KIND=PATH", value_parser = parse_report)]
    report: Vec<Report>,
}

pub fn test(mut args: TestArgs, cache: &CacheConfig) -> ExitCode {
    if let Err(code) = take_reports("wasmproc test", &mut args.words, &mut args.report) {
        return code;
    }
    let (paths, libtest) = split(args.words);
    if paths.is_empty() {
        eprintln!("wasmproc test: no scenario file or directory among the arguments");
        return ExitCode::from(2);
    }
    let report = SuiteReport::default();
    let code = run_trials(
        "wasmproc test",
        wasmproc_harness::trials_for(&paths, cache, &report),
        libtest,
    );
    write_reports("wasmproc test", &report, &args.report).unwrap_or(code)
}

/// A report to write: its format and where.
#[derive(Clone, Debug)]
pub struct Report {
    kind: ReportKind,
    path: PathBuf,
}

#[derive(Clone, Copy, Debug)]
enum ReportKind {
    Json,
    Junit,
}

/// Writes `reports` of `report`; the exit status 2 when one cannot be written.
fn write_reports(command: &str, report: &SuiteReport, reports: &[Report]) -> Option<ExitCode> {
    for Report { kind, path } in reports {
        let text = match kind {
            ReportKind::Json => {
                serde_json::to_string_pretty(&report.to_json()).unwrap_or_default() + "\n"
            }
            ReportKind::Junit => report.to_junit(),
        };
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("{command}: cannot write the report {}: {e}", path.display());
            return Some(ExitCode::from(2));
        }
    }
    None
}

#[derive(clap::Args)]
pub struct WasiTestsuiteArgs {
    /// Known failures: the suite runner's TOML (`expectations/<runtime>/<os>.toml`: suites of
    /// tests `expected = "fail"` or `action = "skip"`), or a JSON file
    /// `{ "skip": [names], "fail": [names] }` with names `<suite>/<test>`.
    #[arg(long, value_name = "FILE")]
    expectations: Option<PathBuf>,
    /// Also write a report: `json=PATH`, in the shape of the suite runner's JSON reporter
    /// (per suite the counts of each outcome; per test its outcome, duration and failures), or
    /// `junit=PATH` (JUnit XML). May be given more than once.
    #[arg(long, value_name = "KIND=PATH", value_parser = parse_report)]
    report: Vec<Report>,
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

pub fn wasi_testsuite(mut args: WasiTestsuiteArgs, cache: &CacheConfig) -> ExitCode {
    if let Err(code) = take_reports("wasmproc wasi-testsuite", &mut args.words, &mut args.report) {
        return code;
    }
    let (dirs, libtest) = split(args.words);
    if dirs.is_empty() {
        eprintln!("wasmproc wasi-testsuite: no test-suite directory among the arguments");
        return ExitCode::from(2);
    }
    let expectations = match &args.expectations {
        None => Ok(Default::default()),
        Some(path) => wasmproc_harness::wasi_testsuite::Expectations::load(path),
    };
    let report = SuiteReport::default();
    let trials = expectations
        .and_then(|e| wasmproc_harness::wasi_testsuite::trials(&dirs, e, cache, &report));
    let code = run_trials("wasmproc wasi-testsuite", trials, libtest);
    write_reports("wasmproc wasi-testsuite", &report, &args.report).unwrap_or(code)
}

/// `--report KIND=PATH` (or `--report=KIND=PATH`) given after the paths, where clap leaves
/// it among the words: moved to `reports`.
fn take_reports(
    command: &str,
    words: &mut Vec<String>,
    reports: &mut Vec<Report>,
) -> Result<(), ExitCode> {
    let mut kept = Vec::with_capacity(words.len());
    let mut rest = std::mem::take(words).into_iter();
    while let Some(word) = rest.next() {
        let value = match word.strip_prefix("--report") {
            Some("") => rest.next(),
            Some(inline) if inline.starts_with('=') => Some(inline[1..].to_string()),
            _ => {
                kept.push(word);
                continue;
            }
        };
        match value.as_deref().map(parse_report) {
            Some(Ok(report)) => reports.push(report),
            Some(Err(e)) => {
                eprintln!("{command}: --report {e}");
                return Err(ExitCode::from(2));
            }
            None => {
                eprintln!("{command}: --report needs KIND=PATH (junit=PATH or json=PATH)");
                return Err(ExitCode::from(2));
            }
        }
    }
    *words = kept;
    Ok(())
}

/// `json=PATH` or `junit=PATH`.
fn parse_report(text: &str) -> Result<Report, String> {
    let (kind, path) = match text.split_once('=') {
        Some(("json", path)) => (ReportKind::Json, path),
        Some(("junit", path)) => (ReportKind::Junit, path),
        _ => return Err(format!("`{text}`: expected junit=PATH or json=PATH")),
    };
    if path.is_empty() {
        return Err(format!("`{text}`: the report needs a path"));
    }
    Ok(Report {
        kind,
        path: PathBuf::from(path),
    })
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
