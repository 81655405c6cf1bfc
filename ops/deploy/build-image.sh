#!/usr/bin/env bash
# Builds the Docker image `sluice:TAG` (default: sluice:dev) from a locally
# built `sluice` binary, with no base image and no registry: the image holds
# the binary and the shared libraries `ldd` says it needs, nothing else.
#
#   ops/deploy/build-image.sh [PATH/TO/sluice] [TAG]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}/debug/sluice}"
tag="${2:-dev}"
if [ ! -x "$bin" ]; then
  echo "error: no sluice binary at $bin; build it first (cargo build --bin sluice)" >&2
  exit 1
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/var/lib/sluice"
cp "$bin" "$ctx/rootfs/usr/local/bin/sluice"
# Every library the binary links, at the path the loader looks for it.
ldd "$bin" | awk '/=>/ {print $3} /^[ \t]*\/[^ ]+ \(/ {print $1}' | while read -r lib; do
  [ -f "$lib" ] || continue
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build -q -t "sluice:$tag" "$ctx" >/dev/null
echo "built image sluice:$tag from $bin"
