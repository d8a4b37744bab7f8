//! Manifests built to hang or exhaust the loader are refused, quickly, with a located error:
//! directory loops, deep nesting, alias bombs, FIFOs and huge files.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmproc_runtime::{ErrorKind, Manifest};

/// `f` on another thread, failing (instead of hanging) when it takes longer than `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
}

const ONE_ENTRY: &str = "namespace: ns\nentries:\n  - { name: host, kind: process.host }\n";

#[test]
fn a_directory_with_links_to_itself_loads_each_file_once() {
    for links in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.yaml"), ONE_ENTRY).unwrap();
        for i in 0..links {
            symlink(".", dir.path().join(format!("self{i}"))).unwrap();
        }
        // A file linked beside itself is the same file, not a second declaration.
        symlink("app.yaml", dir.path().join("again.yaml")).unwrap();
        let path = dir.path().to_path_buf();
        let loaded = within(Duration::from_secs(10), move || Manifest::load(&path));
        let manifest = loaded.unwrap_or_else(|e| panic!("{links} link(s): {e}"));
        assert_eq!(manifest.entries().count(), 1);
    }
}

#[test]
fn a_link_to_an_ancestor_does_not_loop() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("app.yaml"), ONE_ENTRY).unwrap();
    symlink("../..", sub.join("up")).unwrap();
    symlink("..", sub.join("parent")).unwrap();
    let path = dir.path().to_path_buf();
    let manifest = within(Duration::from_secs(10), move || Manifest::load(&path)).unwrap();
    assert_eq!(manifest.entries().count(), 1);
}

fn refused_quickly(text: String) -> wasmproc_runtime::manifest::ManifestError {
    let started = Instant::now();
    let err = within(Duration::from_secs(10), move || {
        Manifest::parse(&text, Path::new("deep.yaml"))
    })
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    err
}

#[test]
fn deep_nesting_is_refused_at_once_with_its_location() {
    for depth in [100_000, 1_000_000] {
        let err = refused_quickly(format!("namespace: ns\nentries: {}", "[".repeat(depth)));
        assert_eq!(err.kind, ErrorKind::InvalidManifest);
        // The top-level mapping is the first collection, so the 64th `[` is one too many.
        assert_eq!((err.line, err.column), (Some(2), Some(73)), "{err}");
        assert!(
            err.message.contains("nested more than 64 collections deep"),
            "{err}"
        );
    }
    // Block nesting and mappings count alike.
    let err = refused_quickly(format!(
        "namespace: ns\nentries:\n{}x",
        "- ".repeat(100_000)
    ));
    assert!(err.message.contains("nested more than 64"), "{err}");
    let err = refused_quickly(format!("namespace: ns\nx: {}", "{a: ".repeat(100_000)));
    assert!(err.message.contains("nested more than 64"), "{err}");
}

#[test]
fn an_alias_bomb_is_refused_before_it_expands() {
    // 1,000 aliases of a 1,000-item list: a million nodes from 6 KB. serde_norway bounds the
    // number of alias uses (100 per event), not what they repeat: at 100,000 a side this was
    // ten billion nodes from 600 KB, more than memory holds.
    let side = 1000;
    let text = format!(
        "namespace: ns\nentries:\n  - name: a\n    kind: process.host\n    items: &items [{}]\n    copies: [{}]\n",
        vec!["x"; side].join(", "),
        vec!["*items"; side].join(", ")
    );
    let err = refused_quickly(text);
    assert_eq!(err.kind, ErrorKind::InvalidManifest);
    assert!(
        err.message
            .contains("aliases repeat more than 100000 nodes"),
        "{err}"
    );
    // Anchors within reason still work.
    let text = "namespace: ns\nentries:\n  - { name: a, kind: &k process.host }\n  - { name: b, kind: *k }\n";
    let manifest = Manifest::parse(text, Path::new("ok.yaml")).unwrap();
    assert_eq!(manifest.hosts().count(), 2);
}

#[test]
fn a_fifo_or_a_huge_file_is_not_read_as_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("app.yaml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for path in [fifo, dir.path().to_path_buf()] {
        let err = within(Duration::from_secs(10), move || Manifest::load(&path)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidManifest);
        assert!(err.message.contains("not a regular file"), "{err}");
    }
    let big = tempfile::tempdir().unwrap();
    let file = big.path().join("big.yaml");
    let mut text = String::from(ONE_ENTRY);
    text += &format!("# {}\n", "x".repeat(16 << 20));
    std::fs::write(&file, text).unwrap();
    let err = Manifest::load(&file).unwrap_err();
    assert!(
        err.message.contains("larger than the 16777216 bytes"),
        "{err}"
    );
}
