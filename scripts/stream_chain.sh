#!/usr/bin/env bash
# A real stream through two monitored mcrd hops, with loss injected on both links after the
# first hop, for `analyzer`'s stream-loss localization (analyzer/README.md, "Stream loss"):
#
#   [PREFIX-gen] ffmpeg -> [PREFIX-r1] mcrd -> [PREFIX-r2] mcrd -> [PREFIX-recv] trafficgen recv
#
# ffmpeg sends 8 Mbit/s MPEG-2 video for --seconds as MPEG-TS over UDP (--format mpegts; the
# rules say monitor = "mpegts") or as MPEG-TS inside RTP (--format rtp, ffmpeg's rtp_mpegts;
# monitor = "rtp"). nftables drops a share of the full-size datagrams: --drop1 per mille
# leaving MCR-1 (the link MCR-1 -> MCR-2) in its output hook, so that MCR-1's send fails and it
# counts a send error, and --drop2 per mille arriving at the receiver (the link MCR-2 ->
# receiver) in the receiver's input hook, which MCR-2 cannot see. Writes into --out:
#   mcr1.json, mcr2.json  the hops' final stats (mcrd --final-stats, mcr.relay.stats)
#   recv.json             the receiver's record (trafficgen recv --format FORMAT --json)
#   drops.json            the datagrams each nftables rule dropped: the truth to compare with
# Cleans up (namespaces, processes by PID) on every exit. Needs root, ffmpeg and nft.
set -euo pipefail
PL_PROG=stream_chain
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib/pl_common.sh
. "$HERE/lib/pl_common.sh"
# shellcheck source=scripts/lib/pl_topology.sh
. "$HERE/lib/pl_topology.sh"

usage() {
  cat <<'EOF'
Usage: scripts/stream_chain.sh --out DIR [OPTIONS]

  --out DIR          where the records go (created)
  --format F         mpegts (MPEG-TS over UDP, default) or rtp (MPEG-TS inside RTP)
  --seconds N        length of the stream (default 8)
  --drop1 N          per mille of full datagrams dropped leaving MCR-1 (default 5)
  --drop2 N          per mille of full datagrams dropped arriving at the receiver (default 2)
  --prefix P         namespace prefix (default sc)
  --bin DIR          mcrd and trafficgen (default $CARGO_TARGET_DIR/debug or target/debug)
  -h, --help         this text

Exit: 0 done; 1 the run failed; 2 bad flags.
EOF
}

OUT='' FORMAT=mpegts SECONDS_=8 DROP1=5 DROP2=2 PREFIX=sc
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --format) FORMAT=${2:?}; shift 2 ;;
    --seconds) pl_need_uint "$1" "${2:-}"; SECONDS_=$2; shift 2 ;;
    --drop1) pl_need_uint "$1" "${2:-}"; DROP1=$2; shift 2 ;;
    --drop2) pl_need_uint "$1" "${2:-}"; DROP2=$2; shift 2 ;;
    --prefix) PREFIX=${2:?}; shift 2 ;;
    --bin) BIN=${2:?}; shift 2 ;;
    *) pl_usage_error "unknown flag $1" ;;
  esac
done
[ -n "$OUT" ] || pl_usage_error "--out DIR is required"
case $FORMAT in
  mpegts) MUX=mpegts MONITOR=mpegts ;;
  rtp) MUX=rtp_mpegts MONITOR=rtp ;;
  *) pl_usage_error "--format is mpegts or rtp, got '$FORMAT'" ;;
esac
for b in mcrd trafficgen; do
  [ -x "$BIN/$b" ] || pl_usage_error "no $BIN/$b: build with cargo build -p relay -p trafficgen, or pass --bin"
done
for t in ffmpeg nft; do command -v "$t" >/dev/null || pl_die "$t is missing (scripts/setup.sh installs it)"; done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

GROUP=239.1.1.1 PORT=5000
pl_topology_names "$PREFIX" 2
pl_topology_check_free
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do pl_stop_pid "$p"; done
  pl_topology_remove
  rm -rf "$WORK"
}
trap cleanup EXIT
pl_topology_build 2 off
ip -n "${PL_NS[0]}" route add 224.0.0.0/4 dev out0

# Full datagrams: 7 TS packets (1316 bytes), plus the RTP header with --format rtp. Shorter
# ones (a stream's last) are never dropped.
full=$((8 + 1316))
[ "$FORMAT" = rtp ] && full=$((full + 12))
# Link 1 in MCR-1's output hook, which refuses mcrd's send (EPERM: the relay counts a send
# error); link 2 in the receiver's input hook, after MCR-2's send succeeded (MCR-2 cannot see it).
drop_rule() {
  ip netns exec "$1" nft -f - <<EOF
table inet sc_drop {
  chain loss {
    type filter hook $2 priority 0; policy accept;
    udp dport $PORT udp length $full numgen random mod 1000 < $3 counter drop
  }
}
EOF
}
drop_rule "${PL_NS[1]}" output "$DROP1"
drop_rule "${PL_NS[3]}" input "$DROP2"
for i in 1 2; do
  ns=${PL_NS[$i]}
  cat >"$WORK/r$i.toml" <<EOF
[control]
socket = "$WORK/r$i.sock"

[dataplane]
workers = 1
gso = false
# The userspace path: its sends cross hop 1's OUTPUT hook, where the loss is planted (the
# kernel fast path's redirect does not).
fast_path = "off"

[[rule]]
name = "camera"
input = "in0"
group = "$GROUP"
port = $PORT
outputs = [{ dest = "$GROUP", port = $PORT, interface = "out0", ttl = 8 }]
monitor = "$MONITOR"
EOF
  ip netns exec "$ns" "$BIN/mcrd" --config "$WORK/r$i.toml" --final-stats "$OUT/mcr$i.json" \
    >"$WORK/r$i.out" 2>"$WORK/r$i.log" &
  PIDS+=($!)
  pl_wait_for 10 test -S "$WORK/r$i.sock" || pl_die "mcrd $i did not start: $(cat "$WORK/r$i.log")"
done

recv_ns=${PL_NS[3]}
ip netns exec "$recv_ns" "$BIN/trafficgen" recv --group "$GROUP:$PORT" --iface in0 \
  --format "$FORMAT" --idle-timeout 2s --duration $((SECONDS_ + 30))s --json "$OUT/recv.json" \
  --ready-line >"$WORK/recv.out" 2>"$WORK/recv.log" &
recv_pid=$!
PIDS+=("$recv_pid")
pl_wait_for 10 grep -qx ready "$WORK/recv.out" || pl_die "trafficgen recv did not start: $(cat "$WORK/recv.log")"

pl_log "ffmpeg: $SECONDS_ s of $MUX through ${PL_NS[1]} and ${PL_NS[2]}"
ip netns exec "${PL_NS[0]}" ffmpeg -hide_banner -nostdin -loglevel error -re \
  -f lavfi -i "testsrc=size=640x360:rate=25" -t "$SECONDS_" \
  -c:v mpeg2video -b:v 8M -minrate 8M -maxrate 8M -bufsize 2M \
  -f "$MUX" "$( [ "$FORMAT" = rtp ] && printf rtp || printf udp )://$GROUP:$PORT?pkt_size=$((full - 8))&ttl=8&localaddr=10.77.0.1" \
  </dev/null

pl_wait_pid "$recv_pid" 40 || pl_die "trafficgen recv failed: $(cat "$WORK/recv.log")"
for p in "${PIDS[@]:0:2}"; do pl_stop_pid "$p"; done
PIDS=()
for i in 1 2; do [ -s "$OUT/mcr$i.json" ] || pl_die "mcrd $i wrote no final stats: $(cat "$WORK/r$i.log")"; done

counter() {
  ip netns exec "$1" nft list table inet sc_drop | awk '/counter packets/ { for (i = 1; i < NF; i++) if ($i == "packets") { print $(i + 1); exit } }'
}
cat >"$OUT/drops.json" <<EOF
{"format": "$FORMAT", "seconds": $SECONDS_, "full_datagram_udp_length": $full,
 "dropped_leaving_mcr1": $(counter "${PL_NS[1]}"), "dropped_into_receiver": $(counter "${PL_NS[3]}")}
EOF
pl_log "wrote $OUT: $(tr -d '\n' <"$OUT/drops.json")"
