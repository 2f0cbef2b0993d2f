# Input: an array of {set: "CONFIG-NHh-PPSpps", rep: "repN", record: <run record>}.
# Output: Markdown tables of medians per configuration and rate (reports/relay-speed.md says
# what each column means). Per-hop CPU pairs each chain run with the direct run of the same
# repeat and rate: (chain - direct) / hops, then the median over repeats; the cost over the
# kernel pairs it with the kernel chain of the same repeat and rate: (chain - kernel) / hops.
def med: sort | if length == 0 then null
  elif length % 2 == 1 then .[(length - 1) / 2]
  else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def r1: if . == null then "—" else (. * 10 | round / 10 | tostring) end;
def r2: if . == null then "—" else (. * 100 | round / 100 | tostring) end;
def int: if . == null then "—" else (round | tostring) end;
def pct(p): .receiver.latency // [] | map(select(.percentile == p).latency_ns) | first;

map(.set as $s | ($s | capture("^(?<config>.+)-(?<hops>[0-9])h-(?<rate>[0-9]+)pps$")) + {
  rep, record,
  sent: .record.generator.sent,
  received: .record.receiver.received,
  gen_pps: (.record.generator.sent * 1e9 / .record.generator.elapsed_ns),
  recv_pps: (.record.receiver.received * 1e9 / .record.duration_ns),
  host_ns_per_pkt: (if .record.receiver.received > 0
    then .record.host_cpu.busy_ns / .record.receiver.received else null end),
  p50_us: (.record | pct(50) | if . then . / 1000 else null end),
  p99_us: (.record | pct(99) | if . then . / 1000 else null end)
} | .rate |= tonumber | .hops |= tonumber | .lost = (.sent - .received))
| . as $runs
| def direct($rate; $rep): $runs | map(select(.config == "direct" and .rate == $rate and .rep == $rep)) | first;
  def per_hop: if .hops == 0 or .host_ns_per_pkt == null then null else
    (direct(.rate; .rep) as $d | if $d == null or $d.host_ns_per_pkt == null then null
     else (.host_ns_per_pkt - $d.host_ns_per_pkt) / .hops end) end;
  (map(. + {per_hop_ns: per_hop})) as $runs
| def kernel_run($rate; $rep): $runs | map(select(.config == "kernel" and .rate == $rate and .rep == $rep)) | first;
  ($runs | map(. + (if .per_hop_ns == null then {} else kernel_run(.rate; .rep) as $k | {
    vs_kernel: (if $k.per_hop_ns == null or $k.per_hop_ns <= 0 then null else .per_hop_ns / $k.per_hop_ns end),
    over_kernel_ns: (if $k.host_ns_per_pkt == null then null else (.host_ns_per_pkt - $k.host_ns_per_pkt) / .hops end)
  } end)))
| group_by(.rate) as $by_rate
| "## Medians per offered rate and configuration\n",
  "| offered pps | configuration | repeats | generator pps | delivered pps | loss % (median / max) | loss-free repeats | host CPU ns per delivered pkt | per-hop ns (paired with direct) | per-hop / kernel's (paired) | ns per hop over the kernel chain (paired) | latency p50 µs | latency p99 µs |",
  "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
  ($by_rate[] | group_by(.config)[] |
    "| \(.[0].rate) | \(.[0].config) | \(length) | \(map(.gen_pps) | med | int) | \(map(.recv_pps) | med | int) | \(map(.lost * 100 / .sent) | med | r2) / \(map(.lost * 100 / .sent) | max | r2) | \(map(select(.lost == 0)) | length) | \(map(.host_ns_per_pkt // empty) | med | int) | \(map(.per_hop_ns // empty) | med | int) | \(map(.vs_kernel // empty) | med | r2) | \(map(.over_kernel_ns // empty) | med | int) | \(map(.p50_us // empty) | med | r1) | \(map(.p99_us // empty) | med | r1) |"),
  "",
  "## Highest rate delivered with every repeat loss-free\n",
  "| configuration | highest loss-free delivered pps (median of its repeats) | at offered pps | offered rates with loss in some repeat |",
  "|---|---:|---:|---|",
  (group_by(.config)[] | select(.[0].hops > 0) |
    (group_by(.rate) | map({rate: .[0].rate, clean: all(.lost == 0), pps: (map(.recv_pps) | med)})) as $r
    | ($r | map(select(.clean)) | max_by(.pps)) as $best
    | "| \(.[0].config) | \($best.pps // null | int) | \($best.rate // "—") | \($r | map(select(.clean | not) | .rate | tostring) | if length == 0 then "none" else join(", ") end) |")
