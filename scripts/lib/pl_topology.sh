# shellcheck shell=bash
# The chain of network namespaces: PREFIX-gen -> PREFIX-r1 .. PREFIX-rN -> PREFIX-recv, joined by
# veth pairs. Every namespace calls its upstream interface in0 and its downstream one out0.
# Link i (0-based) joins namespace i's out0 (10.77.i.1/24) to namespace i+1's in0 (10.77.i.2/24);
# with --ipv6 instead fd77:i::1/64 to fd77:i::2/64 (nodad: usable at once), and no IPv4 address.
#
# Sourced by pipeline_veth.sh; expects PL_NS (array, filled by pl_topology_names) and PL_FAMILY
# (ipv4 or ipv6).

# pl_topology_names PREFIX HOPS: fills PL_NS with the namespace names in chain order.
pl_topology_names() {
  local prefix=$1 hops=$2 i
  PL_NS=("$prefix-gen")
  for ((i = 1; i <= hops; i++)); do PL_NS+=("$prefix-r$i"); done
  PL_NS+=("$prefix-recv")
}

# pl_topology_check_free: refuses to start when one of our namespaces exists (another run, or
# one that was killed with SIGKILL and could not clean up).
pl_topology_check_free() {
  local n existing
  existing=$(ip netns list | awk '{print $1}')
  for n in "${PL_NS[@]}"; do
    if grep -qxF "$n" <<<"$existing"; then
      pl_die "namespace $n exists (another run is going on, or one was killed). If no run is going on, remove it with: ip netns del $n   (all of them: ip netns list | awk '/^${n%-*}-/{print \$1}' | xargs -rn1 ip netns del)"
    fi
  done
}

# pl_topology_remove: deletes our namespaces (their veths go with them). Safe to call twice.
pl_topology_remove() {
  local n
  for n in "${PL_NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}

# pl_ns_create NS: a namespace with lo up. IPv4 runs turn IPv6 off (no MLD/ND frames in the
# counters). IPv6 runs keep it on but quiet: no duplicate address detection (no neighbour
# solicitations for the link-local addresses), no router solicitations, no router
# advertisements taken. What is left is MLD: every interface reports its solicited-node groups
# when it comes up and the relays and receiver their groups when they join (upstream, out of
# in0); pl_settle_icmp6 waits for that to end before the window opens, and the snapshots count
# each interface's ICMPv6 messages so that conservation takes out whatever still crossed.
pl_ns_create() {
  ip netns add "$1"
  if [ "${PL_FAMILY:-ipv4}" = ipv6 ]; then
    local k
    for k in all default; do
      ip netns exec "$1" sysctl -qw "net.ipv6.conf.$k.accept_dad=0" "net.ipv6.conf.$k.dad_transmits=0" \
        "net.ipv6.conf.$k.router_solicitations=0" "net.ipv6.conf.$k.accept_ra=0"
    done
  else
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  fi
  ip -n "$1" link set lo up
}

# pl_link I GSO: veth between PL_NS[I]:out0 and PL_NS[I+1]:in0; GSO is "on" or "off"
# (tx-udp-segmentation of both ends).
pl_link() {
  local i=$1 gso=$2 up=${PL_NS[$1]} down=${PL_NS[$(($1 + 1))]}
  local a="plva$$" b="plvb$$"
  ip link add "$a" type veth peer name "$b"
  ip link set "$a" netns "$up"
  ip -n "$up" link set "$a" name out0
  ip link set "$b" netns "$down"
  ip -n "$down" link set "$b" name in0
  if [ "${PL_FAMILY:-ipv4}" = ipv6 ]; then
    ip -n "$up" -6 addr add "fd77:$i::1/64" dev out0 nodad
    ip -n "$down" -6 addr add "fd77:$i::2/64" dev in0 nodad
  else
    ip -n "$up" addr add "10.77.$i.1/24" dev out0
    ip -n "$down" addr add "10.77.$i.2/24" dev in0
  fi
  ip -n "$up" link set out0 up
  ip -n "$down" link set in0 up
  ip netns exec "$up" ethtool -K out0 tx-udp-segmentation "$gso" >/dev/null
  ip netns exec "$down" ethtool -K in0 tx-udp-segmentation "$gso" >/dev/null
}

# pl_gso_state NS IF: what ethtool reports for tx-udp-segmentation ("on"/"off").
pl_gso_state() {
  ip netns exec "$1" ethtool -k "$2" | awk '$1 == "tx-udp-segmentation:" { print $2; exit }'
}

# pl_routes_upstream: in every namespace after the generator's, routes to the upstream subnets
# via the upstream neighbour, so the sender's address is reachable back through in0 and the
# reverse-path filter (set strict, 1, in the relays) accepts the traffic for in-kernel
# forwarding. mcrd does not need them (AF_PACKET sees frames before the filter); they are there
# for every relay so that the topology is the same.
pl_routes_upstream() {
  local last=$((${#PL_NS[@]} - 1)) i j
  if [ "${PL_FAMILY:-ipv4}" = ipv6 ]; then
    # IPv6 has no rp_filter; ip6mr checks only that a packet came in on its route's input VIF.
    # The routes keep the topology the same as IPv4's.
    for ((i = 1; i <= last; i++)); do
      for ((j = 0; j < i - 1; j++)); do
        ip -n "${PL_NS[$i]}" -6 route add "fd77:$j::/64" via "fd77:$((i - 1))::1" dev in0
      done
    done
    return 0
  fi
  for ((i = 1; i <= last; i++)); do
    for ((j = 0; j < i - 1; j++)); do
      ip -n "${PL_NS[$i]}" route add "10.77.$j.0/24" via "10.77.$((i - 1)).1" dev in0
    done
    ip netns exec "${PL_NS[$i]}" sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.in0.rp_filter=1
  done
}

# pl_topology_unicast: the unicast path to the receiver's in0 (10.77.N.2, N = the last link), for
# the relay kind route and its direct path: in every namespace but the last hop (or, with no
# hops, the generator) a route to 10.77.N.0/24 via the next namespace's in0, and in every one but
# the receiver a permanent neighbour entry for the next in0. Permanent, because a neighbour being
# resolved holds the first packets in a queue whose overflow is counted only host-wide
# (/proc/net/stat/arp_cache, all namespaces together), and ARP frames in the window would enter
# the link counters; a resolved entry costs the same per packet.
pl_topology_unicast() {
  local last=$((${#PL_NS[@]} - 1)) i mac
  for ((i = 0; i < last; i++)); do
    if [ "$i" -lt $((last - 1)) ]; then
      ip -n "${PL_NS[$i]}" route add "10.77.$((last - 1)).0/24" via "10.77.$i.2" dev out0
    fi
    mac=$(ip -n "${PL_NS[$((i + 1))]}" -j link show in0 | jq -r '.[0].address')
    ip -n "${PL_NS[$i]}" neigh replace "10.77.$i.2" lladdr "$mac" nud permanent dev out0
  done
}

# pl_topology_build HOPS GSO: namespaces, links and routes.
pl_topology_build() {
  local hops=$1 gso=$2 n i
  for n in "${PL_NS[@]}"; do pl_ns_create "$n"; done
  for ((i = 0; i <= hops; i++)); do pl_link "$i" "$gso"; done
  pl_routes_upstream
}

# pl_icmp6_sent: the ICMPv6 messages every interface of our namespaces has sent so far, summed
# (/proc/net/dev_snmp6/IF, Icmp6OutMsgs).
pl_icmp6_sent() {
  local n
  for n in "${PL_NS[@]}"; do
    ip netns exec "$n" sh -c 'cat /proc/net/dev_snmp6/in0 /proc/net/dev_snmp6/out0 2>/dev/null; true'
  done | awk '$1 == "Icmp6OutMsgs" { s += $2 } END { print s + 0 }'
}

# pl_settle_icmp6 QUIET MAX: waits until no interface of ours has sent an ICMPv6 message (MLD
# reports after an address, a link or a join came up) for QUIET seconds, at most MAX seconds;
# says how many were sent and whether it settled. Conservation counts whatever crosses later.
pl_settle_icmp6() {
  local quiet=$(($1 * 2)) limit=$(($2 * 2)) last now still=0 i first
  first=$(pl_icmp6_sent) last=$first
  for ((i = 0; i < limit && still < quiet; i++)); do
    sleep 0.5
    now=$(pl_icmp6_sent)
    if [ "$now" = "$last" ]; then still=$((still + 1)); else still=0 last=$now; fi
  done
  if [ "$still" -ge "$quiet" ]; then
    pl_log "IPv6: $last ICMPv6 messages (MLD) sent while the chain came up; quiet for $1 s"
  else
    pl_log "IPv6: ICMPv6 messages still being sent after $2 s ($last so far); the run counts them"
  fi
}
