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
    /// Run only shard K of N (`1/4`): the scenarios sorted by name, every Nth from the Kth, so
    /// that N machines given 1/N .. N/N run each scenario exactly once.
    #[arg(long, value_name = "K/N", value_parser = parse_partition)]
    partition: Option<Partition>,
    /// Instead of running the scenarios, print each requirement of the requirements file and
    /// the scenarios (`covers: [ID]`) and Rust tests that prove it; exit status 1 when a
    /// requirement has no proof or a scenario names an unknown ID.
    #[arg(long)]
    coverage: bool,
    /// The requirements file for --coverage (default: REQUIREMENTS.md in the first directory
    /// given). Rust tests it names are paths relative to the current directory.
    #[arg(long, value_name = "FILE")]
    requirements: Option<PathBuf>,
}

pub fn test(mut args: TestArgs, cache: &CacheConfig) -> ExitCode {
    if let Err(code) = take_options(
        "wasmproc test",
        &mut args.words,
        &mut args.report,
        &mut args.partition,
    ) {
        return code;
    }
    // Flags clap leaves among the words when they follow the paths.
    args.words.retain(|w| match w.as_str() {
        "--coverage" => {
            args.coverage = true;
            false
        }
        _ => true,
    });
    let (paths, libtest) = split(args.words);
    if paths.is_empty() {
        eprintln!("wasmproc test: no scenario file or directory among the arguments");
        return ExitCode::from(2);
    }
    if args.coverage {
        return coverage(&paths, args.requirements.as_deref());
    }
    let report = SuiteReport::default();
    let trials = wasmproc_harness::trials_for(&paths, cache, &report)
        .map(|trials| partitioned(trials, args.partition));
    let code = run_trials("wasmproc test", trials, libtest);
    write_reports("wasmproc test", &report, &args.report).unwrap_or(code)
}

/// `--coverage`: the requirements and their proofs among the scenarios below `paths`.
fn coverage(paths: &[PathBuf], requirements: Option<&std::path::Path>) -> ExitCode {
    use wasmproc_harness::requirements::{parse, Coverage};
    let file = match requirements {
        Some(file) => file.to_path_buf(),
        None => paths[0].join("REQUIREMENTS.md"),
    };
    let table = match wasmproc_runtime::source_file::read_text(&file, 4 << 20) {
        Ok(text) => parse(&text),
        Err(e) => Err(e.to_string()),
    };
    let requirements = match table {
        Ok(requirements) => requirements,
        Err(e) => {
            eprintln!("wasmproc test: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut scenarios = Vec::new();
    for path in paths {
        let files = if path.is_dir() {
            wasmproc_harness::discover(path).unwrap_or_default()
        } else {
            vec![path.clone()]
        };
        for file in files {
            match wasmproc_harness::Scenario::load(&file) {
                Ok(scenario) => scenarios.push((file.display().to_string(), scenario.covers)),
                Err(e) => {
                    eprintln!("wasmproc test: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let coverage = Coverage::of(requirements, &scenarios);
    print!("{}", coverage.table());
    let problems = coverage.problems(std::path::Path::new("."));
    for problem in &problems {
        println!("problem: {problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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
    /// Run only shard K of N, as for `wasmproc test`.
    #[arg(long, value_name = "K/N", value_parser = parse_partition)]
    partition: Option<Partition>,
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
    if let Err(code) = take_options(
        "wasmproc wasi-testsuite",
        &mut args.words,
        &mut args.report,
        &mut args.partition,
    ) {
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
        .and_then(|e| wasmproc_harness::wasi_testsuite::trials(&dirs, e, cache, &report))
        .map(|trials| partitioned(trials, args.partition));
    let code = run_trials("wasmproc wasi-testsuite", trials, libtest);
    write_reports("wasmproc wasi-testsuite", &report, &args.report).unwrap_or(code)
}

/// wasmproc's own options given after the paths, where clap leaves them among the words
/// (`--report KIND=PATH`, `--partition K/N`, or with `=`): moved to `reports` and `partition`.
fn take_options(
    command: &str,
    words: &mut Vec<String>,
    reports: &mut Vec<Report>,
    partition: &mut Option<Partition>,
) -> Result<(), ExitCode> {
    let refuse = |message: String| {
        eprintln!("{command}: {message}");
        ExitCode::from(2)
    };
    let mut kept = Vec::with_capacity(words.len());
    let mut rest = std::mem::take(words).into_iter();
    while let Some(word) = rest.next() {
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (word.clone(), None),
        };
        if name != "--report" && name != "--partition" {
            kept.push(word);
            continue;
        }
        let Some(value) = inline.or_else(|| rest.next()) else {
            return Err(refuse(format!("{name} needs a value")));
        };
        if name == "--report" {
            reports.push(parse_report(&value).map_err(|e| refuse(format!("--report {e}")))?);
        } else {
            *partition =
                Some(parse_partition(&value).map_err(|e| refuse(format!("--partition {e}")))?);
        }
    }
    *words = kept;
    Ok(())
}

/// Shard `index` (from 1) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    index: usize,
    count: usize,
}

/// `K/N`, with 1 <= K <= N.
fn parse_partition(text: &str) -> Result<Partition, String> {
    let parsed = text
        .split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((index, count)) if index >= 1 && index <= count => Ok(Partition { index, count }),
        _ => Err(format!("`{text}`: expected K/N with 1 <= K <= N, e.g. 2/4")),
    }
}

/// The trials of `partition`'s shard: sorted by name, every Nth from the Kth.
fn partitioned(
    mut trials: Vec<libtest_mimic::Trial>,
    partition: Option<Partition>,
) -> Vec<libtest_mimic::Trial> {
    let Some(Partition { index, count }) = partition else {
        return trials;
    };
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    trials
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % count == index - 1)
        .map(|(_, trial)| trial)
        .collect()
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
