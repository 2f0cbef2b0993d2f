#!/usr/bin/env bash
# Real clients through mcrd over IPv6 (issue 22; scripts/README.md, reports/ipv6-clients.md):
#
#   [v6c-gen] iperf -c / ffmpeg -> [v6c-r1] mcrd -> [v6c-recv] iperf -s / trafficgen recv
#
# fd77:0::1/64 -> fd77:0::2/64 and fd77:1::1/64 -> fd77:1::2/64 (nodad, IPv6 quiet as in
# pipeline_veth.sh --ipv6), one mcrd (userspace path, fast_path = "off") with two rules:
#   iperf   [ff3e::5001]:5001 in0 -> [ff3e::5001]:5001@out0 hop limit 8
#   ffmpeg  [ff3e::5002]:5002 in0 -> [ff3e::5002]:5002@out0 hop limit 8, monitor = "mpegts"
#
# 1. iperf2 (-V, UDP): the server joins the group on the receiver's in0 (-B 'ff3e::5001%in0'),
#    the client sends with hop limit 8 (-T 8) for --seconds at --iperf-rate. Checked: the
#    server's loss is 0, and mcrd's counters of the rule equal what crossed the wire, counted by
#    nftables on the ingress of the relay's in0 (into mcrd) and of the receiver's in0 (out of
#    mcrd), by UDP port, so the kernel's own MLD frames are not in them; every datagram into
#    the relay had hop limit 8.
# 2. ffmpeg: an MPEG-2 test pattern (lavfi testsrc) for --seconds as MPEG-TS over UDP to
#    udp://[ff3e::5002]:5002 (7 TS packets a datagram, ttl=8), received by
#    `trafficgen recv --format mpegts`. Checked: 0 continuity errors, every datagram ffmpeg put
#    on the wire received, mcrd's counters equal to the wire's.
#
# Writes OUT/results.md (printed too) and the raw outputs under OUT. Exit 0 every check
# passed, 1 the run failed, 2 bad flags, 3 a check failed. Bounded: every process has a time
# limit; every process is stopped by PID and the namespaces removed on every exit. Needs root,
# iperf (2.x), ffmpeg, nft, and the release mcrd, mcrctl and trafficgen.
set -euo pipefail
PL_PROG=ipv6-clients
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib/pl_common.sh
. "$HERE/lib/pl_common.sh"
# shellcheck source=scripts/lib/pl_topology.sh
. "$HERE/lib/pl_topology.sh"

usage() {
  cat <<'EOF'
Usage: scripts/ipv6-clients.sh [--seconds N] [--iperf-rate RATE] [--out DIR] [--bin DIR]

  --seconds N        traffic time of each client (default 4)
  --iperf-rate RATE  iperf -b (default 10M: about 890 datagrams/s of 1400 bytes)
  --out DIR          results and raw outputs (default /tmp/ipv6-clients.<UTC time>)
  --bin DIR          mcrd, mcrctl, trafficgen (default $CARGO_TARGET_DIR/release or target/release)

Exit: 0 every check passed; 1 the run failed; 2 bad flags; 3 a check failed.
EOF
}

SECS=4 IPERF_RATE=10M OUT='' BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --seconds) [ $# -ge 2 ] || pl_usage_error "$1 needs a value"; pl_need_uint "$1" "$2"; SECS=$2 ;;
    --iperf-rate) [ $# -ge 2 ] || pl_usage_error "$1 needs a value"
      [[ $2 =~ ^[0-9]+[KMk]?$ ]] || pl_usage_error "--iperf-rate takes a rate as iperf -b does (10M), got '$2'"
      IPERF_RATE=$2 ;;
    --out) [ $# -ge 2 ] || pl_usage_error "$1 needs a value"; OUT=$2 ;;
    --bin) [ $# -ge 2 ] || pl_usage_error "$1 needs a value"; BIN=$2 ;;
    *) pl_usage_error "unknown flag '$1'" ;;
  esac
  shift 2
done
[ "$SECS" -ge 1 ] && [ "$SECS" -le 60 ] || pl_usage_error "--seconds takes 1..60"
OUT=${OUT:-/tmp/ipv6-clients.$(date -u +%Y%m%dT%H%M%SZ)}

[ "$(id -u)" -eq 0 ] || pl_die "needs root (network namespaces)"
for b in mcrd mcrctl trafficgen; do
  [ -x "$BIN/$b" ] || pl_die "$BIN/$b missing: build with scripts/setup.sh or pass --bin"
done
for t in iperf ffmpeg nft jq ip; do command -v "$t" >/dev/null || pl_die "$t missing: run scripts/setup.sh"; done
IPERF_VERSION=$(iperf -v 2>&1 || true)
[[ $IPERF_VERSION == "iperf version 2."* ]] || pl_die "iperf is not iperf2 (apt-get install iperf): $IPERF_VERSION"

PL_FAMILY=ipv6
IPERF_GROUP=ff3e::5001 IPERF_PORT=5001
TS_GROUP=ff3e::5002 TS_PORT=5002
PIDS=()
pl_topology_names v6c 1
pl_topology_check_free

cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in ${PIDS[@]+"${PIDS[@]}"}; do pl_stop_pid "$p"; done
  pl_topology_remove
  [ -n "${PL_RUN:-}" ] && rm -rf "$PL_RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'pl_log "interrupted"; exit 130' INT TERM

mkdir -p "$OUT"
pl_runtime_dir
GEN=${PL_NS[0]} RELAY=${PL_NS[1]} RECV=${PL_NS[2]}
pl_topology_build 1 off

# What crossed the wire: netdev counters, by UDP port, on the egress of the sender's out0 (what
# the client put out; neither client uses UDP GSO, so one datagram is one frame there), the
# ingress of the relay's in0 (into mcrd) and of the receiver's in0 (out of mcrd). In the relay also the datagrams that came with hop
# limit 8 (the clients' -T 8 / ttl=8; mcrd's outputs say ttl = 8 as well).
# Named counters, defined before the chain that refers to them.
wire_counters() { # NS HOOK DEVICE
  ip netns exec "$1" nft -f - <<EOF
table netdev v6c {
  counter iperf { }
  counter iperf_hl8 { }
  counter ts { }
  counter ts_hl8 { }
  chain count {
    type filter hook $2 device "$3" priority 0; policy accept;
    meta l4proto udp udp dport $IPERF_PORT counter name iperf
    meta l4proto udp udp dport $IPERF_PORT ip6 hoplimit 8 counter name iperf_hl8
    meta l4proto udp udp dport $TS_PORT counter name ts
    meta l4proto udp udp dport $TS_PORT ip6 hoplimit 8 counter name ts_hl8
  }
}
EOF
}
wire() { # NS COUNTER: packets so far
  ip netns exec "$1" nft -j list counter netdev v6c "$2" | jq '.nftables[] | select(.counter) | .counter.packets'
}
wire_counters "$GEN" egress out0
wire_counters "$RELAY" ingress in0
wire_counters "$RECV" ingress in0

cat >"$OUT/relay.toml" <<EOF
log_level = "warn"
[control]
socket = "$(pl_sock "$OUT/hop1" mcrd)"

[dataplane]
workers = 1
fast_path = "off"

[[rule]]
name = "iperf"
input = "in0"
group = "$IPERF_GROUP"
port = $IPERF_PORT
outputs = [{ dest = "$IPERF_GROUP", port = $IPERF_PORT, interface = "out0", ttl = 8 }]

[[rule]]
name = "ffmpeg"
input = "in0"
group = "$TS_GROUP"
port = $TS_PORT
outputs = [{ dest = "$TS_GROUP", port = $TS_PORT, interface = "out0", ttl = 8 }]
monitor = "mpegts"
EOF
SOCK=$(pl_sock "$OUT/hop1" mcrd)
ip netns exec "$RELAY" "$BIN/mcrctl" config check "$OUT/relay.toml" >"$OUT/config-check.txt" 2>&1 ||
  pl_die "mcrctl config check refused $OUT/relay.toml: $(cat "$OUT/config-check.txt")"
ip netns exec "$RELAY" "$BIN/mcrd" --config "$OUT/relay.toml" --final-stats "$OUT/mcrd-final.json" \
  >"$OUT/mcrd.out" 2>"$OUT/mcrd.log" &
MCRD=$!
PIDS+=("$MCRD")
pl_wait_for 10 "$BIN/mcrctl" --socket "$SOCK" ping || pl_die "mcrd not ready: $(cat "$OUT/mcrd.log")"

# flow STATS RULE FIELD: one counter of a rule's flow (FIELD packets) or of its one output
# (FIELD .matched, .tx_sent, .tx_errors, .buf_exhaust) from `mcrctl stats --json`.
flow() {
  jq -e --arg r "$2" ".flows[] | select(.rule == \$r) | $3" "$1" || pl_die "no $3 for rule $2 in $1"
}
stats() { "$BIN/mcrctl" --socket "$SOCK" stats --json >"$1" || pl_die "mcrctl stats failed"; }

# check DESCRIPTION CONDITION...: a line of the results, ticked or FAILED (the results are
# written in a pipeline's subshell, so the verdict is read back from them at the end).
check() {
  local what=$1
  shift
  if "$@"; then echo "- [x] $what"; else echo "- [ ] **FAILED**: $what"; fi
}

# ---- 1. iperf2 ----------------------------------------------------------------------------
pl_settle_icmp6 2 20
stats "$OUT/stats-0.json"
w_gen0=$(wire "$GEN" iperf) w_relay0=$(wire "$RELAY" iperf) w_recv0=$(wire "$RECV" iperf)
ip netns exec "$RECV" timeout $((SECS + 20)) iperf -s -u -V -B "$IPERF_GROUP%in0" -p "$IPERF_PORT" -e \
  >"$OUT/iperf-server.txt" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
pl_wait_for 10 grep -q 'Joining multicast' "$OUT/iperf-server.txt" || pl_die "iperf server did not join: $(cat "$OUT/iperf-server.txt")"
pl_log "iperf2: ${SECS} s at $IPERF_RATE to [$IPERF_GROUP]:$IPERF_PORT"
rc=0
ip netns exec "$GEN" timeout $((SECS + 20)) iperf -c "$IPERF_GROUP" -u -V -T 8 -b "$IPERF_RATE" -l 1400 \
  -t "$SECS" -p "$IPERF_PORT" -e >"$OUT/iperf-client.txt" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || pl_die "iperf client exited $rc: $(cat "$OUT/iperf-client.txt")"
# The server prints its report when the client's last datagram (a negative sequence number)
# arrives; wait for it, then stop the server.
pl_wait_for 10 grep -q 'Lost/Total' "$OUT/iperf-server.txt" || true
sleep 1
pl_stop_pid "$SERVER"
stats "$OUT/stats-1.json"
w_gen1=$(wire "$GEN" iperf) w_relay1=$(wire "$RELAY" iperf) w_recv1=$(wire "$RECV" iperf)
hl8=$(wire "$RELAY" iperf_hl8) out_hl8=$(wire "$RECV" iperf_hl8)

# iperf 2.1.8's client: "Write/Err" is the data datagrams it wrote; after them it sends one
# final datagram (sequence number negated), which the server counts in Lost/Total. Its "Sent N
# datagrams" line says one more than the two together (on the wire with tshark: writes 10,
# datagrams 1..10 and -11, "Sent 12", server 0/11), so the check uses writes + 1.
i_sent=$(sed -n 's/.*Sent \([0-9]*\) datagrams.*/\1/p' "$OUT/iperf-client.txt" | tail -1)
i_writes=$(grep -oE '[0-9]+/[0-9]+ +[0-9]+ pps' "$OUT/iperf-client.txt" | tail -1 | cut -d/ -f1)
i_write_err=$(grep -oE '[0-9]+/[0-9]+ +[0-9]+ pps' "$OUT/iperf-client.txt" | tail -1 | cut -d/ -f2 | cut -d' ' -f1)
# Server line: ... Jitter   Lost/Total ...  "0.010 ms 0/3571 (0%)"
read -r i_lost i_total < <(grep -oE '[0-9]+/ *[0-9]+ \(' "$OUT/iperf-server.txt" | tail -1 | tr -d '( ' | tr / ' ')
: "${i_sent:?no 'Sent N datagrams' in iperf-client.txt}" "${i_total:?no Lost/Total in iperf-server.txt}"
: "${i_writes:?no Write/Err in iperf-client.txt}"
i_gen=$((w_gen1 - w_gen0)) i_in=$((w_relay1 - w_relay0)) i_out=$((w_recv1 - w_recv0))
m_packets=$(($(flow "$OUT/stats-1.json" iperf .packets) - $(flow "$OUT/stats-0.json" iperf .packets)))
m_sent=$(($(flow "$OUT/stats-1.json" iperf '.outputs[0].tx_sent') - $(flow "$OUT/stats-0.json" iperf '.outputs[0].tx_sent')))
m_err=$(($(flow "$OUT/stats-1.json" iperf '.outputs[0].tx_errors + .outputs[0].buf_exhaust') - $(flow "$OUT/stats-0.json" iperf '.outputs[0].tx_errors + .outputs[0].buf_exhaust')))

# ---- 2. ffmpeg MPEG-TS ----------------------------------------------------------------------
stats "$OUT/stats-2.json"
w_gen2=$(wire "$GEN" ts) w_relay2=$(wire "$RELAY" ts) w_recv2=$(wire "$RECV" ts)
ip netns exec "$RECV" "$BIN/trafficgen" recv --group "[$TS_GROUP]:$TS_PORT" --iface in0 --format mpegts \
  --idle-timeout 3s --duration $((SECS + 30))s --json "$OUT/ts-recv.json" --ready-line \
  >"$OUT/ts-recv.out" 2>"$OUT/ts-recv.log" &
TSRECV=$!
PIDS+=("$TSRECV")
pl_wait_for 10 grep -qx ready "$OUT/ts-recv.out" || pl_die "trafficgen recv not ready: $(cat "$OUT/ts-recv.log")"
pl_log "ffmpeg: ${SECS} s of MPEG-TS to udp://[$TS_GROUP]:$TS_PORT"
FFMPEG_URL="udp://[$TS_GROUP]:$TS_PORT?pkt_size=1316&ttl=8&localaddr=fd77:0::1"
rc=0
ip netns exec "$GEN" timeout $((SECS + 30)) ffmpeg -hide_banner -nostdin -loglevel error -re \
  -f lavfi -i "testsrc=size=640x360:rate=25" -t "$SECS" \
  -c:v mpeg2video -b:v 4M -minrate 4M -maxrate 4M -bufsize 1M -f mpegts "$FFMPEG_URL" \
  </dev/null >"$OUT/ffmpeg.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || pl_die "ffmpeg exited $rc: $(tail -5 "$OUT/ffmpeg.log")"
pl_wait_pid "$TSRECV" 40 || pl_die "trafficgen recv failed: $(cat "$OUT/ts-recv.log")"
stats "$OUT/stats-3.json"
w_gen3=$(wire "$GEN" ts) w_relay3=$(wire "$RELAY" ts) w_recv3=$(wire "$RECV" ts)
ts_hl8=$(wire "$RELAY" ts_hl8) ts_out_hl8=$(wire "$RECV" ts_hl8)
t_gen=$((w_gen3 - w_gen2)) t_in=$((w_relay3 - w_relay2)) t_out=$((w_recv3 - w_recv2))
t_packets=$(($(flow "$OUT/stats-3.json" ffmpeg .packets) - $(flow "$OUT/stats-2.json" ffmpeg .packets)))
t_sent=$(($(flow "$OUT/stats-3.json" ffmpeg '.outputs[0].tx_sent') - $(flow "$OUT/stats-2.json" ffmpeg '.outputs[0].tx_sent')))
t_gaps=$(flow "$OUT/stats-3.json" ffmpeg '.monitor.gaps // "n/a"')
rec() { jq -r "$1" "$OUT/ts-recv.json"; }
t_dgrams=$(rec '.datagrams_received')
t_ts_dgrams=$(rec '[.streams[]?.mpegts.datagrams] | add // 0')
t_cc=$(rec '[.streams[]?.mpegts.continuity_errors] | add // "none"')
t_tsp=$(rec '[.streams[]?.mpegts.ts_packets] | add // 0')
t_sync=$(rec '[.streams[]?.mpegts.sync_errors] | add // 0')
t_lost=$(rec '[.streams[]?.mpegts.lost_ts_packets_estimate] | add // 0')
t_nstreams=$(rec '[.streams[]?] | length')

pl_stop_pid "$MCRD"
PIDS=()
veth_drops=$(for n in "${PL_NS[@]}"; do ip -n "$n" -s -j link show | jq '[.[].stats64 | .rx.dropped + .tx.dropped] | add'; done | awk '{ s += $1 } END { print s + 0 }')

{
  echo "## Results ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -r), mcrd $("$BIN/mcrd" --version | head -1))"
  echo
  echo "### iperf2 ($IPERF_VERSION), ${SECS} s at $IPERF_RATE, 1400-byte datagrams"
  echo
  echo '```'
  echo "server: iperf -s -u -V -B '$IPERF_GROUP%in0' -p $IPERF_PORT -e        (in $RECV)"
  echo "client: iperf -c $IPERF_GROUP -u -V -T 8 -b $IPERF_RATE -l 1400 -t $SECS -p $IPERF_PORT -e   (in $GEN)"
  echo '```'
  echo
  echo "| what | datagrams |"
  echo "|---|---:|"
  echo "| client: data datagrams written (Write/Err) | $i_writes/$i_write_err |"
  echo "| client: \"Sent N datagrams\" (one more than writes + the final datagram, see the script) | $i_sent |"
  echo "| wire out of the client (nft, sender out0 egress, UDP $IPERF_PORT) | $i_gen |"
  echo "| wire into mcrd (nft, relay in0 ingress) | $i_in |"
  echo "| of them with hop limit 8 | $hl8 |"
  echo "| mcrd: the rule's packets | $m_packets |"
  echo "| mcrd: the output's tx_sent | $m_sent |"
  echo "| mcrd: the output's tx_errors + buf_exhaust | $m_err |"
  echo "| wire out of mcrd (nft, receiver in0 ingress) | $i_out |"
  echo "| of them with hop limit 8 (mcrd's output ttl = 8) | $out_hl8 |"
  echo "| server: Lost/Total | $i_lost/$i_total |"
  echo
  check "the client's writes and its final datagram all went out ($i_writes + 1 = $i_gen) and crossed into mcrd ($i_in)" test "$i_gen" -eq $((i_writes + 1)) -a "$i_in" -eq "$i_gen"
  check "every one with hop limit 8 ($hl8 of $i_in)" test "$hl8" -eq "$i_in"
  check "mcrd took in what crossed the wire ($m_packets = $i_in)" test "$m_packets" -eq "$i_in"
  check "mcrd sent what crossed the wire to the receiver ($m_sent = $i_out), no send error" test "$m_sent" -eq "$i_out" -a "$m_err" -eq 0
  check "iperf server: 0 lost ($i_lost of $i_total)" test "$i_lost" -eq 0 -a "$i_total" -gt 0
  echo
  echo "### ffmpeg ($(ffmpeg -version | head -1 | cut -d' ' -f1-3)), ${SECS} s MPEG-2 testsrc as MPEG-TS"
  echo
  echo '```'
  echo "ffmpeg -re -f lavfi -i testsrc=size=640x360:rate=25 -t $SECS -c:v mpeg2video -b:v 4M \\"
  echo "  -minrate 4M -maxrate 4M -bufsize 1M -f mpegts '$FFMPEG_URL'"
  echo "trafficgen recv --group '[$TS_GROUP]:$TS_PORT' --iface in0 --format mpegts --idle-timeout 3s"
  echo '```'
  echo
  echo "| what | count |"
  echo "|---|---:|"
  echo "| wire out of ffmpeg (nft, sender out0 egress, UDP $TS_PORT) | $t_gen datagrams |"
  echo "| wire into mcrd (nft, relay in0 ingress) | $t_in datagrams |"
  echo "| of them with hop limit 8 | $ts_hl8 |"
  echo "| mcrd: the rule's packets / output tx_sent | $t_packets / $t_sent |"
  echo "| mcrd's MPEG-TS monitor: continuity gaps | $t_gaps |"
  echo "| wire out of mcrd (nft, receiver in0 ingress) | $t_out datagrams |"
  echo "| of them with hop limit 8 | $ts_out_hl8 |"
  echo "| trafficgen recv: streams, datagrams received (of them MPEG-TS), TS packets | $t_nstreams, $t_dgrams ($t_ts_dgrams), $t_tsp |"
  echo "| trafficgen recv: continuity errors, lost TS packets (estimate), sync errors | $t_cc, $t_lost, $t_sync |"
  echo
  check "ffmpeg's datagrams all reached mcrd ($t_gen = $t_in) and mcrd took them in ($t_packets)" test "$t_gen" -eq "$t_in" -a "$t_packets" -eq "$t_in" -a "$t_in" -gt 0
  check "mcrd sent them all ($t_sent = $t_out on the wire to the receiver)" test "$t_sent" -eq "$t_out" -a "$t_sent" -eq "$t_packets"
  check "the receiver got every datagram that crossed, all MPEG-TS ($t_dgrams = $t_ts_dgrams = $t_out)" test "$t_dgrams" -eq "$t_out" -a "$t_ts_dgrams" -eq "$t_out"
  check "0 continuity errors ($t_cc), 0 sync errors ($t_sync)" test "$t_cc" = 0 -a "$t_sync" = 0
  echo
  echo "veth drops on every interface of the three namespaces: $veth_drops"
} | tee "$OUT/results.md"

pl_log "results: $OUT/results.md"
if grep -q '\*\*FAILED\*\*' "$OUT/results.md"; then exit 3; fi
