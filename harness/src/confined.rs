//! Files inside a directory a scenario bound (`directories`), read and written the way its
//! guest sees them: a path is relative, has no `..`, and resolves inside the directory even
//! through symlinks the guest planted (resolution is wasmtime-wasi's own, cap-primitives).
//! Reading takes only a regular file and at most a bound, so a FIFO does not hang the check
//! and a huge file does not fill memory.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Component, Path};

use cap_primitives::fs::{FollowSymlinks, OpenOptions, OpenOptionsExt};

/// Checks a path written in a scenario: relative, plain names only (`a/b.txt`, not `../x`,
/// `/etc/x` or `a/./b`).
pub fn check_path(path: &str) -> Result<(), String> {
    let plain = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && !path.split('/').any(|part| part == "." || part == "..");
    if plain {
        Ok(())
    } else {
        Err(format!(
            "`{path}` must be a relative path inside the directory (plain names, no `..`, `.` or leading `/`)"
        ))
    }
}

/// The bytes of the regular file at `path` inside `dir`: at most `max`, or None when it holds
/// more (what more it holds is not read).
pub fn read(dir: &Path, path: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
    let start = File::open(dir)?;
    let mut options = OpenOptions::new();
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer.
    options.read(true).custom_flags(libc::O_NONBLOCK);
    let file = cap_primitives::fs::open(&start, Path::new(path), &options)?;
    match wasmproc_runtime::source_file::read_opened(&file, max) {
        Ok(bytes) => Ok(Some(bytes)),
        // What read_opened says of a file larger than `max`.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether anything (a symlink too, dangling or not) is at `path` inside `dir`.
pub fn exists(dir: &Path, path: &str) -> io::Result<bool> {
    let start = File::open(dir)?;
    match cap_primitives::fs::stat(&start, Path::new(path), FollowSymlinks::No) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes a file at `path` inside `dir`, creating its parent directories.
pub fn write(dir: &Path, path: &str, content: &[u8]) -> io::Result<()> {
    let start = File::open(dir)?;
    let path = Path::new(path);
    if let Some(parent) = path.parent() {
        let mut made = std::path::PathBuf::new();
        for part in parent.components() {
            made.push(part);
            match cap_primitives::fs::create_dir(
                &start,
                &made,
                &cap_primitives::fs::DirOptions::new(),
            ) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    cap_primitives::fs::open(&start, path, &options)?.write_all(content)
}

/// Creates a symlink at `path` inside `dir` whose target is `target`, as given (it may point
/// anywhere: scenarios plant escapes on purpose; the link itself is made inside `dir`).
pub fn symlink(dir: &Path, path: &str, target: &str) -> io::Result<()> {
    let start = File::open(dir)?;
    cap_primitives::fs::symlink_contents(target, &start, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_plain_and_relative() {
        for good in ["a", "a/b.txt", "dir/sub/file"] {
            check_path(good).unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./a",
            "a/./b",
            "a/..",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reading_does_not_leave_the_directory_nor_block_nor_fill_memory() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        symlink(d, "leak", outside.path().join("secret").to_str().unwrap()).unwrap();
        symlink(d, "up", "../..").unwrap();
        assert!(read(d, "leak", 100).is_err());
        assert!(read(d, "up/etc/hostname", 100).is_err());
        // A symlink that stays inside is followed, as the guest would.
        write(d, "sub/real.txt", b"inside").unwrap();
        symlink(d, "alias.txt", "sub/real.txt").unwrap();
        assert_eq!(read(d, "alias.txt", 100).unwrap().unwrap(), b"inside");
        // A FIFO is refused at once.
        let status = std::process::Command::new("mkfifo")
            .arg(d.join("fifo"))
            .status()
            .unwrap();
        assert!(status.success());
        let err = read(d, "fifo", 100).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // More than the bound is not read.
        std::fs::write(d.join("big"), vec![b'x'; 1000]).unwrap();
        assert_eq!(read(d, "big", 999).unwrap(), None);
        assert_eq!(read(d, "big", 1000).unwrap().map(|b| b.len()), Some(1000));
    }

    #[test]
    fn existence_is_checked_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        symlink(d, "dangling", "nowhere").unwrap();
        symlink(d, "etc", "/etc").unwrap();
        assert!(exists(d, "dangling").unwrap());
        assert!(!exists(d, "missing").unwrap());
        // /etc/passwd exists on the host, but not inside the directory.
        assert!(exists(d, "etc/passwd").is_err());
    }

    #[test]
    fn writing_does_not_follow_links_out() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        symlink(d, "out", outside.path().to_str().unwrap()).unwrap();
        assert!(write(d, "out/planted", b"x").is_err());
        assert!(symlink(d, "out/link", "x").is_err());
        assert!(!outside.path().join("planted").exists());
        assert!(!outside.path().join("link").exists());
    }
}
