#!/usr/bin/env bash
# Builds the Debian package `mcr` (mcrd, mcrctl, trafficgen, analyzer, the systemd unit, the
# example config, man pages, shell completions) and checks it with lintian.
#   scripts/build-deb.sh [--no-lintian]
# Prints the path of the .deb on its last line. Needs cargo-deb and lintian
# (`scripts/setup.sh --deps-only --deb`). Exit codes: 0 built (lintian found no errors),
# 1 the build failed or lintian found errors, 2 bad flags or a missing tool.
set -euo pipefail
cd "$(dirname "$0")/.."

lintian=1
for arg in "$@"; do
  case "$arg" in
    --no-lintian) lintian=0 ;;
    *) echo "build-deb: unknown flag $arg (flags: --no-lintian)" >&2; exit 2 ;;
  esac
done
command -v cargo-deb >/dev/null || { echo "build-deb: cargo-deb is missing; run scripts/setup.sh --deps-only --deb" >&2; exit 2; }
if [ "$lintian" = 1 ]; then
  command -v lintian >/dev/null || { echo "build-deb: lintian is missing; run scripts/setup.sh --deps-only --deb" >&2; exit 2; }
fi
target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)

echo "build-deb: release build" >&2
cargo build --release --locked --workspace --bins

# Man pages and completions from the binaries' own clap definitions, where the package's
# assets (relay/Cargo.toml, [package.metadata.deb]) expect them. Man pages are gzipped as
# Debian policy wants (-n: no timestamp, so the package is reproducible).
docs="$target/release/mcr-docs"
rm -rf "$docs"
echo "build-deb: man pages and completions" >&2
cargo run --release --locked -q -p analyzer --example mcr-docs -- "$docs" >&2
gzip -9n "$docs"/man/*

echo "build-deb: cargo deb" >&2
mkdir -p "$target/debian"
# --strip: the release profile has no debug info; this drops the symbol tables too.
deb=$(cargo deb -p relay --no-build --strip --locked --output "$target/debian/" | tail -n 1)
[ -f "$deb" ] || { echo "build-deb: cargo deb did not report a package file (got: $deb)" >&2; exit 1; }

if [ "$lintian" = 1 ]; then
  echo "build-deb: lintian" >&2
  # Exit status 1 only for errors; warnings and the overrides are shown.
  lintian --fail-on error --info --display-level '>=warning' "$deb" >&2 || {
    echo "build-deb: lintian found errors in $deb" >&2
    exit 1
  }
fi
echo "$deb"
