#!/usr/bin/env bash
# Sender throughput benchmark: trafficgen into a veth pair whose far end receives nothing.
#
# UDP segmentation offload is turned off on the sending veth, so the kernel segments every GSO
# buffer before the "wire" and each datagram crosses the veth as its own frame, as on a real NIC
# (with offload on, veth carries whole GSO buffers and the rates mean nothing).
#
# For every case it runs REPEATS trials of DURATION, keeps each trial's record as
# OUT/CASE/repN.json, and prints `analyzer bench send`'s table of them: the median achieved
# rate, the median CPU time per packet (task-clock of the sender threads / packets: less
# sensitive to other load on a shared machine than the rate) and the rate error against the
# target.
#
# Usage: sudo scripts/bench-send.sh        (env: REPEATS=3 DURATION=3s SIZE=1400
#        TG_BIN=path/to/trafficgen and ANALYZER=path/to/analyzer to skip the release builds;
#        CASES="name ..." to pick cases; OUT=DIR to keep the records, else they are removed)
# Needs: root, iproute2, ethtool. Creates and always removes namespaces tgb<pid>{tx,rx}.
set -euo pipefail

REPEATS=${REPEATS:-3}
DURATION=${DURATION:-3s}
SIZE=${SIZE:-1400}
here=$(cd "$(dirname "$0")" && pwd)

for tool in ip ethtool; do
    command -v "$tool" >/dev/null || { echo "bench-send: $tool is required" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "bench-send: must run as root (network namespaces)" >&2; exit 2; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/../target}
if [ -z "${TG_BIN:-}" ]; then
    (cd "$here/.." && cargo build --release -p trafficgen --quiet)
    TG_BIN=$CARGO_TARGET_DIR/release/trafficgen
fi
if [ -z "${ANALYZER:-}" ]; then
    ANALYZER=$CARGO_TARGET_DIR/release/analyzer
    if [ ! -x "$ANALYZER" ]; then
        echo "bench-send: building the analyzer on first use (several minutes on 2 cores)" >&2
        (cd "$here/.." && cargo build --release -p analyzer --bins --quiet)
    fi
fi

tx=tgb$$tx rx=tgb$$rx a=tgb$$a b=tgb$$b
work=${OUT:-$(mktemp -d)}
mkdir -p "$work"
cleanup() {
    ip netns del "$tx" 2>/dev/null || true
    ip netns del "$rx" 2>/dev/null || true
    [ -n "${OUT:-}" ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM

ip netns add "$tx"
ip netns add "$rx"
ip link add "$a" netns "$tx" type veth peer name "$b" netns "$rx"
ip -n "$tx" addr add 10.200.77.1/24 dev "$a"
ip -n "$rx" addr add 10.200.77.2/24 dev "$b"
ip -n "$tx" link set "$a" up
ip -n "$rx" link set "$b" up
ip -n "$tx" route add 224.0.0.0/4 dev "$a"
ip netns exec "$tx" ethtool -K "$a" tx-udp-segmentation off >/dev/null
sleep 1 # let the link watcher attach the qdisc (until then the device drops everything)

# name | trafficgen arguments
all_cases=(
    "sendmmsg-max|--pps 0 --gso-segments 1 --batch 64"
    "gso16-max|--pps 0 --gso-segments 16 --batch 8"
    "gso32-batch1-max|--pps 0 --gso-segments 32 --batch 1"
    "gso32-max|--pps 0 --gso-segments 32 --batch 8"
    "paced-1M-1thread|--pps 1000000 --threads 1"
    "max-2threads|--pps 0 --threads 2"
    "paced-1.5M-2threads|--pps 1500000 --threads 2"
)

dirs=()
for entry in "${all_cases[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    if [ -n "${CASES:-}" ] && [[ " $CASES " != *" $name "* ]]; then continue; fi
    rm -rf "${work:?}/$name"
    mkdir -p "$work/$name"
    dirs+=("$work/$name")
    for i in $(seq "$REPEATS"); do
        echo "bench-send: $name, trial $i of $REPEATS" >&2
        # shellcheck disable=SC2086
        ip netns exec "$tx" "$TG_BIN" send --dst 239.1.1.1:5000 --size "$SIZE" \
            --duration "$DURATION" $args --json "$work/$name/rep$i.json" >/dev/null
    done
done
[ "${#dirs[@]}" -gt 0 ] || { echo "bench-send: no case in CASES=\"${CASES:-}\"" >&2; exit 2; }
"$ANALYZER" bench send "${dirs[@]}"
echo "(size $SIZE B, $DURATION per trial, $REPEATS trials, load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs)"
[ -z "${OUT:-}" ] || echo "bench-send: records in $OUT" >&2
