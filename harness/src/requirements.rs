//! Requirements traceability: the requirements a `REQUIREMENTS.md` lists (a Markdown table of
//! `| ID | requirement | Rust tests |`), and what proves each: scenarios that declare
//! `covers: [ID]`, and the Rust tests the table names (`path/file.rs::test_name`, checked to
//! exist).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub id: String,
    pub text: String,
    /// `path/file.rs::test_name`, relative to the workspace.
    pub tests: Vec<String>,
}

/// The requirements, and for each the scenarios that prove it.
#[derive(Debug, Default)]
pub struct Coverage {
    pub requirements: Vec<Requirement>,
    /// By requirement ID: the scenarios covering it, by name.
    pub scenarios: BTreeMap<String, Vec<String>>,
    /// Scenarios naming an ID the table does not list: `(scenario, id)`.
    pub unknown: Vec<(String, String)>,
}

/// The rows of a requirements table: lines `| ID | text | tests |` whose ID looks like `AREA-N`.
pub fn parse(text: &str) -> Result<Vec<Requirement>, String> {
    let mut requirements: Vec<Requirement> = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let Some(id) = cells.first().filter(|id| is_id(id)) else {
            continue;
        };
        if requirements.iter().any(|r| r.id == *id) {
            return Err(format!("requirement {id} is listed twice"));
        }
        let tests = cells
            .get(2)
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        requirements.push(Requirement {
            id: id.to_string(),
            text: cells.get(1).copied().unwrap_or_default().to_string(),
            tests,
        });
    }
    Ok(requirements)
}

fn is_id(cell: &str) -> bool {
    match cell.split_once('-') {
        Some((area, number)) => {
            !area.is_empty()
                && area
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                && !number.is_empty()
                && number.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

impl Coverage {
    /// `requirements` against `scenarios` (`(name, covers)`).
    pub fn of(requirements: Vec<Requirement>, scenarios: &[(String, Vec<String>)]) -> Coverage {
        let mut coverage = Coverage {
            requirements,
            ..Coverage::default()
        };
        for (name, covers) in scenarios {
            for id in covers {
                if coverage.requirements.iter().any(|r| r.id == *id) {
                    coverage
                        .scenarios
                        .entry(id.clone())
                        .or_default()
                        .push(name.clone());
                } else {
                    coverage.unknown.push((name.clone(), id.clone()));
                }
            }
        }
        coverage
    }

    /// What is wrong: requirements without a proof, scenarios naming unknown IDs, named Rust
    /// tests that do not exist below `workspace`.
    pub fn problems(&self, workspace: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        for requirement in &self.requirements {
            if requirement.tests.is_empty() && !self.scenarios.contains_key(&requirement.id) {
                problems.push(format!(
                    "{} has no proof: no scenario covers it and it names no test",
                    requirement.id
                ));
            }
            for test in &requirement.tests {
                if let Err(why) = test_exists(workspace, test) {
                    problems.push(format!("{}: {why}", requirement.id));
                }
            }
        }
        for (scenario, id) in &self.unknown {
            problems.push(format!(
                "{scenario} covers {id}, which REQUIREMENTS.md does not list"
            ));
        }
        problems
    }

    /// The table `wasmproc test --coverage` prints: each requirement and its proofs.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for requirement in &self.requirements {
            let mut proofs: Vec<String> = self
                .scenarios
                .get(&requirement.id)
                .cloned()
                .unwrap_or_default();
            proofs.extend(requirement.tests.iter().cloned());
            let proofs = if proofs.is_empty() {
                "NO PROOF".to_string()
            } else {
                proofs.join(", ")
            };
            out += &format!(
                "{:<10} {}\n           proved by: {proofs}\n",
                requirement.id, requirement.text
            );
        }
        out
    }
}

/// `path/file.rs::name` names a function `name` in that file.
fn test_exists(workspace: &Path, test: &str) -> Result<(), String> {
    let (file, name) = test
        .split_once("::")
        .ok_or_else(|| format!("`{test}` is not `path/file.rs::test_name`"))?;
    let path: PathBuf = workspace.join(file);
    let source = wasmproc_runtime::source_file::read_text(&path, 4 << 20)
        .map_err(|e| format!("`{test}`: {}: {e}", path.display()))?;
    if source.contains(&format!("fn {name}(")) {
        Ok(())
    } else {
        Err(format!("`{test}`: no function `{name}` in {file}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_and_gaps_found() {
        let table = "| ID | Requirement | Rust tests |\n|---|---|---|\n| A-1 | one | |\n| A-2 | two | x.rs::t |\n| not an id | x | |\n";
        let requirements = parse(table).unwrap();
        assert_eq!(requirements.len(), 2);
        assert_eq!(requirements[1].tests, ["x.rs::t"]);
        let coverage = Coverage::of(requirements, &[("s".into(), vec!["A-9".into()])]);
        let problems = coverage.problems(Path::new("/nonexistent"));
        assert!(
            problems.iter().any(|p| p.starts_with("A-1 has no proof")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("s covers A-9")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("A-2: `x.rs::t`")),
            "{problems:?}"
        );
        assert!(parse("| A-1 | x |\n| A-1 | y |").is_err());
    }
}
