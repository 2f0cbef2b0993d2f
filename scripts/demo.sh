#!/usr/bin/env bash
# Demo: a sender and a receiver in two namespaces whose networks the kernel will not route
# between, and mcrd in a third namespace relaying 239.1.1.1:5000 from one to the other.
#
#   [mcrdemo-src] out0 --veth-- in0 [mcrdemo-relay: mcrd] out0 --veth-- in0 [mcrdemo-dst]
#
# Sends 20,000 datagrams at 10,000 pps, prints what the receiver and the relay counted and
# which path (the kernel fast path or mcrd's workers) the flow took, and removes everything it
# made, also when interrupted. Run as root after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
for b in mcrd mcrctl trafficgen; do
  [ -x "$BIN/$b" ] || { echo "demo: $BIN/$b missing: run scripts/setup.sh first" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 1; }

NS=(mcrdemo-src mcrdemo-relay mcrdemo-dst)
for n in "${NS[@]}"; do
  if ip netns list | grep -qw "$n"; then
    echo "demo: namespace $n exists from another run; remove it with: ip netns del $n" >&2
    exit 1
  fi
done
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
link() { # link NS_A IF_A ADDR_A NS_B IF_B ADDR_B
  ip link add mcrdemo-a type veth peer name mcrdemo-b
  ip link set mcrdemo-a netns "$1"; ip -n "$1" link set mcrdemo-a name "$2"
  ip link set mcrdemo-b netns "$4"; ip -n "$4" link set mcrdemo-b name "$5"
  ip -n "$1" addr add "$3" dev "$2"; ip -n "$1" link set dev "$2" up
  ip -n "$4" addr add "$6" dev "$5"; ip -n "$4" link set dev "$5" up
  ip netns exec "$1" ethtool -K "$2" tx-udp-segmentation off >/dev/null 2>&1 || true
  ip netns exec "$4" ethtool -K "$5" tx-udp-segmentation off >/dev/null 2>&1 || true
}
# The sender's subnet is unknown to the relay's namespace: its kernel drops this traffic
# (reverse-path filter), which is exactly when a userspace relay is needed.
link mcrdemo-src out0 10.99.0.1/24 mcrdemo-relay in0 10.0.0.2/24
link mcrdemo-relay out0 10.0.1.1/24 mcrdemo-dst in0 10.0.1.2/24
ip netns exec mcrdemo-relay sysctl -qw net.ipv4.conf.all.rp_filter=1

cat > "$WORK/relay.toml" <<TOML
[control]
socket = "$WORK/mcrd.sock"

[[rule]]
name = "demo"
input = "in0"
group = "239.1.1.1"
port = 5000
outputs = [{ dest = "239.1.1.1", port = 5000, interface = "out0", ttl = 4 }]
TOML
ip netns exec mcrdemo-relay "$BIN/mcrctl" config check "$WORK/relay.toml"
ip netns exec mcrdemo-relay "$BIN/mcrd" --config "$WORK/relay.toml" --final-stats "$WORK/final.json" \
  >"$WORK/mcrd.out" 2>"$WORK/mcrd.log" &
PIDS+=($!)
for _ in $(seq 50); do "$BIN/mcrctl" --socket "$WORK/mcrd.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/mcrctl" --socket "$WORK/mcrd.sock" rules list

ip netns exec mcrdemo-dst "$BIN/trafficgen" recv --group 239.1.1.1:5000 --iface in0 \
  --idle-timeout 2s --exit-on-end --ready-line --json "$WORK/recv.json" >"$WORK/recv.out" 2>&1 &
RECV=$!
PIDS+=($RECV)
for _ in $(seq 50); do grep -q ready "$WORK/recv.out" 2>/dev/null && break; sleep 0.1; done

echo "--- sending 20,000 datagrams of 1400 bytes at 10,000 pps"
ip netns exec mcrdemo-src "$BIN/trafficgen" send --dst 239.1.1.1:5000 --iface out0 \
  --pps 10000 --count 20000 --size 1400
wait "$RECV" || true
echo "--- receiver"
grep -v '^ready$' "$WORK/recv.out"
echo "--- relay (live counters)"
"$BIN/mcrctl" --socket "$WORK/mcrd.sock" stats
# fast_path is "auto" (the default): each flow runs in the kernel's TC program where it can,
# else in mcrd's workers, and the list says which, with the reason for userspace.
echo "--- the path each flow took (kernel: mcrd's fast path; userspace: its workers, with why)"
"$BIN/mcrctl" --socket "$WORK/mcrd.sock" rules list
