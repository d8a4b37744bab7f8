//! A process that isolates compiles (`compile_isolation::isolate`) and cannot start its
//! compiler process: loading a binary is the host's failure (`host_failure`), not the
//! binary's (`invalid_binary`, as it said before). A binary of its own: `isolate` is for the
//! whole process.

#[path = "all/common.rs"]
mod common;

use wasmproc_runtime::compile_isolation::{isolate, CompileLimits, Isolation};
use wasmproc_runtime::manifest::Digest;
use wasmproc_runtime::ErrorKind;

#[test]
fn a_compiler_process_that_cannot_start_is_a_host_failure_naming_it() {
    isolate(Isolation {
        program: "/nonexistent/wasmproc".into(),
        args: vec!["compile-worker".into()],
        limits: CompileLimits::default(),
    });
    let dist = common::dist().canonicalize().unwrap();
    let hash = Digest::of(&std::fs::read(dist.join("compute.wasm")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let rt = common::load_written(
        dir.path(),
        &format!(
            "namespace: t\nentries:\n  - {{ name: bins, kind: fs.directory, directory: {} }}\n  - {{ name: host, kind: process.host }}\n  - {{ name: c, kind: process.wasm, fs: bins, path: compute.wasm, hash: \"{hash}\", method: compute }}\n",
            dist.display()
        ),
    );
    let error = rt
        .spawn("t:c", "t:host", &[6.into(), 7.into()])
        .expect_err("nothing can compile");
    assert_eq!(error.kind(), ErrorKind::HostFailure, "{error}");
    assert!(
        error
            .to_string()
            .contains("could not start the compiler process `/nonexistent/wasmproc`"),
        "{error}"
    );
}
