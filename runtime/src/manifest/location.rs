//! Where in a manifest file a problem is: serde_norway's location moved in front of its
//! message, and the line that declares each entry.

use std::path::Path;

use super::ManifestError;
use crate::error::ErrorKind;

/// A YAML error as a manifest error, located at serde_norway's line and column.
pub(super) fn yaml_error(error: &serde_norway::Error, file: &Path) -> ManifestError {
    let location = error.location();
    ManifestError {
        kind: ErrorKind::InvalidManifest,
        file: file.to_path_buf(),
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        entry: None,
        message: strip_location(&error.to_string()),
    }
}

/// The message without serde_norway's trailing "at line L column C": the location is printed
/// in front instead, compiler-style.
pub fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// Finds the line that declares each entry (`name: <name>`), scanning forward so that entries
/// are matched in file order. Best effort: a line number is a help, not a requirement.
pub(super) struct EntryLines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> EntryLines<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        EntryLines {
            lines: text.lines().collect(),
        }
    }

    pub(super) fn find(&self, name: &str, cursor: &mut usize) -> Option<usize> {
        let found = (*cursor..self.lines.len()).find(|&i| {
            let line = self.lines[i].trim_start();
            let line = line.strip_prefix('-').map_or(line, str::trim_start);
            line.strip_prefix("name:")
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\''))
                == Some(name)
        })?;
        *cursor = found + 1;
        Some(found + 1)
    }
}
