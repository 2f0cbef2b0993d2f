#!/usr/bin/env bash
# The fast path program's own time per datagram, IPv4 against IPv6: the kernel's run statistics
# (run_time_ns / run_cnt, kernel.bpf_stats_enabled) of mcrd's program on one fastpath hop, as
# reports/fastpath-cost.md measures it. Per repeat and generator mode (1 and 32 datagrams per
# message), one IPv4 and one IPv6 run back to back (the first family alternating per repeat),
# 100k pps, 300,000 datagrams of 1400 B. The statistics cost two clock reads per program run on
# every program of the host, so this runs apart from the host CPU campaign. Writes
# records-fastpath/inprogram.tsv. Needs root and release binaries; sets kernel.bpf_stats_enabled
# back to what it was.
#
#   BIN=$CARGO_TARGET_DIR/release reports/relay-speed-ipv6/inprogram-fastpath.sh [REPEATS]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
REPEATS=${1:-5}
OUT=$HERE/records-fastpath/inprogram.tsv
STOP_AT=${STOP_AT:-}

work=$(mktemp -d /tmp/inprogram-fastpath.XXXXXX)
was=$(sysctl -n kernel.bpf_stats_enabled)
poller=''
cleanup() {
  [ -n "$poller" ] && kill "$poller" 2>/dev/null
  sysctl -qw kernel.bpf_stats_enabled="$was"
  rm -rf "$work"
}
trap cleanup EXIT
sysctl -qw kernel.bpf_stats_enabled=1
[ -f "$OUT" ] || printf 'rep\tsegments\tfamily\tprogram_id\trun_cnt\trun_time_ns\tns_per_run\tdatagrams\n' >"$OUT"

for ((rep = 1; rep <= REPEATS; rep++)); do
  fams=(ipv4 ipv6)
  [ $((rep % 2)) -eq 0 ] && fams=(ipv6 ipv4)
  for seg in 1 32; do
    for fam in "${fams[@]}"; do
      if [ -n "$STOP_AT" ] && [ "$(date +%s)" -ge "$STOP_AT" ]; then
        echo "inprogram-fastpath: past STOP_AT" >&2
        exit 0
      fi
      key=r$rep-g$seg-$fam flags=()
      [ "$fam" = ipv6 ] && flags=(--ipv6)
      # The TC programs' statistics, read every 200 ms while the run lasts, one line per
      # program and reading: mcrd's last line, read before it exits (and its program goes),
      # holds the whole run.
      (while :; do
        bpftool prog show -j 2>/dev/null | jq -c '.[] | select(.type == "sched_cls")' >>"$work/$key.progs.jsonl" || true
        sleep 0.2
      done) &
      poller=$!
      rc=0
      "$ROOT/scripts/pipeline_veth.sh" "${flags[@]}" --prefix pl6i --relay fastpath --hops 1 \
        --pps 100000 --packets 300000 --size 1400 --gen-gso-segments "$seg" --gen-coalesce-us 200 \
        --bin "$BIN" --out "$work/$key" >"$work/$key.log" 2>&1 || rc=$?
      kill "$poller"
      wait "$poller" 2>/dev/null || true
      poller=''
      final=$(ls "$work/$key"/*/raw/hop1/final.json)
      id=$(jq .fast_path.program_id "$final")
      rx=$(jq .fast_path.counters.rx "$final")
      jq -sr --argjson id "$id" --arg pre "$rep	$seg	$fam	$id" --arg rx "$rx" \
        'map(select(.id == $id)) | last | "\($pre)\t\(.run_cnt)\t\(.run_time_ns)\t\((.run_time_ns / .run_cnt) | floor)\t\($rx)"' \
        "$work/$key.progs.jsonl" | tee -a "$OUT"
      [ "$rc" -eq 0 ] || echo "inprogram-fastpath: $key exited $rc" >&2
    done
  done
done
