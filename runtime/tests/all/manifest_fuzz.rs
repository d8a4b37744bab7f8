//! Whatever text a manifest holds, loading it gives a manifest or a located error: never a
//! panic.

use std::path::Path;

use proptest::prelude::*;
use wasmproc_runtime::Manifest;

/// Pieces of real manifests, recombined: more likely to reach deep validation than random bytes.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("namespace: ns\n".to_string()),
        Just("entries:\n".to_string()),
        Just("  - name: a\n".to_string()),
        Just("    kind: process.wasm\n".to_string()),
        Just("    kind: fs.directory\n".to_string()),
        Just("    kind: env.variable\n".to_string()),
        Just("    kind: process.host\n".to_string()),
        Just("    directory: .\n".to_string()),
        Just("    fs: ns:a\n".to_string()),
        Just("    path: /x.wasm\n".to_string()),
        Just("    hash: sha256:0000000000000000000000000000000000000000000000000000000000000000\n".to_string()),
        Just("    method: \"\"\n".to_string()),
        Just("    imports: [wasi:cli, wasi:nope]\n".to_string()),
        Just("    wasi: { cwd: rel, env: [{ id: a, name: X }, { id: a, name: X }], mounts: [{ fs: a, guest: /d }] }\n".to_string()),
        Just("    limits: { max_memory: 12 parsecs, fuel: 0 }\n".to_string()),
        Just("    host: { workers: 0 }\n".to_string()),
        Just("    meta: { command: { name: go } }\n".to_string()),
        "[ -~]{0,30}\n",
    ]
}

proptest! {
    #[test]
    fn recombined_manifests_never_panic(parts in proptest::collection::vec(fragment(), 0..14)) {
        let text = parts.concat();
        let _ = Manifest::parse(&text, Path::new("fuzz.yaml"));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(e) = Manifest::parse(&text, Path::new("fuzz.yaml")) {
            prop_assert!(e.to_string().starts_with("fuzz.yaml"), "{}", e);
        }
    }
}
