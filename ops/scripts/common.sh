# Shared by ops/scripts/dev and ops/scripts/test: checks the build
# prerequisites on Debian/Ubuntu (installing what is missing when run as
# root) and picks a cargo target dir outside the clone, so RocksDB's C++
# build (15-30 minutes on 2 cores) happens once.
#
# SLUICE_PREREQ_ROOT prefixes every system path the checks look at; the
# prerequisite tests (ops/tests/prereqs.rs) point it at fake directory
# layouts, so a wrong check fails CI on any machine.

set -euo pipefail

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

need_cmd() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: '$1' is not installed. $2" >&2
    exit 1
  fi
}

# Prints the path of the libclang that bindgen would load and succeeds, or
# fails printing nothing. bindgen (through clang-sys, loading at run time)
# looks in $LIBCLANG_PATH and the usual library directories for
# libclang.so, libclang-N.so, libclang.so.N or libclang-N.so.N. Other
# libraries whose names start the same way are not libclang:
# libclang-cpp.so.N (package libclang-cpp14, present on many machines that
# lack libclang) is the C++ API and bindgen cannot use it.
find_libclang() {
  local root="${1:-}"
  local dirs=()
  if [ -n "${LIBCLANG_PATH:-}" ]; then
    if [ -f "$LIBCLANG_PATH" ]; then
      echo "$LIBCLANG_PATH"
      return 0
    fi
    dirs+=("$LIBCLANG_PATH")
  fi
  local restore_nullglob
  restore_nullglob=$(shopt -p nullglob || true)
  shopt -s nullglob
  dirs+=("$root"/usr/lib/llvm-*/lib "$root"/usr/lib/*-linux-gnu "$root"/usr/lib64
         "$root"/usr/lib "$root"/usr/local/lib)
  local dir candidate found=""
  for dir in "${dirs[@]}"; do
    for candidate in "$dir"/libclang.so "$dir"/libclang-[0-9]*.so \
                     "$dir"/libclang.so.[0-9]* "$dir"/libclang-[0-9]*.so.[0-9]*; do
      if [ -e "$candidate" ]; then
        found="$candidate"
        break 2
      fi
    done
  done
  eval "$restore_nullglob"
  [ -n "$found" ] || return 1
  echo "$found"
}

# Installs the Debian packages named in the arguments when running as root
# with apt-get; otherwise stops with the exact command to run.
install_packages() {
  [ $# -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing prerequisites: $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "error: missing prerequisites: $*" >&2
    echo "run:   sudo apt-get install -y $*" >&2
    exit 1
  fi
}

# RocksDB's Rust bindings run bindgen, which needs libclang at build time,
# and a C++ compiler and make for RocksDB itself.
ensure_build_deps() {
  need_cmd cargo "Install the Rust toolchain: https://rustup.rs"
  local missing=()
  find_libclang "${SLUICE_PREREQ_ROOT:-}" >/dev/null || missing+=(libclang-dev)
  command -v c++ >/dev/null 2>&1 || missing+=(g++)
  command -v make >/dev/null 2>&1 || missing+=(make)
  [ ${#missing[@]} -eq 0 ] && return 0
  install_packages "${missing[@]}"
  if ! find_libclang "${SLUICE_PREREQ_ROOT:-}" >/dev/null; then
    echo "error: libclang is still missing after installing ${missing[*]}" >&2
    echo "set LIBCLANG_PATH to the directory that holds libclang.so" >&2
    exit 1
  fi
}

# The S3 checkpoint store's tests (storage/tests/blob_s3.rs) run against
# moto's S3 server, from PyPI. Installs it with pip when running as root
# and python3 cannot import it; otherwise stops with the exact command.
# Debian's own python3 refuses pip installs outside a virtualenv (PEP 668);
# PIP_BREAK_SYSTEM_PACKAGES lets root's install go through there, and pips
# too old to know it ignore it.
MOTO_INSTALL="python3 -m pip install 'moto[server]'"
ensure_moto() {
  if command -v python3 >/dev/null 2>&1 \
      && python3 -c 'import moto.server' >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v python3 >/dev/null 2>&1 \
      || ! python3 -m pip --version >/dev/null 2>&1; then
    echo "error: the checkpoint storage tests need moto's S3 server, and python3 or its pip is missing" >&2
    echo "run:   sudo apt-get install -y python3 python3-pip && $MOTO_INSTALL" >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: the checkpoint storage tests need moto's S3 server (PyPI: moto[server])" >&2
    echo "run:   $MOTO_INSTALL" >&2
    exit 1
  fi
  echo "installing moto's S3 server for the checkpoint storage tests" >&2
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check 'moto[server]' >&2
  if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    echo "error: python3 still cannot import moto.server after: $MOTO_INSTALL" >&2
    exit 1
  fi
}

# What the test suite needs besides the build: iproute2's `ip` (the
# partition tests put masters in network namespaces of their own) and
# moto's S3 server (the S3 checkpoint store's tests).
ensure_test_deps() {
  local missing=()
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  install_packages "${missing[@]}"
  ensure_moto
}

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
mkdir -p "$CARGO_TARGET_DIR"
