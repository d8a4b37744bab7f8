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
