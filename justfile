# wasmproc tasks. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]
# Arguments reach recipes as "$@", never as text pasted into a shell line (where `$(...)` in an
# argument would run).
set positional-arguments

# Run every test: unit tests and the conformance scenarios.
test *args:
    cargo test --workspace "$@"

# Run only the conformance scenarios (pass a filter or --list after it).
conformance *args:
    cargo test -p wasmproc-harness --test conformance -- "$@"

# Spawn a process and print its EXIT: just spawn wasmproc.yaml myns:compute_worker 6 7
spawn *args:
    cargo run -q -p wasmproc -- spawn "$@"

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
    cargo bench -p wasmproc-benches --bench scheduler --bench scripts --bench serve -- "$@"

# Judged by the runtime's tests and the conformance scenarios (.cargo/mutants.toml); results in
# mutants.out/, figures in conformance/MUTANTS.md.
# Mutation testing of runtime files (just mutants runtime/src/imports.rs), or of the lines changed since the last commit.
mutants *files:
    command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
    if [ "$#" -gt 0 ]; then \
      args=(); for f in "$@"; do args+=(-f "$f"); done; \
      cargo mutants "${args[@]}"; \
    else \
      git diff HEAD > "${TMPDIR:-/tmp}/wasmproc-mutants.diff"; \
      cargo mutants --in-diff "${TMPDIR:-/tmp}/wasmproc-mutants.diff"; \
    fi
