//! The files below a directory, for loaders that take a directory of inputs (manifests,
//! scenarios, test suites). Symlinks are followed, since users link shared inputs in, but each
//! directory and each file is taken once (by device and inode): a link to `.` or to an
//! ancestor neither loops nor yields a file twice.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The files below `root` that `keep` accepts, in path order. A path that cannot be
/// examined (a dangling link, a link loop) is given to `keep` as a file, so that its reader
/// reports why.
pub fn files_below(
    root: &Path,
    keep: &mut dyn FnMut(&Path) -> io::Result<bool>,
) -> io::Result<Vec<PathBuf>> {
    let mut walk = Walk {
        seen: HashSet::new(),
        found: Vec::new(),
        keep,
    };
    let metadata = std::fs::metadata(root)?;
    walk.seen.insert((metadata.dev(), metadata.ino()));
    walk.dir(root)?;
    let mut found = walk.found;
    found.sort();
    Ok(found)
}

struct Walk<'a> {
    /// Directories and files taken so far.
    seen: HashSet<(u64, u64)>,
    found: Vec<PathBuf>,
    keep: &'a mut dyn FnMut(&Path) -> io::Result<bool>,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path) -> io::Result<()> {
        let mut children = std::fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?;
        // The first of two paths to one file is the one kept, so the order is fixed.
        children.sort();
        for child in children {
            match std::fs::metadata(&child) {
                Ok(metadata) => {
                    if !self.seen.insert((metadata.dev(), metadata.ino())) {
                        continue;
                    }
                    if metadata.is_dir() {
                        self.dir(&child)?;
                    } else if (self.keep)(&child)? {
                        self.found.push(child);
                    }
                }
                Err(_) => {
                    if (self.keep)(&child)? {
                        self.found.push(child);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn all(root: &Path) -> Vec<PathBuf> {
        files_below(root, &mut |_| Ok(true)).unwrap()
    }

    #[test]
    fn links_to_the_directory_itself_or_an_ancestor_are_followed_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.yaml"), "").unwrap();
        symlink(".", root.join("self1")).unwrap();
        symlink(".", root.join("self2")).unwrap();
        symlink("..", root.join("sub/up")).unwrap();
        symlink("a.yaml", root.join("sub/b.yaml")).unwrap();
        assert_eq!(all(root), vec![root.join("sub/a.yaml")]);
    }

    #[test]
    fn a_dangling_link_is_handed_over_as_a_file() {
        let dir = tempfile::tempdir().unwrap();
        symlink("nowhere", dir.path().join("x.yaml")).unwrap();
        symlink("loop", dir.path().join("loop")).unwrap();
        assert_eq!(
            all(dir.path()),
            vec![dir.path().join("loop"), dir.path().join("x.yaml")]
        );
    }
}
