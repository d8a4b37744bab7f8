//! Reports what a guest sees through WASI and tries filesystem operations, so that scenarios
//! can assert the sandbox from the inside.

// `std::os::wasi::fs::symlink_path` is still unstable; guests build with RUSTC_BOOTSTRAP.
#![feature(wasi_ext)]

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};

wit_bindgen::generate!({ world: "probe", path: "../wit" });

struct Probe;

impl Guest for Probe {
    fn environment() -> Environment {
        Environment {
            args: std::env::args().collect(),
            env: std::env::vars().collect(),
            cwd: wasip2::cli::environment::initial_cwd(),
        }
    }

    fn try_fs(op: String, path: String, target: String) -> Result<String, String> {
        let result = match op.as_str() {
            "read" => fs::File::open(&path).and_then(|mut f| {
                let mut text = String::new();
                f.read_to_string(&mut text).map(|_| text)
            }),
            "write" => fs::write(&path, b"written by probe").map(ok),
            "append" => OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(b"appended"))
                .map(ok),
            "truncate" => OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .map(ok),
            "create-dir" => fs::create_dir(&path).map(ok),
            "remove-file" => fs::remove_file(&path).map(ok),
            "remove-dir" => fs::remove_dir(&path).map(ok),
            "rename" => fs::rename(&path, &target).map(ok),
            "symlink" => std::os::wasi::fs::symlink_path(&target, &path).map(ok),
            "set-len" => OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(0))
                .map(ok),
            "set-times" => fs::File::open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::UNIX_EPOCH))
                .map(ok),
            "list" => fs::read_dir(&path).and_then(|entries| {
                let mut names = entries
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<Result<Vec<_>, _>>()?;
                names.sort();
                Ok(names.join(","))
            }),
            "metadata" => fs::metadata(&path).map(|m| {
                if m.is_dir() { "dir" } else { "file" }.to_string()
            }),
            // Opens `path` (relative to the preopen named `target`) until an open fails,
            // keeping every file (`hoard`) or only a read stream of each, its descriptor
            // dropped (`hoard-streams`): `<opened> <error>`.
            "hoard" => return Ok(hoard(&target, &path, false)),
            "hoard-streams" => return Ok(hoard(&target, &path, true)),
            other => return Err(format!("unknown op `{other}`")),
        };
        result.map_err(|e| format!("{:?}", e.kind()))
    }
}

fn hoard(preopen: &str, path: &str, streams: bool) -> String {
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let Some((dir, _)) = wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, name)| name == preopen)
    else {
        return format!("0 no preopen {preopen}");
    };
    let (mut files, mut kept_streams) = (Vec::new(), Vec::new());
    loop {
        let opened = dir.open_at(
            PathFlags::empty(),
            path,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        );
        let kept = match opened {
            Ok(file) if streams => file.read_via_stream(0).map(|s| kept_streams.push(s)),
            Ok(file) => Ok(files.push(file)),
            Err(e) => Err(e),
        };
        if let Err(e) = kept {
            return format!("{} {}", files.len() + kept_streams.len(), e.name());
        }
    }
}

fn ok<T>(_: T) -> String {
    "ok".to_string()
}

export!(Probe);
