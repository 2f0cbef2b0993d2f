#!/usr/bin/env bash
# The veth pipeline benchmark (scripts/README.md):
#
#   [PREFIX-gen] trafficgen send -> [PREFIX-r1] relay -> [PREFIX-r2] relay -> [PREFIX-r3] relay
#       -> [PREFIX-recv] trafficgen recv
#
# each in its own network namespace, joined by veth pairs with UDP segmentation offload off, so
# each datagram crosses each link as its own frame. The relay is mcrd (userspace path), mcrd's
# kernel fast path (fastpath: mcrd with [dataplane] fast_path = "required"), socat, the kernel's
# multicast forwarding set up by smcroute, the kernel's unicast forwarding (route: the traffic
# is unicast to the receiver's address), or the floor of a hop (redirect: a TC program moves every
# frame from in0 to out0 unchanged) (--relay, a comma list runs each in turn and puts them side
# by side). --hops 0 is the generator -> receiver path every chain is compared with
# (unicast for route). --ipv6 runs the same with IPv6 addresses and group (mcrd, mcrd-auto,
# fastpath, socat, kernel), the kernel's own ICMPv6 frames counted and taken out of the
# conservation.
#
# Collects per hop the relay's counters (live before shutdown and final), the kernel's (veth,
# UDP, multicast VIFs), the relay's CPU time and perf counters; the generator's and receiver's
# records; the environment; the host CPU the run caused (other processes measured and
# subtracted, see scripts/README.md). Checks packet conservation (exit 3 when a packet is
# unexplained), writes one run record per relay with `analyzer ingest` (the kernel counters, the
# conservation check and the host CPU details included) and prints a summary.
# Cleans up (namespaces, processes by PID) on every exit. Needs root.
set -euo pipefail
PL_PROG=pipeline_veth
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib/pl_common.sh
. "$HERE/lib/pl_common.sh"
# shellcheck source=scripts/lib/pl_topology.sh
. "$HERE/lib/pl_topology.sh"
# shellcheck source=scripts/lib/pl_counters.sh
. "$HERE/lib/pl_counters.sh"
# shellcheck source=scripts/lib/pl_peers.sh
. "$HERE/lib/pl_peers.sh"

usage() {
  cat <<'EOF'
Usage: scripts/pipeline_veth.sh [OPTIONS]

Traffic:
  --packets N          datagrams to send (default 200000)
  --pps N              target rate, packets per second (default 50000); 0 = unpaced: the
                       generator sends as fast as it can (trafficgen --pps 0), --packets of
                       them; the run is named RELAY-HOPSh-unpaced
  --size BYTES         UDP payload per datagram (default 1400)
  --gen-gso-segments N trafficgen --gso-segments (default: trafficgen's, 32)
  --gen-coalesce-us N  trafficgen --coalesce-us (default: trafficgen's, 20). Above 25 the
                       generator sleeps between its batches instead of spinning, so the host
                       CPU of a run shows forwarding work done on the generator's core
  --hops N             relays in the chain, 0..3 (default 3); 0 = generator -> receiver
                       (multicast; with route in --relay also the unicast direct path)
  --quick              CI preset: --packets 20000 --pps 5000 (flags after it override)
  --ipv6               IPv6: addresses fd77:I::1/64 -> fd77:I::2/64 (nodad), group
                       [ff3e::1]:5000, IPv6 left on in the namespaces (quiet: no DAD, no router
                       solicitations); relays mcrd, mcrd-auto, fastpath, socat, kernel
                       (needs CONFIG_IP6_MROUTE); runs are named RELAY-HOPSh-RATE-ipv6
Relay:
  --relay LIST         mcrd (userspace path: fast_path = "off"), mcrd-auto (mcrd's default
                       fast_path, auto: each rule in the kernel fast path where it fits),
                       fastpath (mcrd with fast_path = "required"), socat, kernel
                       (multicast routing, smcroute; needs CONFIG_IP_MROUTE), route (the
                       kernel's unicast forwarding; the traffic is unicast to the receiver),
                       redirect (the floor: a TC program moves each frame in0 -> out0 as it
                       is; needs clang, tc), or a comma list run one after another (default mcrd)
  --workers N          mcrd [dataplane] workers (default 1)
  --ring-frames N --buffer-count N --buffer-size N --uring-entries N --max-in-flight-sends N
  --batch-size N --max-gso-segments N --socket-sndbuf BYTES --busy-poll-us N
  --rx-coalesce-us N --ring-frame-size BYTES --realtime-priority N
                       mcrd [dataplane] tunables (default: mcrd's own)
  --relay-gso on|off   mcrd egress UDP GSO (default: mcrd's own, on)
  --monitor rtp|mpegts mcrd's rule monitors the stream (monitor = ...; trafficgen's probes are
                       neither format, so every datagram counts as foreign: this measures the
                       monitor's cost; the record carries each hop's counts)
Topology:
  --veth-gso on|off    tx-udp-segmentation on every veth (default off: one frame per datagram)
  --prefix P           namespace prefix (default pl); namespaces are P-gen, P-r1.., P-recv
Output:
  --out DIR            where records go (default reports/pipeline/runs/<UTC time>)
  --name NAME          run name in the record (default: RELAY HOPSh PPSpps, or RELAY HOPSh unpaced)
  --bin DIR            release binaries (default $CARGO_TARGET_DIR/release or target/release)
  --analyzer PATH      analyzer binary (default BIN/analyzer)
  -h, --help           this text

Exit: 0 every packet accounted for; 1 the run failed; 2 bad flags; 3 unexplained loss.
EOF
}

# ---- parameters -------------------------------------------------------------------------

PACKETS=200000 PPS=50000 SIZE=1400 HOPS=3 RELAYS=mcrd VETH_GSO=off PREFIX=pl PL_FAMILY=ipv4
GEN_GSO='' GEN_COALESCE='' OUT='' NAME='' ANALYZER='' PL_CFG_WORKERS=1
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
PL_GROUP=239.1.1.1 PL_PORT=5000 FAMILY_TAG=''
# An unpaced run's waits are sized as if it sent at this rate: far below what the generator
# reaches flat out on any path of this topology (hundreds of thousands of pps), so only a hung
# run waits that long.
UNPACED_BOUND_PPS=10000
# Where the generator sends and the receiver listens: the group, or with route the receiver's
# unicast address (set per run by run_one).
PL_DST=$PL_GROUP
PL_PERF_EVENTS=task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions,cache-misses,branch-misses
declare -A PL_CFG=()

parse_args() {
  while [ $# -gt 0 ]; do
    local flag=$1
    case $flag in
      -h | --help) usage; exit 0 ;;
      --quick) PACKETS=20000 PPS=5000; shift; continue ;;
      --ipv6) PL_FAMILY=ipv6; shift; continue ;;
    esac
    case $flag in
      --packets | --pps | --size | --gen-gso-segments | --gen-coalesce-us | --hops | --relay | --workers | --ring-frames | \
        --buffer-count | --buffer-size | --uring-entries | --max-in-flight-sends | --batch-size | \
        --max-gso-segments | --socket-sndbuf | --busy-poll-us | --rx-coalesce-us | --ring-frame-size | --realtime-priority | --relay-gso | --monitor | --veth-gso | --prefix | \
        --out | --name | --bin | --analyzer) ;;
      *) pl_usage_error "unknown flag '$flag'" ;;
    esac
    [ $# -ge 2 ] || pl_usage_error "$flag needs a value"
    local v=$2
    case $flag in
      --packets) pl_need_uint "$flag" "$v"; PACKETS=$v ;;
      --pps) pl_need_uint "$flag" "$v"; PPS=$v ;;
      --size) pl_need_uint "$flag" "$v"; SIZE=$v ;;
      --gen-gso-segments) pl_need_uint "$flag" "$v"; GEN_GSO=$v ;;
      --gen-coalesce-us) pl_need_uint "$flag" "$v"; GEN_COALESCE=$v ;;
      --hops) [[ $v =~ ^[0-3]$ ]] || pl_usage_error "--hops takes 0..3, got '$v'"; HOPS=$v ;;
      --relay) [[ $v =~ ^(mcrd|mcrd-auto|fastpath|socat|kernel|route|redirect)(,(mcrd|mcrd-auto|fastpath|socat|kernel|route|redirect))*$ ]] ||
        pl_usage_error "--relay takes mcrd, mcrd-auto, fastpath, socat, kernel, route, redirect or a comma list of them, got '$v'"
        RELAYS=$v ;;
      --workers) pl_need_uint "$flag" "$v"; PL_CFG_WORKERS=$v ;;
      --ring-frames | --buffer-count | --buffer-size | --uring-entries | --max-in-flight-sends | \
        --batch-size | --max-gso-segments | --socket-sndbuf | --busy-poll-us | --rx-coalesce-us | \
        --ring-frame-size | --realtime-priority)
        pl_need_uint "$flag" "$v"; local k=${flag#--}; PL_CFG[${k//-/_}]=$v ;;
      --relay-gso) [[ $v =~ ^(on|off)$ ]] || pl_usage_error "--relay-gso takes on or off"
        PL_CFG[gso]=$([ "$v" = on ] && echo true || echo false) ;;
      --monitor) [[ $v =~ ^(rtp|mpegts)$ ]] || pl_usage_error "--monitor takes rtp or mpegts, got '$v'"
        PL_CFG[monitor]=$v ;;
      --veth-gso) [[ $v =~ ^(on|off)$ ]] || pl_usage_error "--veth-gso takes on or off"; VETH_GSO=$v ;;
      --prefix) [[ $v =~ ^pl[a-z0-9]{0,6}$ ]] || pl_usage_error "--prefix must start with pl (at most 8 letters/digits)"
        PREFIX=$v ;;
      --out) OUT=$v ;;
      --name) NAME=$v ;;
      --bin) BIN=$v ;;
      --analyzer) ANALYZER=$v ;;
      *) pl_usage_error "unknown flag $flag" ;;
    esac
    shift 2
  done
  [ "$PACKETS" -gt 0 ] || pl_usage_error "--packets must be above 0"
  if [ "$PL_FAMILY" = ipv6 ]; then
    # route and redirect are built for IPv4 only: route's unicast addresses and forwarding
    # (pl_topology_unicast) are IPv4's, and redirect would also move the namespaces' own ICMPv6
    # frames, which conservation takes out as theirs.
    local kinds r
    IFS=, read -r -a kinds <<<"$RELAYS"
    for r in "${kinds[@]}"; do
      case $r in route | redirect)
        pl_usage_error "--ipv6: relay kind $r has no IPv6 run (route's addresses and forwarding are IPv4's; redirect would move the namespaces' own ICMPv6 frames too); IPv6 relays: mcrd, mcrd-auto, fastpath, socat, kernel" ;;
      esac
    done
    PL_GROUP=ff3e::1 FAMILY_TAG=-ipv6
  fi
  # The run's name for its rate, and the rate its bounded waits are sized for.
  if [ "$PPS" -eq 0 ]; then
    RATE_TAG=unpaced BOUND_PPS=$UNPACED_BOUND_PPS
  else
    RATE_TAG=${PPS}pps BOUND_PPS=$PPS
  fi
  ANALYZER=${ANALYZER:-$BIN/analyzer}
  OUT=${OUT:-$ROOT/reports/pipeline/runs/$(date -u +%Y%m%dT%H%M%SZ)}
}

check_prerequisites() {
  [ "$(id -u)" -eq 0 ] || pl_die "needs root (network namespaces)"
  local b
  for b in "$BIN/mcrd" "$BIN/mcrctl" "$BIN/trafficgen"; do
    [ -x "$b" ] || pl_die "$b missing: build with 'scripts/setup.sh' (cargo build --release) or pass --bin"
  done
  pl_ensure_analyzer "$ANALYZER" "$ROOT"
  for b in ip ethtool jq ss awk; do command -v "$b" >/dev/null || pl_die "$b missing: run scripts/setup.sh"; done
  case ,$RELAYS, in *,socat,*) command -v socat >/dev/null || pl_die "socat missing: run scripts/setup.sh" ;; esac
  case ,$RELAYS, in *,redirect,*)
    for b in clang tc; do command -v "$b" >/dev/null || pl_die "$b missing (relay kind redirect): run scripts/setup.sh"; done ;;
  esac
  case ,$RELAYS, in *,kernel,*)
    command -v smcrouted >/dev/null || pl_die "smcroute missing: run scripts/setup.sh"
    if [ "$PL_FAMILY" = ipv6 ]; then
      [ -e /proc/net/ip6_mr_vif ] || pl_die "relay kind kernel with --ipv6: this kernel ($(uname -r)) has no IPv6 multicast routing (CONFIG_IP6_MROUTE unset: /proc/net/ip6_mr_vif is missing), so there is no in-kernel IPv6 multicast forwarding to measure here"
      return 0
    fi
    # Without CONFIG_IP_MROUTE there is no multicast forwarding to measure, and smcrouted fails
    # with a parse error; /proc/net/ip_mr_vif exists exactly when the kernel has it.
    [ -e /proc/net/ip_mr_vif ] || pl_die "relay kind kernel: this kernel ($(uname -r)) has no IPv4 multicast routing (CONFIG_IP_MROUTE unset: /proc/net/ip_mr_vif is missing); the kernel's unicast forwarding is --relay route"
    ;;
  esac
}

# ---- cleanup: every process by PID, then our namespaces ----------------------------------

PL_PIDS=()
PL_OWN_NS=0
PL_NS=()

teardown() {
  local p
  for p in ${PL_PIDS[@]+"${PL_PIDS[@]}"}; do pl_stop_pid "$p"; done
  PL_PIDS=()
  [ "$PL_OWN_NS" -eq 1 ] && pl_topology_remove
  PL_OWN_NS=0
}

# forget_pid PID: after a child is reaped its PID may be reused by someone else's process, so it
# leaves the list teardown kills.
forget_pid() {
  local keep=() p
  for p in "${PL_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PL_PIDS=(${keep[@]+"${keep[@]}"})
}

# stop_child PID: stop one of our children and forget it.
stop_child() {
  pl_stop_pid "$1"
  forget_pid "$1"
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  teardown
  [ -n "${PL_RUN:-}" ] && rm -rf "$PL_RUN"
  exit "$rc"
}

on_signal() {
  pl_log "interrupted: cleaning up"
  exit 130
}

# ---- one run ----------------------------------------------------------------------------

start_relays() { # RELAY DIR
  local relay=$1 dir=$2 i ns hd
  for ((i = 1; i <= HOPS; i++)); do
    ns=${PL_NS[$i]} hd=$dir/raw/hop$i
    mkdir -p "$hd"
    "pl_start_$relay" "$ns" "$hd" "$PL_GROUP" "$PL_PORT" "$i"
    [ -n "$PL_LAST_PID" ] || continue # route, redirect: no process
    PL_PIDS+=("$PL_LAST_PID")
    echo "$PL_LAST_PID" >"$hd/pid"
  done
  for ((i = 1; i <= HOPS; i++)); do
    ns=${PL_NS[$i]} hd=$dir/raw/hop$i
    if [ "$relay" = socat ]; then
      pl_ready_socat "$ns" "$hd" "$PL_PORT" || pl_die "socat in $ns not listening: $(cat "$hd/socat.log")"
      start_perf_stat "$hd"
    else
      "pl_ready_$relay" "$ns" "$hd" || pl_die "$relay in $ns not ready: $(cat "$hd"/*.log)"
    fi
  done
}

# start_perf_stat HOPDIR: perf-event counters of a relay that does not count its own (socat),
# as `perf stat -x,` CSV for analyzer ingest; stopped with SIGINT, which makes perf write them.
start_perf_stat() {
  local hd=$1
  command -v perf >/dev/null || return 0
  perf stat -x, -e "$PL_PERF_EVENTS" -p "$(cat "$hd/pid")" -o "$hd/perf.csv" >/dev/null 2>&1 &
  PL_PIDS+=($!)
  echo $! >"$hd/perf.pid"
}

stop_perf_stat() { # HOPDIR
  local hd=$1 pid
  [ -f "$hd/perf.pid" ] || return 0
  pid=$(cat "$hd/perf.pid")
  kill -INT "$pid" 2>/dev/null || true
  pl_wait_pid "$pid" 5 || true
  forget_pid "$pid"
}

start_receiver() { # DIR
  local dir=$1 limit=$((PACKETS / BOUND_PPS + 30))
  ip netns exec "${PL_NS[-1]}" "$BIN/trafficgen" recv --group "$(pl_hostport "$PL_DST" "$PL_PORT")" --iface in0 \
    --idle-timeout 10s --exit-on-end --duration "${limit}s" --ready-line --json "$dir/raw/recv.json" \
    >"$dir/raw/recv.out" 2>"$dir/raw/recv.log" &
  PL_RECV_PID=$!
  PL_PIDS+=("$PL_RECV_PID")
  pl_wait_for 10 grep -qx ready "$dir/raw/recv.out" || pl_die "receiver not ready: $(cat "$dir/raw/recv.log")"
}

# snapshot DIR WHEN(before|after): the host CPU snapshot is the innermost, so the window it
# opens and closes holds the traffic and not the other snapshots' own work.
snapshot() {
  local dir=$1 when=$2 n i ticks icmp6=''
  [ "$when" = after ] && pl_snap_host "$dir/raw/host-$when.txt"
  [ "$PL_FAMILY" = ipv6 ] && icmp6=$(pl_icmp6_sent)
  for n in "${PL_NS[@]}"; do pl_snap_ns "$n" "$dir/raw/ns-$n-$when.json"; done
  # The namespaces' counters are read one after the other, the links' before the ICMPv6
  # ones: an MLD report sent meanwhile is in some of the reads and not in others, and the
  # stages around it are off by one (a run made without pl_settle_icmp6 showed +1 and -1 on
  # a link and the receiver). Say so when it happens.
  if [ -n "$icmp6" ] && [ "$(pl_icmp6_sent)" != "$icmp6" ]; then
    pl_log "warning: ICMPv6 (MLD) sent while the '$when' counters were read: stages may be off by those frames"
  fi
  for ((i = 1; i <= HOPS; i++)); do
    [ -f "$dir/raw/hop$i/pid" ] || continue # route, redirect: no process
    ticks=$(pl_proc_ticks "$(cat "$dir/raw/hop$i/pid")" 2>/dev/null || echo "")
    echo "$ticks" >"$dir/raw/hop$i/cpu-$when.txt"
  done
  [ "$when" = before ] && pl_snap_host "$dir/raw/host-$when.txt"
  return 0
}

run_generator() { # DIR
  local dir=$1 limit=$((PACKETS * 2 / BOUND_PPS + 30)) rc=0 gen_flags=()
  [ -n "$GEN_GSO" ] && gen_flags=(--gso-segments "$GEN_GSO")
  [ -n "$GEN_COALESCE" ] && gen_flags+=(--coalesce-us "$GEN_COALESCE")
  # In the background and waited for, so that a signal to this script is handled at once.
  ip netns exec "${PL_NS[0]}" "$BIN/trafficgen" send \
    --dst "$(pl_hostport "$PL_DST" "$PL_PORT")" --iface out0 --ttl 8 --pps "$PPS" --count "$PACKETS" --size "$SIZE" \
    "${gen_flags[@]}" --json "$dir/raw/send.json" >"$dir/raw/send.out" 2>"$dir/raw/send.log" &
  local pid=$!
  PL_PIDS+=("$pid")
  pl_wait_pid "$pid" "$limit" || rc=$?
  forget_pid "$pid"
  [ "$rc" -eq 0 ] || pl_die "trafficgen send exited $rc: $(tail -3 "$dir/raw/send.log")"
}

collect_relay_stats() { # RELAY DIR: live counters, then stop the relays (mcrd writes final.json)
  local relay=$1 dir=$2 i hd
  for ((i = 1; i <= HOPS; i++)); do
    hd=$dir/raw/hop$i
    if is_mcrd "$relay"; then
      "$BIN/mcrctl" --socket "$(pl_sock "$hd" mcrd)" stats --json >"$hd/stats-before-shutdown.json" ||
        pl_log "mcrctl stats failed for hop $i"
    fi
    stop_perf_stat "$hd"
    [ -f "$hd/pid" ] && stop_child "$(cat "$hd/pid")"
  done
  if is_mcrd "$relay"; then
    for ((i = 1; i <= HOPS; i++)); do
      [ -s "$dir/raw/hop$i/final.json" ] || pl_die "mcrd of hop $i wrote no final stats: $(cat "$dir/raw/hop$i/mcrd.log")"
    done
  fi
  # fast_path = "required" refuses to start without the program, but a rule the program cannot
  # express would still run in userspace: a fastpath run measures the kernel path only if every
  # hop's rule ran there.
  if [ "$relay" = fastpath ]; then
    local paths
    for ((i = 1; i <= HOPS; i++)); do
      paths=$(jq -r '[.flows[].path] | unique | join(",")' "$dir/raw/hop$i/final.json")
      [ "$paths" = kernel ] || pl_die "relay kind fastpath: hop $i's rule ran on path '$paths', not 'kernel' (mcrctl rules list says why): this run does not measure the fast path"
    done
  fi
}

# hop_text RELAY DIR I: analyzer text input for what the relay's own JSON cannot say: its
# process CPU over the measured window, and for socat/kernel/route/redirect the counters taken
# from the kernel.
hop_text() {
  local relay=$1 dir=$2 i=$3 hd=$2/raw/hop$3 b=() a=() hz
  hz=$(getconf CLK_TCK)
  [ -f "$hd/cpu-before.txt" ] && { read -r -a b <"$hd/cpu-before.txt" || true; }
  [ -f "$hd/cpu-after.txt" ] && { read -r -a a <"$hd/cpu-after.txt" || true; }
  {
    if [ "$relay" != kernel ] && [ ${#a[@]} -eq 2 ] && [ ${#b[@]} -eq 2 ]; then
      echo "cpu_user=$(pl_ns_secs $(((a[0] - b[0]) * 1000000000 / hz)))s"
      echo "cpu_system=$(pl_ns_secs $(((a[1] - b[1]) * 1000000000 / hz)))s"
    fi
    # socat/kernel/route/redirect count nothing themselves: their rx, drops and tx_sent come
    # from the kernel's counters around them (analyzer/src/pipeline/hop.rs says which).
    if ! is_mcrd "$relay"; then
      "$ANALYZER" pipeline hop --chain "$dir/raw/chain.json" --hop "$i" ||
        pl_die "analyzer pipeline hop failed on $dir/raw/chain.json"
    fi
  } >"$hd/hop.txt"
}

write_host_cpu() { # DIR: raw/host-cpu.json (the host CPU this script's process tree caused), for --host
  local dir=$1
  "$ANALYZER" pipeline host-cpu --before "$dir/raw/host-before.txt" --after "$dir/raw/host-after.txt" \
    --root "$$" --clk-tck "$(getconf CLK_TCK)" --out "$dir/raw/host-cpu.json" ||
    pl_die "analyzer pipeline host-cpu failed on $dir/raw/host-*.txt"
}

write_kernel_json() { # DIR: raw/kernel.json (veth links, UDP per namespace, softnet), for --kernel
  "$ANALYZER" pipeline kernel --chain "$1/raw/chain.json" --host-cpu "$1/raw/host-cpu.json" \
    --out "$1/raw/kernel.json" || pl_die "analyzer pipeline kernel failed on $1/raw/chain.json"
}

write_chain_json() { # RELAY DIR
  local relay=$1 dir=$2 i role stats n
  {
    # An IPv6 run's chain is 1.1 (family, udp6, icmp6); an IPv4 run's stays 1.0 as before.
    if [ "$PL_FAMILY" = ipv6 ]; then
      echo '{"schema":"mcr.pipeline.chain","version":1,"minor_version":1,"relay":"'"$relay"'","veth_gso":"'"$VETH_GSO"'","family":"ipv6","ns":['
    else
      echo '{"schema":"mcr.pipeline.chain","version":1,"relay":"'"$relay"'","veth_gso":"'"$VETH_GSO"'","ns":['
    fi
    for i in "${!PL_NS[@]}"; do
      n=${PL_NS[$i]} role=hop stats=null
      [ "$i" -eq 0 ] && role=gen
      [ "$i" -eq $((${#PL_NS[@]} - 1)) ] && role=recv
      if [ "$role" = hop ] && is_mcrd "$relay"; then stats=$(cat "$dir/raw/hop$i/final.json"); fi
      [ "$i" -gt 0 ] && echo ,
      jq -n --arg name "$n" --arg role "$role" --slurpfile b "$dir/raw/ns-$n-before.json" \
        --slurpfile a "$dir/raw/ns-$n-after.json" --argjson stats "$stats" \
        '{name: $name, role: $role, before: $b[0], after: $a[0], stats: $stats}'
    done
    echo ']}'
  } | jq . >"$dir/raw/chain.json"
}

ingest() { # RELAY DIR NAME
  local relay=$1 dir=$2 name=$3 i args=() hopname
  for ((i = 1; i <= HOPS; i++)); do
    hopname=$(hop_name "$relay" "$i")
    is_mcrd "$relay" && args+=(--hop "$hopname=$dir/raw/hop$i/final.json")
    [ -s "$dir/raw/hop$i/hop.txt" ] && args+=(--hop "$hopname=$dir/raw/hop$i/hop.txt")
    [ -s "$dir/raw/hop$i/perf.csv" ] && args+=(--hop "$hopname=$dir/raw/hop$i/perf.csv")
    args+=(--set "hop.$hopname.relay=$(relay_label "$relay")")
  done
  (cd "$ROOT" && "$ANALYZER" ingest --name "$name" --date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --generator "$dir/raw/send.json" "${args[@]}" --receiver "$dir/raw/recv.json" \
    --host "$dir/raw/host-cpu.json" --kernel "$dir/raw/kernel.json" \
    --conservation "$dir/conservation.json" --env-from-host \
    --set "config.harness.script=scripts/pipeline_veth.sh" \
    --set "env.commit=$(pl_bin_commit "$BIN" "$ROOT")" \
    --set "config.harness.relay=$relay" --set "config.harness.hops=$HOPS" \
    --set "config.harness.family=$PL_FAMILY" \
    --set "config.harness.topology=veth chain, one namespace per hop" \
    --set "config.harness.veth_tx_udp_segmentation=$VETH_GSO" \
    --set "env.veth_tx_udp_segmentation=$PL_GSO_SEEN" \
    --set "config.harness.host_cpu_method=host busy minus other processes (scripts/README.md)" \
    --set "config.relay.workers=$PL_CFG_WORKERS" \
    ${PL_CFG[monitor]:+--set "config.relay.monitor=${PL_CFG[monitor]}"} \
    --out "$dir/run.json") >"$dir/raw/ingest.log" 2>&1 || pl_die "analyzer ingest failed: $(cat "$dir/raw/ingest.log")"
  [ -s "$dir/run.json" ] || pl_die "analyzer ingest wrote no $dir/run.json (is $ANALYZER current?)"
}

relay_label() { # RELAY: the implementation's name in the run record
  case $1 in mcrd) echo mcr ;; mcrd-auto) echo mcr-auto ;; fastpath) echo mcr-fastpath ;; kernel) echo smcroute ;; route) echo kernel-unicast-forwarding ;; redirect) echo tc-redirect ;; *) echo "$1" ;; esac
}

is_mcrd() { # RELAY: true for the relays that are mcrd (and write its stats)
  [ "$1" = mcrd ] || [ "$1" = fastpath ] || [ "$1" = mcrd-auto ]
}

hop_name() { # RELAY I
  case $1 in mcrd) echo "MCR-$2" ;; mcrd-auto) echo "AUTO-$2" ;; fastpath) echo "FAST-$2" ;; kernel) echo "KERNEL-$2" ;; route) echo "ROUTE-$2" ;; redirect) echo "REDIRECT-$2" ;; socat) echo "SOCAT-$2" ;; esac
}

check_conservation() { # DIR
  "$ANALYZER" pipeline conservation --generator "$1/raw/send.json" --receiver "$1/raw/recv.json" \
    --chain "$1/raw/chain.json" --out "$1/conservation.json" ||
    pl_die "analyzer pipeline conservation failed on $1/raw"
}

print_summary() { # DIR
  local dir=$1
  "$ANALYZER" pipeline summary --generator "$dir/raw/send.json" --receiver "$dir/raw/recv.json" \
    --chain "$dir/raw/chain.json" --host-cpu "$dir/raw/host-cpu.json" | tee "$dir/summary.txt"
}

run_one() { # RELAY -> writes OUT/RELAY-HOPSh-PPSpps or -unpaced (with no hops: none, or route for unicast)
  local relay=$1 dir name
  dir=$OUT/$relay-${HOPS}h-$RATE_TAG$FAMILY_TAG
  name=${NAME:-$relay ${HOPS}h $RATE_TAG${FAMILY_TAG:+ ipv6}}
  PL_DST=$PL_GROUP
  [ "$relay" = route ] && PL_DST=10.77.$HOPS.2
  if [ "$HOPS" -eq 0 ]; then
    if [ "$relay" = route ]; then
      relay=none-unicast dir=$OUT/direct-unicast-0h-$RATE_TAG name=${NAME:-direct-unicast 0h $RATE_TAG}
    else
      relay=none dir=$OUT/direct-0h-$RATE_TAG$FAMILY_TAG name=${NAME:-direct 0h $RATE_TAG${FAMILY_TAG:+ ipv6}}
    fi
  fi
  mkdir -p "$dir/raw"
  pl_topology_names "$PREFIX" "$HOPS"
  pl_topology_check_free
  PL_OWN_NS=1
  pl_topology_build "$HOPS" "$VETH_GSO"
  [ "$PL_DST" = "$PL_GROUP" ] || pl_topology_unicast
  [ "$HOPS" -gt 0 ] && start_relays "$relay" "$dir"
  start_receiver "$dir"
  # IPv6: the MLD reports of the links, addresses and joins end before the window opens
  # (whatever crosses in it is counted, see pl_snap_ns and conservation).
  [ "$PL_FAMILY" = ipv6 ] && pl_settle_icmp6 3 20
  snapshot "$dir" before
  PL_GSO_SEEN=$(pl_gso_state "${PL_NS[0]}" out0)
  run_generator "$dir"
  pl_wait_pid "$PL_RECV_PID" $((PACKETS / BOUND_PPS + 40)) || pl_log "receiver exited with $?"
  forget_pid "$PL_RECV_PID"
  snapshot "$dir" after
  [ "$HOPS" -gt 0 ] && collect_relay_stats "$relay" "$dir"
  write_chain_json "$relay" "$dir"
  local i
  for ((i = 1; i <= HOPS; i++)); do hop_text "$relay" "$dir" "$i"; done
  write_host_cpu "$dir"
  write_kernel_json "$dir"
  teardown
  check_conservation "$dir"
  ingest "$relay" "$dir" "$name"
  print_summary "$dir"
  PL_LAST_RUN=$dir/run.json
  PL_LAST_OK=$(jq -r .ok "$dir/conservation.json")
}

main() {
  parse_args "$@"
  check_prerequisites
  set -o errtrace
  trap 'pl_log "failed: line $LINENO: $BASH_COMMAND"' ERR
  trap on_exit EXIT
  trap on_signal INT TERM
  pl_runtime_dir
  mkdir -p "$OUT"
  local relay failed=0 runs=()
  IFS=, read -r -a relays <<<"$RELAYS"
  # No hops: the multicast direct path, and the unicast one when route is asked for.
  if [ "$HOPS" -eq 0 ]; then
    case ,$RELAYS, in
      ,route,) relays=(route) ;;
      *,route,*) relays=(none route) ;;
      *) relays=(none) ;;
    esac
  fi
  for relay in "${relays[@]}"; do
    run_one "$relay"
    runs+=("$PL_LAST_RUN")
    [ "$PL_LAST_OK" = true ] || failed=1
  done
  if [ "${#runs[@]}" -gt 1 ]; then
    local rc=0
    (cd "$ROOT" && "$ANALYZER" compare "${runs[@]}" --out "$OUT/compare.md" --png-dir "$OUT/png") \
      >"$OUT/compare.log" 2>&1 || rc=$?
    pl_analyzer_said compare "$rc" "$OUT/compare.log"
    pl_log "comparison: $OUT/compare.md"
  fi
  pl_log "records under $OUT"
  [ "$failed" -eq 0 ] || exit 3
}

main "$@"
