# shellcheck shell=bash
# shellcheck disable=SC2034 # PL_LAST_PID is read by the caller
# The relays of one hop: mcrd, socat, the kernel's multicast forwarding driven by smcroute, the
# kernel's unicast forwarding (route), or the floor (redirect: frames moved in0 -> out0 as they are). Each pl_start_* starts one relay in namespace NS
# forwarding GROUP:PORT from in0 to out0 and sets PL_LAST_PID (called in the main shell, never
# in $(...), so the relay stays our child and its CPU time counts as the run's; empty for route
# and redirect, which have no process); pl_ready_* waits until it forwards. Files go to DIR.
# Expects BIN (the release binaries), PL_RUN (pl_runtime_dir: the sockets) and the PL_CFG_*
# tunables (set by pipeline_veth.sh).

# pl_mcrd_config DIR GROUP PORT [FAST_PATH]: the relay's TOML with every [dataplane] tunable we
# were given (and fast_path when FAST_PATH is set).
pl_mcrd_config() {
  local dir=$1 group=$2 port=$3 fast_path=${4:-}
  {
    echo 'log_level = "warn"'
    echo '[dataplane]'
    echo "workers = $PL_CFG_WORKERS"
    local k v
    for k in ring_frames buffer_count buffer_size uring_entries max_in_flight_sends batch_size \
      max_gso_segments socket_sndbuf busy_poll_us rx_coalesce_us ring_frame_size realtime_priority; do
      v=${PL_CFG[$k]:-}
      [ -n "$v" ] && echo "$k = $v"
    done
    [ -n "${PL_CFG[gso]:-}" ] && echo "gso = ${PL_CFG[gso]}"
    [ -n "$fast_path" ] && echo "fast_path = \"$fast_path\""
    echo '[control]'
    echo "socket = \"$(pl_sock "$dir" mcrd)\""
    echo '[[rule]]'
    echo 'name = "pipeline"'
    echo 'input = "in0"'
    echo "group = \"$group\""
    echo "port = $port"
    echo "outputs = [{ dest = \"$group\", port = $port, interface = \"out0\", ttl = 8 }]"
    if [ -n "${PL_CFG[monitor]:-}" ]; then echo "monitor = \"${PL_CFG[monitor]}\""; fi
  } >"$dir/relay.toml"
}

# pl_start_mcrd NS DIR GROUP PORT [HOP_INDEX [FAST_PATH]] -> PL_LAST_PID. Relay kind mcrd is
# the userspace path: fast_path = "off" unless FAST_PATH says otherwise (mcrd's default is
# "auto", which would move the flow into the kernel and change what the history measures);
# FAST_PATH "-" leaves it unset (relay kind mcrd-auto).
pl_start_mcrd() {
  local ns=$1 dir=$2 fast_path=${6:-off}
  [ "$fast_path" = - ] && fast_path=''
  pl_mcrd_config "$dir" "$3" "$4" "$fast_path"
  ip netns exec "$ns" "$BIN/mcrctl" config check "$dir/relay.toml" >"$dir/config-check.txt" 2>&1 ||
    pl_die "mcrctl config check refused $dir/relay.toml: $(cat "$dir/config-check.txt")"
  ip netns exec "$ns" "$BIN/mcrd" --config "$dir/relay.toml" --final-stats "$dir/final.json" \
    >"$dir/mcrd.out" 2>"$dir/mcrd.log" &
  PL_LAST_PID=$!
}

pl_ready_mcrd() { pl_wait_for 10 "$BIN/mcrctl" --socket "$(pl_sock "$2" mcrd)" ping; }

# pl_start_fastpath NS DIR GROUP PORT HOP_INDEX -> PL_LAST_PID: mcrd on its kernel fast path
# (fast_path = "required": it refuses to start rather than fall back to userspace).
pl_start_fastpath() { pl_start_mcrd "$1" "$2" "$3" "$4" "$5" required; }
pl_ready_fastpath() { pl_ready_mcrd "$@"; }

# pl_start_mcrd-auto NS DIR GROUP PORT HOP_INDEX -> PL_LAST_PID: mcrd as a user gets it,
# fast_path unset ("auto"): each rule goes to the kernel fast path where it fits it, the others
# stay in userspace (mcrctl rules list says why).
pl_start_mcrd-auto() { pl_start_mcrd "$1" "$2" "$3" "$4" "$5" -; }
pl_ready_mcrd-auto() { pl_ready_mcrd "$@"; }

# pl_start_socat NS DIR GROUP PORT HOP_INDEX -> PL_LAST_PID. One datagram in, one out; in0's address is
# 10.77.(i-1).2, out0's 10.77.i.1.
pl_start_socat() {
  local ns=$1 dir=$2 group=$3 port=$4 i=$5
  if [ "${PL_FAMILY:-ipv4}" = ipv6 ]; then
    # socat 1.7.4 has no IPv6 form of ip-multicast-if/-ttl/-loop: the socket options by number
    # (IPPROTO_IPV6 41: IPV6_MULTICAST_IF 17 = out0's index, _HOPS 18, _LOOP 19).
    local ifindex
    ifindex=$(ip -n "$ns" -j link show out0 | jq -r '.[0].ifindex')
    ip netns exec "$ns" socat -u \
      "UDP6-RECV:$port,ipv6-join-group=[$group]:in0,reuseaddr" \
      "UDP6-SENDTO:[$group]:$port,setsockopt-int=41:17:$ifindex,setsockopt-int=41:18:8,setsockopt-int=41:19:0" \
      >"$dir/socat.out" 2>"$dir/socat.log" &
    PL_LAST_PID=$!
    return 0
  fi
  ip netns exec "$ns" socat -u \
    "UDP4-RECV:$port,ip-add-membership=$group:10.77.$((i - 1)).2,reuseaddr" \
    "UDP4-SENDTO:$group:$port,ip-multicast-if=10.77.$i.1,ip-multicast-ttl=8,ip-multicast-loop=0" \
    >"$dir/socat.out" 2>"$dir/socat.log" &
  PL_LAST_PID=$!
}

# socat has no control channel: it is ready once its socket is bound and the group joined.
pl_ready_socat() {
  pl_wait_for 10 pl_ns_has_udp_port "$1" "$3"
}

pl_ns_has_udp_port() { ip netns exec "$1" ss -Hlun "sport = :$2" | grep -q .; }

# pl_start_kernel NS DIR GROUP PORT -> PL_LAST_PID of smcrouted. The kernel forwards; smcrouted only
# holds the multicast routing socket and installs the (*,G) route in0 -> out0.
pl_start_kernel() {
  local ns=$1 dir=$2 group=$3 source=10.77.0.1
  [ "${PL_FAMILY:-ipv4}" = ipv6 ] && source=fd77:0::1
  cat >"$dir/smcroute.conf" <<EOF
phyint in0 enable
phyint out0 enable
mroute from in0 source $source group $group to out0
EOF
  ip netns exec "$ns" smcrouted -n -N -f "$dir/smcroute.conf" -i "pl-$ns" -u "$(pl_sock "$dir" smcroute)" \
    -P "$dir/smcroute.pid" -l notice >"$dir/smcroute.out" 2>"$dir/smcroute.log" &
  PL_LAST_PID=$!
}

pl_ready_kernel() {
  pl_wait_for 10 pl_kernel_route_installed "$1" "$2"
}

pl_kernel_route_installed() {
  ip netns exec "$1" smcroutectl -u "$(pl_sock "$2" smcroute)" show routes 2>/dev/null | grep -q "${PL_GROUP}"
}

# pl_start_route NS DIR GROUP PORT -> PL_LAST_PID empty: the kernel's own unicast IPv4
# forwarding, the baseline where the kernel has no multicast routing (CONFIG_IP_MROUTE unset).
# The traffic is unicast to the receiver's address (GROUP is unused; the routes and neighbours are
# pl_topology_unicast's); the per-packet work is the MFC's forward path without its per-VIF
# clone: FIB lookup, TTL, neighbour output. Nothing runs: the forwarding is softirq work.
pl_start_route() {
  local ns=$1 dir=$2
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  { ip -n "$ns" route show; ip -n "$ns" neigh show; } >"$dir/route.txt"
  PL_LAST_PID=''
}

# Ready once the receiver's address is routed out of out0.
pl_ready_route() {
  ip -n "$1" route get "$PL_DST" | grep -q ' dev out0 '
}

# pl_start_redirect NS DIR GROUP PORT -> PL_LAST_PID empty: the floor of a hop, no forwarding
# decision at all (lib/pl_redirect.bpf.c on in0's TC ingress, compiled for out0's ifindex). The
# frames keep their headers (the group's MAC and address, the generator's TTL), which every
# next in0 and the receiver accept. Attached with tc (clsact): this tc cannot attach tcx.
pl_start_redirect() {
  local ns=$1 dir=$2 ifindex
  ifindex=$(ip -n "$ns" -j link show out0 | jq -r '.[0].ifindex')
  clang -O2 -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -DOUT_IFINDEX="$ifindex" \
    -c "$HERE/lib/pl_redirect.bpf.c" -o "$dir/redirect.o" 2>"$dir/redirect.log" ||
    pl_die "clang could not build lib/pl_redirect.bpf.c: $(cat "$dir/redirect.log")"
  ip netns exec "$ns" tc qdisc add dev in0 clsact
  ip netns exec "$ns" tc filter add dev in0 ingress bpf direct-action obj "$dir/redirect.o" sec tc \
    2>>"$dir/redirect.log" || pl_die "tc could not attach the redirect on in0 of $ns: $(cat "$dir/redirect.log")"
  PL_LAST_PID=''
}

pl_ready_redirect() {
  ip netns exec "$1" tc filter show dev in0 ingress | grep -q 'pl_redirect'
}
