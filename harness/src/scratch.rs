//! Directories guests write into for a scenario or a test, removed when it ends, however deep
//! the guest made them.
//!
//! `std::fs::remove_dir_all` (and so `tempfile`'s cleanup) recurses once per level and keeps
//! each level's directory open on the way down. A guest may nest directories as deep as it
//! likes (each opened relative to the last, no path is ever long), and 30,000 levels
//! overflowed a 2 MiB thread stack, aborting the whole test run; with more stack it ran out of
//! file descriptors at 20,000 and left the tree behind (found attacking, 2026-12-08). Here the
//! tree is taken apart from the top: each directory's subdirectories are first moved up beside
//! it, so no walk goes deeper than two levels, holds more than two directories open, or
//! recurses.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A fresh directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct ScratchDir(Option<tempfile::TempDir>);

impl ScratchDir {
    pub fn new() -> io::Result<Self> {
        Ok(ScratchDir(Some(tempfile::tempdir()?)))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new(""), |dir| dir.path())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        let path = dir.keep();
        if let Err(e) = remove_tree(&path) {
            tracing::warn!(path = %path.display(), "a scratch directory was not removed: {e}");
        }
    }
}

/// Removes `root` and everything below it, following no symbolic link.
pub fn remove_tree(root: &Path) -> io::Result<()> {
    let top = open_dir(libc::AT_FDCWD, root.as_os_str())?;
    // Names given to directories moved up: numbered, never replacing an entry.
    let mut moved = 0u64;
    loop {
        let entries = list(&top)?;
        if entries.is_empty() {
            break;
        }
        let mut progress = false;
        for (name, is_dir) in entries {
            if !is_dir {
                progress |= gone(unlink_at(&top, &name, 0))?;
                continue;
            }
            let dir = match open_dir(top.as_raw_fd(), &name) {
                Ok(dir) => dir,
                // Gone, or no longer a directory: the next round sees what it is.
                Err(_) => continue,
            };
            for (child, child_is_dir) in list(&dir)? {
                if child_is_dir {
                    move_up(&dir, &child, &top, &mut moved)?;
                } else {
                    gone(unlink_at(&dir, &child, 0))?;
                }
                progress = true;
            }
            drop(dir);
            progress |= match unlink_at(&top, &name, libc::AT_REMOVEDIR) {
                Ok(()) => true,
                // Written to meanwhile: taken apart in the next round.
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => false,
                Err(e) => gone(Err(e))?,
            };
        }
        if !progress {
            return Err(io::Error::other("entries below it could not be removed"));
        }
    }
    drop(top);
    std::fs::remove_dir(root)
}

/// Whether an entry was removed: one already gone is no error, and no progress.
fn gone(removed: io::Result<()>) -> io::Result<bool> {
    match removed {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The entries of `dir` but `.` and `..`, each with whether it is a directory itself (a
/// symbolic link is not).
fn list(dir: &File) -> io::Result<Vec<(std::ffi::OsString, bool)>> {
    let mut entries = Vec::new();
    for entry in cap_primitives::fs::read_base_dir(dir)? {
        let entry = entry?;
        entries.push((entry.file_name(), entry.file_type()?.is_dir()));
    }
    Ok(entries)
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// Opens the directory `name` in `at` (a directory descriptor, or the working directory),
/// not following a symbolic link.
fn open_dir(at: libc::c_int, name: &OsStr) -> io::Result<File> {
    let name = c_name(name)?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; `at` is open.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn unlink_at(dir: &File, name: &OsStr, flags: libc::c_int) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: as in `open_dir`; `dir` is an open directory.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves the directory `name` in `dir` up into `top`, under a name of its own.
fn move_up(dir: &File, name: &OsStr, top: &File, moved: &mut u64) -> io::Result<()> {
    let from = c_name(name)?;
    loop {
        *moved += 1;
        let to = c_name(OsStr::new(&format!(".removing-{moved}")))?;
        // SAFETY: as in `open_dir`; both directories are open.
        let renamed = unsafe {
            libc::renameat2(
                dir.as_raw_fd(),
                from.as_ptr(),
                top.as_raw_fd(),
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if renamed == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `depth` directories `a/a/...` in `root`, made relative to each other.
    fn nest(root: &Path, depth: usize) {
        let mut dir = open_dir(libc::AT_FDCWD, root.as_os_str()).unwrap();
        for _ in 0..depth {
            let name = c_name(OsStr::new("a")).unwrap();
            // SAFETY: as in `open_dir`.
            assert_eq!(
                unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) },
                0
            );
            dir = open_dir(dir.as_raw_fd(), OsStr::new("a")).unwrap();
        }
        std::fs::write(format!("/proc/self/fd/{}/leaf", dir.as_raw_fd()), "x").unwrap();
    }

    #[test]
    fn a_tree_deeper_than_a_stack_or_the_descriptors_allow_is_removed() {
        let scratch = ScratchDir::new().unwrap();
        let root = scratch.path().to_path_buf();
        nest(&root, 30_000);
        // A small stack: the removal neither recurses nor keeps the levels open.
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || drop(scratch))
            .unwrap()
            .join()
            .unwrap();
        assert!(!root.exists());
    }

    #[test]
    fn links_are_removed_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("kept"), "x").unwrap();
        let scratch = ScratchDir::new().unwrap();
        let root = scratch.path().to_path_buf();
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("d/e/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("d/out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("kept"), root.join("file_out")).unwrap();
        // Names the removal gives moved directories are taken already.
        std::fs::create_dir(root.join(".removing-1")).unwrap();
        std::fs::write(root.join(".removing-2"), "x").unwrap();
        drop(scratch);
        assert!(!root.exists());
        assert!(outside.path().join("kept").exists());
    }
}
