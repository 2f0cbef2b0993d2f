#!/usr/bin/env bash
# How mcrd and mcrctl scale with the number of rules (issue 19, item 8).
#
# For each size N (default 1000 10000 100000) it writes a config of N rules spread like an
# IPTV head-end's channel list: most groups on one input (80%), the rest over three more
# inputs, every rule to one output; `[dataplane] fast_path` is --fast-path (default auto). Then it times, each bounded by --timeout seconds:
#   check   `mcrctl config check FILE` (wall, user+sys)
#   ready   mcrd start until it answers a ping with all N rules listed
#   reload  `mcrctl config reload` after one rule's port changed
#   ping    --pings `mcrctl ping` round trips (p50, p99, max; each includes starting mcrctl),
#           and (with python3) p50 / p99 of --pings pings on the socket itself: the daemon's reply
#           (`analyzer bench pings`: p50 is the median, p99 the nearest rank)
#   list    `mcrctl rules list` (wall), and `rules list --limit 10` where the client has it
#   idle    mcrd's CPU (user+sys ticks) over --idle seconds with no traffic, % of one core
# A step that does not finish in time is reported as ">T s (did not finish)" and the next size
# is still measured. Prints one table line per size, with the load average.
#
#   scripts/bench-rules.sh [--bin DIR] [--analyzer PATH] [--sizes "1000 10000"]
#                          [--timeout SECONDS] [--pings N] [--idle SECONDS] [--fast-path auto|off]
#
# Needs root and iproute2; binaries from DIR (default $CARGO_TARGET_DIR/release), the analyzer
# from PATH (default DIR/analyzer).
# Namespace `mcrbr<pid>`; it and mcrd (by PID) are removed on every exit.
# Exit codes: 0 measured; 2 bad flags or cannot run here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release ANALYZER='' SIZES="1000 10000 100000" TIMEOUT=60 PINGS=200 IDLE=10 FAST=auto
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --analyzer) ANALYZER=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --pings) PINGS=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --fast-path) FAST=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench-rules: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in TIMEOUT PINGS IDLE; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench-rules: --${v,,} wants a positive integer, got ${!v}" >&2; exit 2; }
done
[[ $FAST == auto || $FAST == off ]] || { echo "bench-rules: --fast-path is auto or off, got $FAST" >&2; exit 2; }
for n in $SIZES; do
  [[ $n =~ ^[1-9][0-9]*$ && $n -le 1000000 ]] || { echo "bench-rules: --sizes wants numbers 1..1000000, got $n" >&2; exit 2; }
done
cannot() { echo "bench-rules: cannot run: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || cannot "needs root (network namespaces)"
for b in mcrd mcrctl; do [ -x "$BIN/$b" ] || cannot "$BIN/$b is missing (cargo build --release -p relay --bins, or --bin DIR)"; done
ANALYZER=${ANALYZER:-$BIN/analyzer}
[ -x "$ANALYZER" ] || cannot "$ANALYZER is missing (cargo build --release -p analyzer, or --analyzer PATH)"

NS=mcrbr$$
DIR=$(mktemp -d /tmp/bench-rules.XXXXXX)
SOCK=$DIR/mcrd.sock
MCRD=''
cleanup() {
  [ -n "$MCRD" ] && kill "$MCRD" 2>/dev/null && wait "$MCRD" 2>/dev/null
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
# Inputs in0..in3 and the output out0, each a veth whose peer stays in the namespace.
for i in in0 in1 in2 in3 out0; do
  nsx ip link add "$i" type veth peer name "p$i"
  nsx ip link set "$i" up
  nsx ip link set "p$i" up
done
nsx ip addr add 192.0.2.1/24 dev out0

# Seconds since the epoch with nanoseconds, and a difference in ms.
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }

gen() { # N FILE [PORT_OF_RULE_0]
  local n=$1 file=$2 p0=${3:-5000}
  {
    printf 'allow_empty = false\n[dataplane]\nworkers = 1\nring_frames = 64\nbuffer_count = 64\nfast_path = "%s"\n' "$FAST"
    printf '[control]\nsocket = "%s"\n' "$SOCK"
    awk -v n="$n" -v p0="$p0" 'BEGIN {
      for (i = 0; i < n; i++) {
        # 80% on in0, the rest round-robin on in1..in3.
        inp = (i % 5 != 4) ? "in0" : "in" (1 + int(i / 5) % 3)
        g = i
        port = (i == 0) ? p0 : 5000
        printf "[[rule]]\nname = \"ch%d\"\ninput = \"%s\"\ngroup = \"239.%d.%d.%d\"\nport = %d\n", i, inp, 1 + int(g / 65536), int(g / 256) % 256, g % 256, port
        printf "outputs = [{ dest = \"239.200.%d.%d\", port = 6000, interface = \"out0\", ttl = 4 }]\n", int(g / 256) % 256, g % 256
      }
    }'
  } >"$file"
}

printf 'bench-rules: %s, binaries %s\n' "$(uptime)" "$BIN" >&2
printf '%-7s | %-18s | %-10s | %-10s | %-22s | %-10s | %-10s | %s\n' rules check ready reload "ping p50/p99/max ms" list "list --limit" "idle CPU"
for n in $SIZES; do
  cfg=$DIR/rules-$n.toml
  gen "$n" "$cfg"
  load=$(cut -d' ' -f1-3 /proc/loadavg)

  # config check
  # bash's `time` gives wall and user+sys of the command (TIMEFORMAT: "%R %U %S").
  if { TIMEFORMAT='%R %U %S'; time timeout "$TIMEOUT" ip netns exec "$NS" "$BIN/mcrctl" config check "$cfg" >"$DIR/check.out" 2>"$DIR/check.err"; } 2>"$DIR/check.time"; then
    check=$(awk '{ printf "%.0f ms (cpu %.0f ms)", $1 * 1000, ($2 + $3) * 1000 }' "$DIR/check.time")
  else
    check=">${TIMEOUT} s ($(head -c 80 "$DIR/check.err"))"
  fi

  # start to ready: answers a ping and lists N rules
  t0=$(now)
  # `ip netns exec` execs mcrd: $! is mcrd.
  ip netns exec "$NS" "$BIN/mcrd" --config "$cfg" >"$DIR/mcrd-$n.log" 2>&1 &
  MCRD=$!
  ready=">${TIMEOUT} s (did not finish)"
  deadline=$(($(date +%s) + TIMEOUT))
  while [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$MCRD" 2>/dev/null; do
    if grep -q "mcrd ready" "$DIR/mcrd-$n.log" && "$BIN/mcrctl" --socket "$SOCK" ping >/dev/null 2>&1; then
      ready="$(ms "$t0" "$(now)") ms"
      break
    fi
    sleep 0.05
  done
  if ! kill -0 "$MCRD" 2>/dev/null; then
    ready="mcrd exited: $(tail -c 120 "$DIR/mcrd-$n.log" | tr '\n' ' ')"
  fi

  reload='-' pings='-' list='-' limit='-' idle='-'
  if [[ $ready == *" ms" ]]; then
    # idle CPU first, before our own requests disturb it
    read -r u0 s0 < <(awk '{ print $14, $15 }' "/proc/$MCRD/stat")
    sleep "$IDLE"
    read -r u1 s1 < <(awk '{ print $14, $15 }' "/proc/$MCRD/stat")
    hz=$(getconf CLK_TCK)
    idle=$(awk -v t=$((u1 + s1 - u0 - s0)) -v hz="$hz" -v s="$IDLE" 'BEGIN { printf "%.1f%%", 100 * t / hz / s }')

    : >"$DIR/pings"
    for _ in $(seq "$PINGS"); do
      p0=$(now)
      # A failed ping counts as 999999 ms, so it shows in the tail.
      timeout "$TIMEOUT" "$BIN/mcrctl" --socket "$SOCK" ping >/dev/null 2>&1 || { echo 999999 >>"$DIR/pings"; continue; }
      { ms "$p0" "$(now)"; echo; } >>"$DIR/pings"
    done
    # The daemon's own reply time, without starting a process per ping (python3, if here):
    # one round trip in ms a line.
    socket=() no_socket=''
    if command -v python3 >/dev/null; then
      if timeout "$TIMEOUT" python3 - "$SOCK" "$PINGS" >"$DIR/socket-pings" 2>/dev/null <<'PY'; then
import socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    t = time.perf_counter()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b'{"version":1,"request":"ping"}\n')
    buf = b''
    while not buf.endswith(b'\n'):
        c = s.recv(4096)
        if not c:
            break
        buf += c
    s.close()
    print((time.perf_counter() - t) * 1000)
    time.sleep(0.005)
PY
        socket=(--socket "$DIR/socket-pings")
      else
        no_socket=' (socket -)'
      fi
    fi
    pings="$("$ANALYZER" bench pings "$DIR/pings" "${socket[@]}")$no_socket"

    t0=$(now)
    if timeout "$TIMEOUT" "$BIN/mcrctl" --socket "$SOCK" rules list >"$DIR/list" 2>&1; then
      list="$(ms "$t0" "$(now)") ms"
    else
      list=">${TIMEOUT} s"
    fi
    t0=$(now)
    if timeout "$TIMEOUT" "$BIN/mcrctl" --socket "$SOCK" rules list --limit 10 >/dev/null 2>&1; then
      limit="$(ms "$t0" "$(now)") ms"
    else
      limit="n/a"
    fi

    gen "$n" "$cfg" 5001
    t0=$(now)
    if timeout "$TIMEOUT" "$BIN/mcrctl" --socket "$SOCK" config reload >"$DIR/reload" 2>&1; then
      reload="$(ms "$t0" "$(now)") ms"
    else
      reload=">${TIMEOUT} s ($(head -c 60 "$DIR/reload"))"
    fi
  fi
  kill "$MCRD" 2>/dev/null || true
  wait "$MCRD" 2>/dev/null || true
  MCRD=''
  printf '%-7s | %-18s | %-10s | %-10s | %-22s | %-10s | %-10s | %s  (load %s)\n' "$n" "$check" "$ready" "$reload" "$pings" "$list" "$limit" "$idle" "$load"
done
