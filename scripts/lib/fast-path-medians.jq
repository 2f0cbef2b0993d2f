# Input: an array of {set, rep: "repN", record: <run record>} from scripts/fast-path-speed.sh,
# where set is CONFIG-NHh-RATE-MODE:
# - RATE is PPSpps, or unpaced (the generator flat out, pipeline_veth.sh --pps 0);
# - MODE is how the generator sent: single (plain sendmmsg, one datagram per message and no
#   UDP_SEGMENT, the way real senders build their datagrams) or gso (UDP GSO messages of 32
#   datagrams). Sets named without a mode were made before modes existed, with gso.
# Output: Markdown tables, every one keyed by the generator's mode (reports/relay-speed-fastpath.md
# says what each column means), the targets of issue 20 first.
# Per-hop host CPU pairs each chain run with the direct run of the same mode, repeat and rate:
# (chain - direct) / hops, where the direct run has the chain's addressing (route: unicast,
# direct-unicast; the others: multicast, direct). Unpaced, the direct run is at its own top
# rate, higher than a chain's, so the per-hop figures there set different rates side by side.
# A comparison of two paths pairs their chains of the same mode, repeat, rate and hop count:
# per hop (the paired ratio and difference) and chain against chain (the whole run's host CPU
# per packet).

# The targets of issue 20, shown with their numbers in the first section.
def per_hop_target_rates: [100000, 0]; # fast path per hop <= 1.0x route (0: unpaced)
def noise_rate: 20000;                 # here only the paired differences are asked for
def above_floor_budget_ns: 100;        # fast path per hop - redirect per hop

def med: sort | if length == 0 then null
  elif length % 2 == 1 then .[(length - 1) / 2]
  else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def r1: if . == null then "—" else (. * 10 | round / 10 | tostring) end;
def r2: if . == null then "—" else (. * 100 | round / 100 | tostring) end;
def int: if . == null then "—" else (round | tostring) end;
def list(f): map(f | int) | join(", ");
def yesno: if . == null then "—" elif . then "yes" else "no" end;
# Text from set names or records in a table cell: a | would end the cell.
def cell: tostring | gsub("\\|"; "\\|");
def rate_label: if . == 0 then "unpaced" else tostring end;
def rate_order: if . == 0 then infinite else . end;
def rep_order: ltrimstr("rep") | tonumber? // .;
def ratio($a; $b): if $a == null or $b == null or $b == 0 then null else $a / $b end;
def pct(p): .receiver.latency // [] | map(select(.percentile == p).latency_ns) | first;

def parse_set: capture("^(?<config>.+)-(?<hops>[0-9])h-(?<rate>[0-9]+pps|unpaced)(-(?<mode>[^-]+))?$")
  | .hops |= tonumber
  | .rate |= (if . == "unpaced" then 0 else rtrimstr("pps") | tonumber end)
  | .mode //= "gso";

map((.set | parse_set) + {
  rep, record,
  sent: .record.generator.sent,
  received: .record.receiver.received,
  # What the generator's record says it did: batch mode, datagrams per message and at most per
  # send call (a gso set whose kernel refused UDP_SEGMENT would show sendmmsg here).
  sent_as: (.record.configuration.generator
    | "\(.batch_mode // "?") ×\(.gso_segments // "?"), ≤ \(.max_batch_packets // "?") per call"),
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
} | .lost = (.sent - .received))
# The run of these runs (the input) with this configuration, mode, hop count, rate and repeat.
| def find($config; $mode; $hops; $rate; $rep):
    map(select(.config == $config and .mode == $mode and .hops == $hops
      and .rate == $rate and .rep == $rep)) | first;
  def direct_of: if .config == "route" then "direct-unicast" else "direct" end;
  . as $all
| def per_hop: if .hops == 0 or .host_ns_per_pkt == null then null else
    (. as $c | $all | find($c | direct_of; $c.mode; 0; $c.rate; $c.rep)) as $d
    | if $d == null or $d.host_ns_per_pkt == null then null
      else (.host_ns_per_pkt - $d.host_ns_per_pkt) / .hops end end;
  map(. + {per_hop_ns: per_hop}) as $runs
| def ran($config): $runs | any(.config == $config);
  # Every {mode, hops, rate} with chains, in table order.
  def cells: $runs | map(select(.hops > 0) | {mode, hops, rate}) | unique
    | sort_by(.mode, .hops, (.rate | rate_order));
  def cell_label: "| \(.mode | cell) | \(.rate | rate_label) | \(.hops) |";
  # The runs of $a and $b in cell $c, paired by repeat.
  def pairs($a; $b; $c):
    [ $runs[] | select(.config == $a and .mode == $c.mode and .hops == $c.hops and .rate == $c.rate)
      | . as $x | ($runs | find($b; $x.mode; $x.hops; $x.rate; $x.rep)) as $y
      | select($y != null) | {rep: $x.rep, x: $x, y: $y} ] | sort_by(.rep | rep_order);
  # $a against $b in cell $c (null when no repeat has both).
  def against($a; $b; $c):
    pairs($a; $b; $c) as $p | if $p == [] then null else
      ($p | map(select(.x.per_hop_ns != null and .y.per_hop_ns != null))) as $q
      | { pairs: ($p | length),
          a_hop: ($q | map(.x.per_hop_ns) | med),
          b_hop: ($q | map(.y.per_hop_ns) | med),
          # A ratio of subtractions means something only over a positive denominator.
          hop_ratio: ($q | map(select(.y.per_hop_ns > 0) | .x.per_hop_ns / .y.per_hop_ns) | med),
          hop_diffs: ($q | map(.x.per_hop_ns - .y.per_hop_ns)),
          chain_ratios: ($p | map(ratio(.x.host_ns_per_pkt; .y.host_ns_per_pkt) // empty)),
          a_pps: ($p | map(.x.recv_pps) | med),
          b_pps: ($p | map(.y.recv_pps) | med),
          recv_ratio: ($p | map(ratio(.x.recv_pps; .y.recv_pps) // empty) | med) }
      | .hop_diff = (.hop_diffs | med) | .chain_ratio = (.chain_ratios | med) end;
  # Highest delivered rate (median of the repeats) of $config on $hops hops in $mode over the
  # offered rates at which every repeat was loss-free; null if none was.
  def loss_free($config; $mode; $hops):
    $runs | map(select(.config == $config and .mode == $mode and .hops == $hops)) | group_by(.rate)
    | map({rate: .[0].rate, clean: all(.lost == 0), pps: (map(.recv_pps) | med),
           all: (sort_by(.rep | rep_order) | list(.recv_pps))})
    | {best: (map(select(.clean)) | max_by(.pps)),
       lossy: (map(select(.clean | not) | .rate | rate_label) | if length == 0 then "none" else join(", ") end)};

  def vs_header($a; $b):
    "| mode | offered pps | hops | pairs | \($a) per hop ns | \($b) per hop ns | per hop \($a) / \($b) (median of paired ratios) | paired differences per hop, ns (\($a) − \($b), by repeat) | median difference ns | chain against chain: host CPU per packet \($a) / \($b) (median) | chain ratios by repeat | delivered pps \($a) / \($b) (median) |",
    "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|";
  def vs($a; $b):
    vs_header($a; $b),
    (cells[] | . as $c | against($a; $b; $c) | select(. != null)
      | "\($c | cell_label) \(.pairs) | \(.a_hop | int) | \(.b_hop | int) | \(.hop_ratio | r2) | \(.hop_diffs | list(.)) | \(.hop_diff | int) | \(.chain_ratio | r2) | \(.chain_ratios | map(r2) | join(", ")) | \(.recv_ratio | r2) |");

  def targets:
    "## The targets of issue 20, per generator mode\n",
    "Medians over the repeats of paired figures (each repeat's fast path against the other path of the same repeat). A check says whether the median meets the target (— where a per-hop median is not above 0: the subtraction is then below its noise); the paired values by repeat say how far to trust it. Where a generator fell short of its offered rate (generator pps in the medians table), the two paths ran at different rates.\n",
    "**Fast path per hop ≤ 1.0x route, at 100k pps and unpaced (flat out), 1 and 3 hops.**\n",
    "| mode | offered pps | hops | pairs | fastpath per hop ns | route per hop ns | per hop fastpath / route (median of paired ratios) | ≤ 1.0? | median difference per hop ns | chain against chain fastpath / route | delivered pps fastpath | delivered pps route |",
    "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    (cells[] | select(.rate as $r | any(per_hop_target_rates[]; . == $r)) | . as $c
      | against("fastpath"; "route"; $c) | select(. != null)
      | "\($c | cell_label) \(.pairs) | \(.a_hop | int) | \(.b_hop | int) | \(.hop_ratio | r2) | \(if .a_hop > 0 and .b_hop > 0 and .hop_ratio != null then .hop_ratio <= 1 else null end | yesno) | \(.hop_diff | int) | \(.chain_ratio | r2) | \(.a_pps | int) | \(.b_pps | int) |"),
    "",
    "**At \(noise_rate) pps: the paired differences per hop (fastpath − route).**\n",
    "| mode | offered pps | hops | pairs | differences by repeat, ns | median ns |",
    "|---|---:|---:|---:|---|---:|",
    (cells[] | select(.rate == noise_rate) | . as $c | against("fastpath"; "route"; $c) | select(. != null)
      | "\($c | cell_label) \(.pairs) | \(.hop_diffs | list(.)) | \(.hop_diff | int) |"),
    "",
    "**3 hops: the highest loss-free delivered rate, fast path ≥ route.** The highest rate delivered with every repeat loss-free, over all offered rates (unpaced included), median of its repeats.\n",
    "| mode | fastpath pps | at offered | route pps | at offered | fastpath / route | ≥ route? |",
    "|---|---:|---:|---:|---:|---:|---|",
    ($runs | map(select(.hops == 3) | .mode) | unique[] as $m
      | loss_free("fastpath"; $m; 3).best as $f | loss_free("route"; $m; 3).best as $r
      | "| \($m | cell) | \($f.pps | int) | \($f.rate // null | if . == null then "—" else rate_label end) | \($r.pps | int) | \($r.rate // null | if . == null then "—" else rate_label end) | \(ratio($f.pps; $r.pps) | r2) | \(if $f == null or $r == null then null else $f.pps >= $r.pps end | yesno) |"),
    "",
    "**The fast path's cost above the floor (fastpath − redirect per hop) < \(above_floor_budget_ns) ns.**\n",
    "| mode | offered pps | hops | pairs | fastpath per hop ns | redirect per hop ns | differences by repeat, ns | median ns | < \(above_floor_budget_ns)? |",
    "|---|---:|---:|---:|---:|---:|---|---:|---|",
    (cells[] | . as $c | against("fastpath"; "redirect"; $c) | select(. != null)
      | "\($c | cell_label) \(.pairs) | \(.a_hop | int) | \(.b_hop | int) | \(.hop_diffs | list(.)) | \(.hop_diff | int) | \(.hop_diff | if . == null then null else . < above_floor_budget_ns end | yesno) |");

  def medians:
    "## Medians per generator mode, offered rate and configuration\n",
    "| mode | offered pps | configuration | hops | repeats | generator sent as (record) | generator pps | delivered pps | loss % (median / max) | loss-free repeats | conservation OK | host CPU ns per delivered pkt | per-hop ns (paired with its direct path) | per-hop ns by repeat | other processes, % of the window (median) | generator CPU % of its send time | generator context switches per s | latency p50 µs | latency p99 µs |",
    "|---|---:|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ($runs | group_by([.mode, (.rate | rate_order), .hops, .config])[] | sort_by(.rep | rep_order) |
      "| \(.[0].mode | cell) | \(.[0].rate | rate_label) | \(.[0].config | cell) | \(.[0].hops) | \(length) | \(map(.sent_as) | unique | join(", ") | cell) | \(map(.gen_pps) | med | int) | \(map(.recv_pps) | med | int) | \(map(.lost * 100 / .sent) | med | r2) / \(map(.lost * 100 / .sent) | max | r2) | \(map(select(.lost == 0)) | length) | \(map(select(.ok == true)) | length) | \(map(.host_ns_per_pkt // empty) | med | int) | \(map(.per_hop_ns // empty) | med | int) | \(map(select(.per_hop_ns != null)) | list(.per_hop_ns)) | \(map(.others_pct) | med | r1) | \(map(.gen_cpu_pct // empty) | med | r1) | \(map(.gen_cs_per_s // empty) | med | int) | \(map(.p50_us // empty) | med | r1) | \(map(.p99_us // empty) | med | r1) |");

  def capacity:
    "## Highest rate delivered with every repeat loss-free\n",
    "| mode | configuration | hops | highest loss-free delivered pps (median of its repeats) | at offered pps | delivered pps by repeat there | offered rates with loss in some repeat |",
    "|---|---|---:|---:|---:|---|---|",
    ($runs | map(select(.hops > 0) | {mode, config, hops}) | unique[] | . as $k
      | loss_free($k.config; $k.mode; $k.hops)
      | "| \($k.mode | cell) | \($k.config | cell) | \($k.hops) | \(.best.pps | int) | \(.best.rate // null | if . == null then "—" else rate_label end) | \(.best.all // "—") | \(.lossy) |");

  "Generator modes: **single** is plain sendmmsg, one datagram per message and no UDP_SEGMENT (`--gen-gso-segments 1`; trafficgen still puts up to 8 messages in one call); **gso** is UDP GSO messages of 32 datagrams (`--gen-gso-segments 32`). Record sets named without a mode are gso. **unpaced**: the generator flat out (`--pps 0`).\n",
  targets,
  "",
  medians,
  "",
  "## Fast path against the kernel's unicast forwarding (route), paired by repeat\n",
  vs("fastpath"; "route"),
  "",
  "## Fast path against the kernel's multicast forwarding (kernel), paired by repeat\n",
  if ran("kernel") then vs("fastpath"; "kernel")
  else "No kernel runs: the machine that made these records had no IPv4 multicast routing (no `/proc/net/ip_mr_vif`)." end,
  "",
  "## Each path above the floor of a hop (redirect), paired by repeat\n",
  "The difference per hop is what the path's forwarding adds to crossing the veth.\n",
  vs("fastpath"; "redirect"),
  "",
  vs("route"; "redirect"),
  (select(ran("kernel")) | "", vs("kernel"; "redirect")),
  "",
  "## Userspace mcrd against the fast path, paired by repeat\n",
  vs("mcrd"; "fastpath"),
  "",
  capacity
