# shellcheck shell=bash
# Small helpers shared by scripts/pipeline_veth.sh and scripts/nightly.sh: messages, errors,
# bounded waits and killing by PID. Sourced, never run. Every function does one thing.

PL_PROG=${PL_PROG:-pipeline}

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
