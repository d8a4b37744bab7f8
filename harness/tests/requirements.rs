//! Every requirement in conformance/REQUIREMENTS.md has a proof, every scenario covers only
//! listed requirements, and every Rust test the table names exists.

use std::path::Path;

use wasmproc_harness::requirements::{parse, Coverage};
use wasmproc_harness::Scenario;

#[test]
fn every_requirement_has_a_proof_and_every_covered_id_exists() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let conformance = workspace.join("conformance");
    let table = std::fs::read_to_string(conformance.join("REQUIREMENTS.md")).unwrap();
    let requirements = parse(&table).unwrap();
    assert!(requirements.len() >= 20, "{requirements:?}");
    let scenarios: Vec<(String, Vec<String>)> = wasmproc_harness::discover(&conformance)
        .unwrap()
        .into_iter()
        .map(|file| {
            let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
            (file.display().to_string(), scenario.covers)
        })
        .collect();
    let problems = Coverage::of(requirements, &scenarios).problems(&workspace);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
