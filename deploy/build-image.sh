#!/usr/bin/env bash
# Builds the `jet:local` image from local files only (no registry, no base image): the release
# binary plus every shared library `ldd` lists, laid out at their paths in a rootfs, copied into
# a FROM-scratch image by deploy/Dockerfile.
#
#   deploy/build-image.sh [TAG]          TAG defaults to jet:local
#   JET_BIN=/path/to/jet deploy/build-image.sh   use an existing binary instead of building
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-jet:local}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jet-target}"

bin="${JET_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release -p jet
    bin="$CARGO_TARGET_DIR/release/jet"
fi
[ -x "$bin" ] || { echo "build-image: no executable at $bin" >&2; exit 1; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/data" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/local/bin/jet"
strip --strip-debug "$root/usr/local/bin/jet" 2>/dev/null || true

# Every library the dynamic loader resolves, and the loader itself, at the same absolute path.
ldd "$bin" | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

cp deploy/Dockerfile "$ctx/Dockerfile"
docker build -t "$tag" "$ctx"
echo "built $tag ($(du -sh "$root" | cut -f1) rootfs)"
