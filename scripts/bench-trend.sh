#!/bin/sh
# Benchmark of `analyzer trend` on long nightly histories.
#
#   scripts/bench-trend.sh [ANALYZER] [COUNT...]     (default: target/release/analyzer, 1000 10000)
#
# For each COUNT, writes a JSON Lines history of COUNT records made from a real 3-hop pipeline
# record (tests/fixtures/pipeline/mcrd-3h-80000pps.json: 23 metrics), with every rate, loss and
# latency varied by a few percent from night to night (deterministic) and a 20% drop of every
# rate over the last fifth of the nights, then times `analyzer trend` on it and prints the wall
# time and peak resident memory (GNU time). Needs jq and /usr/bin/time.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
A=${1:-${CARGO_TARGET_DIR:-$here/../target}/release/analyzer}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- 1000 10000
fixture=$here/../analyzer/tests/fixtures/pipeline/mcrd-3h-80000pps.json
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for n in "$@"; do
  # Night i: duration scaled by 1 + wobble (0..4%), by 1.25 more after 80% of the nights (every
  # rate 20% lower); losses and latency wobble on their own pattern.
  jq -c --argjson n "$n" '
    . as $r | range(0; $n) as $i
    | (($i * 7919) % 41 / 1000) as $w
    | (if $i >= ($n * 4 / 5) then 1.25 else 1 end) as $step
    | ((($i * 104729) % 37) / 1000) as $v
    | $r
    | .name = "night-\($i)"
    | .date = "night \($i)"
    | .duration_ns = ((.duration_ns * (1 + $w) * $step) | floor)
    | .generator.elapsed_ns = ((.generator.elapsed_ns * (1 + $w) * $step) | floor)
    | .receiver.latency |= map(.latency_ns = ((.latency_ns * (1 + $v)) | floor))
    | .hops |= map(.counters.kernel_drops = (($i * 31) % 17))
  ' "$fixture" > "$work/history-$n.jsonl"
  /usr/bin/time -f "$n records: %e s wall, %U s user, %S s sys, %M KB peak resident" \
    "$A" trend "$work/history-$n.jsonl" --out "$work/trend-$n.md" || test $? -eq 1
done
