# Input: an array of {set: "CONFIG-NHh-PPSpps", rep: "repN", record: <run record>} from
# scripts/fast-path-speed.sh. Output: Markdown tables (reports/relay-speed-fastpath.md says what
# each column means).
# Per-hop host CPU pairs each chain run with the direct run of the same repeat and rate:
# (chain - direct) / hops, where the direct run has the chain's addressing (route: unicast,
# direct-unicast; the others: multicast, direct). The fast path against route pairs the two
# chains of the same repeat, rate and hop count: per hop (fast path's per-hop / route's, and
# the difference) and chain against chain (the whole-run CPU per packet, fast path / route);
# the same for each path against the floor of a hop (redirect) and for mcrd against the fast path.
def med: sort | if length == 0 then null
  elif length % 2 == 1 then .[(length - 1) / 2]
  else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def r1: if . == null then "—" else (. * 10 | round / 10 | tostring) end;
def r2: if . == null then "—" else (. * 100 | round / 100 | tostring) end;
def int: if . == null then "—" else (round | tostring) end;
def list(f): map(f | int) | join(", ");
def pct(p): .receiver.latency // [] | map(select(.percentile == p).latency_ns) | first;

map(.set as $s | ($s | capture("^(?<config>.+)-(?<hops>[0-9])h-(?<rate>[0-9]+)pps$")) + {
  rep, record,
  sent: .record.generator.sent,
  received: .record.receiver.received,
  gen_pps: (.record.generator.sent * 1e9 / .record.generator.elapsed_ns),
  recv_pps: (.record.receiver.received * 1e9 / .record.duration_ns),
  host_ns_per_pkt: (if .record.receiver.received > 0
    then .record.host_cpu.busy_ns / .record.receiver.received else null end),
  others_pct: (.record.host_cpu.other_processes_ns * 100 / .record.host_cpu.window_ns),
  # The generator's own CPU (task clock) over its send time, and its context switches per second:
  # a generator that sleeps between batches switches about once per batch.
  gen_cpu_pct: (.record.generator.perf.task_clock_ns as $t | if ($t | type) == "number"
    then $t * 100 / .record.generator.elapsed_ns else null end),
  gen_cs_per_s: (.record.generator.perf.context_switches as $c | if ($c | type) == "number"
    then $c * 1e9 / .record.generator.elapsed_ns else null end),
  ok: .record.conservation.ok,
  p50_us: (.record | pct(50) | if . then . / 1000 else null end),
  p99_us: (.record | pct(99) | if . then . / 1000 else null end)
} | .rate |= tonumber | .hops |= tonumber | .lost = (.sent - .received))
| . as $runs
| def find($config; $hops; $rate; $rep):
    $runs | map(select(.config == $config and .hops == $hops and .rate == $rate and .rep == $rep)) | first;
  def direct_of: if .config == "route" then "direct-unicast" else "direct" end;
  def per_hop: if .hops == 0 or .host_ns_per_pkt == null then null else
    (find(direct_of; 0; .rate; .rep) as $d | if $d == null or $d.host_ns_per_pkt == null then null
     else (.host_ns_per_pkt - $d.host_ns_per_pkt) / .hops end) end;
  (map(. + {per_hop_ns: per_hop})) as $runs
| def pairs($a; $b; $hops; $rate):
    [ $runs[] | select(.config == $a and .hops == $hops and .rate == $rate) | . as $x
      | ($runs | map(select(.config == $b and .hops == $hops and .rate == $rate and .rep == $x.rep)) | first) as $y
      | select($y != null) | {rep: $x.rep, x: $x, y: $y} ] | sort_by(.rep);
  def vs($a; $b):
    ($runs | map(select(.hops > 0)) | map({hops, rate}) | unique) as $cells
    | $cells[] | . as $c | pairs($a; $b; $c.hops; $c.rate) as $p | select($p | length > 0)
    | ($p | map(select(.x.per_hop_ns != null and .y.per_hop_ns != null))) as $q
    | "| \($c.rate) | \($c.hops) | \($p | length) | \($q | map(.x.per_hop_ns) | med | int) | \($q | map(.y.per_hop_ns) | med | int) | \($q | map(select(.y.per_hop_ns > 0) | .x.per_hop_ns / .y.per_hop_ns) | med | r2) | \($q | list(.x.per_hop_ns - .y.per_hop_ns)) | \($q | map(.x.per_hop_ns - .y.per_hop_ns) | med | int) | \($p | map(.x.host_ns_per_pkt / .y.host_ns_per_pkt) | med | r2) | \($p | map(.x.host_ns_per_pkt / .y.host_ns_per_pkt | r2) | join(", ")) | \($p | map(.x.recv_pps / .y.recv_pps) | med | r2) |";
  def vs_header($a; $b):
    "| offered pps | hops | pairs | \($a) per hop ns | \($b) per hop ns | per hop \($a) / \($b) (median of paired ratios) | paired differences per hop, ns (\($a) − \($b), by repeat) | median difference ns | chain against chain: host CPU per packet \($a) / \($b) (median) | chain ratios by repeat | delivered pps \($a) / \($b) (median) |",
    "|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|";
  "## Medians per offered rate and configuration\n",
  "| offered pps | configuration | hops | repeats | generator pps | delivered pps | loss % (median / max) | loss-free repeats | conservation OK | host CPU ns per delivered pkt | per-hop ns (paired with its direct path) | per-hop ns by repeat | other processes, % of the window (median) | generator CPU % of its send time | generator context switches per s | latency p50 µs | latency p99 µs |",
  "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
  ($runs | group_by([.rate, .hops, .config])[] | sort_by(.rep) |
    "| \(.[0].rate) | \(.[0].config) | \(.[0].hops) | \(length) | \(map(.gen_pps) | med | int) | \(map(.recv_pps) | med | int) | \(map(.lost * 100 / .sent) | med | r2) / \(map(.lost * 100 / .sent) | max | r2) | \(map(select(.lost == 0)) | length) | \(map(select(.ok == true)) | length) | \(map(.host_ns_per_pkt // empty) | med | int) | \(map(.per_hop_ns // empty) | med | int) | \(map(select(.per_hop_ns != null)) | list(.per_hop_ns)) | \(map(.others_pct) | med | r1) | \(map(.gen_cpu_pct // empty) | med | r1) | \(map(.gen_cs_per_s // empty) | med | int) | \(map(.p50_us // empty) | med | r1) | \(map(.p99_us // empty) | med | r1) |"),
  "",
  "## Fast path against the kernel's unicast forwarding (route), paired by repeat\n",
  vs_header("fastpath"; "route"),
  vs("fastpath"; "route"),
  "",
  "## Each path above the floor of a hop (redirect), paired by repeat\n",
  "The difference per hop is what the path's forwarding adds to crossing the veth.\n",
  vs_header("fastpath"; "redirect"),
  vs("fastpath"; "redirect"),
  "",
  vs_header("route"; "redirect"),
  vs("route"; "redirect"),
  "",
  "## Userspace mcrd against the fast path, paired by repeat\n",
  vs_header("mcrd"; "fastpath"),
  vs("mcrd"; "fastpath"),
  "",
  "## Highest rate delivered with every repeat loss-free\n",
  "| configuration | hops | highest loss-free delivered pps (median of its repeats) | at offered pps | delivered pps by repeat there | offered rates with loss in some repeat |",
  "|---|---:|---:|---:|---|---|",
  ($runs | map(select(.hops > 0)) | group_by([.config, .hops])[] |
    (group_by(.rate) | map({rate: .[0].rate, clean: all(.lost == 0), pps: (map(.recv_pps) | med), all: (sort_by(.rep) | list(.recv_pps))})) as $r
    | ($r | map(select(.clean)) | max_by(.pps)) as $best
    | "| \(.[0].config) | \(.[0].hops) | \($best.pps // null | int) | \($best.rate // "—") | \($best.all // "—") | \($r | map(select(.clean | not) | .rate | tostring) | if length == 0 then "none" else join(", ") end) |")
