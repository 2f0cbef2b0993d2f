# shellcheck shell=bash
# Counter snapshots for pipeline_veth.sh: per namespace (veth statistics, UDP and IPv4 MIBs,
# multicast routing VIFs), host-wide (/proc/stat, softnet drops) and per process (/proc/PID/stat), and the
# host-CPU attribution computed from two snapshots. Every snapshot is a file; nothing here keeps
# state in variables.

# pl_snap_ns NS FILE: one JSON object {links: {IF: {rx_packets, rx_dropped, ...}}, udp: {...},
# ip: {...}, mr_vif: {IF: {...}}}. ip is the IPv4 MIB (InReceives, ForwDatagrams, OutDiscards...):
# the only counters of the kernel's unicast forwarding (relay kind route).
pl_snap_ns() {
  local ns=$1 out=$2 links snmp udp ip vif
  links=$(ip -n "$ns" -s -j link show | jq 'map({key: .ifname, value: (.stats64 | {rx_packets: .rx.packets,
    rx_dropped: .rx.dropped, rx_errors: .rx.errors, tx_packets: .tx.packets, tx_dropped: .tx.dropped,
    tx_errors: .tx.errors})}) | from_entries')
  snmp=$(ip netns exec "$ns" cat /proc/net/snmp)
  udp=$(pl_snmp_json Udp: <<<"$snmp")
  ip=$(pl_snmp_json Ip: <<<"$snmp")
  # /proc/net/ip_mr_vif: Interface BytesIn PktsIn BytesOut PktsOut Flags Local Remote
  vif=$({ ip netns exec "$ns" cat /proc/net/ip_mr_vif 2>/dev/null || true; } | awk '
    NR > 1 { printf "%s\"%s\":{\"bytes_in\":%s,\"pkts_in\":%s,\"bytes_out\":%s,\"pkts_out\":%s}", (n++ ? "," : ""), $2, $3, $4, $5, $6 }
    END { if (!n) printf "" }')
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

# How pl_host_cpu measures, as the run record's host_cpu.method says it.
PL_HOST_CPU_METHOD='host busy (wall x CPUs - idle - iowait - steal, /proc/stat) minus other processes (/proc/PID/stat); scripts/README.md'

# pl_host_cpu BEFORE AFTER ROOT_PID OUT_JSON: the host CPU the run caused, in ns, as JSON
# (mcr.pipeline.host_cpu v1, read by analyzer ingest --host).
#   run = host busy - others
#   host busy = delta(wall) x CPUs - delta(idle + iowait + steal)
# Busy time is what the CPUs were not idle. The idle and iowait columns of /proc/stat are exact
# (NO_HZ idle accounting), but user/system/softirq are sampled at the tick: a workload that
# sleeps and wakes many times per tick (a paced sender, a relay woken per packet) is mostly
# missed by them (a 15 s run here: 0.39 s by the ticks, 9.9 s by the idle time), so they are
# reported but not used.
#   others = for every process alive at the end that is neither in ROOT_PID's process tree
#            nor a ksoftirqd/N thread: delta(utime+stime+cutime+cstime) if it was alive at the
#            start (same start time), else all of it (it started inside the window);
#            less, for every such process that was alive at the start and exited inside the
#            window, what it had used by the start (its reaper's cutime/cstime rise holds its
#            whole life, of which only the part inside the window is the others' load).
# ksoftirqd threads are not subtracted: on veth the receiving side's packet processing is
# softirq work, and when it is deferred it runs there. Their time is reported on its own.
pl_host_cpu() {
  local before=$1 after=$2 root=$3 out=$4 hz
  hz=$(getconf CLK_TCK)
  awk -v root="$root" -v hz="$hz" -v method="$PL_HOST_CPU_METHOD" '
    # in_root_tree(Q): whether Q or an ancestor of it, alive at the end, is ROOT_PID.
    function in_root_tree(q) {
      for (; q > 1; q = ppid[q]) { if (q == root) return 1; if (!(q in ppid)) return 0 }
      return 0
    }
    FNR == 1 { file++ }
    $1 == "stat" { for (i = 2; i <= 9; i++) st[file, i] = $i; next }
    $1 == "uptime" { up[file] = $2; next }
    $1 == "ncpu" { ncpu = $2; next }
    $1 == "softnet_dropped" { sn[file] = $2; next }
    $1 == "proc" {
      key = $2 ":" $4
      cpu = $5 + $6 + $7 + $8
      if (file == 1) { b[key] = cpu; bpid[key] = $2; bppid[$2] = $3; bkey[$2] = key; next }
      a[key] = cpu; pid[key] = $2; ppid[$2] = $3; comm[key] = $9; keys[++n] = key
    }
    END {
      ticks_busy = 0
      for (i = 2; i <= 9; i++) if (i != 5 && i != 6 && i != 9) ticks_busy += st[2, i] - st[1, i]
      wall = up[2] - up[1]
      busy = wall * hz * ncpu - ((st[2, 5] - st[1, 5]) + (st[2, 6] - st[1, 6]) + (st[2, 9] - st[1, 9]))
      if (busy < 0) busy = 0
      softirq = st[2, 8] - st[1, 8]; irq = st[2, 7] - st[1, 7]
      user = (st[2, 2] - st[1, 2]) + (st[2, 3] - st[1, 3]); sy = st[2, 4] - st[1, 4]
      for (k = 1; k <= n; k++) {
        key = keys[k]; p = pid[key]
        d = (key in b) ? a[key] - b[key] : a[key]
        if (d < 0) d = 0
        if (in_root_tree(p)) ours += d
        else if (comm[key] ~ /^ksoftirqd\//) ksoft += d
        else { others += d; if (d > 0) top = top sprintf("%s{\"pid\":%s,\"comm\":\"%s\",\"ticks\":%d}", (nt++ ? "," : ""), p, comm[key], d) }
      }
      # exited inside the window: walk up to the nearest ancestor still alive at the end
      for (key in b) {
        if (key in a) continue
        q = bppid[bpid[key]]
        while (q > 1) {
          if (q in ppid) break
          if (!(q in bppid)) break
          q = bppid[q]
        }
        if (!in_root_tree(q)) { others -= b[key]; exited += b[key] }
      }
      # Process ticks are sampled; subtracting what exited processes had used by the start can
      # overshoot, and a negative load of others is no load.
      if (others < 0) others = 0
      run = busy - others; if (run < 0) run = 0
      t = 1e9 / hz
      printf "{\"schema\":\"mcr.pipeline.host_cpu\",\"version\":1,\"method\":\"%s\",", method
      printf "\"clk_tck\":%d,\"cpus\":%d,\"window_ns\":%.0f,\"host_busy_ns\":%.0f,\"host_busy_ticks_ns\":%.0f,\"host_user_ns\":%.0f,\"host_system_ns\":%.0f,\"host_irq_ns\":%.0f,\"host_softirq_ns\":%.0f,", hz, ncpu, wall * 1e9, busy * t, ticks_busy * t, user * t, sy * t, irq * t, softirq * t
      printf "\"exited_before_window_ns\":%.0f,\"other_processes_ns\":%.0f,\"our_processes_ns\":%.0f,\"ksoftirqd_ns\":%.0f,\"run_ns\":%.0f,", exited * t, others * t, ours * t, ksoft * t, run * t
      printf "\"softnet_dropped_host\":%d,\"other_processes\":[%s]}\n", sn[2] - sn[1], top
    }' "$before" "$after" >"$out"
}

# pl_proc_ticks PID: "UTIME STIME" of a live process, in USER_HZ ticks.
pl_proc_ticks() {
  awk '{ s = $0; for (i = length(s); i > 0; i--) if (substr(s, i, 2) == ") ") break
         split(substr(s, i + 2), f, " "); print f[12], f[13] }' "/proc/$1/stat"
}
