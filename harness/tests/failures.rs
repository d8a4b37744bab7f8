//! A failing scenario must say which file, which step, what was expected and what came.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmproc_harness::Scenario;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance/apps/fixtures.yaml")
        .canonicalize()
        .unwrap()
}

fn run(yaml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case.yaml");
    std::fs::write(
        &file,
        yaml.replace("FIXTURES", &fixtures().display().to_string()),
    )
    .unwrap();
    let loader = Arc::new(wasmproc_runtime::engine::loader().unwrap());
    let scenario = Scenario::load(&file).map_err(|e| e.to_string())?;
    scenario.run(&loader).map_err(|f| f.to_string())
}

#[test]
fn a_wrong_value_names_file_step_expected_and_actual() {
    let err = run(r#"
scenario: wrong on purpose
manifest: FIXTURES
steps:
  - spawn: { entry: fixtures:compute_worker, args: [6, 7], as: w }
  - receive: { expect: { from: w, value: 43 } }
"#)
    .unwrap_err();
    assert!(
        err.contains("case.yaml: steps[1] (receive): expected value 43, got 42"),
        "{err}"
    );
    assert!(err.contains(r#""value":42"#), "the event is shown: {err}");
}

#[test]
fn an_unexpected_refusal_shows_the_error() {
    let err = run(r#"
scenario: wrong on purpose
manifest: FIXTURES
steps:
  - spawn: { entry: fixtures:tampered_worker, args: [6, 7] }
"#)
    .unwrap_err();
    assert!(err.contains("steps[0] (spawn)"), "{err}");
    assert!(err.contains("error[hash_mismatch]"), "{err}");
}

#[test]
fn a_wrong_error_kind_shows_both_kinds() {
    let err = run(r#"
scenario: wrong on purpose
manifest: FIXTURES
steps:
  - spawn: { entry: fixtures:tampered_worker, args: [6, 7], expect_error: { kind: bad_argument } }
"#)
    .unwrap_err();
    assert!(
        err.contains("expected an error of kind `bad_argument`, got `hash_mismatch`"),
        "{err}"
    );
}

#[test]
fn a_missing_event_and_an_unexpected_one_are_both_failures() {
    let err = run(r#"
scenario: nothing comes
manifest: FIXTURES
steps:
  - receive: { timeout: 50ms, expect: { value: 1 } }
"#)
    .unwrap_err();
    assert!(
        err.contains("expected an event, got nothing within 50ms"),
        "{err}"
    );
    let err = run(r#"
scenario: something comes
manifest: FIXTURES
steps:
  - spawn: { entry: fixtures:compute_worker, args: [1, 1] }
  - receive: { timeout: 5s, expect: nothing }
"#)
    .unwrap_err();
    assert!(
        err.contains("expected nothing, got {\"type\":\"EXIT\""),
        "{err}"
    );
}

#[test]
fn a_malformed_scenario_names_file_line_and_column() {
    let err =
        run("scenario: broken\nmanifest: FIXTURES\nsteps:\n  - spawn: { entry: [\n").unwrap_err();
    assert!(
        err.contains("case.yaml:5:1:") || err.contains("case.yaml:4:"),
        "{err}"
    );
}

#[test]
fn a_failing_lua_step_fails_the_scenario_with_the_scripts_message() {
    let err = run(r#"
scenario: lua fails on purpose
manifest: FIXTURES
steps:
  - lua: { code: "assert(1 == 2, 'one is not two')" }
"#)
    .unwrap_err();
    assert!(err.contains("steps[0] (lua): the script failed"), "{err}");
    assert!(err.contains("one is not two"), "{err}");
}

fn sandbox() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance/apps/sandbox.yaml")
        .canonicalize()
        .unwrap()
}

#[test]
fn a_files_check_does_not_follow_a_guests_symlink_to_a_host_file() {
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("secret.txt");
    std::fs::write(&secret, "host-only content").unwrap();
    // The guest plants a relative link climbing out of its mount to the host file (it may
    // create it; it cannot follow it). The check must not follow it either.
    let target = format!("../../../../../../../../../..{}", secret.display());
    let err = run(&format!(
        r#"
scenario: the guest plants a link out
manifest: {}
directories:
  sandbox:rw_dir: {{ files: {{ keep.txt: kept }} }}
steps:
  - spawn: {{ entry: sandbox:fs, args: [symlink, /rw/leak, "{target}"] }}
  - receive: {{ expect: {{ value: {{ ok: ok }} }} }}
  - files: {{ dir: sandbox:rw_dir, expect: {{ leak: "anything" }} }}
"#,
        sandbox().display()
    ))
    .unwrap_err();
    assert!(
        err.contains("steps[2] (files): sandbox:rw_dir/leak"),
        "{err}"
    );
    assert!(
        !err.contains("host-only content"),
        "the host file leaked: {err}"
    );
}

#[test]
fn an_absent_check_does_not_look_through_a_link_out() {
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("there.txt"), "").unwrap();
    let err = run(&format!(
        r#"
scenario: absent through a link out
manifest: {}
directories:
  sandbox:rw_dir: {{ symlinks: {{ out: "{}" }} }}
steps:
  - files: {{ dir: sandbox:rw_dir, absent: [out/there.txt] }}
"#,
        sandbox().display(),
        host.path().display()
    ))
    .unwrap_err();
    // Neither "absent" (it was looked for outside) nor "exists": it cannot be checked.
    assert!(err.contains("out/there.txt: cannot check"), "{err}");
}

#[test]
fn scenario_paths_out_of_a_directory_are_refused_when_the_scenario_loads() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    // Aimed at this test's own directory, so that a harness without the check writes there.
    let up = "../../../../../../../../../..";
    for (field, path) in [
        ("files", format!("{up}{}", victim.display())),
        ("files", victim.display().to_string()),
        ("symlinks", format!("{up}{}", victim.display())),
    ] {
        let value = if field == "files" { "written" } else { "/etc" };
        let yaml = format!(
            r#"
scenario: writes out of its directory
manifest: {}
directories:
  sandbox:rw_dir: {{ {field}: {{ "{path}": "{value}" }} }}
"#,
            sandbox().display()
        );
        let err = run(&yaml).unwrap_err();
        assert!(
            err.contains("directories.sandbox:rw_dir:") && err.contains("must be a relative path"),
            "{field} {path}: {err}"
        );
    }
    let err = run(&format!(
        "scenario: s\nmanifest: {}\ndirectories: {{ sandbox:rw_dir: {{}} }}\nsteps:\n  - files: {{ dir: sandbox:rw_dir, expect: {{ ../x: y }} }}\n",
        sandbox().display()
    ))
    .unwrap_err();
    assert!(
        err.contains("steps[0]: `../x` must be a relative path"),
        "{err}"
    );
    assert!(!victim.exists());
}

#[test]
fn a_link_made_by_the_scenario_does_not_lead_a_later_one_out() {
    let outside = tempfile::tempdir().unwrap();
    // `out` sorts before `out/planted`: the first link is made, the second must not be made
    // through it.
    let err = run(&format!(
        r#"
scenario: a link through a link
manifest: {}
directories:
  sandbox:rw_dir: {{ symlinks: {{ out: "{}", out/planted: x }} }}
"#,
        sandbox().display(),
        outside.path().display()
    ))
    .unwrap_err();
    assert!(err.contains("directories: out/planted -> x"), "{err}");
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
}

#[test]
fn deeply_nested_scenarios_are_refused_at_once() {
    let started = std::time::Instant::now();
    let err = run(&format!(
        "scenario: deep\nmanifest: FIXTURES\nsteps:\n  - spawn: {{ entry: fixtures:compute_worker, args: {} }}\n",
        "[".repeat(100_000)
    ))
    .unwrap_err();
    assert!(err.contains("case.yaml:4:"), "{err}");
    assert!(
        err.contains("nested more than 64 collections deep"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
