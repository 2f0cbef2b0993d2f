# shellcheck shell=bash
# Small helpers shared by scripts/pipeline_veth.sh and scripts/nightly.sh: messages, errors,
# bounded waits and killing by PID. Sourced, never run. Every function does one thing.

PL_PROG=${PL_PROG:-pipeline}

# pl_runtime_dir: sets PL_RUN to a new short directory for the relays' Unix sockets. A socket
# path holds at most 107 bytes (sun_path), so sockets never go under the output tree, which
# lies as deep as the checkout; the caller removes PL_RUN in its exit trap.
pl_runtime_dir() { PL_RUN=$(mktemp -d /tmp/mcr.XXXXXX); }

# pl_sock HOPDIR NAME: the socket of relay NAME (mcrd, smcroute) of the hop whose files go to
# HOPDIR (.../raw/hopN), in PL_RUN: /tmp/mcr.XXXXXX/hopN.NAME.sock.
pl_sock() { printf '%s/%s.%s.sock\n' "${PL_RUN:?pl_runtime_dir first}" "$(basename "$1")" "$2"; }

# pl_ensure_analyzer PATH ROOT: the analyzer is not part of scripts/setup.sh's default build (polars
# takes several minutes); build it on first use when PATH is where `cargo build --release`
# puts it, else say how to get it.
pl_ensure_analyzer() {
  local path=$1 root=$2 release
  [ -x "$path" ] && return 0
  release=$(cd "$root" && realpath -m "${CARGO_TARGET_DIR:-target}/release/analyzer")
  [ "$(realpath -m "$path")" = "$release" ] ||
    pl_die "$path missing: build it (cargo build --release -p analyzer) or pass --analyzer"
  pl_log "building the analyzer on first use (cargo build --release -p analyzer; about 5 minutes on 2 cores)"
  (cd "$root" && cargo build --release -p analyzer --bins) >&2 || pl_die "building the analyzer failed"
}

# pl_analyzer_said TOOL RC LOG: says what an analyzer exit status means. 1 is the analyzer's
# verdict "regression found", not a failure of the script that ran it.
pl_analyzer_said() {
  case $2 in
    0) pl_log "analyzer $1: no regression" ;;
    1) pl_log "analyzer $1: regression found (a verdict, not an error; see the report)" ;;
    *) pl_log "analyzer $1 failed (exit $2): see $3" ;;
  esac
}

# pl_commit ROOT: the commit the checkout at ROOT is at, `-dirty` after it when tracked files
# differ from it (a run's record carries it, so a regression can be traced to a commit);
# `unknown` outside a git checkout.
pl_commit() {
  local sha
  sha=$(git -C "$1" rev-parse HEAD 2>/dev/null) || { echo unknown; return 0; }
  if git -C "$1" diff --quiet HEAD -- 2>/dev/null; then echo "$sha"; else echo "$sha-dirty"; fi
}

# pl_bin_commit BIN ROOT: the commit the binaries in BIN were built from, as their `--version`
# says (mcrd's, else trafficgen's), the full hash where ROOT's repository has it, `-dirty` kept;
# the checkout's own commit (pl_commit) when neither binary names one. The record carries the
# binaries' commit, not the scripts': a bisection runs one checkout's scripts on many commits.
pl_bin_commit() {
  local bin=$1 root=$2 exe short dirty='' full
  for exe in "$bin/mcrd" "$bin/trafficgen"; do
    [ -x "$exe" ] || continue
    short=$("$exe" --version 2>/dev/null | sed -n 's/.*(revision \([0-9a-f]\{7,40\}\(-dirty\)\{0,1\}\);.*/\1/p')
    [ -n "$short" ] || continue
    case $short in *-dirty) dirty=-dirty short=${short%-dirty} ;; esac
    full=$(git -C "$root" rev-parse --verify --quiet "$short^{commit}" 2>/dev/null) || full=$short
    echo "$full$dirty"
    return 0
  done
  pl_commit "$root"
}

# pl_hostport ADDR PORT: ADDR:PORT, with an IPv6 address in brackets ([ff3e::1]:5000).
pl_hostport() {
  case $1 in *:*) printf '[%s]:%s\n' "$1" "$2" ;; *) printf '%s:%s\n' "$1" "$2" ;; esac
}

pl_log() { printf '%s: %s\n' "$PL_PROG" "$*" >&2; }

pl_die() {
  pl_log "error: $*"
  exit 1
}

# pl_usage_error MSG: a bad flag or value; the caller's usage text follows, exit 2.
pl_usage_error() {
  pl_log "$*"
  pl_log "run with --help for the flags"
  exit 2
}

# pl_need_uint FLAG VALUE: VALUE must be a whole number.
pl_need_uint() {
  [[ $2 =~ ^[0-9]+$ ]] || pl_usage_error "$1 needs a whole number, got '$2'"
}

# pl_wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds; fails after SECONDS.
pl_wait_for() {
  local tries=$(($1 * 10))
  shift
  local i
  for ((i = 0; i < tries; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# pl_wait_pid PID SECONDS: wait for a child to exit, at most SECONDS; returns its status, or
# 124 after killing it (TERM, then KILL) when it overstayed.
pl_wait_pid() {
  local pid=$1 limit=$(($2 * 10)) i
  for ((i = 0; i < limit; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    pl_log "process $pid still running after $2 s: stopping it"
    pl_stop_pid "$pid"
    return 124
  fi
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}

# pl_stop_pid PID: SIGTERM, up to 5 s grace, then SIGKILL. Only ever a PID we started.
pl_stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# pl_ns_secs NS: nanoseconds as seconds with 9 decimals (for analyzer text inputs).
pl_ns_secs() { printf '%d.%09d' $(($1 / 1000000000)) $(($1 % 1000000000)); }
