#!/usr/bin/env bash
# Sets up a fresh Debian machine for MCR: system packages the tests and benchmarks use, then a
# release build of what the relay demo needs (mcrd, mcrctl, trafficgen: the workspace's
# default members, about 2 minutes on 2 cores). The analyzer (polars, several minutes more) is
# built by `--analyzer`, or by the scripts that use it on their first run. Run as root.
# `--deps-only` installs packages and stops (the GitHub workflow uses it: one package list).
# `--list-packages` prints that list. `--deb`
# also installs what building and checking the Debian package needs (lintian from apt,
# cargo-deb with `cargo install --locked`, a pinned version so CI builds the same package); plain
# tests do not need them.
set -euo pipefail
cd "$(dirname "$0")/.."

deps_only=0 deb=0 analyzer=0 list=0
for arg in "$@"; do
  case "$arg" in
    --deps-only) deps_only=1 ;;
    --deb) deb=1 ;;
    --analyzer) analyzer=1 ;;
    --list-packages) list=1 ;;
    *) echo "setup: unknown flag $arg (flags: --deps-only, --deb, --analyzer, --list-packages)" >&2; exit 2 ;;
  esac
done

# The one list of system packages (the GitHub workflow runs --deps-only rather than naming
# them again): PACKAGE:COMMAND is installed when COMMAND is missing, PACKAGE:/FILE when FILE is.
# promtool (package prometheus) checks the /metrics text in the relay's end-to-end tests.
wanted="iproute2:ip ethtool:ethtool nftables:nft smcroute:smcrouted socat:socat procps:sysctl jq:jq util-linux:setpriv ffmpeg:ffmpeg tshark:tshark prometheus:promtool curl:curl"
# iperf2 (Debian's iperf): a real client through mcrd over IPv6 (scripts/ipv6-clients.sh).
wanted="$wanted iperf:iperf"
# The relay's kernel fast path (relay/build.rs): clang compiles the BPF program against the
# kernel UAPI and libbpf headers; the vendored libbpf (libbpf-sys) is built with make, cc and
# pkg-config and links libelf and zlib.
wanted="$wanted clang:clang make:make gcc:cc pkg-config:pkg-config libbpf-dev:/usr/include/bpf/bpf_helpers.h"
wanted="$wanted libelf-dev:/usr/include/libelf.h zlib1g-dev:/usr/include/zlib.h linux-libc-dev:/usr/include/linux/bpf.h"
if [ "$deb" = 1 ]; then
  # scripts/test-systemd.sh: the packaged unit under a real systemd in a container.
  wanted="$wanted lintian:lintian adduser:adduser systemd-container:systemd-nspawn debootstrap:debootstrap"
fi
# --list-packages: every package of the list, one a line, installed or not
# (scripts/check-workflows.sh reads it).
if [ "$list" = 1 ]; then
  for pkg_what in $wanted; do echo "${pkg_what%%:*}"; done
  exit 0
fi
need=()
for pkg_what in $wanted; do
  pkg=${pkg_what%%:*}; what=${pkg_what#*:}
  case $what in
    /*) [ -e "$what" ] || need+=("$pkg") ;;
    *) command -v "$what" >/dev/null 2>&1 || need+=("$pkg") ;;
  esac
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages ${need[*]}; run this script as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
need_cargo() { command -v cargo >/dev/null || { echo "setup: cargo is not installed (https://rustup.rs)" >&2; exit 1; }; }

# The version scripts/build-deb.sh was checked with (its flags and asset handling).
cargo_deb=3.8.0
if [ "$deb" = 1 ] && ! command -v cargo-deb >/dev/null; then
  need_cargo
  echo "setup: installing cargo-deb $cargo_deb (2-5 min to build)"
  cargo install --locked "cargo-deb@$cargo_deb"
fi
if [ "$deps_only" = 1 ]; then
  exit 0
fi
need_cargo
cargo build --release --bins
echo "setup: binaries in ${CARGO_TARGET_DIR:-target}/release: mcrd mcrctl trafficgen"
if [ "$analyzer" = 1 ]; then
  cargo build --release -p analyzer --bins
  echo "setup: and analyzer"
fi
