//! `wasmproc test`: run YAML scenarios (the `conformance/` format) against your own guests,
//! with libtest's output and flags.

use std::path::PathBuf;
use std::process::ExitCode;

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

pub fn test(args: TestArgs) -> ExitCode {
    let mut paths = Vec::new();
    let mut libtest = vec!["wasmproc test".to_string()];
    let mut words = args.words.into_iter();
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
    if paths.is_empty() {
        eprintln!("wasmproc test: no scenario file or directory among the arguments");
        return ExitCode::from(2);
    }
    let arguments = libtest_mimic::Arguments::from_iter(libtest);
    match wasmproc_harness::trials_for(&paths) {
        Ok(trials) if trials.is_empty() => {
            eprintln!(
                "wasmproc test: no scenario (a YAML file with a top-level `scenario:`) found"
            );
            ExitCode::from(2)
        }
        Ok(trials) => libtest_mimic::run(&arguments, trials).exit_code(),
        Err(e) => {
            eprintln!("wasmproc test: {e}");
            ExitCode::from(2)
        }
    }
}
