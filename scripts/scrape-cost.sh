#!/usr/bin/env bash
# What a Prometheus scrape of mcrd's /metrics costs (relay/README.md, "Monitoring"):
#
#   [S-src] trafficgen send eth0 10.1.1.50 --veth-- eth0 10.0.0.2 [S-relay: mcrd, 1 worker]
#                                                     eth1 192.0.2.1 --veth-- eth0 192.0.2.10 [S-dst] trafficgen recv
#
# 1. Time per scrape: SCRAPES sequential `GET /metrics` by one curl process (no process start
#    in the numbers), mcrd idle; then median, p99 and max of curl's time_total, and the body size.
# 2. The longest worker pause while scraped: PPS datagrams/s for SECONDS through the one mcrd
#    hop (userspace path: fast_path = "off", so every datagram goes through the worker a scrape
#    holds), in three conditions interleaved REPEATS times: nobody reads the counters (`none`),
#    curl scrapes /metrics every 10 ms (`scrape`), and `mcrctl stats --json` runs in a loop
#    (`stats`, the counter read a scrape must not exceed). A worker held by a reader delays
#    every datagram behind it, so the receiver's one-way latency (max, p99.9) and its loss show
#    the pauses; mcrd's ring drops say whether a loss was the worker's.
# What is made of it (`analyzer bench scrape-cost OUT`, kept as OUT/report.txt): the idle
# scrapes' median, p99 and max, one line per run, the readers' times during the traffic and the
# medians per condition. OUT keeps what it is made from: curl's times, the tools' records and
# mcrd's stats before and after each run.
#
#   scripts/scrape-cost.sh [--bin DIR] [--analyzer PATH] [--out DIR] [--pps N] [--seconds N]
#                          [--repeats N] [--scrapes N] [--size BYTES]
#
# Needs root, curl, iproute2, the release binaries (default $CARGO_TARGET_DIR/release) and the
# analyzer (default BIN/analyzer: cargo build --release -p analyzer).
# S is `mcrsc<pid>`; namespaces and processes (by PID) are removed on every exit.
# Exit codes: 0 measured; 1 a run failed; 2 bad flags or cannot run here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release ANALYZER='' OUT='' PPS=100000 SECONDS_=3 REPEATS=3
SCRAPES=1000 SIZE=1400
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --analyzer) ANALYZER=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --pps) PPS=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --scrapes) SCRAPES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "scrape-cost: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in PPS SECONDS_ REPEATS SCRAPES SIZE; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "scrape-cost: --$(tr 'A-Z_' 'a-z' <<<"${v%_}") wants a positive integer, got ${!v}" >&2; exit 2; }
done
cannot() { echo "scrape-cost: cannot run: $*" >&2; exit 2; }
fail() { echo "scrape-cost: FAIL: $*" >&2; exit 1; }
say() { echo "scrape-cost: $*" >&2; }
[ "$(id -u)" -eq 0 ] || cannot "needs root (network namespaces)"
for cmd in curl ip ethtool; do command -v "$cmd" >/dev/null || cannot "$cmd is missing (scripts/setup.sh installs it)"; done
for b in mcrd mcrctl trafficgen; do [ -x "$BIN/$b" ] || cannot "$BIN/$b is missing (scripts/setup.sh builds it, or --bin DIR)"; done
ANALYZER=${ANALYZER:-$BIN/analyzer}
[ -x "$ANALYZER" ] || cannot "$ANALYZER is missing (cargo build --release -p analyzer, or --analyzer PATH)"
OUT=${OUT:-$(mktemp -d /tmp/scrape-cost.XXXXXX)}
mkdir -p "$OUT"
# The analyzer reads every run in OUT: an earlier session's runs there would join this one's.
rm -f "$OUT"/{none,scrape,stats}-[0-9]*.*
# The control socket in a short directory of its own: a socket path holds at most 107 bytes and
# OUT may be deep.
RUN=$(mktemp -d /tmp/mcr.XXXXXX)

S=mcrsc$$
NS=("$S-src" "$S-relay" "$S-dst")
PIDS=()
cleanup() {
  local status=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$RUN"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

for n in "${NS[@]}"; do
  ip netns add "$n"
  ip -n "$n" link set lo up
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done
# shellcheck source=scripts/lib/veth_link.sh
. "$ROOT/scripts/lib/veth_link.sh"
veth_link "$S" "$S-src" eth0 10.1.1.50/24 "$S-relay" eth0 10.0.0.2/24
veth_link "$S" "$S-relay" eth1 192.0.2.1/24 "$S-dst" eth0 192.0.2.10/24
ip -n "$S-src" route add 224.0.0.0/4 dev eth0

cat >"$OUT/relay.toml" <<EOF
log_level = "warn"
[dataplane]
workers = 1
fast_path = "off"
[control]
socket = "$RUN/mcrd.sock"
[metrics]
listen = "127.0.0.1:19108"
[[rule]]
name = "cam1"
input = "eth0"
group = "239.1.1.1"
port = 5000
outputs = [{ dest = "239.10.1.1", port = 5000, interface = "eth1", ttl = 8 }]
EOF
ip netns exec "$S-relay" "$BIN/mcrd" --config "$OUT/relay.toml" >"$OUT/mcrd.out" 2>"$OUT/mcrd.log" &
PIDS+=($!)
mcrd_pid=$!
url=http://127.0.0.1:19108/metrics
for _ in $(seq 100); do
  ip netns exec "$S-relay" curl -sf -o /dev/null "$url" && break
  kill -0 "$mcrd_pid" 2>/dev/null || { cat "$OUT/mcrd.log" >&2; fail "mcrd exited at start"; }
  sleep 0.1
done
ip netns exec "$S-relay" curl -sf -o /dev/null "$url" || fail "mcrd does not answer $url"

# A curl config of N transfers of /metrics to /dev/null (one process, a new connection each).
scrape_config() { for _ in $(seq "$1"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done; }
# ---- 1. time per scrape, idle ------------------------------------------------------------
scrape_config "$SCRAPES" >"$OUT/scrapes.curl"
ip netns exec "$S-relay" curl -sf -K "$OUT/scrapes.curl" -w '%{time_total} %{size_download}\n' \
  >"$OUT/idle-scrapes.txt" || fail "a scrape failed"
# Only the idle scrapes are in OUT yet: this prints their line.
"$ANALYZER" bench scrape-cost "$OUT" >&2 || fail "analyzer bench scrape-cost failed on $OUT"

# ---- 2. the worker under traffic, with and without readers -------------------------------
count=$((PPS * SECONDS_))
# curl scrapes as long as the traffic lasts (100 a second) and ends by itself (a killed curl
# loses its buffered -w lines); the mcrctl loop is stopped once the traffic ends.
reads=$((SECONDS_ * 100))
scrape_config "$reads" >"$OUT/reader.curl"
# mcrd's counters now, into FILE (the analyzer takes the drops of the ring and the copy path,
# where the worker fell behind, from the two around a run).
relay_stats() {
  "$BIN/mcrctl" --socket "$RUN/mcrd.sock" stats --json >"$1" || fail "mcrctl stats failed"
}
run() { # run CONDITION REPEAT
  local cond=$1 rep=$2 name="$1-$2" reader=''
  relay_stats "$OUT/$name.stats-before.json"
  ip netns exec "$S-dst" "$BIN/trafficgen" recv --group 239.10.1.1:5000 --iface eth0 \
    --duration $((SECONDS_ + 20))s --idle-timeout 2s --exit-on-end --ready-line \
    --json "$OUT/$name.recv.json" >"$OUT/$name.recv.out" 2>&1 &
  local recv_pid=$!
  PIDS+=("$recv_pid")
  for _ in $(seq 50); do grep -q ready "$OUT/$name.recv.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$OUT/$name.recv.out" || fail "$name: the receiver did not start"
  case $cond in
    none) ;;
    scrape)
      ip netns exec "$S-relay" curl -sf -K "$OUT/reader.curl" --rate 100/s -w '%{time_total}\n' \
        >"$OUT/$name.reads.txt" 2>/dev/null &
      reader=$! ;;
    stats)
      (while :; do
         s=$(date +%s%N)
         "$BIN/mcrctl" --socket "$RUN/mcrd.sock" stats --json >/dev/null || exit 1
         ns=$(($(date +%s%N) - s))
         printf '%d.%09d\n' $((ns / 1000000000)) $((ns % 1000000000))
         sleep 0.01
       done) >"$OUT/$name.reads.txt" &
      reader=$! ;;
  esac
  [ -z "$reader" ] || PIDS+=("$reader")
  ip netns exec "$S-src" "$BIN/trafficgen" send --dst 239.1.1.1:5000 --iface eth0 --src 10.1.1.50 \
    --ttl 8 --pps "$PPS" --count "$count" --size "$SIZE" --json "$OUT/$name.send.json" \
    >"$OUT/$name.send.out" 2>&1 || fail "$name: trafficgen send failed"
  wait "$recv_pid" || fail "$name: trafficgen recv failed ($(tail -n 3 "$OUT/$name.recv.out"))"
  case $cond in
    scrape) wait "$reader" || fail "$name: a scrape failed" ;;
    stats) kill "$reader" 2>/dev/null || true; wait "$reader" 2>/dev/null || true ;;
  esac
  relay_stats "$OUT/$name.stats-after.json"
  say "run $name done"
}
for rep in $(seq "$REPEATS"); do
  for cond in none scrape stats; do run "$cond" "$rep"; done
done
say "$REPEATS repeats of $count datagrams at $PPS/s:"
"$ANALYZER" bench scrape-cost "$OUT" >"$OUT/report.txt" || fail "analyzer bench scrape-cost failed on $OUT"
cat "$OUT/report.txt" >&2
kill -0 "$mcrd_pid" 2>/dev/null || fail "mcrd died during the runs"
say "records in $OUT"
