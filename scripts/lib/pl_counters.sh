# shellcheck shell=bash
# Counter snapshots for pipeline_veth.sh: per namespace (veth statistics, UDP and IPv4 MIBs,
# multicast routing VIFs), host-wide (/proc/stat, softnet drops) and per process (/proc/PID/stat).
# Every snapshot is a file; nothing here keeps state in variables. What is made of them
# (conservation, kernel deltas, host CPU) is `analyzer pipeline`, which reads them through its
# types (analyzer/src/pipeline/).

# pl_snap_ns NS FILE: one JSON object {links: {IF: {rx_packets, rx_dropped, ...}}, udp: {...},
# ip: {...}, mr_vif: {IF: {...}}}. ip is the IPv4 MIB (InReceives, ForwDatagrams, OutDiscards...):
# the only counters of the kernel's unicast forwarding (relay kind route). With PL_FAMILY=ipv6
# also udp6 (the Udp6 lines of /proc/net/snmp6, prefix dropped) and icmp6: {IF: {in_msgs,
# out_msgs}} (/proc/net/dev_snmp6/IF), and mr_vif from /proc/net/ip6_mr_vif.
pl_snap_ns() {
  local ns=$1 out=$2 links snmp udp ip vif vif_file=/proc/net/ip_mr_vif
  [ "${PL_FAMILY:-ipv4}" = ipv6 ] && vif_file=/proc/net/ip6_mr_vif
  links=$(ip -n "$ns" -s -j link show | jq 'map({key: .ifname, value: (.stats64 | {rx_packets: .rx.packets,
    rx_dropped: .rx.dropped, rx_errors: .rx.errors, tx_packets: .tx.packets, tx_dropped: .tx.dropped,
    tx_errors: .tx.errors})}) | from_entries')
  snmp=$(ip netns exec "$ns" cat /proc/net/snmp)
  udp=$(pl_snmp_json Udp: <<<"$snmp")
  ip=$(pl_snmp_json Ip: <<<"$snmp")
  # /proc/net/ip_mr_vif: Interface BytesIn PktsIn BytesOut PktsOut Flags Local Remote
  # /proc/net/ip6_mr_vif has the same first columns.
  vif=$({ ip netns exec "$ns" cat "$vif_file" 2>/dev/null || true; } | awk '
    NR > 1 { printf "%s\"%s\":{\"bytes_in\":%s,\"pkts_in\":%s,\"bytes_out\":%s,\"pkts_out\":%s}", (n++ ? "," : ""), $2, $3, $4, $5, $6 }
    END { if (!n) printf "" }')
  if [ "${PL_FAMILY:-ipv4}" = ipv6 ]; then
    local udp6 icmp6
    udp6=$(ip netns exec "$ns" cat /proc/net/snmp6 | awk '
      $1 ~ /^Udp6/ { printf "%s\"%s\":%s", (n++ ? "," : "{"), substr($1, 5), $2 } END { print (n ? "}" : "{}") }')
    icmp6=$(ip netns exec "$ns" sh -c 'cd /proc/net/dev_snmp6 && for f in *; do echo "if $f"; cat "$f"; done' | awk '
      $1 == "if" { dev = $2 } $1 == "Icmp6InMsgs" { inm[dev] = $2 } $1 == "Icmp6OutMsgs" { outm[dev] = $2 }
      END { printf "{"; for (d in inm) printf "%s\"%s\":{\"in_msgs\":%s,\"out_msgs\":%s}", (n++ ? "," : ""), d, inm[d], outm[d] + 0; print "}" }')
    jq -n --argjson links "$links" --argjson udp "${udp:-{\}}" --argjson ip "${ip:-{\}}" --argjson vif "{${vif}}" \
      --argjson udp6 "$udp6" --argjson icmp6 "$icmp6" \
      '{links: $links, udp: $udp, ip: $ip, mr_vif: $vif, udp6: $udp6, icmp6: $icmp6}' >"$out"
    return 0
  fi
  jq -n --argjson links "$links" --argjson udp "${udp:-{\}}" --argjson ip "${ip:-{\}}" --argjson vif "{${vif}}" \
    '{links: $links, udp: $udp, ip: $ip, mr_vif: $vif}' >"$out"
}

# pl_snmp_json PREFIX: one table of /proc/net/snmp (on stdin; PREFIX e.g. "Udp:", a header line
# then a value line) as a JSON object.
pl_snmp_json() {
  awk -v t="$1" '
    $1 == t && !h { for (i = 2; i <= NF; i++) k[i] = $i; h = 1; next }
    $1 == t && h  { printf "{"; for (i = 2; i <= NF; i++) printf "%s\"%s\":%s", (i > 2 ? "," : ""), k[i], $i; print "}" }'
}

# pl_snap_host FILE: wall clock (/proc/uptime), host CPU (/proc/stat, USER_HZ ticks), softnet
# drops summed over CPUs, and every process's CPU ticks, one line each:
#   uptime SECONDS
#   stat user nice system idle iowait irq softirq steal
#   ncpu N
#   softnet_dropped N
#   proc PID PPID STARTTIME UTIME STIME CUTIME CSTIME COMM
pl_snap_host() {
  {
    awk '{ print "uptime", $1 }' /proc/uptime
    awk '$1 == "cpu" { print "stat", $2, $3, $4, $5, $6, $7, $8, $9 } $1 ~ /^cpu[0-9]/ { n++ } END { print "ncpu", n }' /proc/stat
    awk '{ d = 0; h = $2; for (i = 1; i <= length(h); i++) d = d * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1; s += d } END { print "softnet_dropped", s + 0 }' /proc/net/softnet_stat
    # comm may hold spaces and parentheses: split at the last ") ".
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
      p = index($0, " ("); q = 0; s = $0
      for (i = length(s); i > 0; i--) if (substr(s, i, 2) == ") ") { q = i; break }
      if (!p || !q) next
      pid = substr(s, 1, p - 1); comm = substr(s, p + 2, q - p - 2); gsub(/[ \t]/, "_", comm)
      n = split(substr(s, q + 2), f, " ")
      # f[1]=state f[2]=ppid ... f[12]=utime f[13]=stime f[14]=cutime f[15]=cstime f[20]=starttime
      print "proc", pid, f[2], f[20], f[12], f[13], f[14], f[15], comm
    }'
  } >"$1"
}

# The host CPU the run caused, from two of these snapshots, is `analyzer pipeline host-cpu`
# (analyzer/src/pipeline/host_cpu.rs says how it is attributed; scripts/README.md why).

# pl_proc_ticks PID: "UTIME STIME" of a live process, in USER_HZ ticks.
pl_proc_ticks() {
  awk '{ s = $0; for (i = length(s); i > 0; i--) if (substr(s, i, 2) == ") ") break
         split(substr(s, i + 2), f, " "); print f[12], f[13] }' "/proc/$1/stat"
}
