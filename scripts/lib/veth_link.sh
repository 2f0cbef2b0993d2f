# veth_link PREFIX NS_A IF_A ADDR_A NS_B IF_B ADDR_B: a veth pair between two namespaces, named
# IF_A and IF_B inside them, addressed and up, with UDP segmentation offload off on both ends
# (one frame per datagram on the wire, as on a real link). PREFIX names the pair while it is
# created in the current namespace (PREFIX-a, PREFIX-b), so scripts running side by side do
# not collide.
veth_link() {
  local p=$1
  shift
  ip link add "$p-a" type veth peer name "$p-b"
  ip link set "$p-a" netns "$1"; ip -n "$1" link set "$p-a" name "$2"
  ip link set "$p-b" netns "$4"; ip -n "$4" link set "$p-b" name "$5"
  ip -n "$1" addr add "$3" dev "$2"; ip -n "$1" link set dev "$2" up
  ip -n "$4" addr add "$6" dev "$5"; ip -n "$4" link set dev "$5" up
  ip netns exec "$1" ethtool -K "$2" tx-udp-segmentation off >/dev/null 2>&1 || true
  ip netns exec "$4" ethtool -K "$5" tx-udp-segmentation off >/dev/null 2>&1 || true
}
