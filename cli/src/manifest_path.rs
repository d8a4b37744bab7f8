//! Where `wasmproc run` finds its manifest when none is named.

use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "wasmproc.yaml";

/// `--manifest`, else `$WASMPROC_MANIFEST`, else `wasmproc.yaml` in `cwd` or its nearest
/// ancestor that has one (as cargo finds `Cargo.toml`).
pub fn resolve(given: Option<&Path>, cwd: &Path) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("WASMPROC_MANIFEST").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    cwd.ancestors()
        .map(|dir| dir.join(FILE_NAME))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "no manifest: no {FILE_NAME} in {} or its parents (name one with --manifest or WASMPROC_MANIFEST)",
                cwd.display()
            )
        })
}

/// `resolve` from the current directory.
pub fn resolve_here(given: Option<&Path>) -> Result<PathBuf, String> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    resolve(given, &cwd)
}

/// `resolve_here`, with a failure printed the way the CLI prints refusals (exit status 2).
pub fn resolve_or_refuse(given: Option<&Path>) -> Result<PathBuf, std::process::ExitCode> {
    resolve_here(given).map_err(|message| {
        eprintln!("wasmproc: error[invalid_manifest]: {message}");
        std::process::ExitCode::from(2)
    })
}

/// The runtime over the manifest `given` names (or the one found as [`resolve_here`] says),
/// keeping compiled code in the cache `cache` names; a refusal is printed, exit status 2.
pub fn load_runtime(
    given: Option<&Path>,
    cache: &wasmproc_runtime::code_cache::CacheConfig,
) -> Result<wasmproc_runtime::Runtime, std::process::ExitCode> {
    let manifest = resolve_or_refuse(given)?;
    wasmproc_runtime::Runtime::load_caching(&manifest, cache)
        .map_err(|e| crate::refused(e.kinded()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_wasmproc_yaml_upwards() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(root.path().join(FILE_NAME), "namespace: x\n").unwrap();
        assert_eq!(resolve(None, &nested).unwrap(), root.path().join(FILE_NAME));
        std::fs::write(root.path().join("a").join(FILE_NAME), "namespace: y\n").unwrap();
        assert_eq!(
            resolve(None, &nested).unwrap(),
            root.path().join("a").join(FILE_NAME)
        );
        assert_eq!(
            resolve(Some(Path::new("other.yaml")), &nested).unwrap(),
            Path::new("other.yaml")
        );
    }

    #[test]
    fn says_where_it_looked() {
        let empty = tempfile::tempdir().unwrap();
        let err = resolve(None, empty.path()).unwrap_err();
        assert!(
            err.contains("no wasmproc.yaml in") && err.contains("--manifest"),
            "{err}"
        );
    }
}
