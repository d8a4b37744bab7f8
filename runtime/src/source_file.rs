//! Reading a file a user named as input (a manifest, a scenario, a script, a test spec): only
//! a regular file, and at most a bound, so that a FIFO, a device or a huge file found where
//! one is expected cannot hang the reader or fill its memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The text of the regular file at `path` (symlinks followed), refused when it holds more
/// than `max` bytes.
pub fn read_text(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read_bytes(path, max)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// The bytes of the regular file at `path` (symlinks followed), refused when it holds more
/// than `max` bytes.
pub fn read_bytes(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer forever.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    read_opened(&file, max)
}

/// The bytes of an opened file (opened non-blocking, so that a FIFO did not hang the open),
/// refused unless it is a regular file of at most `max` bytes (`InvalidData` when larger).
pub fn read_opened(file: &File, max: u64) -> io::Result<Vec<u8>> {
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the {max} bytes wasmproc reads"),
        )
    };
    if metadata.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // The file may grow after the check.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_large_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let err = read_text(&fifo, 100).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let big = dir.path().join("big");
        std::fs::write(&big, "x".repeat(101)).unwrap();
        assert!(read_text(&big, 100)
            .unwrap_err()
            .to_string()
            .contains("larger than the 100 bytes"));
        assert_eq!(read_text(&big, 101).unwrap().len(), 101);
        assert!(read_text(Path::new("/dev/zero"), 100).is_err());
    }
}
