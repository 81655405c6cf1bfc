# Shared by ops/scripts/dev and ops/scripts/test: checks the build
# prerequisites on Debian/Ubuntu and picks a cargo target dir outside the
# clone, so RocksDB's C++ build (15-30 minutes on 2 cores) happens once.

set -euo pipefail

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

need_cmd() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: '$1' is not installed. $2" >&2
    exit 1
  fi
}

# RocksDB's Rust bindings run bindgen, which needs libclang at build time,
# and a C++ compiler for RocksDB itself.
ensure_build_deps() {
  need_cmd cargo "Install the Rust toolchain: https://rustup.rs"
  local missing=()
  if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 \
     && ! ls /usr/lib/*/libclang*.so* >/dev/null 2>&1; then
    missing+=(libclang-dev)
  fi
  command -v c++ >/dev/null 2>&1 || missing+=(g++)
  command -v make >/dev/null 2>&1 || missing+=(make)
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing build prerequisites: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: missing build prerequisites: ${missing[*]}" >&2
    echo "run:   sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
mkdir -p "$CARGO_TARGET_DIR"
