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
#    the pauses; mcrd's ring drops say whether a loss was the worker's. Prints one line per
#    run and the medians per condition; records in OUT.
#
#   scripts/scrape-cost.sh [--bin DIR] [--out DIR] [--pps N] [--seconds N] [--repeats N]
#                          [--scrapes N] [--size BYTES]
#
# Needs root, curl, jq, iproute2 and the release binaries (default $CARGO_TARGET_DIR/release).
# S is `mcrsc<pid>`; namespaces and processes (by PID) are removed on every exit.
# Exit codes: 0 measured; 1 a run failed; 2 bad flags or cannot run here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release OUT='' PPS=100000 SECONDS_=3 REPEATS=3
SCRAPES=1000 SIZE=1400
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
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
for cmd in curl jq ip ethtool; do command -v "$cmd" >/dev/null || cannot "$cmd is missing (scripts/setup.sh installs it)"; done
for b in mcrd mcrctl trafficgen; do [ -x "$BIN/$b" ] || cannot "$BIN/$b is missing (scripts/setup.sh builds it, or --bin DIR)"; done
OUT=${OUT:-$(mktemp -d /tmp/scrape-cost.XXXXXX)}
mkdir -p "$OUT"
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
# Prints the median, p99 and max (ms) of one number (seconds) per line on stdin.
quantiles_ms() {
  sort -g | awk '{ v[NR] = $1 * 1000 } END {
    if (NR == 0) { print "no samples"; exit }
    p = int(0.99 * NR + 0.999999); if (p > NR) p = NR
    printf "median %.3f ms, p99 %.3f ms, max %.3f ms (%d scrapes)\n", v[int((NR + 1) / 2)], v[p], v[NR], NR }'
}

# ---- 1. time per scrape, idle ------------------------------------------------------------
scrape_config "$SCRAPES" >"$OUT/scrapes.curl"
ip netns exec "$S-relay" curl -sf -K "$OUT/scrapes.curl" -w '%{time_total} %{size_download}\n' \
  >"$OUT/idle-scrapes.txt" || fail "a scrape failed"
body=$(awk 'NR == 1 { print $2 }' "$OUT/idle-scrapes.txt")
say "time per scrape, mcrd idle, body $body bytes: $(cut -d' ' -f1 "$OUT/idle-scrapes.txt" | quantiles_ms)"

# ---- 2. the worker under traffic, with and without readers -------------------------------
count=$((PPS * SECONDS_))
# curl scrapes as long as the traffic lasts (100 a second) and ends by itself (a killed curl
# loses its buffered -w lines); the mcrctl loop is stopped once the traffic ends.
reads=$((SECONDS_ * 100))
scrape_config "$reads" >"$OUT/reader.curl"
# Frames mcrd's packet ring or copy path dropped so far (the worker fell behind).
relay_drops() {
  "$BIN/mcrctl" --socket "$RUN/mcrd.sock" stats --json |
    jq '.totals.kernel_drops + .totals.rx_overflow_frames'
}
run() { # run CONDITION REPEAT
  local cond=$1 rep=$2 name="$1-$2" reader=''
  local drops_before
  drops_before=$(relay_drops)
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
         echo "$(( $(date +%s%N) - s ))" | awk '{ print $1 / 1e9 }'
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
  local reads_done=0
  [ -z "$reader" ] || reads_done=$(wc -l <"$OUT/$name.reads.txt")
  local relay_drops
  relay_drops=$(($(relay_drops) - drops_before))
  jq -c --arg cond "$cond" --argjson rep "$rep" --argjson sent "$count" --argjson reads "$reads_done" \
    --argjson relay_drops "$relay_drops" '
    { condition: $cond, repeat: $rep, sent: $sent, received: .totals.received,
      lost: ($sent - .totals.received), relay_drops: $relay_drops, socket_drops, reads: $reads,
      latency_us: (.streams[0].latency_ns | { p50: (.p50 / 1000), p99: (.p99 / 1000),
                                          p999: (.p999 / 1000), max: (.max / 1000) }) }' \
    "$OUT/$name.recv.json" | tee -a "$OUT/runs.jsonl" >&2
}
: >"$OUT/runs.jsonl"
for rep in $(seq "$REPEATS"); do
  for cond in none scrape stats; do run "$cond" "$rep"; done
done
for cond in scrape stats; do
  say "reader $cond during traffic: $(cat "$OUT"/"$cond"-*.reads.txt | quantiles_ms)"
done
say "medians over $REPEATS repeats of $count datagrams at $PPS/s (latency in us):"
jq -rs 'def median: sort | .[(length - 1) / 2 | floor];
  group_by(.condition)[] | "  \(.[0].condition): lost \(map(.lost) | median) (relay drops \(map(.relay_drops) | median)), latency p50 \(map(.latency_us.p50) | median), p99 \(map(.latency_us.p99) | median), p99.9 \(map(.latency_us.p999) | median), max \(map(.latency_us.max) | median), reads per run \(map(.reads) | median)"' \
  "$OUT/runs.jsonl" >&2
kill -0 "$mcrd_pid" 2>/dev/null || fail "mcrd died during the runs"
say "records in $OUT"
