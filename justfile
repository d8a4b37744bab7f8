# wasmproc tasks. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

# Run every test: unit tests and the conformance scenarios.
test *args:
    cargo test --workspace {{args}}

# Run only the conformance scenarios (pass a filter or --list after it).
conformance *args:
    cargo test -p wasmproc-harness --test conformance -- {{args}}

# Spawn a process and print its EXIT: just spawn wasmproc.yaml myns:compute_worker 6 7
spawn *args:
    cargo run -q -p wasmproc -- spawn {{args}}

# Build the guests into guests/dist (installs the guest toolchain when missing).
guests:
    guests/build.sh "$(pwd)/guests/dist"

# Rebuild the guests in a scratch directory and fail if any byte differs from guests/dist.
verify-guests:
    guests/build.sh --verify

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p wasmproc-runtime --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc -p wasmproc-runtime --no-deps --all-features

# Benchmarks (criterion): the scheduler and Lua scripts at scale, each beside its baseline measured in the same run.
bench *args:
    cargo bench -p wasmproc-benches --bench scheduler --bench scripts --bench serve -- {{args}}
