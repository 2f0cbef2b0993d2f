#!/usr/bin/env bash
# Scrapes mcrd's /metrics with a real Prometheus server (Debian's `prometheus` package) while
# clients that a scrape must not wait behind hold connections to the endpoint: IDLE
# connections that never send a request and IDLE slow ones that send a byte every 0.5 s
# (slowloris), each opened again whenever the server closes it. Passes when every scrape
# succeeded (`up` never 0, so none took longer than the 1 s scrape timeout), as Prometheus
# itself recorded them.
#
#   scripts/check-prometheus.sh [--bin DIR] [--seconds N] [--idle N]
#
#   --bin DIR      where mcrd and trafficgen are (default target/release)
#   --seconds N    how long Prometheus scrapes, 1 s apart (default 30)
#   --idle N       idle connections, and as many slow ones (default 16)
#
# Everything runs in a network namespace `pm<pid>` (mcrd relaying a 1,000 pps stream on its
# loopback, Prometheus, the clients), removed with its processes on every exit. Prints the
# numbers Prometheus recorded and a verdict. Exit codes: 0 passed, 1 a check failed, 2 cannot
# run here (not root, a tool missing).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release
seconds=30
idle=16
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --idle) idle="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "check-prometheus: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
cannot() { echo "check-prometheus: cannot run: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || cannot "needs root (network namespace)"
for cmd in prometheus curl jq python3 ip; do
  command -v "$cmd" >/dev/null || cannot "$cmd is missing (apt install prometheus curl jq)"
done
for b in mcrd trafficgen; do
  [ -x "$bin/$b" ] || cannot "$bin/$b is missing (cargo build --release, or pass --bin)"
done
case "$seconds$idle" in *[!0-9]*) cannot "--seconds and --idle take whole numbers" ;; esac
[ "$seconds" -ge 5 ] || cannot "--seconds must be at least 5"

ns="pm$$"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
in_ns() { ip netns exec "$ns" "$@"; }
# Background processes are started with `ip netns exec` itself (which execs the program), not
# through the function: `$!` of a backgrounded function is a subshell, and killing it would
# leave the program running.

ip netns add "$ns"
in_ns ip link set lo up
cat >"$work/relay.toml" <<EOF
[dataplane]
fast_path = "off"

[control]
socket = "$work/mcrd.sock"

[metrics]
listen = "127.0.0.1:19108"

[[rule]]
name = "lo-stream"
input = "lo"
group = "239.9.9.9"
port = 5000
outputs = [{ dest = "239.9.9.10", port = 5001, interface = "lo" }]
EOF
ip netns exec "$ns" "$bin/mcrd" --config "$work/relay.toml" >"$work/mcrd.out" 2>"$work/mcrd.log" &
pids+=($!)
for _ in $(seq 100); do
  in_ns curl -sf -o /dev/null http://127.0.0.1:19108/metrics && break
  sleep 0.1
done
in_ns curl -sf -o /dev/null http://127.0.0.1:19108/metrics || {
  cat "$work/mcrd.log" >&2
  echo "check-prometheus: FAIL: mcrd's /metrics did not answer" >&2
  exit 1
}

# The clients a scrape must not wait behind, held for the whole run (bounded by its length).
ip netns exec "$ns" python3 - "$idle" "$((seconds + 15))" <<'EOF' &
# Idle clients send nothing, slow ones a byte every 0.5 s; each is opened again as soon as
# the server closes it (its header deadline), so the pressure lasts the whole run.
import select, socket, sys, time
n, hold = int(sys.argv[1]), float(sys.argv[2])
def connect():
    return socket.create_connection(("127.0.0.1", 19108))
idle = [connect() for _ in range(n)]
slow = [connect() for _ in range(n)]
end = time.monotonic() + hold
while time.monotonic() < end:
    for group, sends in ((idle, False), (slow, True)):
        for i, s in enumerate(group):
            closed = False
            if select.select([s], [], [], 0)[0]:
                try:
                    closed = s.recv(65536) == b""
                except OSError:
                    closed = True
            if not closed and sends:
                try:
                    s.send(b"G")
                except OSError:
                    closed = True
            if closed:
                s.close()
                group[i] = connect()
    time.sleep(0.5)
EOF
pids+=($!)
ip netns exec "$ns" "$bin/trafficgen" send --dst 239.9.9.9:5000 --iface lo --pps 1000 \
  --duration "$((seconds + 10))s" >/dev/null 2>&1 &
pids+=($!)

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: mcrd
    static_configs:
      - targets: ["127.0.0.1:19108"]
EOF
ip netns exec "$ns" prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address=127.0.0.1:19090 >"$work/prometheus.log" 2>&1 &
pids+=($!)
echo "check-prometheus: scraping for ${seconds}s beside $idle idle and $idle slow connections" >&2
sleep "$((seconds + 3))"

query() {
  in_ns curl -sf --data-urlencode "query=$1" http://127.0.0.1:19090/api/v1/query |
    jq -r '.data.result[0].value[1] // "none"'
}
window="${seconds}s"
scrapes=$(query "count_over_time(up{job=\"mcrd\"}[$window])")
min_up=$(query "min_over_time(up{job=\"mcrd\"}[$window])")
max_duration=$(query "max_over_time(scrape_duration_seconds{job=\"mcrd\"}[$window])")
rate=$(query "sum(rate(mcr_rx_datagrams_total[10s]))")
closed=$(in_ns curl -sf http://127.0.0.1:19108/metrics |
  awk '/^mcr_metrics_connections_closed_total/ { printf "%s%s", sep, $0; sep = "; " }')
echo "scrapes recorded:            $scrapes (1 s apart over ${seconds}s)"
echo "min(up):                     $min_up"
echo "longest scrape:              ${max_duration} s (timeout 1 s)"
echo "mcrd rx rate (10 s window):  $rate datagrams/s (1,000 pps offered)"
echo "endpoint's closings:         ${closed:-none}"
echo "prometheus: $(in_ns prometheus --version 2>&1 | head -n 1)"
# At least half the scrapes the window could hold (Prometheus takes a moment to start): the
# check is that it scraped, and that no scrape failed.
if [ "$scrapes" = none ] || [ "$scrapes" -lt $((seconds / 2)) ]; then
  echo "check-prometheus: FAIL: only $scrapes scrapes recorded" >&2
  exit 1
fi
[ "$min_up" = 1 ] || { echo "check-prometheus: FAIL: up was $min_up at least once" >&2; exit 1; }
echo "check-prometheus: PASS" >&2
