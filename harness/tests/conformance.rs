//! The conformance suite: every scenario under `conformance/` as a test, with libtest's usual
//! flags (`cargo test --test conformance -- compute`, `-- --list`).

use std::path::Path;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance");
    // Canonical, so that failures name `/…/conformance/x.yaml`, not `harness/../conformance`.
    let root = root.canonicalize().unwrap_or(root);
    let trials = match wasmproc_harness::trials(&root) {
        Ok(trials) => trials,
        Err(e) => {
            eprintln!("conformance: {e}");
            std::process::exit(101);
        }
    };
    libtest_mimic::run(&args, trials).exit();
}
