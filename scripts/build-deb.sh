#!/usr/bin/env bash
# Builds the Debian packages `mcr` (mcrd, mcrctl, the systemd unit, the config and its
# example, relay.toml(5), man pages, shell completions) and `mcr-bench` (trafficgen, analyzer,
# their pages and completions) and checks them with lintian.
#   scripts/build-deb.sh [--no-lintian]
# Prints the paths of the two .deb files, mcr's first, on its last line. Needs cargo-deb and lintian
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
# Each binary writes its own (crate mcr-docs: `BIN --generate man|bash|zsh|fish DIR`).
for bin in mcrd mcrctl trafficgen analyzer; do
  "$target/release/$bin" --generate man "$docs/man" >/dev/null
  for shell in bash zsh fish; do
    "$target/release/$bin" --generate "$shell" "$docs/completions/$shell" >/dev/null
  done
done
cp relay/packaging/relay.toml.5 "$docs/man/"
gzip -9n "$docs"/man/*

echo "build-deb: cargo deb" >&2
mkdir -p "$target/debian"
debs=()
for crate in relay trafficgen; do
  # --strip: the release profile has no debug info; this drops the symbol tables too.
  deb=$(cargo deb -p "$crate" --no-build --strip --locked --output "$target/debian/" | tail -n 1)
  [ -f "$deb" ] || { echo "build-deb: cargo deb -p $crate did not report a package file (got: $deb)" >&2; exit 1; }
  debs+=("$deb")
done

if [ "$lintian" = 1 ]; then
  echo "build-deb: lintian" >&2
  # Exit status 1 only for errors; warnings and the overrides are shown.
  lintian --fail-on error --info --display-level '>=warning' "${debs[@]}" >&2 || {
    echo "build-deb: lintian found errors in ${debs[*]}" >&2
    exit 1
  }
fi
echo "${debs[@]}"
